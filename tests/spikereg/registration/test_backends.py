"""open_backend: the torch backend on the exported weights agrees with Lava's simulator."""
import numpy as np
import pytest
import torch

from spikereg.data import load_mni, make_pair
from spikereg.networks.snn import SpikingRegNet
from spikereg.registration.backends import open_backend
from spikereg.registration.register import register


@pytest.fixture(scope="module")
def brain_crop(tiny_export):
    """A 16^3 crop of the brain centre (8 mm MNI T1) and a randomly warped copy."""
    template = load_mni("t1", 8.0).data
    pair = make_pair(template, np.random.default_rng(3), max_displacement=2.0, control_spacing=4, noise_std=0.0)
    crop = np.s_[5:21, 6:22, 4:20]
    return pair.fixed[crop], pair.moving[crop]


def test_from_netx_carries_the_exported_quantized_weights(tiny_export):
    net, path = tiny_export
    loaded = SpikingRegNet.from_netx(path)
    for trained, exported in zip(net.blocks, loaded.blocks):
        expected = trained.synapse._pre_hook_fx(trained.synapse.weight)
        assert torch.equal(exported.synapse._pre_hook_fx(exported.synapse.weight), expected)
        assert expected.abs().sum() > 0


def test_torch_and_sim_backends_give_the_same_field(tiny_export, brain_crop):
    """Lava fixed point reproduces SLAYER's spikes exactly, so the fields must be equal (tolerance 0)."""
    _, path = tiny_export
    fixed, moving = brain_crop
    results = {}
    for name in ("torch", "sim"):
        with open_backend(path, name) as backend:
            results[name] = register(fixed, moving, backend, iterations=2, patch_stride=4)
            stats = backend.stats
        assert stats.patches == 2 * results[name].patches_per_iteration == 2 * 27
        results[name + "_spikes"] = stats.layer_spikes
    torch_run, sim_run = results["torch"], results["sim"]
    assert np.abs(torch_run.ddf).max() > 0.05, "the tiny network predicted no motion: nothing was compared"
    np.testing.assert_array_equal(torch_run.ddf, sim_run.ddf)
    np.testing.assert_array_equal(torch_run.warped, sim_run.warped)
    np.testing.assert_array_equal(results["torch_spikes"], results["sim_spikes"])


@pytest.fixture(scope="module")
def sdnn_export(tmp_path_factory):
    """A tiny sigma-delta registration network (untrained), exported and verified."""
    from lava_export.netx import export_netx
    from spikereg.config import load_config

    config = load_config(None, ["model.patch_size=8", "model.channels=[4]", "model.strides=[2]",
                                "model.time_steps=5", "model.encoding=intensity", "model.neuron.type=sdnn",
                                "model.spike_code=delta", "model.neuron.threshold=0.03125"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sdnn_backend") / "sdnn.net"
    export_netx(SpikingRegNet(config.model).eval(), path, spacing=8.0, verify_patches=2, range_mode="guarded")
    return path


def _registrations(path, fixed, moving, chunk: int = 10) -> dict:
    results = {}
    for name in ("torch", "sim"):
        with open_backend(path, name) as backend:
            backend.chunk_size = chunk  # 27 patches per iteration: three calls
            results[name] = [register(fixed, moving, backend, iterations=2, patch_stride=4) for _ in range(2)]
            results[name + "_spikes"] = backend.stats.layer_spikes
            results[name + "_neurons"] = backend.stats.layer_neurons
            results[name + "_input"] = backend.stats.input_spikes
    return results


def test_sdnn_patches_run_from_rest_on_every_backend(sdnn_export, brain_crop):
    """An SDNN file exported now runs every patch from rest: the torch backend in one batched pass, Lava
    returning to rest at every window. Same field bit for bit, a second registration repeats the first,
    and both equal SLAYER's blocks on each patch alone from rest."""
    import json

    import h5py

    from spikereg.netx_file import METADATA_ATTR

    with h5py.File(sdnn_export, "r") as handle:
        assert json.loads(handle.attrs[METADATA_ATTR])["from_rest"] is True
    fixed, moving = brain_crop
    results = _registrations(sdnn_export, fixed, moving)
    (torch_run, torch_again), (sim_run, sim_again) = results["torch"], results["sim"]
    assert np.abs(torch_run.ddf).max() > 0.05, "the tiny network predicted no motion: nothing was compared"
    np.testing.assert_array_equal(torch_run.ddf, sim_run.ddf)
    np.testing.assert_array_equal(torch_again.ddf, torch_run.ddf)
    np.testing.assert_array_equal(sim_again.ddf, sim_run.ddf)
    np.testing.assert_array_equal(results["torch_spikes"], results["sim_spikes"])
    assert results["torch_neurons"] == results["sim_neurons"] and min(results["torch_neurons"]) > 0  # report.json's
    assert results["torch_input"] == results["sim_input"] > 0  # the host's delta-encoded messages
    net = SpikingRegNet.from_netx(sdnn_export)  # every patch alone, from rest, SLAYER's blocks over time
    with torch.no_grad():
        grid = register(fixed, moving, _FromRest(net), iterations=2, patch_stride=4)
    np.testing.assert_array_equal(grid.ddf, torch_run.ddf)


def test_sdnn_files_from_before_from_rest_still_stream(sdnn_export, brain_crop, tmp_path):
    """A file without the from_rest mark (exported before it) streams as Lava streams it: the torch backend
    streams the same way (same chunks, same drain steps), so torch and sim still agree bit for bit, and
    the field differs from the from-rest one (the residues carried between patches)."""
    import json
    import shutil

    import h5py

    from spikereg.netx_file import METADATA_ATTR

    old = tmp_path / "old.net"
    shutil.copy(sdnn_export, old)
    with h5py.File(old, "r+") as handle:
        meta = json.loads(handle.attrs[METADATA_ATTR])
        del meta["from_rest"]
        handle.attrs[METADATA_ATTR] = json.dumps(meta)
    fixed, moving = brain_crop
    streamed = _registrations(old, fixed, moving)
    np.testing.assert_array_equal(streamed["torch"][0].ddf, streamed["sim"][0].ddf)
    assert streamed["torch_input"] == streamed["sim_input"] > 0
    np.testing.assert_array_equal(streamed["torch"][1].ddf, streamed["torch"][0].ddf)
    net = SpikingRegNet.from_netx(old)
    with torch.no_grad():
        grid = register(fixed, moving, _FromRest(net), iterations=2, patch_stride=4)
    assert np.abs(grid.ddf - streamed["torch"][0].ddf).max() > 1e-4, "streaming made no difference"


class _FromRest:
    """SLAYER on each patch alone, from rest: what the torch backend did before it streamed."""

    name = "from-rest"

    def __init__(self, net) -> None:
        from spikereg.registration.register import BackendStats

        self.net, self.patch_size, self.reduction = net, net.config.patch_size, net.reduction
        self.chunk_size, self.stats = 10, BackendStats()

    def reset(self) -> None:
        pass

    def predict(self, fixed, moving, progress=None):
        return self.net.decode(self.net.readout_window(self.net(self.net.encode(fixed, moving)))).numpy()


def test_sparse_synapses_register_as_torch_does():
    """The shipped default on Lava with every layer a Sparse of its nonzero weights: torch's field bit for bit."""
    from spikereg.pretrained import DEFAULT_NAME, resolve_model
    from spikereg.registration.backends import SparseChainBackend

    path = resolve_model(DEFAULT_NAME)
    template = load_mni("t1", 2.0).data
    pair = make_pair(template, np.random.default_rng(4), max_displacement=2.0, control_spacing=8, noise_std=0.0)
    crop = np.s_[30:62, 40:72, 30:62]
    results = {}
    for name, kwargs in (("torch", {"backend": "torch"}), ("sparse", {"backend": "sim", "synapses": "sparse"})):
        with open_backend(path, **kwargs) as backend:
            results[name] = register(pair.fixed[crop], pair.moving[crop], backend, iterations=1, patch_stride=16)
            results[name + "_spikes"] = backend.stats.layer_spikes
            results[name + "_input"] = backend.stats.input_spikes
            if name == "sparse":
                assert isinstance(backend, SparseChainBackend)
                kinds = {type(p).__name__ for ps in backend.graph.connections.values() for p in ps}
                assert kinds == {"Sparse"}
    assert np.abs(results["torch"].ddf).max() > 0.05, "no motion predicted: nothing was compared"
    np.testing.assert_array_equal(results["torch"].ddf, results["sparse"].ddf)
    np.testing.assert_array_equal(results["torch_spikes"], results["sparse_spikes"])
    assert results["torch_input"] == results["sparse_input"] > 0


def test_sparse_synapses_refuse_a_file_not_proven_in_range(sdnn_export):
    from spikereg.registration.range_guard import RangeOverflowError

    with pytest.raises(RangeOverflowError, match="not proven in the chip's range"):
        open_backend(sdnn_export, "sim", synapses="sparse")


def test_sparse_synapses_refuse_a_file_that_does_not_run_from_rest(tiny_export):
    with pytest.raises(ValueError, match="is not a graded file that runs every patch from rest"):
        open_backend(tiny_export[1], "sim", synapses="sparse")  # binary (CUBA) spikes, reset every window


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "gpu"}, "choose one of torch, sim, loihi2"),
    ({"backend": "torch", "device": "tpu"}, "--device tpu"),
    ({"backend": "torch", "precision": "float"}, "--precision float"),
    ({"backend": "sim", "device": "cuda"}, "applies to --backend torch only"),
    ({"backend": "torch", "synapses": "sparse"}, "--synapses sparse: applies to --backend sim"),
    ({"backend": "sim", "synapses": "dense"}, "--synapses 'dense': choose conv or sparse"),
])
def test_open_backend_refuses_bad_options(tiny_export, kwargs, message):
    with pytest.raises(ValueError, match=message):
        open_backend(tiny_export[1], **kwargs)
