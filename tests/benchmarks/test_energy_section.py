"""benchmarks/energy.py rebuilds its BENCHMARKS.md section from the saved 2 mm run: every row, the targets."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))  # energy.py imports its sibling modules by name
_spec = importlib.util.spec_from_file_location("energy_bench", ROOT / "benchmarks" / "energy.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

RUN = ROOT / "benchmarks" / "results" / "energy_sdnn_2mm_run.json"


def test_the_saved_run_renders_every_row_and_the_pending_gpu_row(capsys) -> None:
    assert bench.main(["--load", str(RUN)]) == 0
    section = capsys.readouterr().out
    assert section.startswith(bench.SECTION)
    for row in ("**main estimate**", "PilotNet's measured 152.8 us per step (sensitivity)", "the old estimate",
                "`jetson_orin_nano`", "**lower bound**"):
        assert row in section, row
    from spikereg.hardware.device import MEASURED_NAME, device_profile_names

    if MEASURED_NAME in device_profile_names():  # a GPU run wrote the measured profile: its row and target
        assert f"`{MEASURED_NAME}` (measured, NVML" in section and "pending" not in section
    else:  # no GPU run yet: the measured row and its target say pending, and no mock stands in
        assert "| ANN twin on a GPU, **measured** with NVML (idle included, best batch) | pending |" in section
        assert "measured GPU energy (idle included, best batch): pending**" in section
    assert "mean spike rate <= 5 %: met" in section
