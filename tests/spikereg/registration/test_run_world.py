"""spikereg run on scans as they come (issue 16 items 1-3): another grid, a known affine, clear refusals."""
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spikereg.data import Volume, load_mni, load_pair, save_volume, tissue_labels
from spikereg.data.loaders import PairFiles
from spikereg.data.world import sample_world
from spikereg.metrics import dice
from spikereg.registration import affine as affine_module
from spikereg.registration.affine import save_transform, transform_from_ras


def oblique_grid(reference: Volume, spacing=(1.5, 1.5, 2.5), degrees=(0.0, 0.0, 20.0)):
    """A grid rotated by ``degrees`` about the reference box's centre, ``spacing`` mm voxels, covering the box."""
    rotation = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    centre = reference.affine[:3, :3] @ ((np.array(reference.shape) - 1) / 2) + reference.affine[:3, 3]
    extent = np.abs(reference.affine[:3, :3]).sum(axis=1) * np.array(reference.shape)
    shape = tuple(int(np.ceil(e * 1.1 / s)) for e, s in zip(extent, spacing))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return shape, affine


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """A 4 mm fixed T1 and its tissue labels; the moving scan: the same head moved by a known affine (6 degrees,
    scale 1.05, 5 mm), stored on a 20-degree rotated 1.5 x 1.5 x 2.5 mm grid, with its labels on that grid."""
    fixed, labels = load_mni("t1", 4.0), tissue_labels(4.0)
    centre = fixed.affine[:3, :3] @ (np.array(fixed.shape) / 2) + fixed.affine[:3, 3]
    truth = np.eye(4)  # fixed world -> moving world
    truth[:3, :3] = Rotation.from_euler("xyz", [6.0, -4.0, 5.0], degrees=True).as_matrix() * 1.05
    truth[:3, 3] = centre - truth[:3, :3] @ centre + [5.0, -3.0, 4.0]
    shape, grid = oblique_grid(fixed)
    inverse = np.linalg.inv(truth)
    folder = tmp_path_factory.mktemp("scans")
    files = {"fixed": folder / "fixed.nii.gz", "labels": folder / "fixed_labels.nii.gz",
             "moving": folder / "moving.nii.gz", "moving_labels": folder / "moving_labels.nii.gz"}
    save_volume(files["fixed"], fixed.data, fixed.affine)
    save_volume(files["labels"], labels.data, fixed.affine, dtype=np.uint8)
    save_volume(files["moving"], sample_world(fixed, shape, grid, world=inverse), grid)
    save_volume(files["moving_labels"], sample_world(labels, shape, grid, world=inverse, order=0), grid,
                dtype=np.uint8)
    far = grid.copy()
    far[:3, 3] += 1000.0
    files["far"] = save_volume(folder / "far.nii.gz", np.asarray(nib.load(files["moving"]).dataobj), far)
    files["far_labels"] = save_volume(folder / "far_labels.nii.gz",
                                      np.asarray(nib.load(files["moving_labels"]).dataobj), far, dtype=np.uint8)
    return files, labels.data, truth


def _run(cli, files, out, *extra):
    return cli.invoke("run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"], "--moving",
                      files["moving"], "--moving-labels", files["moving_labels"], "--out", out, *extra)


def test_a_moved_scan_on_another_grid_lands_on_the_fixed_one(cli, scans, tmp_path):
    files, truth_labels, truth = scans
    out = tmp_path / "out"
    result = _run(cli, files, out)
    assert result.exit_code == 0, result.output
    fixed = nib.load(files["fixed"])
    warped_labels = nib.load(out / "warped_labels.nii.gz")
    assert warped_labels.shape == fixed.shape
    np.testing.assert_allclose(warped_labels.affine, fixed.affine)
    scores = dice(np.asarray(warped_labels.dataobj), truth_labels, labels=[1, 2])
    assert min(scores.values()) > 0.85, scores
    before = dice(np.asarray(load_pair(PairFiles("p", files["fixed"], files["moving"], moving_labels=files[
        "moving_labels"])).moving_labels.data), truth_labels, labels=[1, 2])
    assert min(scores.values()) > max(before.values()) + 0.2, (before, scores)
    report = json.loads((out / "report.json").read_text())
    assert report["affine"]["metric"]["after"] < report["affine"]["metric"]["before"]
    assert report["affine"]["ncc"]["after"] > report["affine"]["ncc"]["before"]
    assert report["grids"]["moving_resampled"] and report["outputs"]["affine"] == "affine.tfm"
    assert report["similarity"]["ncc_after"] > 0.9
    # the saved transform is the one ITK reads (fixed -> moving points, LPS), close to the truth
    found = affine_module.matrix_ras(sitk.ReadTransform(str(out / "affine.tfm")))
    corners = np.array([[x, y, z, 1.0] for x in (0, 48) for y in (0, 57) for z in (0, 46)]) @ fixed.affine.T
    assert np.abs(corners @ found.T - corners @ truth.T).max() < 4.0  # within a voxel at the box's corners
    # spikereg warp with the saved field alone reproduces the outputs, from the moving scan's own grid
    for name, labels in (("warped.nii.gz", False), ("warped_labels.nii.gz", True)):
        again = tmp_path / f"again_{name}"
        image = files["moving_labels"] if labels else files["moving"]
        args = ["warp", "--image", image, "--ddf", out / "ddf.nii.gz", "--out", again] + (["--labels"] if labels
                                                                                            else [])
        assert cli.invoke(*args).exit_code == 0
        np.testing.assert_allclose(np.asarray(nib.load(again).dataobj), np.asarray(nib.load(out / name).dataobj),
                                   atol=1e-4)
    # --affine FILE with the saved transform: the same registration
    reused = tmp_path / "reused"
    result = _run(cli, files, reused, "--affine", out / "affine.tfm")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.asarray(nib.load(reused / "ddf.nii.gz").dataobj),
                               np.asarray(nib.load(out / "ddf.nii.gz").dataobj), atol=1e-3)


def test_the_loader_brings_a_pair_onto_the_fixed_grid(scans):
    files, truth_labels, _ = scans
    pair = load_pair(PairFiles("p", files["fixed"], files["moving"], files["labels"], files["moving_labels"]))
    assert pair.moving.shape == pair.fixed.shape == pair.moving_labels.shape == truth_labels.shape
    np.testing.assert_allclose(pair.moving_labels.affine, pair.fixed.affine)
    assert set(np.unique(pair.moving_labels.data)) == {0, 1, 2}


def _refused(cli, tmp_path, *args) -> str:
    out = tmp_path / "out"
    line = cli.one_error_line(*args, "--out", out)
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    return line


def test_images_that_do_not_overlap_are_one_line(cli, scans, tmp_path):
    files, _, _ = scans
    line = _refused(cli, tmp_path, "run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"],
                    "--moving", files["far"])
    assert f"--moving {files['far']}: does not overlap the fixed image {files['fixed']} in world space" in line
    assert "(overlap 0.0 %" in line


def test_labels_that_do_not_overlap_their_image_are_one_line(cli, scans, tmp_path):
    files, _, _ = scans
    line = _refused(cli, tmp_path, "run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"],
                    "--moving", files["moving"], "--moving-labels", files["far_labels"])
    assert f"--moving-labels {files['far_labels']}: does not overlap the moving image {files['moving']}" in line


def test_a_diverging_affine_is_one_line(cli, scans, tmp_path, monkeypatch):
    files, _, _ = scans
    monkeypatch.setattr(affine_module, "LEARNING_RATE", 1e5)
    line = _refused(cli, tmp_path, "run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"],
                    "--moving", files["moving"])
    assert line.startswith("error: --affine auto: the optimisation diverged")


def test_an_implausible_or_unreadable_affine_file_is_one_line(cli, scans, tmp_path):
    files, _, _ = scans
    big = save_transform(transform_from_ras(np.diag([3.0, 3.0, 3.0, 1.0])), tmp_path / "big.tfm")
    line = _refused(cli, tmp_path, "run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"],
                    "--moving", files["moving"], "--affine", big)
    assert f"--affine {big}: implausible transform" in line
    line = _refused(cli, tmp_path, "run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"],
                    "--moving", files["moving"], "--affine", tmp_path / "nope.tfm")
    assert "--affine" in line and "nope.tfm: no such file" in line


def test_intensity_flags_are_recorded(cli, scans, tmp_path):
    files, _, _ = scans
    out = tmp_path / "out"
    result = _run(cli, files, out, "--histogram-match", "--n4", "--percentiles", "2,98")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["intensity"] == {"histogram_match": True, "n4": True, "percentiles": [2.0, 98.0]}
    line = cli.one_error_line("run", "--backend", "torch", "--model", "demo", "--fixed", files["fixed"],
                              "--moving", files["moving"], "--percentiles", "99,1", "--out", tmp_path / "x")
    assert "--percentiles 99,1" in line
