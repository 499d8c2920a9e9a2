"""The chip's 24-bit range: proven at export for every input, mirrored by torch, watched by every run.

A tiny sigma-delta network is built so that its first layer's summed input
passes Lava's +-32 (netx's default spike_exp 6) on ordinary patches: export
must refuse it naming the layer and the bound; with the check off, Lava wraps
and the torch backend must compute the very same wrapped answer; and a run
must stop with one line and leave nothing behind. ``--range saturate`` makes
the same network proven in range, and it still verifies.
"""
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from lava_export.netx import RangeError, export_netx, sidecar
from lava_export.verify import sample_patches, stress_patches
from spikereg.config import load_config
from spikereg.data import load_mni, make_pair
from spikereg.networks.bounds import (
    message_limit,
    network_bounds,
    provably_in_range,
    saturate_for_chip,
    summed_input_limit,
    worst_case_table,
)
from spikereg.networks.snn import SpikingRegNet
from spikereg.registration.backends import open_backend
from spikereg.registration.range_guard import RangeOverflowError

SDNN_TINY = ["model.patch_size=8", "model.channels=[4]", "model.strides=[2]", "model.time_steps=5",
             "model.encoding=intensity", "model.neuron.type=sdnn", "model.spike_code=delta",
             "model.neuron.threshold=0.03125"]


def overflowing_net(target: float = 48.0) -> SpikingRegNet:
    """A tiny SDNN whose first layer's summed input reaches about ``target`` on template patches."""
    torch.manual_seed(0)
    net = SpikingRegNet(load_config(None, SDNN_TINY).model).eval()
    fixed, moving = sample_patches(net, 8.0, 16)
    with torch.no_grad():
        summed, _ = net.summed_inputs(net.encode(fixed, moving))
        kernel = net.blocks[0].synapse.parametrizations.weight.original
        kernel.mul_(target / float(summed[0].abs().max()))
    return net


@pytest.fixture(scope="module")
def unchecked_file(tmp_path_factory):
    """The overflowing network exported with --range guarded (Lava == SLAYER mirroring the chip, verified)."""
    net = overflowing_net()
    path = tmp_path_factory.mktemp("range") / "wraps.net"
    result = export_netx(net, path, spacing=8.0, verify_patches=2, range_mode="guarded", profile=None)
    assert result.matched and not result.provably_in_range
    assert max(result.summed_input_peaks) > summed_input_limit(6)  # it does wrap on these patches
    return net, path


def test_worst_case_bound_covers_every_patch_seen_including_stress(unchecked_file):
    net, _ = unchecked_file
    fixed, moving = sample_patches(net, 8.0, 32, seed=3)
    sf, sm = stress_patches(fixed, moving)
    with torch.no_grad():
        summed, _ = net.summed_inputs(net.encode(torch.cat([fixed, sf]), torch.cat([moving, sm])))
    bounds = network_bounds(net)
    for layer, values in enumerate(summed):
        assert float(values.abs().max()) <= bounds[layer].summed
    # and the bound is not vacuous: within a small factor of what the stress patches reach
    assert bounds[0].summed < 20 * float(summed[0].abs().max())


def test_export_refuses_a_network_whose_bound_passes_the_limit_naming_layer_and_bound(tmp_path):
    net = overflowing_net()
    out = tmp_path / "refused.net"
    with pytest.raises(RangeError, match=r"layer \d's (synaptic input per step|summed input) can reach [\d,.]+ .*"
                                         r"past the \+-32"):
        export_netx(net, out, spacing=8.0, verify_patches=1, range_mode="proven", profile=None)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_range_saturate_makes_a_proven_network_that_verifies(tmp_path):
    net = overflowing_net()
    assert not provably_in_range(net)
    out = tmp_path / "auto.net"
    result = export_netx(net, out, spacing=8.0, verify_patches=2, range_mode="saturate", profile=None)
    assert result.passed and result.provably_in_range and result.max_graded_error == 0
    written = SpikingRegNet.from_netx(out)
    assert written.config.spike_exp == 0
    assert all(row.ok for row in worst_case_table(written))
    report = json.loads(sidecar(out, "verify").read_text())
    assert report["provably_in_range"] and len(report["stress_kinds"]) == 9


def test_a_corrupted_pair_loses_its_saturation_credit():
    """The bound trusts a saturated pair only where the readout really takes W and -W."""
    from torch.nn.utils import parametrize

    net = overflowing_net(target=200.0)
    config = load_config(None, SDNN_TINY + ["model.spike_exp=0", "model.clamp=[8.0]"]).model
    paired = SpikingRegNet(config).eval()
    paired.load_state_dict({k: v for k, v in net.state_dict().items() if k.endswith("original")}, strict=False)
    honest = network_bounds(paired)[1].summed
    readout = paired.blocks[1]
    weights = readout.synapse.weight.detach().clone()
    parametrize.remove_parametrizations(readout.synapse, "weight", leave_parametrized=True)
    channels, depth = config.channels[0], paired.folds[0].depth_out
    second = [d * 2 * channels + channels + c for d in range(depth) for c in range(channels)]
    with torch.no_grad():  # -W becomes -W/2: the pair no longer delivers clamp(x, 0, c)
        readout.synapse.weight[:, second] = weights[:, second] * 0.5
    assert network_bounds(paired)[1].summed > 2 * honest


def test_saturation_keeps_a_hidden_layers_graded_spikes_within_the_message_limit():
    """A hidden layer whose summed input fits the 24 bits but whose graded spikes pass the 16-bit messages: the
    layer before it saturates until they fit (a saturated pair's first population still sends relu(x))."""
    torch.manual_seed(0)
    net = SpikingRegNet(load_config(None, SDNN_TINY + ["model.channels=[4, 4]", "model.strides=[2, 1]",
                                                       "model.spike_exp=0"]).model).eval()
    kernels = [block.synapse.parametrizations.weight.original for block in net.blocks]
    with torch.no_grad():
        kernels[0].mul_(100 / network_bounds(net)[0].spike)
        kernels[1].mul_(800 / network_bounds(net)[1].spike)
    bounds = network_bounds(net)
    assert bounds[1].peak < 0.9 * summed_input_limit(0) and bounds[1].spike > message_limit(0)
    saturated = saturate_for_chip(net)
    assert saturated.config.clamp[0] > 0
    assert network_bounds(saturated)[1].spike < 0.9 * message_limit(0)
    assert all(row.ok for row in worst_case_table(saturated))


@pytest.fixture(scope="module")
def stress_inputs():
    """Patches built to exceed the range: empty against bright, and edges (the stress set)."""
    net = overflowing_net()
    fixed, moving = sample_patches(net, 8.0, 6, seed=5)
    sf, sm = stress_patches(fixed, moving)
    return torch.cat([fixed, sf]), torch.cat([moving, sm])


def test_torch_mirrors_the_chip_past_its_range(unchecked_file, stress_inputs):
    """With the stop off, the torch backend and Lava wrap alike: the same controls, bit for bit."""
    _, path = unchecked_file
    fixed, moving = stress_inputs
    answers, events = {}, {}
    for backend in ("torch", "sim"):
        with open_backend(path, backend, range_stop=False) as engine:
            engine.reset()
            answers[backend] = engine.predict(fixed, moving)
            events[backend] = engine.guard.events
    np.testing.assert_array_equal(answers["torch"], answers["sim"])
    assert events["torch"] and events["sim"]  # both saw it, neither stopped
    layers = {backend: {e.layer for e in found} for backend, found in events.items()}
    assert layers["torch"] == layers["sim"] and 1 in layers["torch"]


@pytest.mark.parametrize("backend", ["torch", "sim"])
def test_every_backend_stops_at_the_range(unchecked_file, stress_inputs, backend):
    _, path = unchecked_file
    fixed, moving = stress_inputs
    with open_backend(path, backend) as engine:
        engine.reset()
        with pytest.raises(RangeOverflowError, match=r"layer \d's (synaptic|summed) input reached .* patch \d+"):
            engine.predict(fixed, moving)


def test_spikereg_run_stops_with_one_line_and_writes_nothing(cli, unchecked_file, tmp_path):
    _, path = unchecked_file
    template = load_mni("t1", 8.0)
    pair = make_pair(template.data, np.random.default_rng(1), max_displacement=2.0, control_spacing=4)
    crop = np.s_[5:21, 6:22, 4:20]
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), tmp_path / f"{name}.nii.gz")
    for backend in ("torch", "sim"):
        out = tmp_path / f"out_{backend}"
        line = cli.one_error_line("run", "--backend", backend, "--model", path, "--fixed", tmp_path / "fixed.nii.gz",
                                  "--moving", tmp_path / "moving.nii.gz", "--out", out)
        assert "reached" in line and "--range guarded" in line
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".out_{backend}")]
