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


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "gpu"}, "choose one of torch, sim, loihi2"),
    ({"backend": "torch", "device": "tpu"}, "--device tpu"),
    ({"backend": "torch", "precision": "float"}, "--precision float"),
    ({"backend": "sim", "device": "cuda"}, "applies to --backend torch only"),
])
def test_open_backend_refuses_bad_options(tiny_export, kwargs, message):
    with pytest.raises(ValueError, match=message):
        open_backend(tiny_export[1], **kwargs)
