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


def test_sparse_synapses_cost_the_saved_run_into_a_section_of_their_own(capsys) -> None:
    assert bench.main(["--load", str(RUN), "--synapses", "sparse"]) == 0
    sparse = capsys.readouterr()
    assert bench.SPARSE_SECTION != bench.SECTION and sparse.out.startswith(bench.SPARSE_SECTION)  # conv's stays
    assert "- synapse accounting: **nonzero** (`--synapses sparse`): the synapses are built as Lava" in sparse.out
    assert "neither stored nor charged in any row" in sparse.out
    dominates = next(line for line in sparse.out.splitlines() if line.startswith("- what dominates"))
    assert "synops on nonzero weights" in dominates and "synops on zero weights" not in dominates
    # the saved run was checked on Lava as stock netx builds it: the section and a note say so
    assert "(the chain as stock netx builds it: Lava's `Conv` per layer)" in sparse.out
    assert "Lava check built the chain with conv synapses" in sparse.err
    assert bench.main(["--load", str(RUN)]) == 0
    conv = capsys.readouterr().out
    assert conv.startswith(bench.SECTION) and "- synapse accounting: **dense** (`--synapses conv`)" in conv
    # fewer cores per copy with nonzero synapses only, so more copies per chip
    cores = [int(text.split("one copy maps to ")[1].split(" cores")[0]) for text in (conv, sparse.out)]
    assert cores[1] < cores[0]


def test_an_unknown_synapses_value_is_refused(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as stop:
        bench.main(["--load", str(RUN), "--synapses", "dense"])
    assert stop.value.code == 2 and "--synapses: invalid choice: 'dense'" in capsys.readouterr().err


def test_the_sparse_lava_check_counts_as_torch() -> None:
    """Two patches of the shipped default on Lava with every layer a Sparse of its nonzero weights
    (``--backend sim --synapses sparse``): the same messages per layer as SLAYER's."""
    from lava_export.verify import sample_patches
    from spikereg.networks.snn import SpikingRegNet
    from spikereg.netx_file import load_model
    from spikereg.pretrained import DEFAULT_MODEL

    model = Path(DEFAULT_MODEL)
    net = SpikingRegNet.from_netx(load_model(model)).eval()
    fixed, moving = sample_patches(net, 2.0, 2, seed=2)
    counts = bench.count_patches_on(model, "sim", fixed, moving, synapses="sparse")
    assert counts == bench.count_patches_on(model, "torch", fixed, moving)
    assert counts["input_spikes"] > 0 and min(counts["layer_spikes"]) > 0
