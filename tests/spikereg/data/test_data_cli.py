"""`spikereg data synth` and `spikereg warp` through the command line."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikereg.data import load_dataset, load_ddf, load_volume, save_volume, warp


def test_synth_then_warp_with_the_ground_truth(cli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    result = cli.invoke("data", "synth", "--out", root, "--pairs", 2, "--spacing", 8, "--split", "0.5,0.5,0",
                        "--noise-std", 0, "--deformation", "diffeomorphic", "--bias-field", 0.1, "--gamma-std", 0.1)
    assert result.exit_code == 0, result.output
    assert "train 1, val 1, test 0" in " ".join(result.output.split())
    files = load_dataset(root, "val").files[0]
    # The ground truth warps the moving labels onto the fixed ones exactly (labels carry no intensity change).
    out = tmp_path / "warped_labels.nii.gz"
    result = cli.invoke("warp", "--image", files.moving_labels, "--ddf", files.ddf, "--out", out, "--labels")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(load_volume(out).data, load_volume(files.fixed_labels).data)
    out = tmp_path / "warped.nii.gz"
    assert cli.invoke("warp", "--image", files.moving, "--ddf", files.ddf, "--out", out).exit_code == 0
    ddf, _ = load_ddf(files.ddf)
    np.testing.assert_allclose(load_volume(out).data, warp(load_volume(files.moving).data, ddf), atol=1e-6)


def test_bad_options_and_grids_are_one_line(cli, tmp_path: Path) -> None:
    assert "--split 0.5,0.5" in cli.one_error_line("data", "synth", "--out", tmp_path, "--split", "0.5,0.5")
    assert "summing to 1" in cli.one_error_line("data", "synth", "--out", tmp_path, "--split", "0.5,0.5,0.5")
    assert "--deformation affine: must be one of" in cli.one_error_line(
        "data", "synth", "--out", tmp_path / "d", "--pairs", 1, "--spacing", 8, "--deformation", "affine")
    assert not (tmp_path / "d" / "train").exists()
    save_volume(tmp_path / "img.nii.gz", np.zeros((4, 5, 6)), np.eye(4))
    save_volume(tmp_path / "other.nii.gz", np.zeros((4, 5, 7)), np.eye(4))
    line = cli.one_error_line("warp", "--image", tmp_path / "img.nii.gz", "--ddf", tmp_path / "other.nii.gz",
                              "--out", tmp_path / "out.nii.gz")
    assert "other.nii.gz" in line and "expected shape (D, H, W, 1, 3)" in line
    assert not (tmp_path / "out.nii.gz").exists()
