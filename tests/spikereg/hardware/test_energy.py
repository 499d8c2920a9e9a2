"""Energy estimates equal hand-computed values on the hand-built network of conftest.py.

Counts used throughout: 40 input spikes, 20 spikes of the conv layer, 7 of the
dense layer, 10 time steps. With the fan-outs of conftest.py:

    synops into conv   40 x 12.5 = 500 = 40 x 7.25 effective (290) + 40 x 5.25 zero (210)
    synops into dense  20 x 3    =  60 = 20 x 2.25 effective  (45) + 20 x 0.75 zero  (15)
    neuron updates     (32 + 3) neurons x 10 steps = 350
    spike messages     40 + 20 + 7 = 67

Toy chip (loihi2.yaml with 10 pJ/synop, 2 pJ/update, 1 pJ/spike, 100 mW, 10 us/step):
    dynamic = 560 x 10 + 350 x 2 + 67 x 1 = 6367 pJ
    static  = 0.1 W x 10 steps x 10 us = 1e-5 J
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from spikereg.config import ConfigError, ModelConfig
from spikereg.hardware import ProfileError, load_profile
from spikereg.hardware.activity import EnergyError, activity, layer_fanout, synaptic_ops
from spikereg.hardware.energy import (
    ann_io_bytes,
    ann_macs,
    conventional_energy,
    energy_report,
    neuromorphic_energy,
    weakest_kind,
)
from spikereg.hardware.energy_section import energy_section
from spikereg.netx_file import ModelFileError

DYNAMIC_J = 6367e-12
STATIC_J = 0.1 * 10 * 10e-6
# toy GPU on 3 patches of the 8^3 twin: 3 x 69120 MACs x 4 pJ + 3 x 1216 words x 100 pJ
ANN_J = (3 * 69120 * 4.0 + 3 * 1216 * 100.0) * 1e-12


def test_layer_fanout_hand_counts(two_layer_net: Path) -> None:
    costs = layer_fanout(two_layer_net)
    assert [(c.index, c.type, c.neurons) for c in costs] == [(1, "conv", 32), (3, "dense", 3)]
    assert [c.source_neurons for c in costs] == [16, 32]  # the input's size, then the conv's neurons
    assert [(c.synapses, c.nonzero_synapses) for c in costs] == [(200, 116), (96, 72)]
    assert [c.fanout for c in costs] == [12.5, 3.0]
    assert [c.effective_fanout for c in costs] == [7.25, 2.25]


def test_synaptic_ops_hand_counts(two_layer_net: Path) -> None:
    synops = synaptic_ops([20, 7], 40, layer_fanout(two_layer_net))
    assert [s.events for s in synops] == [40, 20]  # input spikes drive layer 1; the readout drives nothing
    assert [(s.effective, s.structural_zeros, s.total) for s in synops] == [(290, 210, 500), (45, 15, 60)]


def test_synaptic_ops_rejects_counts_that_do_not_fit(two_layer_net: Path) -> None:
    costs = layer_fanout(two_layer_net)
    with pytest.raises(EnergyError, match=r"^3 layer spike counts for a network of 2 spiking layers$"):
        synaptic_ops([1, 2, 3], 40, costs)
    with pytest.raises(EnergyError, match=r"^input spikes must be a non-negative integer, got -1$"):
        synaptic_ops([1, 2], -1, costs)


def test_neuromorphic_energy_on_a_toy_profile(two_layer_net: Path, toy_chip: Path) -> None:
    chip = load_profile(toy_chip)
    counts = activity([20, 7], 40, layer_fanout(two_layer_net))
    assert (counts.neurons, counts.spikes) == (35, 67)
    energy = neuromorphic_energy(counts, chip, time_steps=10)
    terms = energy.dynamic
    assert terms["synops_effective"].joules == pytest.approx(335 * 10e-12, rel=1e-12)
    assert terms["synops_structural_zeros"].joules == pytest.approx(225 * 10e-12, rel=1e-12)
    assert (terms["neuron_updates"].count, terms["neuron_updates"].joules) == (350, pytest.approx(700e-12))
    assert (terms["spikes"].count, terms["spikes"].joules) == (67, pytest.approx(67e-12))
    assert energy.dynamic_j == pytest.approx(DYNAMIC_J, rel=1e-12)
    assert energy.static_j == pytest.approx(STATIC_J, rel=1e-12)
    assert energy.total_j == pytest.approx(DYNAMIC_J + STATIC_J, rel=1e-12)
    # every term carries the figures it used, with the profile's source and kind
    synop = terms["synops_effective"].figures["energy_per_synop_pj"]
    assert synop == chip.energy_per_synop_pj and synop.kind == "estimated" and "Davies2018" in synop.source
    static = energy.to_dict()["terms"]["static"]
    assert set(static["figures"]) == {"static_power_mw", "time_per_step_us"}
    assert static["kind"] == "measured"  # loihi2's static power and step time are both measured
    assert (energy.dynamic_kind, energy.kind) == ("estimated", "estimated")


def test_static_energy_uses_a_measured_run_time_and_every_chip(two_layer_net: Path, toy_chip: Path) -> None:
    counts = activity([20, 7], 40, layer_fanout(two_layer_net))
    energy = neuromorphic_energy(counts, load_profile(toy_chip), time_steps=10, seconds=2.0, chips=3)
    assert energy.static_j == pytest.approx(0.1 * 3 * 2.0)  # 100 mW x 3 chips x 2 s
    figure = energy.static["static"].figures["run_seconds"]
    assert (figure.value, figure.unit, figure.kind) == (2.0, "s", "measured")


@pytest.mark.parametrize(
    "config, per_patch",
    [
        # 8^3, 4 channels in: conv to 4 at stride 2 -> 4^3 x 4 x 4 x 27 = 27648; readout 4^3 x 6 x 4 x 27 = 41472
        (ModelConfig(patch_size=8, encoding="intensity", channels=[4], strides=[2], kernel_size=3), 69120),
        # the defaults, 16^3 and 10 channels: 8^3x8x10x27 + 4^3x16x8x27 + 4^3x6x16x27
        (ModelConfig(), 1105920 + 221184 + 165888),
        # kernel 1, stride 1 everywhere: 2^3 x (5 x 4 + 6 x 5)
        (ModelConfig(patch_size=2, encoding="intensity", channels=[5], strides=[1], kernel_size=1), 8 * 50),
    ],
)
def test_ann_macs_hand_count(config: ModelConfig, per_patch: int) -> None:
    assert ann_macs(config, 1) == per_patch
    assert ann_macs(config, 3) == 3 * per_patch


def test_ann_io_bytes_hand_count() -> None:
    config = ModelConfig(patch_size=8, encoding="intensity", channels=[4], strides=[2], kernel_size=3)
    # fixed + moving 2 x 8^3 floats in, 3 x 4^3 control displacements out, 4 bytes each
    assert ann_io_bytes(config, 3) == 3 * (2 * 512 + 3 * 64) * 4


def test_conventional_energy_on_a_toy_profile(toy_gpu: Path) -> None:
    gpu = load_profile(toy_gpu)
    energy = conventional_energy(3 * 69120, gpu, io_bytes=3 * 4864)
    assert energy.dynamic["macs"].joules == pytest.approx(3 * 69120 * 4e-12, rel=1e-12)
    assert energy.dynamic["dram"].count == 3 * 1216  # 32-bit words
    assert energy.total_j == pytest.approx(ANN_J, rel=1e-12)
    assert energy.to_dict()["static_j"] is None  # not modelled, not zero
    assert set(energy.dynamic["macs"].figures) == {"energy_per_mac_pj", "default_precision"}
    int8 = conventional_energy(1000, gpu, precision="int8")
    assert int8.total_j == pytest.approx(1000 * 0.5e-12)
    assert list(int8.dynamic["macs"].figures) == ["energy_per_mac_int8_pj"]
    with pytest.raises(EnergyError, match=r"^precision 'fp64': expected one of fp32, fp16, int8$"):
        conventional_energy(1, gpu, precision="fp64")


def test_energy_report_combines_counts_profiles_and_ratios(run_report, two_layer_net: Path, toy_chip: Path,
                                                          toy_gpu: Path) -> None:
    energy = energy_report(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu))
    counts = energy["counts"]
    assert (counts["patches"], counts["neurons"], counts["neuron_updates"]) == (3, 35, 350)
    assert (counts["input_spikes"], counts["layer_spikes"], counts["spike_messages"]) == (40, 27, 67)
    assert (counts["synops_effective"], counts["synops_structural_zeros"], counts["synops"]) == (335, 225, 560)
    assert counts["mean_spike_rate"] == pytest.approx(27 / 350)
    assert (counts["ann_macs"], counts["ann_io_bytes"]) == (3 * 69120, 3 * 4864)
    assert (counts["snn_host_spikes_in"], counts["snn_host_spikes_out"]) == (40, 7)  # input in, readout out
    assert [row["fanout"] for row in counts["layers"]] == [12.5, 3.0]

    chip = energy["neuromorphic"]["toychip"]
    assert chip["chips"] == 1
    assert chip["dynamic_j"] == pytest.approx(DYNAMIC_J, rel=1e-12)
    assert chip["static_j"] == pytest.approx(STATIC_J, rel=1e-12)
    ratio = chip["snn_over_ann"]["toygpu"]
    assert ratio["total"] == pytest.approx((DYNAMIC_J + STATIC_J) / ANN_J, rel=1e-12)
    assert ratio["dynamic"] == pytest.approx(DYNAMIC_J / ANN_J, rel=1e-12)
    assert ratio["kind"] == "lower-bound"  # the 45 nm per-operation energies are lower bounds
    assert energy["conventional"]["toygpu"]["total_j"] == pytest.approx(ANN_J, rel=1e-12)


def test_energy_report_costs_every_patch_of_a_pyramid_run(run_report, two_layer_net: Path, toy_chip: Path,
                                                          toy_gpu: Path) -> None:
    # A 2-level pyramid ran 3 full-resolution patches plus 1 coarse one per iteration: the
    # ANN twin does the same work, so it is charged for the 4 patches the report counted.
    energy = energy_report(run_report(iterations=1, patches_per_iteration=3, patches=4), two_layer_net,
                           profiles=(toy_chip, toy_gpu))
    assert energy["counts"]["patches"] == 4
    assert (energy["counts"]["ann_macs"], energy["counts"]["ann_io_bytes"]) == (4 * 69120, 4 * 4864)


def test_energy_report_uses_the_measured_time_only_on_the_chip_that_ran(run_report, two_layer_net: Path,
                                                                       toy_chip: Path) -> None:
    energy = energy_report(run_report(backend="toychip"), two_layer_net, profiles=(toy_chip,))
    chip = energy["neuromorphic"]["toychip"]
    assert chip["static_j"] == pytest.approx(0.1 * 0.5)  # 100 mW x the run's 0.5 s on the chip
    assert chip["snn_over_ann"] == {}


def test_energy_report_errors(run_report, two_layer_net: Path, toy_chip: Path, toy_gpu: Path) -> None:
    with pytest.raises(ProfileError, match=r"unknown hardware profile 'nochip'"):
        energy_report(run_report(), two_layer_net, profiles=(toy_chip, "nochip"))
    with pytest.raises(EnergyError, match=r"^energy report: no neuromorphic profile among toygpu$"):
        energy_report(run_report(), two_layer_net, profiles=(toy_gpu,))
    with pytest.raises(EnergyError, match=r"report layers \(neurons \[32\]\) do not match .* \(neurons \[32, 3\]\)"):
        energy_report(run_report(layers=run_report()["layers"][:1]), two_layer_net, profiles=(toy_chip,))
    report = run_report()
    del report["input_spikes"]
    with pytest.raises(EnergyError, match=r"^report has no 'input_spikes', needed for the energy estimate$"):
        energy_report(report, two_layer_net, profiles=(toy_chip,))


def test_weakest_kind() -> None:
    assert weakest_kind(["measured", "specified"]) == "measured"
    assert weakest_kind(["measured", "pre-silicon"]) == "pre-silicon"
    assert weakest_kind(["pre-silicon", "estimated", "measured"]) == "estimated"
    assert weakest_kind(["estimated", "lower-bound", "measured"]) == "lower-bound"
    with pytest.raises(EnergyError, match="unknown figure kind 'guessed'"):
        weakest_kind(["guessed"])


def test_shipped_profiles_cost_the_network(run_report, two_layer_net: Path) -> None:
    """The four shipped profiles load and label loihi1's dynamic energy pre-silicon."""
    energy = energy_section(run_report(), two_layer_net)
    # loihi2 has per-operation times: its main row is the streamed schedule, the sequential one beside it
    assert set(energy["neuromorphic"]) == {"loihi2", "loihi2_pilotnet_step", "loihi2_sequential", "loihi1"}
    assert energy["neuromorphic"]["loihi2"]["model"] == "streamed"
    assert energy["neuromorphic"]["loihi2_sequential"]["model"] == "sequential"
    # the 45 nm rows are lower bounds; the data-sheet device row is an estimate
    assert set(energy["conventional"]) == {"jetson_orin_nano", "gpu", "cpu"}
    assert energy["conventional"]["gpu"]["kind"] == "lower-bound"
    assert energy["conventional"]["jetson_orin_nano"]["kind"] == "estimated"
    assert energy["conventional_preferred"] is None  # no measured device profile ships
    loihi1 = energy["neuromorphic"]["loihi1"]
    assert (loihi1["dynamic_kind"], loihi1["kind"]) == ("pre-silicon", "estimated")
    # 23.6 pJ x 560 synops + 81 pJ x 350 updates + 1.7 pJ x 67 spikes
    assert loihi1["dynamic_j"] == pytest.approx((23.6 * 560 + 81 * 350 + 1.7 * 67) * 1e-12, rel=1e-12)
    assert set(loihi1["snn_over_ann"]) == {"jetson_orin_nano", "gpu", "cpu"}


def test_model_metadata_is_needed_for_the_ann_twin(run_report, tmp_path: Path, toy_chip: Path, net_writer) -> None:
    bare = net_writer(tmp_path / "bare.net", metadata=None)
    with pytest.raises(ModelFileError, match=r"without SpikeReg metadata"):
        energy_report(run_report(), bare, profiles=(toy_chip,))
    odd = net_writer(tmp_path / "odd.net", metadata={"model": dict(asdict(ModelConfig()), encoding="rgb")})
    with pytest.raises(ConfigError, match=r"'model.encoding' must be one of"):
        energy_report(run_report(), odd, profiles=(toy_chip,))
