"""report.json's energy section: the streamed Loihi 2 row, the sequential one beside it, a measured device first.

The hand-built two-layer network of conftest.py on the toy chip with round
schedule figures (conftest's ``timed_chip``); its counts are the sequential
tests' own, so the sequential row must be exactly what it was.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from spikereg.hardware import load_profile, map_network
from spikereg.hardware.device import Reading, measured_profile, write_profile
from spikereg.hardware.energy_section import energy_section
from spikereg.report.summary import REPORT_SCHEMA, _check, energy_lines


@pytest.fixture
def measured_gpu(tmp_path: Path) -> Path:
    # 300 W at 5e11 MAC/s at the best batch (32), 60 W idle
    readings = {1: Reading(0, 2_000_000, 10.0, 60.0, macs=10**12, patches=100),
                32: Reading(0, 600_000, 2.0, 60.0, macs=10**12, patches=100)}
    data = measured_profile(name="gpu_measured", device="NVIDIA Test GPU", driver="999.1", date="2026-12-03",
                            command="python benchmarks/gpu_energy.py", workload="toy", readings=readings,
                            idle_w=60.0, idle_seconds=10)
    return write_profile(tmp_path / "gpu_measured.yaml", data)


def test_the_streamed_schedule_is_the_main_row_and_the_sequential_one_stays(
        run_report, two_layer_net: Path, timed_chip: Path, toy_gpu: Path) -> None:
    report = run_report(time_steps_per_patch=10, time_steps=30)  # 3 patches of 10 steps
    energy = energy_section(report, two_layer_net, profiles=(timed_chip, toy_gpu))
    rows = energy["neuromorphic"]
    assert set(rows) == {"toychip", "toychip_pilotnet_step", "toychip_sequential"}
    main, fixed, sequential = rows["toychip"], rows["toychip_pilotnet_step"], rows["toychip_sequential"]
    assert (main["model"], fixed["model"], sequential["model"]) == ("streamed", "streamed, PilotNet step",
                                                                     "sequential")
    # the sequential row is the old estimate: 30 steps x 10 us x 100 mW
    assert sequential["static_j"] == pytest.approx(30 * 10e-6 * 0.1, rel=1e-12)

    mapping = map_network(two_layer_net, load_profile(timed_chip))
    sched = main["schedule"]
    copies = 128 // mapping.cores
    assert sched["copies"] == copies and sched["cores_per_copy"] == mapping.cores
    assert sched["patches_per_pass"] == [3]
    assert sched["steps"] == 10 + 1  # one round of 10 steps (3 patches <= copies) + 1 drain step
    # static = 100 mW x busy seconds; neuron updates = copies x 35 neurons x steps; the host link's bits
    terms = main["terms"]
    assert main["static_j"] == pytest.approx(0.1 * sched["busy_seconds"], rel=1e-12)
    assert terms["neuron_updates"]["count"] == copies * 35 * 11
    assert terms["neuron_updates"]["joules"] == pytest.approx(copies * 35 * 11 * 2e-12, rel=1e-12)
    bits = (40 + 7) * 4 * 8  # input spikes in, readout spikes out, 4 bytes each
    assert terms["host_io"]["count"] == pytest.approx(bits)
    assert terms["host_io"]["joules"] == pytest.approx(bits * 5e-12, rel=1e-12)
    # the synops and spikes are the run's, charged as the sequential row charges them
    for name in ("synops_effective", "synops_structural_zeros", "spikes"):
        assert terms[name]["joules"] == pytest.approx(sequential["terms"][name]["joules"], rel=1e-12)
    assert main["latency_s"] == sched["busy_seconds"]
    assert main["edp_js"] == pytest.approx(main["total_j"] * main["latency_s"], rel=1e-12)
    # the PilotNet row: the same schedule at 10 us per step, 11 steps
    assert fixed["latency_s"] == pytest.approx(11 * 10e-6, rel=1e-12)
    assert set(main["snn_over_ann"]) == {"toygpu"}
    assert _check(dict(run_report(), format="x", energy=energy), REPORT_SCHEMA, "") is None


def test_a_measured_device_profile_is_preferred_in_report_json(
        run_report, two_layer_net: Path, toy_chip: Path, toy_gpu: Path, measured_gpu: Path) -> None:
    jetson = "jetson_orin_nano"
    energy = energy_section(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu, jetson, measured_gpu))
    conventional = energy["conventional"]
    assert list(conventional) == ["gpu_measured", "jetson_orin_nano", "toygpu"]  # measured first
    assert energy["conventional_preferred"] == "gpu_measured"
    row = conventional["gpu_measured"]
    assert (row["category"], row["kind"], row["dynamic_kind"]) == ("device", "measured", "measured")
    macs = energy["counts"]["ann_macs"]
    seconds = macs / 5e11
    assert row["total_j"] == pytest.approx(300.0 * seconds, rel=1e-12)
    assert row["static_j"] == pytest.approx(60.0 * seconds, rel=1e-12)
    assert row["terms"]["device_idle"]["figures"]["idle_power_w"]["kind"] == "measured"
    assert conventional["jetson_orin_nano"]["kind"] == "estimated"
    assert conventional["jetson_orin_nano"]["static_j"] is None
    assert conventional["toygpu"]["kind"] == "lower-bound"
    ratio = energy["neuromorphic"]["toychip"]["snn_over_ann"]["gpu_measured"]
    assert ratio["total"] == pytest.approx(energy["neuromorphic"]["toychip"]["total_j"] / row["total_j"])
    assert ratio["kind"] == "estimated"  # the chip's side is an estimate
    text = "\n".join(energy_lines(energy))
    assert "gpu_measured" in text and "measured" in text


def test_without_a_measured_profile_nothing_is_preferred(run_report, two_layer_net: Path, toy_chip: Path,
                                                         toy_gpu: Path) -> None:
    energy = energy_section(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu))
    assert energy["conventional_preferred"] is None
    assert list(energy["conventional"]) == ["toygpu"]
