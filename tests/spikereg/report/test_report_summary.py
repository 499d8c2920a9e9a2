"""``spikereg report`` prints the energy table, and still reads reports without one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikereg.hardware.energy import energy_report
from spikereg.registration.run_report import write_report
from spikereg.report.summary import read_report, render


def _energy_section() -> dict:
    """A hand-written section: one chip, one conventional baseline, round numbers."""
    return {
        "per": "registration",
        "counts": {"synops": 560.0, "synops_effective": 335.0, "synops_structural_zeros": 225.0,
                   "input_spikes": 40, "mean_spike_rate": 27 / 350, "ann_macs": 207360},
        "neuromorphic": {
            "loihi2": {"dynamic_j": 6.367e-9, "static_j": 1e-5, "total_j": 1.0006367e-5,
                       "dynamic_kind": "estimated", "kind": "estimated",
                       "snn_over_ann": {"gpu": {"total": 12.5, "dynamic": 0.25, "kind": "estimated"}}},
            "loihi1": {"dynamic_j": 2e-8, "static_j": 2e-5, "total_j": 2.002e-5,
                       "dynamic_kind": "pre-silicon", "kind": "estimated",
                       "snn_over_ann": {"gpu": {"total": 25.0, "dynamic": 0.5, "kind": "estimated"}}},
        },
        "conventional": {
            "gpu": {"dynamic_j": 8e-7, "static_j": None, "total_j": 8e-7, "dynamic_kind": "estimated",
                    "kind": "estimated"},
        },
    }


def test_render_prints_the_energy_table_with_ratios_and_kinds(run_report) -> None:
    text = render(dict(run_report(), energy=_energy_section()))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("profile"))
    assert "SNN/ANN gpu" in header and "static J" in header and "kind" in header
    loihi2 = next(line for line in lines if line.startswith("loihi2"))
    assert "6.367e-09" in loihi2 and "1.000e-05" in loihi2 and "1.001e-05" in loihi2
    assert "12.5 | 0.25" in loihi2 and loihi2.endswith("estimated")
    loihi1 = next(line for line in lines if line.startswith("loihi1"))
    assert "25 | 0.5" in loihi1 and loihi1.endswith("estimated (dynamic pre-silicon)")
    gpu = next(line for line in lines if line.startswith("gpu "))
    assert "8.000e-07" in gpu and gpu.split()[2] == "-"  # no static model for the baseline
    assert "structural zeros 225" in text and "mean spike rate 0.0771" in text and "estimate" in text


def test_render_reads_a_report_without_an_energy_section(run_report, tmp_path: Path) -> None:
    write_report(tmp_path, run_report())
    text = render(read_report(tmp_path))
    assert "NCC" in text and "energy" not in text and "SNN/ANN" not in text


def test_render_of_a_computed_energy_section(run_report, tmp_path: Path, two_layer_net: Path, toy_chip: Path,
                                             toy_gpu: Path) -> None:
    """What energy_report writes survives JSON and renders: (1e-5 + 6.367e-9) J / 1.19424e-6 J = 8.379."""
    report = dict(run_report(), energy=energy_report(run_report(), two_layer_net, profiles=(toy_chip, toy_gpu)))
    write_report(tmp_path, report)
    text = render(json.loads((tmp_path / "report.json").read_text()))
    toychip = next(line for line in text.splitlines() if line.startswith("toychip"))
    assert "8.38 | 0.00533" in toychip and "measured" not in toychip


def test_chip_profile_carries_the_profile_and_on_the_chip_its_measurements(run_report, tmp_path: Path) -> None:
    """report.json's chip_profile: the Loihi 2 profile always; lava-loihi's probes only where the chip ran.

    The probes are lava-loihi objects (``Loihi2Power``, ``Loihi2ExecutionTime``), not installable
    here; stand-ins with their attributes go through the runner's own ChipProfile.summary.
    """
    from types import SimpleNamespace

    from lava_export.chip import ChipProfile
    from spikereg.hardware import load_profile
    from spikereg.registration.run_report import chip_profile_section
    from spikereg.report.html import summary_rows

    loihi2 = load_profile("loihi2")
    probes = ChipProfile(power=SimpleNamespace(total_power=[1.25, 1.35], static_total_power=1.0),
                         runtime=SimpleNamespace(avg_time_per_step=20.0))
    measured = probes.summary(steps_per_patch=16)
    assert measured["dynamic_power_w"] == pytest.approx(0.3) and measured["energy_per_patch_j"] == pytest.approx(
        1.3 * 20e-6 * 16)  # mean power x time per step x steps per patch

    for backend, probed in (("loihi2", measured), ("sim", None)):
        write_report(tmp_path, run_report(backend=backend,
                                          chip_profile=chip_profile_section(backend, loihi2, probed)))
        report = read_report(tmp_path)
        chip = report["chip_profile"]
        assert chip["name"] == "loihi2" and chip["description"] == loihi2.description
        assert chip["figures"]["static_power_mw"]["value"] == loihi2.static_power_mw.value
        assert chip["figures"]["time_per_step_us"]["source"] == loihi2.time_per_step_us.source
        line = next(line for line in render(report).splitlines() if line.startswith("chip profile"))
        assert dict(summary_rows(report))["chip profile"] in line
        if probed:
            assert chip["ran_on"] == "chip" and chip["measured"] == measured
            assert "run on the chip" in line and "probes: 20.0 us per step, 1.300 W total, 1.000 W static" in line
        else:
            assert chip["ran_on"] == "simulator" and chip["measured"] is None
            assert "modelled (simulator)" in line and "probes" not in line
