"""A graph file's energy, edge by edge: nonzero synapses only, synops per edge, the U-Net twin's MACs, the schedule.

The hand-counted U-Net (``hand_unet``): a 4^3 patch, one channel everywhere,
every 3-D kernel 0.5 except two taps of ``input->enc1``: its centre 0 and its
corner ``(0, 0, 0)`` 1e-4, which quantizes to 0. In-bounds connections per axis
(the same along depth, height and width, so cubed):

* 3-tap conv, stride 1, pad 1 on 4: taps reach 3 + 4 + 3 = 10 -> 1000; the
  centre tap reaches 4^3 = 64 and the corner 3^3 = 27, so ``input->enc1`` has
  1000 - 64 - 27 = 909 nonzero synapses, ``enc1->dec1`` and ``dec1->out`` 1000;
* 3-tap conv, stride 2, pad 1, 4 -> 2 (``enc1->enc2``): 1 + 2 + 2 = 5 -> 125;
* 3-tap conv, stride 1, pad 1 on 2: 1 + 2 + 1 = 4 -> 64 (``enc2->bott``,
  ``bott->dec2``, ``enc2->dec2``);
* 2-tap transposed conv, stride 2, 2 -> 4 (``dec2->dec1``): 2 + 2 = 4 -> 64.

Depth-folded, the same edges hold more connections (zero depth blocks): a
conv on 4 with 4 x 4 folded features 4 * 4 * 10 * 10 = 1600, ``enc1->enc2``
4 * 2 * 5 * 5 = 200, the transposed conv 2 * 4 * 4 * 4 = 128; on 2 every depth
block is in the band, so 2 * 2 * 4 * 4 = 64 = the nonzero count.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lava_export.graph_file import export_graph
from spikereg.config import load_config
from spikereg.hardware import Figure, load_profile
from spikereg.hardware.energy_section import energy_section
from spikereg.hardware.graph_energy import (
    FROM_REST,
    graph_activity,
    graph_energy_report,
    graph_loads,
    graph_streamed_rows,
    twin_edge_macs,
    twin_io_bytes,
)
from spikereg.hardware.graph_mapping import map_graph
from spikereg.hardware.rules import DENSE, NONZERO, delay_bits, delay_problem
from spikereg.networks.encoding import graded_levels, input_features
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.graph_twin import GraphTwin

NONZERO_BY_EDGE = {"input->enc1": 909, "enc1->enc2": 125, "enc2->bott": 64, "bott->dec2": 64, "enc2->dec2": 64,
                   "enc1->dec1": 1000, "dec2->dec1": 64, "dec1->out": 1000}
FOLDED_BY_EDGE = {"input->enc1": 1600, "enc1->enc2": 200, "enc2->bott": 64, "bott->dec2": 64, "enc2->dec2": 64,
                  "enc1->dec1": 1600, "dec2->dec1": 128, "dec1->out": 1600}
NEURONS = [64, 64, 8, 8, 8, 64, 64]  # input, enc1, enc2, bott, dec2, dec1, out
SPIKES = [64, 32, 8, 4, 2, 16, 10]  # messages per node over the run (the input: every unit once)
# synops = source messages x nonzero synapses / source neurons
SYNOPS_BY_EDGE = {"input->enc1": 64 * 909 / 64, "enc1->enc2": 32 * 125 / 64, "enc2->bott": 8 * 64 / 8,
                  "bott->dec2": 4 * 64 / 8, "enc2->dec2": 8 * 64 / 8, "enc1->dec1": 32 * 1000 / 64,
                  "dec2->dec1": 2 * 64 / 8, "dec1->out": 16 * 1000 / 64}
# the twin's MACs per patch, one channel: conv out voxels x 27, transposed conv in voxels x 8
TWIN_MACS = {"input->enc1": 64 * 27, "enc1->enc2": 8 * 27, "enc2->bott": 8 * 27, "bott->dec2": 8 * 27,
             "enc2->dec2": 8 * 27, "enc1->dec1": 64 * 27, "dec2->dec1": 8 * 8, "dec1->out": 64 * 27}

TINY = ["model.architecture=unet", "model.patch_size=8", "model.channels=[4, 6]", "model.strides=[]",
        "model.spike_code=delta", "model.neuron.type=sdnn", "model.neuron.threshold=0.015625",
        "model.spike_exp=0", "model.max_displacement=4.0", "run.patch_stride=8"]


def hand_report(patches: int = 1, window: int = 8) -> dict:
    return {"backend": "torch", "iterations": 1, "patches_per_iteration": patches, "patches": patches,
            "time_steps_per_patch": window, "time_steps": patches * window, "input_spikes": SPIKES[0],
            "layers": [{"layer": i + 1, "neurons": n, "spikes": s, "spike_rate": s / (n * patches * window)}
                       for i, (n, s) in enumerate(zip(NEURONS, SPIKES))]}


def test_nonzero_synapses_and_memory_of_every_edge_hand_counted(hand_unet):
    mapping = map_graph(hand_unet, "loihi2")
    edges = {e.name: e for e in mapping.edges}
    assert {name: e.nonzero_synapses for name, e in edges.items()} == NONZERO_BY_EDGE
    assert {name: e.synapses for name, e in edges.items()} == FOLDED_BY_EDGE
    assert {name: e.delay for name, e in edges.items() if e.delay} == {"enc2->dec2": 1, "enc1->dec1": 3}
    for name, e in edges.items():  # only nonzero synapses take memory: 8-bit weights + the delay's bits
        assert e.synaptic_memory_bits == NONZERO_BY_EDGE[name] * (8 + delay_bits(e.delay))
    assert [layer.neurons for layer in mapping.layers] == NEURONS and mapping.total_neurons == sum(NEURONS[1:])


def test_synops_per_edge_are_source_messages_times_mean_nonzero_fanout(hand_unet):
    mapping = map_graph(hand_unet, "loihi2")
    counts, edges = graph_activity(mapping, SPIKES)
    assert {e.edge.name: e.nonzero for e in edges} == pytest.approx(SYNOPS_BY_EDGE, rel=1e-12)
    # every input unit sent once: its synops are exactly the edge's nonzero synapses
    assert edges[0].nonzero == pytest.approx(909) and edges[0].zero_weights == pytest.approx(1600 - 909)
    assert counts.effective_synops == pytest.approx(sum(SYNOPS_BY_EDGE.values()))
    assert counts.structural_zero_synops == 0  # nonzero synapses only: zero weights are not charged
    dec1 = next(s for s in counts.synops if s.index == 5)  # a node's synops: the sum over its edges
    assert dec1.effective == pytest.approx(SYNOPS_BY_EDGE["enc1->dec1"] + SYNOPS_BY_EDGE["dec2->dec1"])
    assert dec1.events == 32 + 2
    assert counts.neurons == sum(NEURONS[1:]) and counts.spikes == sum(SPIKES)  # relays: no neurons


def test_the_energy_section_costs_every_edge_and_says_its_accounting(hand_unet):
    energy = graph_energy_report(hand_report(), hand_unet, profiles=("loihi2", "gpu"))
    assert energy["synapse_accounting"] == NONZERO.to_dict() and not NONZERO.zero_weights
    assert energy["delays"]["longest"] == 3 and energy["delays"]["edges"] == ["enc2->dec2", "enc1->dec1"]
    assert energy["delays"]["limits"]["loihi2"]["value"] == 62
    counts = energy["counts"]
    rows = {row["name"]: row for row in counts["edges"]}
    assert set(rows) == set(NONZERO_BY_EDGE)
    for name, row in rows.items():
        assert row["synops_effective"] == pytest.approx(SYNOPS_BY_EDGE[name], rel=1e-12)
        assert row["synop_j"]["loihi2"] == pytest.approx(SYNOPS_BY_EDGE[name] * 12.2e-12, rel=1e-12)
        assert row["ann_macs"] == TWIN_MACS[name]
    total = sum(SYNOPS_BY_EDGE.values())
    assert counts["synops"] == counts["synops_effective"] == pytest.approx(total)
    assert counts["synops_structural_zeros"] == 0
    assert counts["synops_zero_weights_not_charged"] == pytest.approx(sum(
        SPIKES[row["source"]] * (FOLDED_BY_EDGE[name] - NONZERO_BY_EDGE[name]) / NEURONS[row["source"]]
        for name, row in rows.items()))
    assert counts["neuron_updates"] == sum(NEURONS[1:]) * 8  # on-chip nodes x time steps
    assert counts["ann_macs"] == sum(TWIN_MACS.values()) and counts["ann_io_bytes"] == (2 + 3) * 64 * 4
    loihi2 = energy["neuromorphic"]["loihi2"]
    assert loihi2["terms"]["synops_effective"]["joules"] == pytest.approx(total * 12.2e-12, rel=1e-12)
    assert loihi2["terms"]["synops_structural_zeros"]["joules"] == 0


def test_a_chain_file_keeps_its_dense_accounting(two_layer_net, run_report, toy_chip, toy_gpu):
    energy = energy_section(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu))
    assert energy["synapse_accounting"] == DENSE.to_dict() and DENSE.zero_weights
    assert energy["counts"]["synops_structural_zeros"] > 0 and "edges" not in energy["counts"]


def test_the_from_rest_schedule_puts_each_node_s_work_at_its_step_and_needs_no_drain(hand_unet):
    mapping = map_graph(hand_unet, "loihi2")
    _, edges = graph_activity(mapping, SPIKES)
    lengths = {"input": 0, "enc1": 1, "enc2": 2, "bott": 3, "dec2": 4, "dec1": 5, "out": 6}
    loads = {load.name: load for load in graph_loads(mapping, edges, SPIKES, lengths, window=8, patches=2)}
    assert list(loads) == ["enc1", "enc2", "bott", "dec2", "dec1", "out"]  # the input is the host's
    dec1 = loads["dec1"]
    assert dec1.spikes == [0, 0, 0, 0, 0, 16 / 2, 0, 0]
    # the skip from enc1 arrives at step 2 (and waits 3 steps), the upsampling edge at step 5
    assert dec1.synops[2] == pytest.approx(SYNOPS_BY_EDGE["enc1->dec1"] / 2)
    assert dec1.synops[5] == pytest.approx(SYNOPS_BY_EDGE["dec2->dec1"] / 2)
    assert sum(dec1.synops) == pytest.approx(dec1.synops[2] + dec1.synops[5])

    rows = graph_streamed_rows(hand_report(patches=3), hand_unet, load_profile("loihi2"))
    schedule = rows[""]["schedule"]
    assert schedule["drain_steps"] == 0 and schedule["steps"] == 8  # 3 patches over 21 copies: one window
    assert schedule["window"] == 8 and schedule["notes"][0] == FROM_REST
    assert rows[""]["model"] == "streamed" and rows["_pilotnet_step"]["static_j"] > rows[""]["static_j"]


def test_a_copy_larger_than_a_chip_spans_chips(hand_unet):
    small = dataclasses.replace(load_profile("loihi2"), cores_per_chip=Figure(4, "cores", "a test chip", "specified"))
    row = graph_streamed_rows(hand_report(patches=4), hand_unet, small)[""]
    schedule = row["schedule"]
    assert (schedule["cores_per_copy"], schedule["chips_per_copy"], schedule["copies"], schedule["chips"]) == (
        6, 2, 1, 2)
    assert schedule["steps"] == 4 * 8  # one copy: four windows
    assert row["static_j"] == pytest.approx(0.232 * 2 * schedule["busy_seconds"], rel=1e-12)
    assert row["label"].startswith("1 copy on 2 chips")


def test_a_delay_past_the_chip_s_limit_is_a_mapping_problem():
    chip = load_profile("loihi2")
    assert delay_problem(62, chip) is None and "max_synaptic_delay_steps 62" in delay_problem(63, chip)
    assert delay_problem(99, load_profile("loihi1")) is None  # no figure: no limit checked
    assert [delay_bits(d) for d in (0, 1, 2, 3, 4)] == [0, 1, 2, 2, 3]


def test_nonzero_synapses_equal_a_brute_force_count_on_the_3d_kernels(tmp_path):
    """A saturated (paired) U-Net with trained-like weights: the file's folded 2-D weights counted by the mapping
    against each edge's 8-bit 3-D kernel convolved over a patch of ones."""
    model = load_config(None, TINY + ["model.clamp=[1.0, 0.5, 2.0, 0.75, 1.5]"]).model
    net = GraphRegNet(model)
    path = tmp_path / "paired.net"
    export_graph(net, path)
    edges = {e.name: e for e in map_graph(path, "loihi2").edges}
    with torch.no_grad():
        for edge in net.edges:
            mask = (net.kernel3d(edge) != 0).float()
            source = net.nodes[net.index[edge.source]]
            ones = torch.ones(1, source.populations, *(source.size,) * 3)
            conv = F.conv_transpose3d if edge.kind == "convT" else F.conv3d
            brute = conv(ones, mask, stride=edge.stride, padding=edge.padding).sum()
            assert edges[edge.name].nonzero_synapses == int(brute), edge.name
            assert edges[edge.name].source_neurons == source.populations * source.size ** 3


def test_twin_macs_equal_torch_s_flop_counter():
    model = load_config(None, TINY).model
    meta = GraphRegNet(model).metadata()
    twin = GraphTwin(model)
    fixed = torch.rand(1, 1, 8, 8, 8)
    moving = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad(), FlopCounterMode(display=False) as whole:
        twin.layers(fixed, moving)
    with torch.no_grad(), FlopCounterMode(display=False) as encoding:
        graded_levels(input_features(fixed, moving, force=model.encoding == "intensity+force"))
    convolutions = whole.get_total_flops() - encoding.get_total_flops()  # 2 flops per MAC
    assert sum(twin_edge_macs(meta).values()) == convolutions // 2
    assert twin_io_bytes(meta) == (2 * 8**3 + 3 * 8**3) * 4
