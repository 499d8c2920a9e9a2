"""Affine pre-alignment (issue 16 item 2): RAS <-> LPS conversions, recovery of a known affine, divergence refused."""
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spikereg.data import Volume, load_mni
from spikereg.data.itk import from_sitk, to_sitk
from spikereg.data.world import sample_world
from spikereg.registration import affine as affine_module
from spikereg.registration.affine import (
    AffineError,
    affine_stage,
    check_plausible,
    estimate_affine,
    matrix_ras,
    read_transform,
    save_transform,
    transform_from_ras,
)


def oblique_volume(seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [10, -25, 40], degrees=True).as_matrix() @ np.diag([1.5, 1.0, 2.5])
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    return Volume(rng.random((7, 9, 5)).astype(np.float32), affine, path="oblique.nii.gz")


def known_affine(volume: Volume, degrees=(8.0, -5.0, 6.0), scale=1.08, shift=(6.0, -4.0, 5.0)) -> np.ndarray:
    """A 4x4 RAS fixed -> moving map: rotation and isotropic scale about the box centre, then a shift (mm)."""
    centre = volume.affine[:3, :3] @ (np.array(volume.shape) / 2) + volume.affine[:3, 3]
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix() * scale
    matrix[:3, 3] = centre - matrix[:3, :3] @ centre + np.asarray(shift)
    return matrix


def moved(fixed: Volume, matrix: np.ndarray) -> Volume:
    """The fixed anatomy as seen through ``matrix``: moving(A x) = fixed(x), on the fixed grid."""
    return Volume(sample_world(fixed, fixed.shape, fixed.affine, world=np.linalg.inv(matrix)), fixed.affine)


def point_errors(found: np.ndarray, truth: np.ndarray, volume: Volume) -> np.ndarray:
    """mm between where ``found`` and ``truth`` take points spread over the volume's box."""
    rng = np.random.default_rng(0)
    voxels = rng.random((3, 2000)) * np.array(volume.shape)[:, None]
    points = volume.affine[:3, :3] @ voxels + volume.affine[:3, 3:4]
    a = found[:3, :3] @ points + found[:3, 3:4]
    b = truth[:3, :3] @ points + truth[:3, 3:4]
    return np.linalg.norm(a - b, axis=0)


def test_ras_lps_round_trip_with_a_rotated_anisotropic_grid():
    volume = oblique_volume()
    image = to_sitk(volume)
    # ITK index (i, j, k) is data[i, j, k]; its physical point is the RAS one with x and y negated
    for index in [(0, 0, 0), (6, 8, 4), (3, 1, 2)]:
        ras = volume.affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(index), [-ras[0], -ras[1], ras[2]], atol=1e-9)
        assert image[index] == pytest.approx(float(volume.data[index]))
    back = from_sitk(image)
    np.testing.assert_array_equal(back.data, volume.data)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-12)
    matrix = known_affine(volume)
    np.testing.assert_allclose(matrix_ras(transform_from_ras(matrix)), matrix, atol=1e-9)


def test_itk_resampling_through_the_transform_equals_ours(tmp_path):
    """sitk.Resample(moving, fixed, T) -- what ANTs and SimpleITK do with affine.tfm -- is sample_world(world=A)."""
    fixed = load_mni("t1", 8.0)
    matrix = known_affine(fixed)
    grid = np.eye(4)  # an oblique 6 x 7 x 9 mm grid around the fixed box's centre
    grid[:3, :3] = Rotation.from_euler("xyz", [10, -25, 40], degrees=True).as_matrix() @ np.diag([6.0, 7.0, 9.0])
    shape = (36, 32, 24)
    centre = fixed.affine[:3, :3] @ (np.array(fixed.shape) / 2) + fixed.affine[:3, 3]
    grid[:3, 3] = centre - grid[:3, :3] @ (np.array(shape) / 2)
    moving = Volume(sample_world(fixed, shape, grid), grid)
    path = save_transform(transform_from_ras(matrix), tmp_path / "affine.tfm")
    transform = sitk.ReadTransform(str(path))
    theirs = from_sitk(sitk.Resample(to_sitk(moving), to_sitk(fixed), transform, sitk.sitkLinear, 0.0)).data
    ours = sample_world(moving, fixed.shape, fixed.affine, world=matrix, antialias=False)
    inside = theirs != 0  # ITK fills outside with 0, we repeat the border
    assert inside.mean() > 0.3
    np.testing.assert_allclose(theirs[inside], ours[inside], atol=1e-4)
    np.testing.assert_allclose(matrix_ras(read_transform(path)), matrix, atol=1e-9)


def test_the_affine_stage_recovers_a_known_rotation_translation_and_scale():
    """4 mm template; 8/-5/6 degrees, scale 1.08, shift (6, -4, 5) mm: every point within 2 mm (half a voxel)."""
    fixed = load_mni("t1", 4.0)
    truth = known_affine(fixed)
    result = estimate_affine(fixed, moved(fixed, truth))
    errors = point_errors(result.matrix, truth, fixed)
    assert errors.mean() < 1.0 and errors.max() < 2.0, (errors.mean(), errors.max())  # measured 0.60 / 1.11 mm
    assert result.metric_after < result.metric_before
    section = result.section(0.5, 0.9)
    assert section["metric"]["after"] == result.metric_after and section["file"] == "affine.tfm"
    assert all(abs(s - 1.08) < 0.02 for s in section["axis_scales"])


def test_the_affine_stage_is_reproducible_bit_for_bit():
    """Two runs of one pair give one affine (so --backend torch and sim see the same input), threads restored."""
    import SimpleITK as sitk

    fixed = load_mni("t1", 4.0)
    moving = moved(fixed, known_affine(fixed))
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    first, second = estimate_affine(fixed, moving), estimate_affine(fixed, moving)
    assert np.array_equal(first.matrix, second.matrix) and first.metric_after == second.metric_after
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads


def test_a_diverging_optimisation_is_one_clear_error(monkeypatch):
    fixed = load_mni("t1", 8.0)
    monkeypatch.setattr(affine_module, "LEARNING_RATE", 1e5)  # steps of kilometres
    with pytest.raises(AffineError) as info:
        estimate_affine(fixed, moved(fixed, known_affine(fixed)))
    message = str(info.value)
    assert "\n" not in message and message.startswith("--affine auto: ")
    assert "diverged" in message or "implausible" in message or "failed" in message


def test_implausible_or_unreadable_transforms_are_refused(tmp_path):
    with pytest.raises(AffineError, match=r"axis scales 3 to 3"):
        check_plausible(np.diag([3.0, 3.0, 3.0, 1.0]), "--affine x.tfm")
    with pytest.raises(AffineError, match=r"determinant -1"):
        check_plausible(np.diag([-1.0, 1.0, 1.0, 1.0]), "--affine x.tfm")
    bad = tmp_path / "bad.tfm"
    bad.write_text("not a transform\n")
    with pytest.raises(AffineError, match=r"--affine .*bad.tfm: SimpleITK cannot read it"):
        read_transform(bad)
    with pytest.raises(AffineError, match=r"no such file"):
        affine_stage(tmp_path / "missing.tfm", None, None)
    assert affine_stage("none", None, None) is None
