"""The real-pair benchmark's target lines: each comparison on the pairs where both of its methods ran."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("real_pairs", ROOT / "benchmarks" / "real_pairs.py")
real_pairs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real_pairs)


def row(dice, folding=None, **extra):
    out = {"tissue_dice": dice, **extra}
    if folding is not None:
        out.update(folding_percent=folding, sdlogj=0.2)
    return out


def test_targets_compare_on_shared_pairs_and_say_met_or_missed():
    rows = {
        "A, 2 mm": {"SimpleITK demons": row(0.80, 0.0), "ANTs SyN": row(0.70, 0.0), "ANN twin": row(0.78, 0.0),
                    "SNN torch": row(0.79, 0.0), "SNN Lava": row(0.79, 0.0, equals_torch=True)},
        # no Lava row here: the Lava comparisons must leave this pair out, the torch ones count it
        "A, 1 mm": {"SimpleITK demons": row(0.70, 0.0), "ANTs SyN": row(0.90, 0.0), "ANN twin": row(0.70, 0.0),
                    "SNN torch": row(0.75, 0.2)},
    }
    lines = "\n".join(real_pairs.targets(rows))
    assert "SNN Lava >= ANTs SyN (mean tissue Dice over the 1 pairs both ran): 0.7900 vs 0.7000 (+0.0900): **met**" \
        in lines
    assert "SNN Lava >= SimpleITK demons (mean tissue Dice over the 1 pairs both ran): 0.7900 vs 0.8000 " \
           "(-0.0100): **missed**" in lines
    assert "SNN torch >= ANTs SyN (mean tissue Dice over the 2 pairs both ran): 0.7700 vs 0.8000 (-0.0300): " \
           "**missed**" in lines
    assert "SNN torch within 0.01 of ANN twin (mean tissue Dice over the 2 pairs both ran): 0.7700 vs 0.7400 " \
           "(+0.0300): **missed**" in lines
    assert "% J<=0 < 0.1 for the SNN: largest 0.200: **missed**" in lines
    assert "bit for bit, on 1 of 1 pairs" in lines
    assert real_pairs.targets({}) == []


def test_the_working_grid_rows_get_their_own_target_lines():
    working = "SNN torch" + real_pairs.WORKING
    rows = {"A, 1 mm": {"SimpleITK demons": row(0.80, 0.0), "SNN torch": row(0.82, 0.0), working: row(0.75, 0.3),
                        "ANN twin": row(0.82, 0.0),
                        "SNN Lava" + real_pairs.WORKING: row(0.75, 0.0, equals_torch=False)}}
    lines = "\n".join(real_pairs.targets(rows))
    assert f"{working} >= SimpleITK demons (mean tissue Dice over the 1 pairs both ran): 0.7500 vs 0.8000 " \
           "(-0.0500): **missed**" in lines
    assert "SNN torch >= SimpleITK demons (mean tissue Dice over the 1 pairs both ran): 0.8200 vs 0.8000" in lines
    assert "largest 0.300: **missed**" in lines  # the working-grid run's folding counts
    assert f"{working} within 0.01 of ANN twin" not in lines  # the twin row follows the default run
    assert "bit for bit, on 0 of 1 pairs" in lines


def test_run_settings_given_become_run_options_and_part_of_the_folders_claim(tmp_path):
    import argparse

    import pytest

    given = real_pairs.given_settings(argparse.Namespace(iterations=8, patch_stride=None, smoothing=2.0))
    assert given == {"iterations": 8, "smoothing": 2.0}
    assert real_pairs.settings_flags(given) == ("--iterations", "8", "--smoothing", "2")
    none = real_pairs.given_settings(argparse.Namespace(iterations=None, patch_stride=None, smoothing=None))
    assert none == {} and real_pairs.settings_flags(none) == ()
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    real_pairs.claim_folder(tmp_path, "m.net", checkpoint, {"iterations": 8})
    real_pairs.claim_folder(tmp_path, "m.net", checkpoint, {"iterations": 8})  # the same claim again
    with pytest.raises(ValueError, match="holds the rows of"):  # the model's own settings: other rows
        real_pairs.claim_folder(tmp_path, "m.net", checkpoint)
