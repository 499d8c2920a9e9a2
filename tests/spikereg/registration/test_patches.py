"""Patch tiling and stitching."""
import numpy as np
import pytest

from spikereg.registration.patches import blend_weights, extract, pad_to, patch_grid, stitch, upsample


def test_grid_covers_volume_with_overlap():
    grid = patch_grid((20, 33, 16), patch=16, stride=8)
    assert grid.padded == (24, 40, 16)
    assert len(grid) == 2 * 4 * 1
    assert grid.origins.max(axis=0).tolist() == [8, 24, 0]


def test_stitching_a_constant_field_gives_that_constant_everywhere():
    grid = patch_grid((40, 36, 24), patch=16, stride=8)
    controls = np.broadcast_to(np.array([1.5, -2.0, 0.25], np.float32)[None, :, None, None, None],
                               (len(grid), 3, 4, 4, 4))
    coarse = stitch(controls, grid, reduction=4)
    dense = upsample(coarse, 4, (40, 36, 24))
    assert dense.shape == (3, 40, 36, 24)
    for axis, value in enumerate([1.5, -2.0, 0.25]):
        np.testing.assert_allclose(dense[axis], value, rtol=0, atol=1e-5)


def test_stitching_places_each_patch_at_its_origin():
    grid = patch_grid((32, 16, 16), patch=16, stride=16)
    controls = np.zeros((2, 3, 4, 4, 4), np.float32)
    controls[1, 0] = 7.0  # second patch along depth
    coarse = stitch(controls, grid, reduction=4)
    assert coarse[0, :4].max() == 0 and np.all(coarse[0, 4:] == 7.0)


def test_extract_reads_the_right_voxels():
    volume = np.arange(24 * 16 * 16, dtype=np.float32).reshape(24, 16, 16)
    grid = patch_grid(volume.shape, 16, 8)
    padded = pad_to(volume, grid.padded)
    patches = extract(padded, grid)
    assert patches.shape == (2, 1, 16, 16, 16)
    np.testing.assert_array_equal(patches[1, 0].numpy(), volume[8:24])


def test_blend_weights_peak_in_the_centre():
    w = blend_weights(4)
    assert w[1:3, 1:3, 1:3].min() > w[0, 0, 0] > 0
    assert w[1, 1, 1] == pytest.approx((1 - 0.5 / 2.5) ** 3)
    assert w[0, 0, 0] == pytest.approx((1 - 1.5 / 2.5) ** 3)


def test_smooth_field_keeps_constants_and_spreads_an_impulse_like_a_gaussian():
    from spikereg.registration.patches import smooth_field

    constant = np.full((3, 12, 12, 12), 1.5, dtype=np.float32)
    np.testing.assert_allclose(smooth_field(constant, 2.0), constant, rtol=1e-6)
    impulse = np.zeros((3, 21, 21, 21), dtype=np.float32)
    impulse[1, 10, 10, 10] = 1.0
    blurred = smooth_field(impulse, 1.5)
    assert blurred.dtype == np.float32 and blurred[0].max() == 0 and blurred[2].max() == 0
    assert blurred[1].sum() == pytest.approx(1.0, rel=1e-4)  # mass kept, far from the borders
    # along one axis through the centre: exp(-x^2 / (2 sigma^2)) relative to the peak
    line = blurred[1, 10, 10, :]
    assert line[12] / line[10] == pytest.approx(np.exp(-4 / (2 * 1.5**2)), rel=0.05)
