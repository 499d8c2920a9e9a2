"""spikereg map's model for graph files: every edge counted, skips and the upsampling edge included (hand counts);
synaptic memory for the nonzero synapses only."""
import pytest

from lava_export.graph_file import export_graph
from spikereg.hardware import map_network
from spikereg.hardware.graph_mapping import conv_transpose_taps, map_graph
from spikereg.networks.unet import SpikingGraph, SpikingUNet, UNetConfig, chain_topology


@pytest.fixture(scope="module")
def unet_map(tmp_path_factory):
    path = tmp_path_factory.mktemp("map") / "unet.net"
    export_graph(SpikingUNet(), path)  # 8^3 patch, 4 input channels, levels of 4 and 4 channels, 6 readout
    return map_graph(path, "loihi2")


def test_skip_and_upsampling_edges_hand_counted(unet_map):
    edges = {e.name: e for e in unet_map.edges}
    assert len(edges) == 8
    # level-2 skip enc2 -> dec2: 3x3 conv, stride 1, pad 1 on 4x4, 16 -> 16 folded features;
    # taps per axis reach 3 + 4 + 3 = 10 outputs, so 16 * 16 * 10 * 10 synapses; fan-in 16 * 9
    skip2 = edges["enc2->dec2"]
    assert (skip2.synapses, skip2.fan_in, skip2.delay) == (25_600, 144, 1)
    # only nonzero synapses are stored: 8-bit weights + 1 delay bit each
    assert 0 < skip2.nonzero_synapses < skip2.synapses
    assert skip2.synaptic_memory_bits == skip2.nonzero_synapses * (8 + 1)
    # upsampling dec2 -> dec1: 2x2 transposed conv, stride 2, 4x4 -> 8x8, 16 -> 32 features:
    # every tap reaches all 4 inputs per axis: 16 * 32 * 8 * 8; one tap per output: fan-in 16
    up = edges["dec2->dec1"]
    assert (up.type, up.synapses, up.fan_in, up.delay) == ("convT", 32_768, 16, 0)
    assert up.nonzero_synapses <= up.synapses // 4  # depth folding: 2 of 8 depth blocks per input depth
    # level-1 skip enc1 -> dec1: 3x3 on 8x8, 32 -> 32: taps reach 7 + 8 + 7 = 22; delay 3 (2 bits)
    skip1 = edges["enc1->dec1"]
    assert (skip1.synapses, skip1.fan_in, skip1.delay) == (32 * 32 * 22 * 22, 288, 3)
    assert skip1.synaptic_memory_bits == skip1.nonzero_synapses * (8 + 2)
    dec1 = unet_map.layers[5]  # a layer carries the sum of its edges
    assert dec1.synapses == skip1.synapses + up.synapses and dec1.fan_in == 288 + 16
    assert unet_map.total_synapses == sum(e.synapses for e in unet_map.edges)
    assert unet_map.total_synaptic_memory_bits == sum(e.nonzero_synapses * (8 + e.delay.bit_length())
                                                      for e in unet_map.edges)
    assert unet_map.synapse_accounting == "nonzero" and "nonzero only" in unet_map.to_text()
    assert unet_map.layers[0].placement == "host" and unet_map.fits_one_chip and not unet_map.problems
    assert "edge" in unet_map.to_text() and len(unet_map.to_dict()["edges"]) == 8


def test_transposed_taps():
    assert list(conv_transpose_taps(4, 8, 2, 2, 0)) == [4, 4]
    assert list(conv_transpose_taps(4, 7, 3, 2, 1)) == [3, 4, 3]  # (4-1)*2 - 2 + 3 = 7 outputs


def test_a_chain_maps_as_the_sequential_mapper_maps_it_but_stores_nonzero_synapses_only(tmp_path):
    config = UNetConfig(align_delays=False)
    path = tmp_path / "chain.net"
    export_graph(SpikingGraph(config, *chain_topology(config, [4, 4])), path)
    graph, plain = map_graph(path, "loihi2"), map_network(path, "loihi2")
    for a, b in zip(graph.layers, plain.layers):
        assert (a.neurons, a.synapses, a.nonzero_synapses, a.fan_in) == (
            b.neurons, b.synapses, b.nonzero_synapses, b.fan_in)
        # the sequential mapper (netx's Conv) stores the folded weight whole; a graph file its nonzero synapses
        assert (a.synaptic_memory_bits, b.synaptic_memory_bits) == (a.nonzero_synapses * 8, b.synapses * 8)
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
