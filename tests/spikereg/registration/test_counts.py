"""Spike and synaptic-operation counts: hand-computed on a hand-built network; Lava == SLAYER on an export.

The hand-built network (SLAYER blocks, exported with SLAYER's own ``export_hdf5``):

    input    2 channels x 3 x 3
    layer 1  1x1 conv 2 -> 3, all weights 1 except output 2 <- input 1 (zero)
    layer 2  3x3 conv 3 -> 1, padding 1, all weights 1

CUBA neurons with full current and voltage decay and threshold 0.5: a neuron
spikes (one step later, SLAYER's delay shift) exactly when a nonzero weight
brings it any spike, and forgets everything in between. Input: channel 0 spikes
at (0, 0) at t=0 and at (1, 2) at t=1, channel 1 at (0, 0) at t=2.

Layer 1: the spikes at (0, 0) t=0 and (1, 2) t=1 reach all 3 outputs at their
pixel, the channel-1 spike only outputs 0 and 1: 3 + 3 + 2 = 8 spikes. Fan-out
of an input neuron: 3 synapses (1x1, 3 outputs), 2 nonzero for channel 1. Synops
into layer 1: 3 events x 3 = 9, of which 1 on the zero weight.

Layer 2: a 3x3 window on a 3x3 grid with padding: a corner neuron feeds 4
outputs, an edge neuron 6, the centre 9. Layer-1 spikes: (0, 0) 3 at t=1 and 2 at
t=3 (corner), (1, 2) 3 at t=2 (edge): synops 5 x 4 + 3 x 6 = 38 (the layer's
mean fan-out, 147 synapses / 27 neurons, would give 8 x 5.44 = 43.6). Layer-2
spikes: the corner spikes reach 4 outputs twice, the edge spike 6: 14.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spikereg import compat
from spikereg.data import load_mni
from spikereg.hardware.activity import EnergyError
from spikereg.hardware.energy import energy_report
from spikereg.registration.counts import CountError, count_patches, fanouts, load_raster, save_raster


@pytest.fixture(scope="module")
def hand_net(tmp_path_factory):
    """(blocks, netx path, input spikes (1, 2, 3, 3, 8)) of the module docstring."""
    slayer = compat.slayer()
    neuron = {"threshold": 0.5, "current_decay": 1.0, "voltage_decay": 1.0, "requires_grad": False}
    first = slayer.block.cuba.Conv(neuron, 2, 3, 1, weight_scale=2)
    second = slayer.block.cuba.Conv(neuron, 3, 1, 3, padding=1, weight_scale=2)
    with torch.no_grad():
        first.synapse.weight.fill_(1.0)
        first.synapse.weight[2, 1] = 0.0
        second.synapse.weight.fill_(1.0)
    spikes = torch.zeros(1, 2, 3, 3, 8)
    spikes[0, 0, 0, 0, 0] = spikes[0, 0, 1, 2, 1] = spikes[0, 1, 0, 0, 2] = 1.0
    with torch.no_grad():  # SLAYER blocks learn their neuron shapes (which export writes) from a forward pass
        second(first(spikes))
    path = tmp_path_factory.mktemp("hand") / "hand.net"
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        inp = layers.create_group("0")
        inp.create_dataset("type", (1,), "S10", [b"input"])
        inp.create_dataset("shape", data=np.array([2, 3, 3]))
        first.export_hdf5(layers.create_group("1"))
        second.export_hdf5(layers.create_group("2"))
    return (first, second), path, spikes


def test_fanout_of_every_neuron_by_hand(hand_net) -> None:
    _, path, _ = hand_net
    first, second = fanouts(path)
    assert first.total.tolist() == [3] * 18  # (channel, row, col) order
    assert first.nonzero.tolist() == [3] * 9 + [2] * 9
    corner_edge_centre = [4, 6, 4, 6, 9, 6, 4, 6, 4]
    assert second.total.tolist() == corner_edge_centre * 3 and second.nonzero.tolist() == corner_edge_centre * 3
    assert (first.neurons, second.neurons) == (27, 9)


@pytest.mark.parametrize("binary", [False, True])  # nonzeros counted, or 0/1 spikes summed (the torch backend's)
def test_counts_of_a_slayer_run_equal_the_hand_count(hand_net, binary) -> None:
    (first, second), path, spikes = hand_net
    with torch.no_grad():
        out1 = first(spikes)
        out2 = second(out1)
    counts = count_patches(spikes, [out1, out2], fanouts(path), time_steps=8, window=8, binary=binary)
    assert counts.input_spikes.tolist() == [3]
    assert counts.spikes.tolist() == [[8, 14]]
    assert counts.events.tolist() == [[3, 8]]
    assert counts.synops_effective.tolist() == [[8, 38]]
    assert counts.synops_structural_zeros.tolist() == [[1, 0]]
    # per time step (delay shift: a layer answers one step after its input)
    assert counts.step_input.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert counts.step_spikes.tolist() == [[0, 3, 3, 2, 0, 0, 0, 0], [0, 0, 4, 6, 4, 0, 0, 0]]
    # layer 1's synops at the input's steps: 3, 3, then 2 + 1 on the zero weight; layer 2's at layer 1's
    # steps: 3 corner neurons x 4, 3 edge neurons x 6, 2 corner neurons x 4
    assert counts.step_synops_effective.tolist() == [[3, 3, 2, 0, 0, 0, 0, 0], [0, 12, 18, 8, 0, 0, 0, 0]]
    assert counts.step_synops_structural_zeros.tolist() == [[0, 0, 1, 0, 0, 0, 0, 0], [0] * 8]


def test_counts_refuse_spikes_that_do_not_fit(hand_net) -> None:
    _, path, _ = hand_net
    fans = fanouts(path)
    with pytest.raises(CountError, match=r"^1 layers of spike counts for a network of 2 spiking layers$"):
        count_patches(np.zeros((1, 18, 8)), [np.zeros((1, 27, 8))], fans, 8, 8)
    with pytest.raises(CountError, match=r"^layer 1: 17 source neurons counted, .* fed by 18$"):
        count_patches(np.zeros((1, 17, 8)), [np.zeros((1, 27, 8)), np.zeros((1, 9, 8))], fans, 8, 8)


def test_raster_round_trip(tmp_path: Path) -> None:
    from spikereg.registration.counts import Raster

    layers = {"input": np.eye(4, 6, dtype=bool), "layer 1": np.zeros((4, 3), bool)}
    save_raster(tmp_path / "r.npz", Raster(layers, patch=7, origin=[0, 8, 16], backend="sim"))
    back = load_raster(tmp_path / "r.npz")
    assert (back.patch, back.origin, back.backend, list(back.layers)) == (7, [0, 8, 16], "sim", ["input", "layer 1"])
    np.testing.assert_array_equal(back.layers["input"], layers["input"])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CountError, match=r"bad.npz: not a SpikeReg raster"):
        load_raster(tmp_path / "bad.npz")


def test_energy_charges_the_counted_synops(run_report, two_layer_net, toy_chip) -> None:
    """A counts section replaces mean fan-out synops; events that disagree with the spikes are refused."""
    counted = {"method": "test", "layers": [
        {"layer": 1, "events": 40, "synops_effective": 300, "synops_structural_zeros": 100},
        {"layer": 2, "events": 20, "synops_effective": 50, "synops_structural_zeros": 10}]}
    energy = energy_report(run_report(counts=counted), two_layer_net, profiles=(toy_chip,))
    assert (energy["counts"]["synops_effective"], energy["counts"]["synops_structural_zeros"]) == (350, 110)
    assert energy["counts"]["synops_method"] == "test"
    # toy chip: 460 synops x 10 pJ + 350 updates x 2 pJ + 67 spikes x 1 pJ
    assert energy["neuromorphic"]["toychip"]["dynamic_j"] == pytest.approx((4600 + 700 + 67) * 1e-12, rel=1e-12)
    counted["layers"][1]["events"] = 21
    with pytest.raises(EnergyError, match=r"layer 2 received 21 events, the report's spike totals say 20"):
        energy_report(run_report(counts=counted), two_layer_net, profiles=(toy_chip,))


def test_lava_and_slayer_count_the_same(tiny_export) -> None:
    """torch (SLAYER) and sim (Lava fixed point) on one export: equal counts patch by patch, iteration by iteration."""
    from spikereg.registration.backends import open_backend
    from spikereg.registration.register import register

    _, path = tiny_export
    fixed = load_mni("t1", 8.0).data[4:20, 6:22, 4:20]  # 8 patches of the tiny network's 8^3
    moving = np.roll(fixed, 1, axis=0)
    sections, rasters = {}, {}
    for backend in ("torch", "sim"):
        with open_backend(path, backend) as engine:
            register(fixed, moving, engine, iterations=2, patch_stride=8)
            sections[backend] = engine.stats.counter.section(engine.stats.layer_neurons)
            rasters[backend] = engine.stats.counter.raster
            layer_spikes = engine.stats.layer_spikes
    torch_counts, sim_counts = sections["torch"], sections["sim"]
    assert torch_counts["per_patch"] == sim_counts["per_patch"]
    assert torch_counts["per_step"] == sim_counts["per_step"]
    per_step = sim_counts["per_step"]
    assert np.sum(per_step["spikes"], axis=1).tolist() == [row["spikes"] for row in sim_counts["layers"]]
    assert np.sum(per_step["synops_effective"]) == sim_counts["synops_effective"]
    assert len(torch_counts["per_patch"]["iterations"]) == 2 and len(torch_counts["per_patch"]["iterations"][0]) == 8
    assert [it["label"] for it in sim_counts["iterations"]] == ["iteration 1/2", "iteration 2/2"]
    for key in ("input_spikes", "layer_spikes", "synops_effective", "synops_structural_zeros"):
        assert torch_counts[key] == sim_counts[key] > 0
    assert [row["spikes"] for row in sim_counts["layers"]] == layer_spikes.tolist()  # Lava's own per-layer totals
    assert sim_counts["synops_structural_zeros"] > 0  # the zero depth blocks of the folded 3-D kernel
    assert rasters["torch"].patch == rasters["sim"].patch
    for name in rasters["torch"].layers:
        np.testing.assert_array_equal(rasters["torch"].layers[name], rasters["sim"].layers[name])


def test_progress_reports_patches_time_steps_and_spikes_so_far(tiny_export) -> None:
    """Across chunks and iterations the progress keeps running totals, ending at the run's own counts."""
    from spikereg.registration.backends import open_backend
    from spikereg.registration.register import register

    _, path = tiny_export
    fixed = load_mni("t1", 8.0).data[4:20, 6:22, 4:20]
    calls = []
    with open_backend(path, "torch", batch_size=2) as engine:
        engine.chunk_size = 3  # 8 patches per iteration -> chunks of 3, 3, 2
        register(fixed, np.roll(fixed, 1, axis=0), engine, iterations=2, patch_stride=8,
                 progress=lambda stage, done, total, spikes: calls.append((stage, done, total, spikes)))
        stats = engine.stats
    spikes = [c[3] for c in calls]
    assert spikes == sorted(spikes) and spikes[-1] == int(stats.layer_spikes.sum()) > 0
    assert calls[-1][0] == f"iteration 2/2, {stats.time_steps:,} steps" and calls[-1][1:3] == (8, 8)
    assert [c[1] for c in calls if c[0].startswith("iteration 1/2")][-1] == 8
