"""spikereg map's model for graph files: every edge counted, skips and the upsampling edge included (hand counts);
synaptic memory and fan-in for the nonzero synapses only."""
import shutil

import h5py
import numpy as np
import pytest

from lava_export.graph_builder import conv_matrix, conv_transpose_matrix
from lava_export.graph_file import export_graph
from spikereg.hardware import load_profile, map_network
from spikereg.hardware.graph_mapping import _edge_counts, conv_transpose_nonzero_fan_in, conv_transpose_taps, map_graph
from spikereg.hardware.rules import DENSE, NONZERO
from spikereg.networks.graph_topology import UNetConfig, chain_topology
from spikereg.networks.unet import SpikingGraph, SpikingUNet
from spikereg.netx_file import read_edges, read_netx


@pytest.fixture(scope="module")
def unet_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("map") / "unet.net"
    export_graph(SpikingUNet(), path)  # 8^3 patch, 4 input channels, levels of 4 and 4 channels, 6 readout
    return map_graph(path, "loihi2")


def test_skip_and_upsampling_edges_hand_counted(unet_map):
    edges = {e.name: e for e in unet_map.edges}
    assert len(edges) == 8
    # level-2 skip enc2 -> dec2: 3x3 conv, stride 1, pad 1 on 4x4, 16 -> 16 folded features (4 channels x 4
    # depths); taps per axis reach 3 + 4 + 3 = 10 outputs, so 16 * 16 * 10 * 10 synapses. Fan-in counts the
    # nonzero synapses: at most the 3-D kernel's 4 channels x 27 taps, not the folded 16 * 9 = 144
    skip2 = edges["enc2->dec2"]
    assert (skip2.synapses, skip2.delay) == (25_600, 1) and 0 < skip2.fan_in <= 4 * 27
    # only nonzero synapses are stored: 8-bit weights + 1 delay bit each
    assert 0 < skip2.nonzero_synapses < skip2.synapses
    assert skip2.synaptic_memory_bits == skip2.nonzero_synapses * (8 + 1)
    # upsampling dec2 -> dec1: 2x2 transposed conv, stride 2, 4x4 -> 8x8, 16 -> 32 features:
    # every tap reaches all 4 inputs per axis: 16 * 32 * 8 * 8; one tap per output, from one input depth:
    # fan-in at most 4 channels (the folded 16 x 1 x 1 counts the other depths' zero blocks)
    up = edges["dec2->dec1"]
    assert (up.type, up.synapses, up.delay) == ("convT", 32_768, 0) and 0 < up.fan_in <= 4
    assert up.nonzero_synapses <= up.synapses // 4  # depth folding: 2 of 8 depth blocks per input depth
    # level-1 skip enc1 -> dec1: 3x3 on 8x8, 32 -> 32: taps reach 7 + 8 + 7 = 22; delay 3 (2 bits)
    skip1 = edges["enc1->dec1"]
    assert (skip1.synapses, skip1.delay) == (32 * 32 * 22 * 22, 3) and 0 < skip1.fan_in <= 4 * 27  # not 32 * 9
    assert skip1.synaptic_memory_bits == skip1.nonzero_synapses * (8 + 2)
    dec1 = unet_map.layers[5]  # a layer carries the sum of its edges
    assert dec1.synapses == skip1.synapses + up.synapses and dec1.fan_in == skip1.fan_in + up.fan_in
    assert unet_map.total_synapses == sum(e.synapses for e in unet_map.edges)
    assert unet_map.total_synaptic_memory_bits == sum(e.nonzero_synapses * (8 + e.delay.bit_length())
                                                      for e in unet_map.edges)
    assert unet_map.synapse_accounting == "nonzero" and "nonzero only" in unet_map.to_text()
    assert unet_map.layers[0].placement == "host" and unet_map.fits_one_chip and not unet_map.problems
    assert "edge" in unet_map.to_text() and len(unet_map.to_dict()["edges"]) == 8


def lava_matrices(path):
    """Per edge of the graph file at ``path``, its name and the sparse matrix LavaGraph(synapses="sparse") builds."""
    names, edges = read_edges(path)
    with h5py.File(path, "r") as handle:
        shapes = [tuple(int(v) for v in np.asarray(handle[f"layer/{i}/shape"][()]).reshape(-1))
                  for i in range(len(names))]
        for edge in edges:
            group = handle[edge.group]
            weight = np.asarray(group["weight"][()])
            weight = weight[..., 0] if weight.ndim == 5 else weight
            (c_in, h_in, w_in), (c_out, h_out, w_out) = shapes[edge.source], shapes[edge.destination]
            lava_in, lava_out = (w_in, h_in, c_in), (w_out, h_out, c_out)  # Lava's (x, y, f)
            if edge.kind == "conv":
                matrix = conv_matrix(weight, lava_in, lava_out, group["stride"][()], group["padding"][()],
                                     group["dilation"][()], int(np.asarray(group["groups"][()])))
            else:
                matrix = conv_transpose_matrix(weight, lava_in, lava_out, group["stride"][()], group["padding"][()])
            yield f"{names[edge.source]}->{names[edge.destination]}", matrix


def test_an_edge_fan_in_is_the_most_nonzero_synapses_lava_builds_onto_one_neuron(unet_map):
    """Each edge's fan-in is the longest row of the sparse matrix Lava's Sparse holds (every destination here
    has interior neurons, so the bound is reached); the folded weight's zero depth blocks are not in it."""
    edges = {e.name: e for e in unet_map.edges}
    rows = {name: int(np.diff(matrix.indptr).max()) for name, matrix in lava_matrices(unet_map.path)}
    assert rows == {name: e.fan_in for name, e in edges.items()}


#: The dense fan-in (folded features x 3 x 3, zero depth blocks included) and the nonzero one, by hand. Depth
#: is folded into features (one channel: one feature per depth), so a 3-tap depth kernel reaches at most 3 of
#: them: 3 x 9 = 27 nonzero taps where the folded weight has 4 x 9 = 36 on a depth of 4. Output depth 0 of
#: enc1->enc2 (stride 2) reads depths 0, 1 (18), depth 1 reads 1, 2, 3 (27). input->enc1 loses its centre and
#: corner tap at an interior depth: 25. On a depth of 2 every output reads both depths: 2 x 9 = 18 either way.
#: The transposed conv dec2->dec1 (2 taps, stride 2) reaches each output depth from one input depth by one tap:
#: 1, where the folded count is 2 input features x 1 x 1.
HAND_FAN_IN = {  # edge: (dense, nonzero)
    "input->enc1": (36, 25), "enc1->enc2": (36, 27), "enc2->bott": (18, 18), "bott->dec2": (18, 18),
    "enc2->dec2": (18, 18), "enc1->dec1": (36, 27), "dec2->dec1": (2, 1), "dec1->out": (36, 27)}


def test_a_graph_file_checks_max_fan_in_against_its_nonzero_synapses(hand_unet, profile_writer, tmp_path):
    chip = load_profile(str(profile_writer(tmp_path, "loihi2", "tinyfan", {"max_fan_in": 30})))
    report = map_graph(hand_unet, chip)
    names, edges = read_edges(hand_unet)
    root = read_netx(hand_unet).root
    shapes = [tuple(int(v) for v in root[f"layer/{i}/shape"].reshape(-1)) for i in range(len(names))]
    counted = {f"{names[e.source]}->{names[e.destination]}":
               _edge_counts(e.kind, root[e.group], shapes[e.source], shapes[e.destination])[2:] for e in edges}
    assert counted == HAND_FAN_IN
    # the one place the choice is made: a graph file holds nonzero synapses, so its edges carry the nonzero fan-in
    assert {name: (DENSE.fan_in(*pair), NONZERO.fan_in(*pair)) for name, pair in counted.items()} == HAND_FAN_IN
    assert {e.name: e.fan_in for e in report.edges} == {name: nz for name, (_, nz) in HAND_FAN_IN.items()}
    # a layer's fan-in is the sum over its edges: dec2 18 + 18, dec1 27 + 1
    assert [layer.fan_in for layer in report.layers] == [0, 25, 27, 18, 36, 28, 27]
    # the dense fan-ins (36, 36, 18, 36, 38, 36) would put five layers over 30; dec2's 36 nonzero synapses do exceed it
    assert report.problems == ["layer 4 (dec2): fan-in 36 over its 2 edges exceeds tinyfan max_fan_in 30"]
    # what Lava's Sparse holds onto its busiest neuron: the fan-in where the destination has interior neurons;
    # on the 2 x 2 grid no neuron sees all 3 x 3 taps (2 x 2 taps x 2 depths = 8), and the fan-in bounds it
    rows = {name: int(np.diff(matrix.indptr).max()) for name, matrix in lava_matrices(hand_unet)}
    assert rows == {**{name: nz for name, (_, nz) in HAND_FAN_IN.items()},
                    "enc2->bott": 8, "bott->dec2": 8, "enc2->dec2": 8}


def test_a_skip_edge_weight_the_chip_cannot_hold_is_a_problem_and_the_file_read_once_maps_alike(hand_unet, tmp_path):
    """Every edge's weights meet the register rules (a skip edge's own group too), from the file as a run read it."""
    path = tmp_path / "odd.net"
    shutil.copy(hand_unet, path)
    names, edges = read_edges(path)
    skip = next(e for e in edges if not e.primary and e.kind == "conv")
    with h5py.File(path, "r+") as handle:
        weight = handle[skip.group]["weight"]
        changed = np.array(weight[()])
        changed.reshape(-1)[0] = 301  # odd, and beyond 8 bits
        weight[...] = changed
    report = map_graph(path, "loihi2")
    assert [p for p in report.problems if p.startswith(f"edge {skip.index} ")] == [
        f"edge {skip.index} ({names[skip.source]}->{names[skip.destination]}): weight 301 at (0, 0, 0, 0) "
        "does not fit loihi2's weight_bits 8 (+ sign): weights must be even integers in [-256, 254]"]
    assert map_graph(read_netx(path), "loihi2") == report
    assert map_graph(hand_unet, "loihi2").problems == []


def test_transposed_nonzero_fan_in_by_hand():
    weight = np.zeros((2, 1, 3, 3))  # (in, out, k_h, k_w), stride 2: taps 0 and 2 reach even outputs, tap 1 odd
    weight[0, 0, 0, 0] = weight[0, 0, 2, 2] = weight[1, 0, 0, 2] = 2.0  # even rows and columns: 3 inputs
    weight[:, 0, 1, 1] = 2.0  # odd rows and columns: 2
    assert conv_transpose_nonzero_fan_in(weight, (2, 2)) == 3
    assert conv_transpose_nonzero_fan_in(weight, (1, 1)) == 5  # stride 1: every tap reaches one output
    assert conv_transpose_nonzero_fan_in(np.zeros((2, 3, 2, 2)), (2, 2)) == 0


def test_transposed_taps():
    assert list(conv_transpose_taps(4, 8, 2, 2, 0)) == [4, 4]
    assert list(conv_transpose_taps(4, 7, 3, 2, 1)) == [3, 4, 3]  # (4-1)*2 - 2 + 3 = 7 outputs


def test_a_chain_maps_as_the_sequential_mapper_maps_it_but_stores_nonzero_synapses_only(tmp_path):
    config = UNetConfig(align_delays=False)
    path = tmp_path / "chain.net"
    export_graph(SpikingGraph(config, *chain_topology(config, [4, 4])), path)
    graph, plain = map_graph(path, "loihi2"), map_network(path, "loihi2")
    sparse = map_network(path, "loihi2", synapses="sparse")
    for a, b, c in zip(graph.layers, plain.layers, sparse.layers):
        assert (a.neurons, a.synapses, a.nonzero_synapses) == (b.neurons, b.synapses, b.nonzero_synapses)
        # the sequential mapper (netx's Conv) stores the folded weight whole; a graph file its nonzero synapses
        assert (a.synaptic_memory_bits, b.synaptic_memory_bits) == (a.nonzero_synapses * 8, b.synapses * 8)
        # and so counts a neuron's fan-in: the graph file and the sparse chain its nonzero synapses, Conv all
        assert (a.fan_in, a.synaptic_memory_bits) == (c.fan_in, c.synaptic_memory_bits) and a.fan_in <= b.fan_in
    assert sum(layer.fan_in for layer in graph.layers) < sum(layer.fan_in for layer in plain.layers)
    assert graph.total_synapses == plain.total_synapses and graph.cores <= plain.cores


def test_spikereg_map_lists_every_edge_of_a_graph_file(cli, tmp_path):
    import json

    path = tmp_path / "unet.net"
    export_graph(SpikingUNet(), path)
    result = cli.invoke("map", path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [e["name"] for e in report["edges"]][4:7] == ["enc2->dec2", "enc1->dec1", "dec2->dec1"]
    table = cli.invoke("map", path)
    assert table.exit_code == 0 and "dec2->dec1" in table.output and "convT" in table.output
