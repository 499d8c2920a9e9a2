"""The registration U-Net: one-pass from rest == SLAYER's blocks, its twin, conversion into the proven range.

No Lava here (tests/lava_export/test_graph_builder.py runs graph files on Lava).
"""
from dataclasses import replace

import pytest
import torch

from spikereg.config import ConfigError, load_config
from spikereg.networks.encoding import graded_levels
from spikereg.networks.folding import fold_volume, unfold_volume
from spikereg.networks.graph_bounds import graph_bounds, graph_worst_case_table
from spikereg.networks.graph_convert import convert_twin, kernel_bounds, load_twin_kernels, project_into_range
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.graph_topology import UNetConfig
from spikereg.networks.graph_twin import GraphTwin
from spikereg.networks.unet import SpikingUNet

TINY = ["model.architecture=unet", "model.patch_size=8", "model.channels=[4, 6]", "model.strides=[]",
        "model.spike_code=delta", "model.neuron.type=sdnn", "model.neuron.threshold=0.015625",
        "model.spike_exp=0", "model.max_displacement=4.0", "run.patch_stride=8"]


def tiny_model(*extra):
    return load_config(None, TINY + list(extra)).model


def held(levels, steps):
    """Levels ``(N, C, D, H, W)`` held for ``steps``, folded as SLAYER's blocks take them."""
    return fold_volume(levels.unsqueeze(-1).expand(*levels.shape, steps).contiguous())


@pytest.mark.parametrize("spike_exp,clamp", [(6, ()), (0, ()), (0, (1.0, 0.5, 2.0, 0.75, 1.5))])
def test_from_rest_equals_slayer_blocks_bit_for_bit(spike_exp, clamp):
    net = SpikingUNet(UNetConfig(patch_size=8, in_channels=4, channels=(4, 6), spike_exp=spike_exp, clamp=clamp,
                                 threshold=1 / 64))
    torch.manual_seed(1)
    levels = graded_levels(torch.rand(3, 4, 8, 8, 8))
    with torch.no_grad():
        fast = net.from_rest(levels, keep=True)
        slow = net.node_outputs(held(levels, max(net.path_lengths.values()) + 3))
    for node, one_pass, blocks in zip(net.nodes, fast, slow):
        assert int((blocks != 0).sum(dim=-1).max()) <= 1, node.name  # one graded spike per unit, at most
        assert torch.equal(one_pass, unfold_volume(blocks.sum(dim=-1), node.populations)), node.name
    assert not torch.equal(fast[-1], torch.zeros_like(fast[-1]))
    if clamp:  # the saturated node's second population fires where relu(x) passes c
        enc1 = net.nodes[1]
        assert enc1.paired and fast[1].shape[1] == 2 * enc1.channels
        assert bool((fast[1][:, enc1.channels:] > 0).any())


def test_from_rest_refuses_unaligned_paths():
    net = SpikingUNet(UNetConfig(patch_size=8, in_channels=4, channels=(4, 6), align_delays=False))
    with pytest.raises(ValueError, match="equally long"):
        net.from_rest(torch.zeros(1, 4, 8, 8, 8))


def test_unet_config_checks():
    assert tiny_model().reduction == 1
    with pytest.raises(ConfigError, match="model.strides"):
        load_config(None, TINY + ["model.strides=[2]"])
    with pytest.raises(ConfigError, match="sdnn"):
        load_config(None, TINY + ["model.neuron.type=cuba", "model.spike_code=rate", "model.spike_exp=6"])
    with pytest.raises(ConfigError, match="multiple of 2"):
        load_config(None, TINY + ["model.patch_size=9", "run.patch_stride=9"])
    with pytest.raises(ConfigError, match="one value per hidden node"):
        load_config(None, TINY + ["model.clamp=[1.0, 1.0]"])


def patches(count=12, size=8, seed=0):
    torch.manual_seed(seed)
    fixed = torch.rand(count, 1, size, size, size)
    moving = (fixed + 0.2 * torch.rand_like(fixed)).clamp(0, 1)
    return fixed, moving


def test_twin_kernels_reach_every_edge_of_the_spiking_graph():
    model = tiny_model()
    twin = GraphTwin(model)
    with torch.no_grad():  # a trained readout's size (it starts near zero)
        twin.kernels["dec1__out"].normal_(0.0, 0.2)
    net = load_twin_kernels(GraphRegNet(model), twin)
    for edge in net.edges:
        assert torch.equal(net.edge_synapse(edge).parametrizations.weight.original,
                           twin.kernels[f"{edge.source}__{edge.destination}"])
    # the twin is the graph's steady state: close, not equal (8-bit weights, spike grid, threshold)
    fixed, moving = patches()
    with torch.no_grad():
        pair = torch.stack([net.predict(fixed, moving).flatten(), twin.predict(fixed, moving).flatten()])
    assert float(torch.corrcoef(pair)[0, 1]) > 0.8


def test_conversion_is_proven_in_range_and_tracks_the_twin():
    model = tiny_model()
    torch.manual_seed(0)
    twin = GraphTwin(model)
    fixed, moving = patches()
    conversion = convert_twin(twin, fixed, moving)
    net = conversion.net
    assert net.model.spike_exp == 0 and len(net.model.clamp) == len(net.nodes) - 2
    assert all(node.paired for node in net.nodes[1:-1])
    assert all(row.ok for row in graph_worst_case_table(net))
    with torch.no_grad():
        error = (net.predict(fixed, moving) - twin.predict(fixed, moving)).abs().mean()
        scale = twin.predict(fixed, moving).abs().mean()
    assert float(error) < 0.5 * float(scale)
    # the cheap bounds training uses never fall below the folded ones export checks
    nodes, _ = graph_bounds(net)
    for name, (worst, activation) in kernel_bounds(net).items():
        assert worst >= max(nodes[name]["synaptic"], nodes[name]["summed"]) - 1e-9
        assert activation >= nodes[name]["activation"] - 1e-9


def test_projection_brings_grown_weights_back_into_range():
    model = tiny_model()
    fixed, moving = patches()
    net = convert_twin(GraphTwin(model), fixed, moving).net
    with torch.no_grad():
        for name, value in net.named_parameters():
            if name.endswith("original"):
                value.mul_(3.0)
    assert not all(row.ok for row in graph_worst_case_table(net))
    applied = project_into_range(net)
    assert applied and all(factor < 1 for factor in applied.values())
    assert all(row.ok for row in graph_worst_case_table(net))


def test_saturation_credit_only_for_pairs_the_weights_really_hold():
    model = tiny_model()
    fixed, moving = patches()
    net = convert_twin(GraphTwin(model), fixed, moving).net
    before = graph_bounds(net)[0]["bott"]["summed"]
    edge = next(e for e in net.edges if e.source == "enc2" and e.destination == "bott")
    with torch.no_grad():  # break the mirror of enc2's pairs on the edge into bott: no credit then
        synapse = net.edge_synapse(edge)
        folded = synapse.weight.detach().clone()
        folded[:, 0::2] += 0.25
        torch.nn.utils.parametrize.remove_parametrizations(synapse, "weight", leave_parametrized=True)
        synapse.weight.copy_(folded)
    assert graph_bounds(net)[0]["bott"]["summed"] > before


def test_graph_file_round_trip_keeps_weights_offsets_and_from_rest(tmp_path):
    from lava_export.graph_file import export_graph

    model = tiny_model()
    fixed, moving = patches()
    net = convert_twin(GraphTwin(model), fixed, moving).net
    path = tmp_path / "unet.net"
    export_graph(net, path, extra={"spacing_mm": 4.0})
    again = GraphRegNet.from_file(path)
    assert again.model == net.model
    with torch.no_grad():
        assert torch.equal(again.predict(fixed, moving), net.predict(fixed, moving))
    assert [row.bound for row in graph_worst_case_table(again)] == [row.bound for row in graph_worst_case_table(net)]
    # the file's own offsets are what the proof reads: a file whose bias says another clamp loses its credit
    import h5py

    with h5py.File(path, "r+") as handle:
        handle["layer/2/bias"][...] = handle["layer/2/bias"][()] * 2
    edited = GraphRegNet.from_file(path)
    assert not torch.equal(edited.blocks["enc2"].neuron.bias, net.blocks["enc2"].neuron.bias)


def test_graph_regnet_shapes():
    net = GraphRegNet(replace(tiny_model(), max_displacement=2.0))
    fixed, moving = patches(count=2)
    with torch.no_grad():
        field = net.predict(fixed, moving)
    assert field.shape == (2, 3, 8, 8, 8)
    assert net.reduction == 1 and net.grid_size == 8
    assert net.window >= max(net.path_lengths.values()) + 2


@pytest.mark.parametrize("threshold", [1 / 64, 0.05])  # at one spike step (the floor zeroes), and above it
def test_inference_neuron_step_equals_slayers_neuron(threshold):
    """Without gradients the one-step neuron is computed in place; it must equal SLAYER's call bit for bit."""
    from spikereg.networks.snn import neuron_step

    net = SpikingUNet(UNetConfig(patch_size=8, in_channels=4, channels=(4, 6), spike_exp=0,
                                 clamp=(1.0, 0.5, 2.0, 0.75, 1.5), threshold=threshold))
    torch.manual_seed(3)
    for node in net.nodes[1:]:
        neuron = net.blocks[node.name].neuron
        z = torch.randn(2, node.populations, node.size, node.size, node.size) * 3
        z = torch.round(z * 4096) / 4096  # on the grid synaptic sums lie on
        with torch.enable_grad():
            slayer = neuron_step(neuron, z.clone().requires_grad_(True)).detach()
        with torch.no_grad():
            fast = neuron_step(neuron, z.clone())
        assert torch.equal(fast, slayer), node.name
        assert bool((fast != 0).any())


def test_biased_readout_from_rest_equals_slayer_and_survives_the_file(tmp_path):
    """model.readout_bias: the readout sends its bias at the window's start, then the change; one pass == SLAYER."""
    from lava_export.graph_file import export_graph

    model = tiny_model("model.readout_bias=0.5")
    net = GraphRegNet(model)
    net.set_readout_bias(0.25)
    torch.manual_seed(4)
    levels = graded_levels(torch.rand(2, model.in_channels, 8, 8, 8))
    with torch.no_grad():
        messages = []
        value = net.from_rest(levels, messages=messages)
        slow = net.node_outputs(held(levels, max(net.path_lengths.values()) + 3))[-1]
    readout = unfold_volume(slow.sum(dim=-1), net.nodes[-1].populations)
    assert torch.equal(value, readout)
    assert int(messages[-1].sum()) == int((slow != 0).sum())  # the bias messages counted too
    assert bool((slow[..., 1] != 0).all())  # every readout unit sends its bias at once (its block delays a step)
    path = tmp_path / "biased.net"
    export_graph(net, path)
    again = GraphRegNet.from_file(path)
    assert again.readout_bias == 0.25
    with torch.no_grad():
        assert torch.equal(again.from_rest(levels), value)
