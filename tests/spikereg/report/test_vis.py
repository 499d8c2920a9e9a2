"""``spikereg vis``: PNGs and a slice GIF from NIfTI files; planes follow the affine; clear errors."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from spikereg.data import VolumeError, load_mni, random_ddf, save_ddf, save_volume, warp
from spikereg.report.figures import checkerboard_volume, plane_axes
from spikereg.report.vis import GIF_NAME, visualize


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vis")
    fixed = load_mni("t1", 8.0)
    ddf = random_ddf(fixed.shape, 2.0, 4, np.random.default_rng(1))
    save_volume(folder / "fixed.nii.gz", fixed.data, fixed.affine)
    save_volume(folder / "moving.nii.gz", warp(fixed.data, ddf), fixed.affine)
    save_volume(folder / "warped.nii.gz", fixed.data, fixed.affine)
    save_ddf(folder / "ddf.nii.gz", -ddf, fixed.affine)
    return folder, fixed


def test_vis_writes_valid_pngs_and_a_gif_through_the_slices(files, tmp_path: Path) -> None:
    folder, fixed = files
    written = visualize(folder / "fixed.nii.gz", folder / "moving.nii.gz", tmp_path / "out",
                        warped=folder / "warped.nii.gz", ddf=folder / "ddf.nii.gz", gif=True)
    names = {p.name for p in written}
    assert {"slices.png", "checkerboard.png", "deformation_grid.png", "jacobian.png", GIF_NAME} <= names
    for path in written:
        with Image.open(path) as image:
            assert image.format == ("GIF" if path.suffix == ".gif" else "PNG")
            image.verify()
    with Image.open(tmp_path / "out" / GIF_NAME) as gif:
        # one frame per axial slice (the MNI grid is RAS: the third array axis is superior)
        assert gif.n_frames == fixed.shape[2]
        gif.seek(0)
        first = np.asarray(gif.convert("L"))
        gif.seek(fixed.shape[2] // 2)
        middle = np.asarray(gif.convert("L"))
    assert first.shape == middle.shape and middle.mean() > first.mean()  # brain in the middle, not at the end


def test_vis_one_plane_without_a_field(files, tmp_path: Path) -> None:
    folder, fixed = files
    written = visualize(folder / "fixed.nii.gz", folder / "moving.nii.gz", tmp_path, plane="sagittal", gif=True)
    assert {p.name for p in written} == {"slices.png", "checkerboard.png", GIF_NAME}
    with Image.open(tmp_path / GIF_NAME) as gif:
        assert gif.n_frames == fixed.shape[0]


def test_vis_errors_name_the_file_and_the_problem(cli, files, tmp_path: Path) -> None:
    folder, fixed = files
    small = tmp_path / "small.nii.gz"
    save_volume(small, np.zeros((5, 6, 7), np.float32), fixed.affine)
    with pytest.raises(VolumeError, match=r"--warped .*small.nii.gz: not on the fixed image's grid .*shape"):
        visualize(folder / "fixed.nii.gz", folder / "moving.nii.gz", tmp_path / "o", warped=small)
    with pytest.raises(VolumeError, match=r"--ddf .*small.nii.gz: expected shape"):
        visualize(folder / "fixed.nii.gz", folder / "moving.nii.gz", tmp_path / "o", ddf=small)
    wrong = tmp_path / "wrong_ddf.nii.gz"
    save_ddf(wrong, np.zeros((3, 5, 6, 7), np.float32), fixed.affine)
    with pytest.raises(VolumeError, match=r"--ddf .*wrong_ddf.nii.gz: field of shape \(5, 6, 7\) does not match"):
        visualize(folder / "fixed.nii.gz", folder / "moving.nii.gz", tmp_path / "o", ddf=wrong)
    with pytest.raises(ValueError, match=r"--plane 'top'"):
        visualize(folder / "fixed.nii.gz", folder / "moving.nii.gz", tmp_path / "o", plane="top")
    assert not (tmp_path / "o").exists()
    result = cli.invoke("vis", "--fixed", str(tmp_path / "nope.nii.gz"), "--moving",
                        str(folder / "moving.nii.gz"), "--out", str(tmp_path / "o"))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "nope.nii.gz" in lines[0]


def test_planes_follow_the_affine_not_the_array_order() -> None:
    assert plane_axes(np.eye(4)) == {"axial": 2, "coronal": 1, "sagittal": 0}
    # array axes (S, A, R): axial cuts across array axis 0, sagittal across axis 2
    permuted = np.array([[0, 0, 2, 0], [0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 1]], float)
    assert nib.aff2axcodes(permuted) == ("S", "A", "R")
    assert plane_axes(permuted) == {"axial": 0, "coronal": 1, "sagittal": 2}


def test_checkerboard_alternates_tiles_of_the_two_images() -> None:
    a = np.zeros((4, 4, 4), np.float32)  # constant: shown as 0 everywhere
    b = np.random.default_rng(0).uniform(1.0, 2.0, (4, 4, 4)).astype(np.float32)
    lo, hi = np.percentile(b, [1, 99])
    shown_b = np.clip((b - lo) / (hi - lo), 0, 1)
    board = checkerboard_volume(a, b, tiles=2)
    # 2 tiles per axis over 4 voxels: voxel (i, j, k) lies in a's tile when (i//2 + j//2 + k//2) is even
    for voxel, from_a in [((1, 1, 1), True), ((2, 1, 1), False), ((3, 3, 1), True), ((3, 3, 3), False),
                          ((0, 2, 0), False)]:
        assert board[voxel] == pytest.approx(0.0 if from_a else shown_b[voxel])
    assert (board > 0).sum() == (shown_b[board > 0] > 0).sum() and 0 < (board > 0).mean() <= 0.5
