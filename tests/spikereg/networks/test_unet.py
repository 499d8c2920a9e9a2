"""The tiny spiking U-Net in SLAYER: exact transposed depth folding, the graph's delays, training, range bounds.

No Lava here (tests/lava_export/test_graph_builder.py runs it on Lava).
"""
import pytest
import torch

from spikereg.networks.bounds import summed_input_limit
from spikereg.networks.folding import DepthFoldT, fold_volume, unfold_volume
from spikereg.networks.graph_bounds import graph_bounds, graph_worst_case_table
from spikereg.networks.graph_topology import UNetConfig
from spikereg.networks.unet import SpikingUNet


def test_transposed_depth_fold_equals_conv_transpose3d():
    torch.manual_seed(0)
    c_in, c_out, depth = 3, 2, 4
    x = torch.randn(2, c_in, depth, 5, 5, dtype=torch.float64)
    for kernel, stride, padding in ((2, 2, 0), (3, 2, 1), (3, 1, 1)):
        k3 = torch.randn(c_in, c_out, kernel, kernel, kernel, dtype=torch.float64)
        reference = torch.nn.functional.conv_transpose3d(x, k3, stride=stride, padding=padding)
        fold = DepthFoldT(depth, kernel, stride, padding)
        assert fold.depth_out == reference.shape[2]
        folded = torch.nn.functional.conv_transpose2d(fold_volume(x), fold.fold_weight(k3), stride=stride,
                                                      padding=padding)
        assert torch.allclose(unfold_volume(folded, c_out), reference, atol=1e-12)
        assert torch.allclose(fold.unfold_weight(fold.fold_weight(k3), c_in, c_out), k3, atol=1e-12)


def test_graph_two_levels_two_skips_and_aligned_delays():
    net = SpikingUNet()
    edges = {e.name: e for e in net.edges}
    assert edges["enc1->enc2"].stride == 2 and edges["dec2->dec1"].kind == "convT"  # one down, one up
    skips = [name for name in edges if name in ("enc2->dec2", "enc1->dec1")]
    assert len(skips) == 2
    # every path into a node equally long: the skips wait for the longer path
    assert edges["enc2->dec2"].delay == 1 and edges["enc1->dec1"].delay == 3
    assert all(e.delay == 0 for name, e in edges.items() if name not in skips)
    assert net.path_lengths == {"input": 0, "enc1": 1, "enc2": 2, "bott": 3, "dec2": 4, "dec1": 5, "out": 6}
    plain = SpikingUNet(UNetConfig(align_delays=False))
    assert all(e.delay == 0 for e in plain.edges)
    assert plain.path_lengths["out"] == 6  # the longest path sets it either way
    # a node over concat(skip, up) is two synapses summed before one neuron
    assert [net.edges[e].name for e in net.nodes[net.index["dec1"]].inputs] == ["enc1->dec1", "dec2->dec1"]


def frames_of(net, count=2, window=8, seed=0):
    from spikereg.networks.encoding import hold_encode

    torch.manual_seed(seed)
    size = net.config.patch_size
    return fold_volume(hold_encode(torch.rand(count, net.config.in_channels, size, size, size), window))


def test_every_node_answers_after_its_path_length():
    net = SpikingUNet()
    with torch.no_grad():
        outs = net.node_outputs(frames_of(net, count=1))
    for node, out in zip(net.nodes, outs):
        busy = out.abs().flatten(0, -2).sum(dim=0).nonzero()
        assert int(busy[0]) == net.path_lengths[node.name], node.name


def test_a_few_slayer_training_steps_move_every_edge():
    net = SpikingUNet().train()
    frames = frames_of(net, count=2)
    target = torch.rand(2, net.nodes[-1].features, 8, 8)
    kernels = {name: p for name, p in net.named_parameters() if name.endswith("original")}
    assert len(kernels) == len(net.edges)  # one trainable 3-D kernel per edge
    before = {name: p.detach().clone() for name, p in kernels.items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        readout = net(frames).sum(dim=-1)
        loss = torch.nn.functional.mse_loss(readout, target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    for name, p in kernels.items():
        assert not torch.equal(p.detach(), before[name]), f"{name} did not train"


def test_bounds_sum_over_incoming_edges_and_cover_samples():
    net = SpikingUNet()
    nodes, edges = graph_bounds(net)
    for node in ("dec2", "dec1"):
        incoming = [net.edges[e].name for e in net.nodes[net.index[node]].inputs]
        assert len(incoming) == 2
        assert nodes[node]["synaptic"] <= sum(edges[name]["synaptic"] for name in incoming) + 1e-6
        assert nodes[node]["synaptic"] >= max(edges[name]["synaptic"] for name in incoming) - 1e-6
    with torch.no_grad():
        summed = net.summed_inputs(frames_of(net, count=4, seed=1))
    for node, sigma in zip(net.nodes[1:], summed):
        assert float(sigma.abs().max()) <= nodes[node.name]["summed"], node.name


def test_worst_case_table_checks_every_edge_against_the_chip():
    loud = graph_worst_case_table(SpikingUNet())
    names = {row.quantity.split(" synaptic")[0] for row in loud if row.quantity.startswith("edge ")}
    assert len(names) == 8  # every edge has its row
    assert loud[0].limit == summed_input_limit(6) == 32.0
    assert not all(row.ok for row in loud)  # He-scaled random weights compound past +-32
    quiet = graph_worst_case_table(SpikingUNet(UNetConfig(spike_exp=0, gain=0.3)))
    assert quiet[0].limit == 2048.0
    assert all(row.ok for row in quiet), [row.describe() for row in quiet if not row.ok]


def test_patch_size_must_halve():
    with pytest.raises(ValueError, match="even"):
        SpikingUNet(UNetConfig(patch_size=7))


def test_three_levels_three_skips_aligned():
    net = SpikingUNet(UNetConfig(channels=(4, 4, 4)))
    assert [n.name for n in net.nodes] == ["input", "enc1", "enc2", "enc3", "bott", "dec3", "dec2", "dec1", "out"]
    assert [n.size for n in net.nodes] == [8, 8, 4, 2, 2, 2, 4, 8, 8]
    delays = {e.name: e.delay for e in net.edges if e.delay}
    assert delays == {"enc3->dec3": 1, "enc2->dec2": 3, "enc1->dec1": 5}
    assert sum(e.kind == "convT" for e in net.edges) == 2 and net.path_lengths["out"] == 8
    with torch.no_grad():
        outs = net.node_outputs(frames_of(net, count=1))
    assert tuple(outs[-1].shape[1:4]) == (8 * 6, 8, 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        SpikingUNet(UNetConfig(patch_size=6, channels=(4, 4, 4)))


def test_cuba_bounds_sum_over_incoming_edges():
    from spikereg.networks.graph_bounds import graph_cuba_table

    net = SpikingUNet(UNetConfig(neuron="cuba"))
    rows = {row.quantity: row for row in graph_cuba_table(net, 16)}
    skip, up = rows["edge enc1->dec1 input per step"].bound, rows["edge dec2->dec1 input per step"].bound
    assert max(skip, up) <= rows["dec1 current"].bound <= 16 * (skip + up)
    assert all(row.ok for row in rows.values())  # 8-bit weights, 16 steps: far inside 24 bits


def test_graph_bounds_are_differentiable_for_a_training_penalty():
    net = SpikingUNet()
    nodes, _ = graph_bounds(net, differentiable=True)
    penalty = sum(torch.relu(bound["summed"] - 16.0) for bound in nodes.values())
    penalty.backward()
    skip = net.edge_synapse(next(e for e in net.edges if e.name == "enc1->dec1"))
    assert skip.parametrizations.weight.original.grad is not None
    assert float(skip.parametrizations.weight.original.grad.abs().sum()) > 0
    plain, _ = graph_bounds(net)
    assert abs(plain["dec1"]["summed"] - float(nodes["dec1"]["summed"].detach())) < 1e-3
