"""The DDF as an ITK displacement field (mm, LPS, fixed grid): what SimpleITK applies is what spikereg warps."""
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from spikereg.data import VolumeError, load_itk_displacement, save_itk_displacement, warp
from spikereg.data.io import itk_affine


def oblique_affine() -> np.ndarray:
    angle = np.deg2rad(15)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1, 1, 1]) @ rotation @ np.diag([1.2, 1.0, 2.0])
    affine[:3, 3] = [40.0, -20.0, 5.0]
    return affine


def smooth_field(shape, amplitude, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 3) for _ in range(3)])
    return (amplitude * field / np.abs(field).max()).astype(np.float32)


def sitk_image(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    flip = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(flip[:3, :3], axis=0)
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple((flip[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(flip[:3, 3]))
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_simpleitk_applies_the_field_as_spikereg_warps(tmp_path, suffix):
    shape = (24, 20, 16)
    affine = oblique_affine()
    image = ndimage.gaussian_filter(np.random.default_rng(1).random(shape), 1.5)
    image = ((image - image.min()) / (image.max() - image.min())).astype(np.float32)
    ddf = smooth_field(shape, 2.5)
    path = save_itk_displacement(tmp_path / f"ddf{suffix}", ddf, affine)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left

    moving = sitk_image(image, affine)  # the moving image on the same grid as the fixed one here
    transform = sitk.DisplacementFieldTransform(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))
    resampled = sitk.Resample(moving, moving, transform, sitk.sitkLinear, 0.0)
    theirs = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
    ours = warp(image, ddf)
    inside = (slice(4, -4),) * 3  # away from the borders, where ITK pads with 0 and we repeat the edge
    np.testing.assert_allclose(theirs[inside], ours[inside], atol=1e-4)
    assert np.abs(ours - image)[inside].mean() > 0.01  # the field did move things


def test_the_field_is_in_mm_on_lps_axes(tmp_path):
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    ddf = np.zeros((3, 4, 4, 4), np.float32)
    ddf[0] = 1.0  # one voxel along array axis i: +2 mm along RAS x, so -2 mm along LPS x
    path = save_itk_displacement(tmp_path / "ddf.nii.gz", ddf, affine)
    vectors = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(vectors[..., 0], -2.0)
    np.testing.assert_allclose(vectors[..., 1:], 0.0)


def test_reading_an_itk_field_back_gives_voxels_and_the_grid(tmp_path):
    affine = oblique_affine()
    ddf = smooth_field((10, 12, 8), 3.0, seed=2)
    back, grid = load_itk_displacement(save_itk_displacement(tmp_path / "f.mha", ddf, affine))
    np.testing.assert_allclose(grid, affine, atol=1e-6)
    np.testing.assert_allclose(back, ddf, atol=1e-5)
    spacing, direction, origin = (1.0, 1.0, 1.0), tuple(np.eye(3).ravel()), (0.0, 0.0, 0.0)
    np.testing.assert_allclose(itk_affine(spacing, direction, origin), np.diag([-1, -1, 1, 1]))


def test_a_scalar_image_is_not_a_displacement_field(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32)), str(tmp_path / "s.nrrd"))
    with pytest.raises(VolumeError, match="3-D image of 3-vectors"):
        load_itk_displacement(tmp_path / "s.nrrd", what="--ddf")
