"""The spiking network's neuron types: config checks, the shipped CUBA model unchanged, SDNN and its ANN twin."""
import json

import h5py
import numpy as np
import pytest
import torch

from spikereg.config import ConfigError, load_config
from spikereg.networks.ann import AnnTwin
from spikereg.networks.snn import METADATA_ATTR, SpikingRegNet
from spikereg.pretrained import DEFAULT_MODEL

TINY = ["model.patch_size=8", "model.channels=[4]", "model.strides=[2]", "model.time_steps=5",
        "model.encoding=intensity"]
SDNN = TINY + ["model.neuron.type=sdnn", "model.spike_code=delta", "model.neuron.threshold=0.03125"]


@pytest.mark.parametrize("overrides, match", [
    (["model.neuron.type=sdnn"], r"'model.spike_code' 'rate' does not suit model.neuron.type 'sdnn'; use delta"),
    (["model.spike_code=delta"], r"does not suit model.neuron.type 'cuba'; use rate or latency"),
    (["model.neuron.type=lif"], r"'model.neuron.type' must be one of cuba, sdnn, got 'lif'"),
    (["model.neuron.threshold=0"], r"'model.neuron.threshold' must be positive"),
])
def test_neuron_type_and_spike_code_are_checked(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_shipped_checkpoint_exports_the_shipped_netx_file_unchanged(tmp_path):
    """demo.pt (written before neuron.type and spike_code existed) still builds the network of demo.net."""
    from spikereg.training.trainer import load_checkpoint

    net, config = load_checkpoint(DEFAULT_MODEL.with_suffix(".pt"))
    assert (config.model.neuron.type, config.model.spike_code) == ("cuba", "rate")
    out = tmp_path / "again.net"
    net.export_hdf5(out)
    with h5py.File(DEFAULT_MODEL, "r") as shipped, h5py.File(out, "r") as again:
        compared = []

        def same(name, item):
            if isinstance(item, h5py.Dataset):
                np.testing.assert_array_equal(again[name][()], item[()], err_msg=name)
                compared.append(name)

        shipped["layer"].visititems(lambda name, item: same(f"layer/{name}", item))
        assert any(name.endswith("/weight") for name in compared)
        old, new = json.loads(shipped.attrs[METADATA_ATTR]), json.loads(again.attrs[METADATA_ATTR])
    assert new["layers"] == old["layers"] and new["window"] == old["window"]
    assert {k: v for k, v in new["model"].items() if k != "spike_code"} == {
        **old["model"], "neuron": {**old["model"]["neuron"], "type": "cuba"}}


def test_sdnn_network_has_a_graded_input_layer_and_exports_it(tmp_path):
    net = SpikingRegNet(load_config(None, SDNN).model)
    assert len(net.chip_layers) == len(net.blocks) + 1 and net.codec.layers == len(net.chip_layers)
    assert net.codec.graded
    net.export_hdf5(tmp_path / "sdnn.net")
    with h5py.File(tmp_path / "sdnn.net", "r") as handle:
        assert handle["layer/0/type"][0] == b"input" and handle["layer/0/neuron/type"][()] == b"SDNN"
        assert handle["layer/0/neuron/vThMant"][()] == 2  # threshold 1/32 on SLAYER's 1/64 grid
        assert handle["layer/1/neuron/type"][()] == b"SDNN" and handle["layer/1/neuron/activation"][()] == b"relu"
        assert json.loads(handle.attrs[METADATA_ATTR])["layers"] == 3


def test_sdnn_ann_twin_has_the_same_topology_and_predicts_what_the_sdnn_does():
    """The twin's kernels are the SDNN's 3-D kernels; on grid weights its ReLU CNN is the SDNN's steady state."""
    config = load_config(None, SDNN).model
    torch.manual_seed(0)
    twin, net = AnnTwin(config), SpikingRegNet(config)
    with torch.no_grad():  # weights on SLAYER's 8-bit grid, so both use the very same numbers
        for kernel in twin.kernels:
            kernel.copy_(torch.round(kernel * 32).clamp(-128, 127) / 32)
    result = net.load_state_dict(twin.snn_state(), strict=False)
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if "parametrizations.weight.original" in k]
    fixed, moving = torch.rand(4, 1, 8, 8, 8), torch.rand(4, 1, 8, 8, 8)
    with torch.no_grad():
        ann, snn = twin.predict(fixed, moving), net.eval().predict(fixed, moving)
    assert ann.shape == snn.shape == (4, 3, 4, 4, 4) and ann.abs().max() > 0.5
    # Differences come only from changes below the delta threshold held back in each
    # layer and from flooring graded spikes to 2**-12.
    assert (ann - snn).abs().max() < 0.1 * config.max_displacement
