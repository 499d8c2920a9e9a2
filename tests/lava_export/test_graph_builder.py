"""The tiny spiking U-Net on Lava: graph file, graph builder, Lava fixed point == SLAYER, negative tests.

A U-Net (two levels, two skips, a strided-conv downsampling and a folded
transposed-conv upsampling edge, skip delays aligned) is trained a few SLAYER
steps, exported as a graph netx file, built from it with lava-nc's own
processes and run on Lava's fixed-point models on real-anatomy patches (MNI
T1 at 2 mm, plus the verification stress patches): every layer's graded
spikes at every step must equal SLAYER's within one quantum (measured: 0).
A corrupted skip weight (either skip) or a wrong skip delay must fail.
"""
import shutil

import h5py
import numpy as np
import pytest
import torch

from lava_export.graph_builder import conv_transpose_matrix, conv_weight_for_lava
from lava_export.graph_file import GraphFileError, export_graph, is_graph_file, read_edges
from lava_export.graph_verify import compare_graph, template_frames
from spikereg.networks.graph_topology import UNetConfig
from spikereg.networks.unet import SpikingUNet

WINDOW = 8


def trained_unet(config: UNetConfig | None = None, steps: int = 3) -> SpikingUNet:
    net = SpikingUNet(config).train()
    frames = template_frames(net, 2, WINDOW, stress=False, seed=5)
    torch.manual_seed(0)
    target = torch.rand(len(frames), net.nodes[-1].features, 8, 8)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(frames).sum(dim=-1), target).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory):
    net = trained_unet()
    path = tmp_path_factory.mktemp("unet") / "unet.net"
    export_graph(net, path)
    frames = template_frames(net, 3, WINDOW)  # 3 anatomy pairs + 9 stress pairs
    return net, path, frames


@pytest.fixture(scope="module")
def verified(unet_file):
    net, path, frames = unet_file
    return compare_graph(net, path, frames)


def test_graph_file_layout(unet_file):
    net, path, _ = unet_file
    assert is_graph_file(path)
    names, edges = read_edges(path)
    assert names == [n.name for n in net.nodes]
    with h5py.File(path, "r") as handle:
        assert [handle[f"layer/{i}/type"][0] for i in range(len(names))] == [b"input"] + [b"conv"] * 6
        assert all(handle[f"layer/{i}/neuron/type"][()] == b"SDNN" for i in range(len(names)))
        extra = [e for e in edges if not e.primary]
        assert {(names[e.source], names[e.destination], e.kind) for e in extra} == {
            ("enc2", "dec2", "conv"), ("dec2", "dec1", "convT")}
        for e in extra:  # SLAYER's 8-bit integers, as its export writes a layer's weight
            weight = handle[e.group]["weight"][()]
            assert np.array_equal(weight, np.round(weight)) and np.abs(weight).max() <= 256
    assert {(names[e.source], names[e.destination]): e.delay for e in edges if e.delay} == {
        ("enc2", "dec2"): 1, ("enc1", "dec1"): 3}


def test_lava_graph_equals_slayer_on_real_anatomy(unet_file, verified):
    net, _, frames = unet_file
    result = verified
    assert result.patches == len(frames) == 12
    assert result.passed, result.to_dict()
    assert max(result.max_error) <= result.tolerance
    assert max(result.max_error) == 0.0  # measured: bit for bit
    assert result.messages_lava == result.messages_slayer and min(result.messages_slayer) > 0
    assert result.readout_mismatches == 0 and result.readout_max_error == 0.0
    # measured delays: SLAYER's layer l first answers at its longest path; Lava one step later (host encoder)
    lengths = [net.path_lengths[n.name] for n in net.nodes]
    assert result.first_step_slayer == lengths
    assert result.first_step_lava == [v + 1 for v in lengths]


def corrupt(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as handle:
        edit(handle)
    return dst


@pytest.mark.parametrize("where", ["graph/edge/4/weight", "layer/5/weight"])  # enc2->dec2, enc1->dec1 skips
def test_a_corrupted_skip_weight_fails(unet_file, tmp_path, where):
    net, path, frames = unet_file

    def edit(handle):
        weight = handle[where][()]
        flat = weight.reshape(-1)
        flat[np.flatnonzero(flat)[:: max(1, np.count_nonzero(flat) // 16)]] += 32
        handle[where][...] = flat.reshape(weight.shape)

    result = compare_graph(net, corrupt(path, tmp_path / "bad.net", edit), frames[:2])
    assert not result.passed
    first_bad = int(np.flatnonzero(result.mismatches)[0])
    assert result.layers[first_bad] == ("dec2" if "edge/4" in where else "dec1")
    assert not any(result.mismatches[:first_bad])


def test_a_wrong_skip_delay_fails(unet_file, tmp_path):
    net, path, frames = unet_file

    def edit(handle):  # enc1 -> dec1 one step too early
        assert int(handle["graph/edge/5/delay"][()]) == 3
        handle["graph/edge/5/delay"][...] = 2

    result = compare_graph(net, corrupt(path, tmp_path / "late.net", edit), frames[:2])
    assert not result.passed
    assert result.layers[int(np.flatnonzero(result.mismatches)[0])] == "dec1"


def test_upsampling_matrix_is_the_transposed_convolution():
    rng = np.random.default_rng(0)
    weight = rng.integers(-128, 128, (3, 2, 2, 2)) * 2  # (C_in, C_out, k_h, k_w)
    x = rng.integers(-50, 50, (3, 4, 5))  # (C, H, W)
    reference = torch.nn.functional.conv_transpose2d(torch.tensor(x[None], dtype=torch.float64),
                                                     torch.tensor(weight, dtype=torch.float64), stride=2)[0]
    matrix = conv_transpose_matrix(weight, (5, 4, 3), (10, 8, 2), stride=np.array([2, 2]), padding=np.array([0, 0]))
    lava_x = np.transpose(x, (2, 1, 0)).reshape(-1)  # (x, y, f) C order
    out = (matrix @ lava_x).reshape(10, 8, 2)
    assert np.array_equal(np.transpose(out, (2, 1, 0)), reference.numpy().astype(np.int64))
    assert conv_weight_for_lava(np.zeros((4, 3, 3, 2))).shape == (4, 2, 3, 3)


def test_graph_file_errors(unet_file, tmp_path):
    _, path, _ = unet_file

    def two_primaries(handle):
        handle["graph/edge/4/primary"][...] = 1

    with pytest.raises(GraphFileError, match="exactly one primary"):
        read_edges(corrupt(path, tmp_path / "a.net", two_primaries))

    def backwards(handle):
        handle["graph/edge/4/source"][...] = 5

    with pytest.raises(GraphFileError, match="does not go forward"):
        read_edges(corrupt(path, tmp_path / "b.net", backwards))

    def no_graph(handle):
        del handle["graph"]

    with pytest.raises(GraphFileError, match="not a graph"):
        read_edges(corrupt(path, tmp_path / "c.net", no_graph))


def test_cuba_unet_on_lava_equals_slayer_spike_for_spike(tmp_path):
    """Binary spikes, every layer reset each window, staggered by its path length (skips aligned)."""
    net = trained_unet(UNetConfig(neuron="cuba"), steps=2)
    path = tmp_path / "cuba.net"
    export_graph(net, path)
    with h5py.File(path, "r") as handle:
        assert "neuron" not in handle["layer/0"]  # the input layer is a shape: the host sends spikes
        assert handle["layer/1/neuron/type"][()] == b"CUBA"
    frames = template_frames(net, 1, 16)  # rate code over 8 steps, then silence; + 9 stress pairs
    result = compare_graph(net, path, frames)
    assert result.neuron == "cuba" and result.tolerance == 0.0 and result.provably_in_range  # 24-bit u and v
    assert result.passed, result.to_dict()
    assert max(result.max_error) == 0.0 and result.readout_max_error == 0.0
    assert result.messages_lava == result.messages_slayer and min(result.messages_slayer) > 0


def test_cuba_graph_with_unequal_paths_is_refused(tmp_path):
    from lava_export.graph_builder import GraphBuildError, LavaGraph

    net = SpikingUNet(UNetConfig(neuron="cuba", align_delays=False))
    path = tmp_path / "unaligned.net"
    export_graph(net, path)
    with pytest.raises(GraphBuildError, match="paths into layer 4 \\(dec2\\) take \\[3, 4\\] steps"):
        LavaGraph(path, window=16)
    with pytest.raises(GraphBuildError, match="give its window"):
        LavaGraph(path)


def test_a_chain_graph_file_is_a_sequential_netx_file(tmp_path):
    """Layer groups are SLAYER's own exports: a graph that is a chain runs on stock netx, verified as ever."""
    from lava_export.verify import compare_on_lava
    from spikereg.networks.graph_topology import chain_topology
    from spikereg.networks.unet import SpikingGraph

    config = UNetConfig(align_delays=False)
    net = SpikingGraph(config, *chain_topology(config, [4]))
    path = tmp_path / "chain.net"
    export_graph(net, path)
    assert is_graph_file(path)
    frames = template_frames(net, 2, WINDOW, stress=False)
    result = compare_on_lava(net.chip_layers, path, frames, WINDOW)  # stock netx.hdf5.Network via the runner
    assert result.passed and min(result.layer_spikes_slayer) > 0, result.to_dict()
    graph = compare_graph(net, path, frames)  # and the graph builder agrees
    assert graph.passed and max(graph.max_error) == 0.0


def test_verified_export_writes_verify_json_per_layer_and_edge(tmp_path):
    import json

    from lava_export.graph_verify import GraphVerificationError, export_graph_verified

    loud = SpikingUNet()
    with pytest.raises(GraphVerificationError, match="can reach .* past the \\+-32"):
        export_graph_verified(loud, tmp_path / "loud.net", range_mode="proven")
    assert not (tmp_path / "loud.net").exists()
    quiet = SpikingUNet(UNetConfig(spike_exp=0, gain=0.3))  # provably within the chip's 24 bits
    out = tmp_path / "quiet.net"
    result = export_graph_verified(quiet, out, patches=2, range_mode="proven", stress=False)
    assert out.exists() and result.passed and result.provably_in_range
    report = json.loads((tmp_path / "quiet.verify.json").read_text())
    assert report["passed"] and len(report["per_layer"]) == 7 and len(report["per_edge"]) == 8
    skip = next(e for e in report["per_edge"] if e["name"] == "enc1->dec1")
    assert skip["delay"] == 3 and skip["worst_case"]["bound"] < skip["worst_case"]["limit"] == 2048.0
    assert [row["first_step_lava"] for row in report["per_layer"]] == [n + 1 for n in range(7)]
    assert max(row["max_error"] for row in report["per_layer"]) == 0.0


def test_sequential_commands_refuse_a_graph_file_in_one_line(unet_file):
    from spikereg.netx_file import ModelFileError, read_metadata

    _, path, _ = unet_file
    with pytest.raises(ModelFileError, match="a graph netx file"):
        read_metadata(path)


def test_three_level_unet_on_lava_equals_slayer(tmp_path):
    net = SpikingUNet(UNetConfig(channels=(4, 4, 4)))
    path = tmp_path / "unet3.net"
    export_graph(net, path)
    result = compare_graph(net, path, template_frames(net, 2, WINDOW, stress=False))
    assert result.passed and max(result.max_error) == 0.0, result.to_dict()
    assert min(result.messages_slayer) > 0
    assert result.first_step_lava == [net.path_lengths[n.name] + 1 for n in net.nodes]


def test_the_file_alone_rebuilds_its_slayer_twin(unet_file, tmp_path):
    """SLAYER from the graph file (weights and delays): folded weights equal the file's, and Lava equals it."""
    from spikereg.networks.unet import SpikingGraph

    net, path, frames = unet_file
    twin = SpikingGraph.from_graph_file(path)
    assert [(e.name, e.delay) for e in twin.edges] == [(e.name, e.delay) for e in net.edges]
    for a, b in zip(net.edges, twin.edges):
        quantized = [g.edge_synapse(e).pre_hook_fx(g.edge_synapse(e).weight, descale=True)
                     for g, e in ((net, a), (twin, b))]
        assert torch.equal(*quantized), a.name
    result = compare_graph(twin, path, frames[:2])
    assert result.passed and max(result.max_error) == 0.0


def test_measured_delays_one_step_per_connection_and_per_relay(unet_file, verified, tmp_path):
    """Without the skips' delays dec1 first answers 3 steps earlier, in SLAYER and on Lava alike.

    The skip enc1 -> dec1 is the only path that reaches dec1 in 1 step (the
    others take 4): so its first answer measures that one connection, and the
    aligned file's 3 identity relays add exactly 3 steps on Lava, as the 3-step
    shift does in SLAYER.
    """
    net, _, frames = unet_file
    plain = SpikingUNet(UNetConfig(align_delays=False))
    path = tmp_path / "plain.net"
    export_graph(plain, path)
    result = compare_graph(plain, path, frames[:2])
    assert result.passed and max(result.max_error) == 0.0
    dec1 = result.layers.index("dec1")
    assert result.first_step_slayer[dec1] == 2 and result.first_step_lava[dec1] == 3  # enc1 (1) + 1
    assert verified.first_step_slayer[dec1] - result.first_step_slayer[dec1] == 3
    assert verified.first_step_lava[dec1] - result.first_step_lava[dec1] == 3


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1)])
def test_conv_matrix_is_the_convolution_and_holds_no_zero_weight(stride, padding, dilation, groups):
    from lava_export.graph_builder import conv_matrix

    rng = np.random.default_rng(1)
    weight = rng.integers(-128, 128, (4, 6 // groups, 3, 3)) * 2  # (C_out, C_in / groups, k_h, k_w)
    weight[:, :, 0] = 0  # a zero band, as depth folding leaves
    x = rng.integers(-50, 50, (6, 7, 5))  # (C, H, W)
    reference = torch.nn.functional.conv2d(torch.tensor(x[None], dtype=torch.float64),
                                           torch.tensor(weight, dtype=torch.float64), stride=stride,
                                           padding=padding, dilation=dilation, groups=groups)[0].numpy()
    c, h, w = reference.shape
    matrix = conv_matrix(weight, (5, 7, 6), (w, h, c), np.array([stride] * 2), np.array([padding] * 2),
                         np.array([dilation] * 2), groups)
    out = (matrix @ np.transpose(x, (2, 1, 0)).reshape(-1)).reshape(w, h, c)  # Lava's (x, y, f) C order
    assert np.array_equal(np.transpose(out, (2, 1, 0)), reference.astype(np.int64))
    assert matrix.nnz > 0 and np.count_nonzero(matrix.data) == matrix.nnz  # only nonzero synapses stored
    with pytest.raises(Exception, match="does not join"):
        conv_matrix(weight, (5, 7, 5), (w, h, c), 1, 1, 1, groups)


@pytest.mark.parametrize("neuron", ["sdnn", "cuba"])
def test_sparse_synapses_on_lava_equal_slayer(unet_file, tmp_path, neuron):
    """Every conv edge a Lava Sparse of its nonzero weights: the same arithmetic, measured bit for bit."""
    if neuron == "sdnn":
        net, path, frames = unet_file
    else:
        net = trained_unet(UNetConfig(neuron="cuba"), steps=2)
        path = tmp_path / "cuba.net"
        export_graph(net, path)
        frames = template_frames(net, 1, 16)
    result = compare_graph(net, path, frames[:4], synapses="sparse")
    assert result.passed and result.synapses == "sparse", result.to_dict()
    assert max(result.max_error) == 0.0 and min(result.messages_slayer) > 0
    from lava_export.graph_builder import LavaGraph

    graph = LavaGraph(path, window=16, synapses="sparse")
    graph.build()
    kinds = {type(p).__name__ for processes in graph.connections.values() for p in processes}
    assert kinds == {"Sparse"}  # no Conv: nothing holds the zero depth blocks


def test_a_corrupted_weight_fails_with_sparse_synapses(unet_file, tmp_path):
    net, path, frames = unet_file

    def edit(handle):  # enc1's own weight: one nonzero synapse changed
        flat = handle["layer/1/weight"][()].reshape(-1)
        flat[np.flatnonzero(flat)[0]] += 32
        handle["layer/1/weight"][...] = flat.reshape(handle["layer/1/weight"].shape)

    result = compare_graph(net, corrupt(path, tmp_path / "bad.net", edit), frames[:2], synapses="sparse")
    assert not result.passed and result.mismatches[1] > 0 and result.mismatches[0] == 0


def test_unknown_synapses_are_refused(unet_file):
    from lava_export.graph_builder import GraphBuildError, LavaGraph

    with pytest.raises(GraphBuildError, match="synapses 'dense': choose conv or sparse"):
        LavaGraph(unet_file[1], synapses="dense")


def test_an_edge_too_large_for_sparse_synapses_on_the_simulator_is_refused(unet_file, monkeypatch):
    from lava_export import graph_builder

    monkeypatch.setattr(graph_builder, "SPARSE_SIMULATOR_LIMIT", 1000)
    graph = graph_builder.LavaGraph(unet_file[1], synapses="sparse")
    refusal = r"edge 0 \(input -> enc1\) would hold up to .* synapses='conv'"
    with pytest.raises(graph_builder.GraphBuildError, match=refusal):
        graph.build()


def test_an_interrupt_inside_a_graph_run_stops_lava_and_says_so(unet_file):
    """Ctrl-C while a graph's runtime is up: leaving the ``with`` block stops Lava and notes it, as a chain's run."""
    from lava_export.graph_builder import LavaGraph
    from spikereg.networks.encoding import graded_levels
    from spikereg.networks.folding import fold_volume

    net, path, _ = unet_file
    node = net.nodes[0]
    levels = fold_volume(graded_levels(torch.rand(1, node.populations, node.size, node.size, node.size))).numpy()
    graph = LavaGraph(path, window=WINDOW)
    with pytest.raises(KeyboardInterrupt) as caught:
        with graph:
            graph.run_patches(levels, WINDOW, stop=False)  # compiled and running, left up for the next call
            assert graph._started
            raise KeyboardInterrupt
    assert not graph._started
    assert "Lava stopped" in getattr(caught.value, "__notes__", [])
