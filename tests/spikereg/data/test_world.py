"""World space (issue 16 item 1): grids compared, overlap measured, volumes resampled through their affines."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spikereg.data import Volume, load_mni, tissue_labels
from spikereg.data.world import (
    NoOverlapError,
    check_overlap,
    displacement_mm,
    overlap_fraction,
    resample_like,
    same_grid,
    sample_world,
)
from spikereg.metrics import dice


def oblique_grid(reference: Volume, spacing=(1.5, 1.5, 2.5), degrees=(0.0, 0.0, 20.0)):
    """A grid rotated by ``degrees`` about the reference box's centre, with ``spacing`` mm voxels, covering it."""
    rotation = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    centre = reference.affine[:3, :3] @ ((np.array(reference.shape) - 1) / 2) + reference.affine[:3, 3]
    extent = np.abs(reference.affine[:3, :3]).sum(axis=1) * np.array(reference.shape)  # mm per world axis
    shape = tuple(int(np.ceil(e * 1.1 / s)) for e, s in zip(extent, spacing))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return shape, affine


def test_same_grid_and_overlap():
    a = Volume(np.zeros((10, 10, 10)), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert same_grid(a, a) and same_grid(a, (a.shape, a.affine + 1e-5))
    assert not same_grid(a, ((10, 10, 9), a.affine))
    half = a.affine.copy()
    half[0, 3] += 10.0  # half the 20 mm box along x
    assert overlap_fraction(a, (a.shape, half)) == pytest.approx(0.5, abs=0.03)
    assert overlap_fraction(a, a) == 1.0
    inner = np.diag([1.0, 1.0, 1.0, 1.0])
    inner[:3, 3] = 5.0
    assert overlap_fraction(a, ((4, 4, 4), inner)) == 1.0  # the small box lies inside the large one
    far = a.affine.copy()
    far[:3, 3] += 1000.0
    assert overlap_fraction(a, (a.shape, far)) == 0.0
    with pytest.raises(NoOverlapError) as info:
        check_overlap(Volume(a.data, far, path="m.nii.gz"), a, "--moving", "fixed image", reference_source="f.nii.gz")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("--moving m.nii.gz: does not overlap the fixed image f.nii.gz in world space "
                              "(overlap 0.0 %")


def test_labels_on_a_rotated_anisotropic_grid_land_back_where_they_were():
    """Tissue labels and the T1 stored on a rotated 1.5 x 1.5 x 2.5 mm grid, resampled back onto the 4 mm grid."""
    image, labels = load_mni("t1", 4.0), tissue_labels(4.0)
    shape, affine = oblique_grid(image)
    assert not same_grid(image, (shape, affine))
    oblique_labels = Volume(sample_world(labels, shape, affine, order=0), affine)
    oblique_image = Volume(sample_world(image, shape, affine), affine)
    back = resample_like(oblique_labels, labels, order=0).data
    np.testing.assert_array_equal(np.unique(back), [0, 1, 2])
    scores = dice(back, labels.data, labels=[1, 2])
    assert min(scores.values()) > 0.93, scores
    image_back = resample_like(oblique_image, image).data
    assert np.corrcoef(image_back.ravel(), image.data.ravel())[0, 1] > 0.97


def test_a_world_transform_moves_anatomy_by_it():
    """sample_world with a world shift of 8 mm along x: the same as sampling the voxels 2 voxels on (4 mm grid)."""
    image = load_mni("t1", 4.0)
    shift = np.eye(4)
    shift[0, 3] = 8.0 * np.sign(image.affine[0, 0])  # +2 voxels along array axis 0
    out = sample_world(image, image.shape, image.affine, world=shift)
    np.testing.assert_allclose(out[:-2], image.data[2:], atol=1e-5)
    ddf = np.zeros((3, *image.shape), np.float32)
    ddf[0] = 2.0  # the same 2 voxels as a displacement in target voxels
    np.testing.assert_allclose(sample_world(image, image.shape, image.affine, ddf=ddf), out, atol=1e-5)
    mm = displacement_mm(ddf, image.affine)
    np.testing.assert_allclose(mm[0], 2.0 * image.affine[0, 0])


def test_downsampling_is_anti_aliased():
    """A 1-voxel checkerboard resampled onto a grid of 3x larger voxels averages out instead of aliasing."""
    board = (np.indices((30, 30, 30)).sum(axis=0) % 2).astype(np.float32)
    fine = Volume(board, np.eye(4))
    coarse = np.diag([3.0, 3.0, 3.0, 1.0])
    coarse[:3, 3] = 1.0  # voxel centres of the 3 mm grid on 1 mm voxel centres
    out = resample_like(fine, ((10, 10, 10), coarse)).data
    assert abs(float(out.mean()) - 0.5) < 0.02 and float(out.std()) < 0.1  # grey, not a checkerboard
    aliased = sample_world(fine, (10, 10, 10), coarse, antialias=False)
    assert float(aliased.std()) > 0.4
