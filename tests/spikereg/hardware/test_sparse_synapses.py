"""A chain built with sparse synapses (``synapses="sparse"``): nonzero synapses stored and charged, worked by hand.

The mapping's chain (written below, the way SLAYER's ``export_hdf5`` writes it):

    layer 0  input  (2, 8, 8)                            no neurons on chip
    layer 1  conv   4 out x 2 in x 3 x 3, padding 1 -> (4, 8, 8) = 256 neurons

Along an 8-long axis with 3 taps and padding 1 the taps reach 7 + 8 + 7 = 22
inputs, so 22 x 22 = 484 synapses per channel pair, 8 pairs: 3872 synapses.
Nonzero weights: the centre tap of every pair (8 x 8 = 64 inputs each: 512)
and tap (1, 0) of pair (0, 0) (8 rows x 7 columns in bounds: 56), 568 in all,
so 3304 synapses sit on zero weights. With 8-bit weights and 4096 bits of
synaptic memory per core:

    conv   (every synapse stored)  3872 x 8 = 30976 bits -> ceil(30976 / 4096) = 8 cores
    sparse (nonzero only)           568 x 8 =  4544 bits -> ceil(4544 / 4096)  = 2 cores

Fan-in follows the same accounting: with conv synapses a neuron holds all
2 x 3 x 3 = 18 synapses of its kernel, with sparse ones its nonzero weights
only: output channel 0 has 3 (two taps of pair (0, 0), the centre of (0, 1)),
the others 2.

The fan-in check (``zero_blocks``): a conv layer 2 out x 4 in x 3 x 3 on a
(4, 6, 6) input, padding 1, whose weight has the zero blocks of depth folding:
output channel 0 reads input channels 0 and 1 only (18 taps), output channel 1
channels 2 and 3 only, without the centre tap of pair (1, 3) (17). The dense
fan-in is 4 x 3 x 3 = 36, the nonzero one 18. Against a chip with
``max_fan_in`` 20 and 200 bits of synaptic memory per core, conv synapses are
refused twice (36 > 20; 36 x 8 = 288 bits > 200), sparse ones not at all
(18 <= 20; 144 bits). Cores: in-bounds taps per axis 5 + 6 + 5 = 16, so 256
synapses per channel pair; conv: 8 x 256 = 2048 synapses, 16384 bits -> 82
cores; sparse: 4 x 256 - 36 (the centre tap reaches 6 x 6) = 988, 7904 bits ->
40 cores.

The energy tests use conftest.py's two-layer network and toy chip: with
``"conv"`` 560 synops are charged, 225 of them on zero weights; with
``"sparse"`` those 225 are reported apart and charged nothing, so the dynamic
energy drops by exactly 225 x 10 pJ, from 6367 pJ to 4117 pJ.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikereg.hardware import MappingError, load_profile, map_network
from spikereg.hardware.activity import activity, charged, costs_from_mapping
from spikereg.hardware.energy import energy_report
from spikereg.hardware.energy_section import chain_streamed_rows, energy_section
from spikereg.hardware.graph_mapping import map_model
from spikereg.hardware.rules import DENSE, NONZERO, SYNAPSE_BUILDS, synapse_accounting
from spikereg.hardware.streamed import layer_loads
from spikereg.report.summary import REPORT_SCHEMA, _check

CUBA = {"type": "CUBA", "iDecay": 1024, "vDecay": 123, "vThMant": 64, "refDelay": 1, "gradedSpike": False}
SYNAPSES, NONZERO_SYNAPSES = 3872, 568
ZERO_SYNOPS = 210 + 15  # conftest.py: into the conv layer 40 x 5.25, into the dense layer 20 x 0.75
DYNAMIC_CONV_J = 6367e-12
DYNAMIC_SPARSE_J = DYNAMIC_CONV_J - ZERO_SYNOPS * 10e-12  # 4117 pJ
REFUSED = r"^synapses 'dense': choose conv \(.*\) or sparse \(.*\)$"




def write_conv_chain(path: Path, weight: np.ndarray, size: int) -> Path:
    """input (in, size, size) -> conv ``weight`` (out, in, 3, 3), stride 1, padding 1, as SLAYER writes it."""
    c_out, c_in = weight.shape[:2]
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        layers.create_dataset("0/type", (1,), "S10", [b"input"])
        layers.create_dataset("0/shape", data=np.array([c_in, size, size]))
        conv = layers.create_group("1")
        conv.create_dataset("type", (1,), "S10", [b"conv"])
        conv.create_dataset("shape", data=np.array([c_out, size, size]))
        for key, value in {"inChannels": c_in, "outChannels": c_out, "groups": 1}.items():
            conv.create_dataset(key, data=value)
        for key in ("stride", "dilation"):
            conv.create_dataset(key, data=np.array([1, 1]))
        conv.create_dataset("padding", data=np.array([1, 1]))
        conv.create_dataset("kernelSize", data=np.array([3, 3]))
        conv.create_dataset("weight", data=weight.astype(np.float32))
        for key, value in CUBA.items():
            conv.create_dataset(f"neuron/{key}", data=value)
    return path


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """The chain of the module docstring: mostly zero weights, as depth folding leaves them."""
    weight = np.zeros((4, 2, 3, 3), np.float32)
    weight[:, :, 1, 1] = 2.0  # every pair's centre tap
    weight[0, 0, 1, 0] = -4.0  # one more tap of pair (0, 0)
    return write_conv_chain(tmp_path / "chain.net", weight, 8)


@pytest.fixture
def zero_blocks(tmp_path: Path) -> Path:
    """The fan-in check's layer of the module docstring: each output channel reads two of four input channels."""
    weight = np.zeros((2, 4, 3, 3), np.float32)
    weight[0, :2] = 2.0
    weight[1, 2:] = -2.0
    weight[1, 3, 1, 1] = 0.0
    return write_conv_chain(tmp_path / "blocks.net", weight, 6)


@pytest.fixture
def small_memory(profile_writer, tmp_path: Path) -> Path:
    return profile_writer(tmp_path, "loihi2", "smallmem", {"synaptic_memory_bits_per_core": 4096})


# -- the accounting --------------------------------------------------------------------


def test_the_accounting_follows_how_the_synapses_are_built() -> None:
    assert SYNAPSE_BUILDS == ("conv", "sparse")
    assert synapse_accounting(False) is DENSE and synapse_accounting(False, "conv") is DENSE
    assert synapse_accounting(False, "sparse") is NONZERO
    assert synapse_accounting(True) is NONZERO and synapse_accounting(True, "sparse") is NONZERO
    assert "Sparse" in NONZERO.rule and "verified equal to SLAYER" in NONZERO.rule
    # the fan-in the chip holds: every synapse onto a neuron where zeros are stored, its nonzero ones where not
    assert (DENSE.fan_in(36, 18), NONZERO.fan_in(36, 18)) == (36, 18)
    assert "fan-in counts its nonzero synapses only" in NONZERO.rule and "fan-in" in DENSE.rule
    for graph in (False, True):
        with pytest.raises(MappingError, match=REFUSED):
            synapse_accounting(graph, "dense")


# -- the mapping -----------------------------------------------------------------------


def test_sparse_synapses_store_exactly_the_nonzero_ones(chain: Path, small_memory: Path) -> None:
    conv = map_network(chain, small_memory)
    sparse = map_network(chain, small_memory, synapses="sparse")
    for report in (conv, sparse):  # the counts do not depend on how the synapses are built
        layer = report.layers[1]
        assert (layer.neurons, layer.synapses, layer.nonzero_synapses) == (256, SYNAPSES, NONZERO_SYNAPSES)
    assert conv.layers[1].synaptic_memory_bits == SYNAPSES * 8 == 30976
    assert sparse.layers[1].synaptic_memory_bits == NONZERO_SYNAPSES * 8 == 4544
    assert sparse.total_synaptic_memory_bits == 4544
    assert (conv.cores, sparse.cores) == (8, 2)
    assert (conv.layers[1].fan_in, sparse.layers[1].fan_in) == (18, 3)
    assert (conv.synapse_accounting, sparse.synapse_accounting) == ("dense", "nonzero")
    assert sparse.to_dict()["synapse_accounting"] == "nonzero"
    assert "synapse accounting: nonzero" in sparse.to_text() and "synapse accounting" not in conv.to_text()
    assert any(note.startswith("synapses stored: nonzero only") for note in sparse.notes)
    assert map_model(chain, small_memory, "sparse").to_dict() == sparse.to_dict()


def test_max_fan_in_counts_the_synapses_the_chip_holds(zero_blocks: Path, profile_writer, tmp_path: Path) -> None:
    chip = load_profile(str(profile_writer(tmp_path, "loihi2", "tinyfan",
                                           {"max_fan_in": 20, "synaptic_memory_bits_per_core": 200})))
    conv = map_network(zero_blocks, chip)
    sparse = map_network(zero_blocks, chip, synapses="sparse")
    assert [layer.fan_in for layer in conv.layers] == [0, 36]
    assert [layer.fan_in for layer in sparse.layers] == [0, 18]
    assert (conv.layers[1].synapses, conv.layers[1].nonzero_synapses) == (2048, 988)
    assert (conv.cores, sparse.cores) == (82, 40)
    assert conv.problems == [
        "layer 1 (conv): fan-in 36 exceeds tinyfan max_fan_in 20",
        "layer 1 (conv): one neuron's 36 synapses need 288 bits, more than tinyfan's 200 bits of synaptic memory "
        "per core",
    ]
    assert sparse.problems == []
    assert map_model(zero_blocks, chip, "sparse").to_dict() == sparse.to_dict()


def test_unknown_synapses_are_refused_by_name(chain: Path) -> None:
    with pytest.raises(MappingError, match=REFUSED):
        map_network(chain, "loihi2", synapses="dense")
    with pytest.raises(MappingError, match=REFUSED.replace("'dense'", "'Sparse'")):
        map_model(chain, "loihi2", "Sparse")  # the choices are spelled exactly


# -- the energy ------------------------------------------------------------------------


def test_sparse_energy_charges_zero_weights_nothing(run_report, two_layer_net: Path, toy_chip: Path,
                                                   toy_gpu: Path) -> None:
    conv = energy_report(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu))
    sparse = energy_report(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu), synapses="sparse")
    assert conv["synapse_accounting"] == DENSE.to_dict() and sparse["synapse_accounting"] == NONZERO.to_dict()
    counts = sparse["counts"]
    assert counts["synops_zero_weights_not_charged"] == ZERO_SYNOPS
    assert (counts["synops_effective"], counts["synops_structural_zeros"], counts["synops"]) == (335, 0, 335)
    assert [row["synops_zero_weights_not_charged"] for row in counts["layers"]] == [210, 15]
    assert [row["synops_structural_zeros"] for row in counts["layers"]] == [0, 0]
    assert "synops_zero_weights_not_charged" not in conv["counts"]  # the default section as it was

    chip, before = sparse["neuromorphic"]["toychip"], conv["neuromorphic"]["toychip"]
    assert chip["terms"]["synops_structural_zeros"]["joules"] == 0
    assert before["terms"]["synops_structural_zeros"]["joules"] == pytest.approx(ZERO_SYNOPS * 10e-12)
    assert before["dynamic_j"] == pytest.approx(DYNAMIC_CONV_J, rel=1e-12)
    assert chip["dynamic_j"] == pytest.approx(DYNAMIC_SPARSE_J, rel=1e-12)
    assert chip["dynamic_j"] == pytest.approx(
        before["dynamic_j"] - before["terms"]["synops_structural_zeros"]["joules"], rel=1e-12)
    assert chip["static_j"] == before["static_j"]  # one chip either way
    assert sparse["conventional"] == conv["conventional"]


def test_the_streamed_rows_do_not_count_zero_weight_synops(run_report, two_layer_net: Path,
                                                           timed_chip: Path, toy_gpu: Path) -> None:
    """The step time: the conv layer's one core works 290 (sparse) or 500 (conv) synops per patch,
    spread over 10 steps of 3 patches: 70 ns less per window at 1 ns per synop."""
    report = run_report(time_steps_per_patch=10, time_steps=30)
    conv = energy_section(report, two_layer_net, profiles=(timed_chip, toy_gpu))
    sparse = energy_section(report, two_layer_net, profiles=(timed_chip, toy_gpu), synapses="sparse")
    assert sparse["synapse_accounting"] == NONZERO.to_dict()
    for name in ("toychip", "toychip_pilotnet_step", "toychip_sequential"):  # every row
        row, before = sparse["neuromorphic"][name], conv["neuromorphic"][name]
        assert row["terms"]["synops_structural_zeros"]["joules"] == 0
        assert row["terms"]["synops_effective"]["joules"] == before["terms"]["synops_effective"]["joules"]
    main, before = sparse["neuromorphic"]["toychip"], conv["neuromorphic"]["toychip"]
    # conv layer's core: 32 x 2 ns + 500/30 x 1 ns + 20/30 x 4 ns (conv), 290/30 synops (sparse); + 100 ns barrier
    assert before["schedule"]["compute_window_s"] == pytest.approx(10 * (64 + 500 / 30 + 80 / 30 + 100) * 1e-9)
    assert main["schedule"]["compute_window_s"] == pytest.approx(10 * (64 + 290 / 30 + 80 / 30 + 100) * 1e-9)
    assert _check(dict(report, format="x", energy=sparse), REPORT_SCHEMA, "") is None  # report.json takes it
    fixed = sparse["neuromorphic"]["toychip_pilotnet_step"]
    assert fixed["dynamic_j"] == pytest.approx(
        conv["neuromorphic"]["toychip_pilotnet_step"]["dynamic_j"] - ZERO_SYNOPS * 10e-12, rel=1e-12)


def test_copies_per_chip_come_from_the_sparse_mapping(profile_writer, run_report, two_layer_net: Path,
                                                     tmp_path: Path) -> None:
    """1000 bits per core: the conv layer's 200 synapses (1600 bits) take 2 cores, its 116 nonzero ones
    (928 bits) 1; the dense layer 1 either way. A copy: 3 cores (42 per chip) or 2 (64 per chip)."""
    chip = load_profile(profile_writer(tmp_path, "loihi2", "toychip", {"synaptic_memory_bits_per_core": 1000,
                                                                       "energy_per_synop_pj": 10.0}))
    report = run_report(time_steps_per_patch=10, time_steps=30)
    assert [m.cores for m in (map_network(two_layer_net, chip), map_network(two_layer_net, chip, "sparse"))] == [3, 2]
    conv = chain_streamed_rows(report, two_layer_net, chip)[""]["schedule"]
    sparse = chain_streamed_rows(report, two_layer_net, chip, synapses="sparse")[""]["schedule"]
    assert (conv["cores_per_copy"], conv["copies_per_chip"]) == (3, 42)
    assert (sparse["cores_per_copy"], sparse["copies_per_chip"]) == (2, 64)


def test_counted_steps_leave_out_zero_weight_synops(two_layer_net: Path, run_report) -> None:
    """With the run's per-step counts, a core's work is the effective synops only when they are sparse."""
    mapping = map_network(two_layer_net, "loihi2", "sparse")
    costs = costs_from_mapping(mapping)
    counts = activity([20, 7], 40, costs)
    per_step = {"window": 2, "synops_effective": [[100, 190], [30, 15]],
                "synops_structural_zeros": [[70, 140], [10, 5]], "spikes": [[12, 8], [4, 3]]}
    report = run_report(patches_per_iteration=1, counts={"per_step": per_step})
    conv = layer_loads(report, costs, counts, mapping, [20, 7])
    sparse = layer_loads(report, costs, charged(counts, NONZERO), mapping, [20, 7], NONZERO)
    assert [list(load.synops) for load in conv] == [[170, 330], [40, 20]]
    assert [list(load.synops) for load in sparse] == [[100, 190], [30, 15]]


def test_unknown_synapses_are_refused_by_the_energy_report(run_report, two_layer_net: Path, toy_chip: Path) -> None:
    with pytest.raises(MappingError, match=REFUSED):
        energy_report(run_report(), two_layer_net, profiles=(toy_chip,), synapses="dense")
    with pytest.raises(MappingError, match=REFUSED):
        energy_section(run_report(), two_layer_net, profiles=(toy_chip,), synapses="dense")


# -- the command line ------------------------------------------------------------------


def test_command_line_maps_with_sparse_synapses(chain: Path, small_memory: Path) -> None:
    from typer.testing import CliRunner

    from spikereg.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["map", str(chain), "--profile", str(small_memory), "--synapses", "sparse",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["cores"], data["total_synaptic_memory_bits"], data["synapse_accounting"]) == (2, 4544, "nonzero")
    result = runner.invoke(app, ["map", str(chain), "--profile", str(small_memory)])
    assert result.exit_code == 0 and "synapse accounting" not in result.output  # conv: the default
    result = runner.invoke(app, ["map", str(chain), "--synapses", "dense"])
    assert result.exit_code == 1
    assert "synapses 'dense': choose conv" in result.output and "or sparse" in result.output
    assert "--synapses" in runner.invoke(app, ["map", "--help"]).output
