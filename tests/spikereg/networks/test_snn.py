"""The spiking network's neuron types: config checks, the shipped CUBA model unchanged, SDNN and its ANN twin."""
import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from spikereg.config import ConfigError, load_config
from spikereg.networks.ann import AnnTwin
from spikereg.networks.bounds import INPUT_MAX
from spikereg.networks.snn import SpikingRegNet
from spikereg.netx_file import METADATA_ATTR
from spikereg.pretrained import DEMO_MODEL

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

    net, config = load_checkpoint(DEMO_MODEL.with_suffix(".pt"))
    assert (config.model.neuron.type, config.model.spike_code) == ("cuba", "rate")
    out = tmp_path / "again.net"
    net.export_hdf5(out)
    with h5py.File(DEMO_MODEL, "r") as shipped, h5py.File(out, "r") as again:
        compared = []

        def same(name, item):
            if isinstance(item, h5py.Dataset):
                np.testing.assert_array_equal(again[name][()], item[()], err_msg=name)
                compared.append(name)

        shipped["layer"].visititems(lambda name, item: same(f"layer/{name}", item))
        assert any(name.endswith("/weight") for name in compared)
        old, new = json.loads(shipped.attrs[METADATA_ATTR]), json.loads(again.attrs[METADATA_ATTR])
    assert new["layers"] == old["layers"] and new["window"] == old["window"]
    added_since = {"spike_code": "rate", "readout_gain": 1.0, "spike_exp": 6, "clamp": [],
                   "architecture": "chain", "readout_bias": 0.0}  # newer keys, at defaults
    assert {k: new["model"][k] for k in added_since} == added_since
    assert {k: v for k, v in new["model"].items() if k not in added_since} == {
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


def test_balanced_kernels_keep_the_twin_and_bring_the_quantized_sdnn_closer_to_it(tmp_path):
    """Small trained-like kernels lose most of their levels on the 8-bit grid; balanced ones keep them."""
    config = load_config(None, SDNN).model
    torch.manual_seed(0)
    twin = AnnTwin(config)
    with torch.no_grad():
        for kernel in twin.kernels:
            kernel.mul_(0.15)  # off the 1/32 grid, as trained kernels are
    fixed, moving = torch.rand(8, 1, 8, 8, 8), torch.rand(8, 1, 8, 8, 8)
    kernels, gain = twin.balanced_kernels(fixed, moving, max_weight=3.9, max_value=8.0)
    assert gain > 10
    with torch.no_grad():
        ann = twin.predict(fixed, moving)
        balanced_twin = AnnTwin(config)
        for mine, theirs in zip(balanced_twin.kernels, kernels):
            mine.copy_(theirs)
        torch.testing.assert_close(balanced_twin.predict(fixed, moving) / gain, ann, rtol=1e-4, atol=1e-5)
        # Each layer as large as the weights allow, or as its summed input (either sign) or its values allow:
        # a hidden layer's graded spikes half the message limit, the readout's values a sixteenth of the
        # summed input's (spike_exp 6: 4 and 2).
        summed, values = balanced_twin.layers(fixed, moving)
    caps = [4.0] * (len(kernels) - 1) + [2.0]
    for kernel, layer_input, layer_output, cap in zip(kernels, summed, values, caps):
        weight, peak, value = float(kernel.abs().max()), float(layer_input.abs().max()), float(layer_output.max())
        assert weight <= 3.9 + 1e-5 and peak <= 8.0 + 1e-4 and value <= cap + 1e-4
        if kernel is kernels[0] and float(kernel.clamp(min=0).flatten(1).sum(dim=1).max()) * INPUT_MAX == \
                pytest.approx(0.9 * 8):
            continue  # bound by its worst case, below
        assert weight == pytest.approx(3.9) or peak == pytest.approx(8.0) or value == pytest.approx(cap)
    # The first layer's graded spikes over every input (the host's levels) within the margin of the message limit.
    first_worst = float(kernels[0].clamp(min=0).flatten(1).sum(dim=1).max()) * INPUT_MAX
    assert first_worst <= 0.9 * 8 + 1e-4
    # Values a patch could not hold shrink the layers instead (a gain below 1).
    assert twin.balanced_kernels(fixed, moving, max_value=1e-3)[1] < 1

    def sdnn_error(state, readout_gain):
        net = SpikingRegNet(load_config(None, SDNN + [f"model.readout_gain={readout_gain}"]).model)
        net.load_state_dict(state, strict=False)
        with torch.no_grad():
            return float((net.eval().predict(fixed, moving) - ann).abs().mean()), net

    raw_error, _ = sdnn_error(twin.snn_state(), 1.0)
    balanced_error, net = sdnn_error(twin.snn_state(kernels), gain)
    assert balanced_error < 0.5 * raw_error
    # The gain travels in the netx file's metadata: the rebuilt network decodes the same field.
    net.export_hdf5(tmp_path / "balanced.net")
    rebuilt = SpikingRegNet.from_netx(tmp_path / "balanced.net")
    assert rebuilt.codec.readout_gain == pytest.approx(gain)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.predict(fixed, moving), net.predict(fixed, moving))


def test_balancing_follows_the_spike_exp_range_and_spike_exp_0_leaves_the_weights_their_levels():
    """At spike_exp 6 (+-32) the summed inputs, not the weights, bound the scales and the 8-bit weights keep few
    levels; at spike_exp 0 (+-2048) the first layer reaches the weights' range and the SDNN stays near its twin."""
    torch.manual_seed(0)
    fixed, moving = torch.rand(8, 1, 8, 8, 8), torch.rand(8, 1, 8, 8, 8)
    errors, first_weights = {}, {}
    for spike_exp in (6, 0):
        config = load_config(None, SDNN + [f"model.spike_exp={spike_exp}"]).model
        torch.manual_seed(0)
        twin = AnnTwin(config)
        kernels, gain = twin.balanced_kernels(fixed, moving)
        with torch.no_grad():
            summed = twin.layers(fixed, moving)[0]
        assert gain * float(summed[-1].abs().max()) <= 0.5 * 2.0 ** (11 - spike_exp) * (1 + 1e-5)
        net = SpikingRegNet(replace(config, readout_gain=gain))
        net.load_state_dict(twin.snn_state(kernels), strict=False)
        with torch.no_grad():
            ann = twin.predict(fixed, moving)
            errors[spike_exp] = float((net.eval().predict(fixed, moving) - ann).abs().mean())
        first_weights[spike_exp] = float(kernels[0].abs().max())
    assert first_weights[0] == pytest.approx(3.9) and first_weights[6] < 1.0
    assert errors[0] < 0.5 * errors[6]


def test_readout_gain_is_for_graded_readouts_only():
    with pytest.raises(ConfigError, match=r"'model.readout_gain' applies to model.neuron.type sdnn only"):
        load_config(None, TINY + ["model.readout_gain=4"])
    with pytest.raises(ConfigError, match=r"'model.readout_gain' must be positive"):
        load_config(None, SDNN + ["model.readout_gain=0"])
    with pytest.raises(ValueError, match="weight balancing needs ReLU"):
        AnnTwin(load_config(None, TINY).model).balanced_kernels(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8))


def test_sdnn_summed_inputs_are_each_layers_sigma_and_fine_tuning_keeps_them_in_range():
    """The summed inputs are what Lava carries in 24 bits; the training term sees exactly them."""
    from spikereg.data.sampling import PatchBatch
    from spikereg.networks.ann import balanced_max_value
    from spikereg.training.trainer import _snn_outputs

    config = load_config(None, ["model.neuron.type=sdnn", "model.spike_code=delta", "model.patch_size=8",
                                "model.channels=[4]", "model.strides=[2]"])
    torch.manual_seed(0)
    net = SpikingRegNet(config.model).eval()
    fixed, moving = torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8)
    spikes = net.encode(fixed, moving)
    summed, outputs = net.summed_inputs(spikes)
    assert len(summed) == len(net.blocks) == len(outputs) - 1  # the input layer has no synapse
    with torch.no_grad():
        first = torch.cumsum(net.blocks[0].synapse(net.input_block(spikes)), dim=-1)
        for mine, theirs in zip(outputs, net.layer_outputs(spikes)):
            assert torch.equal(mine, theirs)
    assert torch.equal(summed[0], first)
    batch = PatchBatch(fixed, moving, torch.zeros(2, 3, 4, 4, 4))
    assert _snn_outputs(net, batch, 1.0)[2]["summed_input_bound"] == 0  # an untrained net is far within
    with torch.no_grad():  # weights scaled up until the first layer's sums pass the bound
        scale = 2 * balanced_max_value(config.model.spike_exp) / float(first.abs().max())
        net.blocks[0].synapse.parametrizations.weight.original.mul_(scale)
    term = _snn_outputs(net, batch, 1.0)[2]["summed_input_bound"]
    assert term > 0 and term.requires_grad
    assert _snn_outputs(net, batch, 0.0)[2] == {}
    with pytest.raises(ValueError, match="sigma-delta"):
        SpikingRegNet(load_config(None, []).model).summed_inputs(spikes)


@pytest.mark.parametrize("extra", [[], ["model.spike_exp=0", "model.clamp=[1.5]"]])
def test_chain_from_rest_equals_slayer_blocks_bit_for_bit(extra):
    """One batched pass per patch (what every backend runs for an SDNN file) == SLAYER's blocks from rest."""
    from spikereg.networks.encoding import graded_levels, input_features
    from spikereg.networks.folding import unfold_volume

    net = SpikingRegNet(load_config(None, SDNN + extra).model).eval()
    torch.manual_seed(0)
    fixed = torch.rand(3, 1, 8, 8, 8)
    moving = (fixed + 0.2 * torch.rand_like(fixed)).clamp(0, 1)
    with torch.no_grad():
        summed = []
        fast = net.from_rest(graded_levels(input_features(fixed, moving)), keep=True, summed=summed)
        slow = net.layer_outputs(net.encode(fixed, moving))
    assert len(summed) == len(net.blocks)
    for one_pass, blocks in zip(fast, slow):
        assert int((blocks != 0).sum(dim=-1).max()) <= 1  # one graded spike per unit, at most
        assert torch.equal(one_pass, unfold_volume(blocks.sum(dim=-1), one_pass.shape[1]))
    assert torch.equal(net.codec.decode_values(fast[-1]), net.decode(slow[-1]))
