"""Displacement fields: known-answer warps, composition, inversion, Jacobians."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from spikereg.data import (
    compose,
    compose_torch,
    integrate_velocity,
    invert,
    jacobian_determinant,
    random_ddf,
    random_diffeomorphic_ddf,
    warp,
    warp_torch,
)

SHAPE = (20, 24, 16)
# float32 grid_sample round trip (index -> [-1, 1] -> index) costs ~1e-7 * size
# voxels of position, so resampled values in [0, 1] are exact only to ~1e-5.
GRID_TOL = 2e-5


def _image(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _smooth_image(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A broad Gaussian blob: linear interpolation of it is accurate."""
    grids = np.meshgrid(*(np.arange(n, dtype=np.float32) - n / 2 for n in shape), indexing="ij")
    r2 = sum(g * g for g in grids)
    return np.exp(-r2 / (2 * 6.0**2)).astype(np.float32)


def _translation(shift: tuple[float, float, float], shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    ddf = np.empty((3, *shape), dtype=np.float32)
    for k in range(3):
        ddf[k] = shift[k]
    return ddf


def test_zero_field_is_exact_identity() -> None:
    img = _image()
    zero = np.zeros((3, *SHAPE), dtype=np.float32)
    np.testing.assert_array_equal(warp(img, zero), img)
    np.testing.assert_array_equal(warp(np.stack([img, 2 * img]), zero), np.stack([img, 2 * img]))
    np.testing.assert_array_equal(warp(img, zero, mode="nearest"), img)


def test_zero_field_through_torch_is_identity_to_grid_precision() -> None:
    img = torch.from_numpy(_image())[None, None]
    out = warp_torch(img, torch.zeros(1, 3, *SHAPE))
    assert out.shape == img.shape
    assert float((out - img).abs().max()) < GRID_TOL


def test_plus_one_voxel_along_axis0_shifts_image() -> None:
    img = _image()
    out = warp(img, _translation((1.0, 0.0, 0.0)))
    assert out.dtype == np.float32 and out.shape == img.shape
    # warped(x) = image(x + 1): slice i shows slice i + 1
    np.testing.assert_allclose(out[:-1], img[1:], atol=GRID_TOL)
    # border padding: the last slice repeats the image's last slice
    np.testing.assert_allclose(out[-1], img[-1], atol=GRID_TOL)


def test_channel_k_moves_along_array_axis_k() -> None:
    # Catches a swapped (x, y, z) / (z, y, x) convention.
    img = _image()
    out = warp(img, _translation((0.0, 0.0, -1.0)))
    np.testing.assert_allclose(out[:, :, 1:], img[:, :, :-1], atol=GRID_TOL)
    out = warp(img, _translation((0.0, 2.0, 0.0)))
    np.testing.assert_allclose(out[:, :-2], img[:, 2:], atol=GRID_TOL)


def test_half_voxel_linear_is_neighbour_mean_and_nearest_is_exact() -> None:
    img = _image()
    out = warp(img, _translation((0.5, 0.0, 0.0)))
    np.testing.assert_allclose(out[:-1], (img[:-1] + img[1:]) / 2, atol=GRID_TOL)
    labels = np.random.default_rng(1).integers(0, 3, SHAPE).astype(np.float32)
    moved = warp(labels, _translation((0.0, 0.7, 0.0)), mode="nearest")
    np.testing.assert_array_equal(moved[:, :-1], labels[:, 1:])  # 0.7 rounds to 1 voxel


def test_warp_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="matching the ddf's spatial shape"):
        warp(_image(), np.zeros((3, 4, 4, 4)))
    with pytest.raises(ValueError, match="mode must be"):
        warp(_image(), np.zeros((3, *SHAPE)), mode="cubic")


def test_warp_torch_is_differentiable() -> None:
    img_np = _image()
    img = torch.from_numpy(img_np)[None, None]
    # Half a voxel along axis 0: every sample lies inside a cell, where linear
    # interpolation's slope along axis 0 is img[i + 1] - img[i].
    ddf = torch.zeros(1, 3, *SHAPE)
    ddf[:, 0] = 0.5
    ddf.requires_grad_(True)
    warp_torch(img, ddf).sum().backward()
    assert ddf.grad is not None
    np.testing.assert_allclose(ddf.grad[0, 0, :-1].numpy(), img_np[1:] - img_np[:-1], atol=1e-4)


def test_warp_torch_float64_and_batch() -> None:
    img = torch.from_numpy(np.stack([_image(seed=1), _image(seed=2)]))[:, None].double()
    ddf = torch.from_numpy(np.stack([_translation((1, 0, 0)), _translation((0, 0, 0))]))
    out = warp_torch(img, ddf)
    assert out.dtype == torch.float64 and out.shape == img.shape
    torch.testing.assert_close(out[0, 0, :-1], img[0, 0, 1:], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[1], img[1], atol=1e-10, rtol=0)


def test_compose_translations_add() -> None:
    c = compose(_translation((1.0, 0.5, 0.0)), _translation((-0.25, 0.0, 2.0)))
    np.testing.assert_allclose(c, _translation((0.75, 0.5, 2.0)), atol=1e-5)


def test_compose_matches_sequential_warps() -> None:
    rng = np.random.default_rng(5)
    first = random_ddf(SHAPE, 2.0, 8, rng)
    second = random_ddf(SHAPE, 2.0, 8, rng)
    # A linear ramp: linear interpolation reproduces it exactly, so two warps
    # in a row equal one warp with the composed field up to float rounding.
    idx = np.indices(SHAPE, dtype=np.float32)
    img = idx[0] + 2 * idx[1] + 3 * idx[2]
    twice = warp(warp(img, first), second)
    inner = (slice(4, -4),) * 3  # samples stay inside: no border padding
    assert np.abs(twice - warp(img, compose(first, second)))[inner].max() < 1e-3
    # The other order (or a plain sum) is a different deformation: the test can tell.
    assert np.abs(twice - warp(img, compose(second, first)))[inner].max() > 0.1
    assert np.abs(twice - warp(img, first + second))[inner].max() > 0.1
    torch_c = compose_torch(torch.from_numpy(first)[None], torch.from_numpy(second)[None])
    np.testing.assert_allclose(torch_c[0].numpy(), compose(first, second), atol=1e-5)


def test_field_composed_with_inverse_is_near_identity() -> None:
    u = random_ddf(SHAPE, 2.0, 8, np.random.default_rng(7))
    v = invert(u)
    # Right inverse: the fixed-point equation v(x) = -u(x + v(x)) has converged.
    assert np.abs(compose(u, v)).max() < 1e-3
    # Left inverse, not enforced by the iteration: u(x) + v(x + u(x)) ≈ 0. For a
    # 2-voxel field on an 8-voxel control grid the interior residual stays
    # below 0.1 voxel (linear resampling of v); within 3 voxels of the border
    # the border padding of the resampling adds error.
    inner = (slice(None),) + (slice(3, -3),) * 3
    residual = np.abs(compose(v, u))[inner].max()
    assert residual < 0.1
    # ...and warping an image there and back reproduces it.
    img = _smooth_image()
    back = warp(warp(img, u), v)
    assert np.abs(back - img)[inner[1:]].max() < 0.02


def test_random_ddf_peak_magnitude_and_dtype() -> None:
    for md, cs in [(2.0, 8), (3.5, 5), (0.5, 4)]:
        ddf = random_ddf(SHAPE, md, cs, np.random.default_rng(11))
        assert ddf.shape == (3, *SHAPE) and ddf.dtype == np.float32
        peak = np.sqrt((ddf.astype(np.float64) ** 2).sum(axis=0)).max()
        assert peak == pytest.approx(md, rel=1e-5)


def test_random_ddf_zero_and_determinism() -> None:
    zero = random_ddf(SHAPE, 0.0, 8, np.random.default_rng(0))
    assert zero.dtype == np.float32 and not zero.any()
    a = random_ddf(SHAPE, 2.0, 8, np.random.default_rng(3))
    b = random_ddf(SHAPE, 2.0, 8, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    c = random_ddf(SHAPE, 2.0, 8, np.random.default_rng(4))
    assert np.abs(a - c).max() > 0.1


def test_random_ddf_is_smooth_and_does_not_fold() -> None:
    md, cs = 2.0, 8
    ddf = random_ddf(SHAPE, md, cs, np.random.default_rng(9))
    # Neighbouring voxels differ by at most 2 * md / cs (B-spline slope over a
    # control interval); independent noise of the same size would differ by ~md.
    step = max(float(np.abs(np.diff(ddf, axis=a)).max()) for a in (1, 2, 3))
    assert step < 2 * md / cs
    assert jacobian_determinant(ddf).min() > 0.3


def test_jacobian_of_zero_field_is_one() -> None:
    jd = jacobian_determinant(np.zeros((3, *SHAPE), dtype=np.float32))
    assert jd.shape == SHAPE and jd.dtype == np.float32
    np.testing.assert_array_equal(jd, 1.0)


def test_jacobian_of_uniform_scaling_and_shear() -> None:
    s = 1.1
    idx = np.indices(SHAPE, dtype=np.float32)
    scale = (s - 1.0) * idx  # x -> s * x
    np.testing.assert_allclose(jacobian_determinant(scale), s**3, rtol=1e-5)
    shear = np.zeros_like(idx)
    shear[0] = 0.3 * idx[1]  # x0 -> x0 + 0.3 * x1 keeps volume
    np.testing.assert_allclose(jacobian_determinant(shear), 1.0, rtol=1e-5)
    squash = np.zeros_like(idx)
    squash[2] = -0.5 * idx[2]  # halve axis 2
    np.testing.assert_allclose(jacobian_determinant(squash), 0.5, rtol=1e-5)


def test_integrating_zero_velocity_is_identity_and_small_velocity_is_itself() -> None:
    zero = np.zeros((3, *SHAPE), dtype=np.float32)
    np.testing.assert_array_equal(integrate_velocity(zero), zero)
    # For a constant velocity the flow is that translation, exactly.
    np.testing.assert_allclose(integrate_velocity(_translation((0.5, -1.0, 2.0))), _translation((0.5, -1.0, 2.0)),
                               atol=1e-4)


def test_flow_of_velocity_composed_with_flow_of_its_negative_is_near_identity() -> None:
    velocity = random_ddf(SHAPE, 3.0, 6, np.random.default_rng(2))
    forward, backward = integrate_velocity(velocity), integrate_velocity(-velocity)
    # Not a plain copy of the velocity: the flow bends along itself.
    assert np.abs(forward - velocity).max() > 0.05
    inner = (slice(None),) + (slice(3, -3),) * 3  # border padding of the resampling aside
    assert np.abs(compose(forward, backward))[inner].max() < 0.1
    assert np.abs(compose(backward, forward))[inner].max() < 0.1
    assert np.abs(compose(forward, forward))[inner].max() > 1.0  # the test can tell
    assert jacobian_determinant(forward).min() > 0


def test_random_diffeomorphic_field_does_not_fold_where_bspline_does() -> None:
    rng_seed = 0
    bspline = random_ddf(SHAPE, 5.0, 4, np.random.default_rng(rng_seed))
    flow = random_diffeomorphic_ddf(SHAPE, 5.0, 4, np.random.default_rng(rng_seed))
    assert jacobian_determinant(bspline).min() <= 0
    assert jacobian_determinant(flow).min() > 0
    assert 2.0 < np.sqrt((flow**2).sum(axis=0)).max() < 10.0


def test_warp_file_warps_images_and_labels_and_checks_the_grid(tmp_path) -> None:
    from spikereg.data import VolumeError, load_volume, save_ddf, save_volume, warp_file

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = _image()
    labels = np.rint(_image(seed=1) * 3)
    ddf = _translation((1.0, 0.0, 0.0))
    save_volume(tmp_path / "img.nii.gz", img, affine)
    save_volume(tmp_path / "labels.nii.gz", labels, affine, dtype=np.uint8)
    save_ddf(tmp_path / "ddf.nii.gz", ddf, affine)
    out = warp_file(tmp_path / "img.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "out.nii.gz")
    np.testing.assert_allclose(load_volume(out).data, warp(img, ddf), atol=1e-6)
    out = warp_file(tmp_path / "labels.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "out_labels.nii.gz", labels=True)
    warped = nib.load(out)
    assert warped.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(warped.dataobj)[:-1], labels[1:])
    np.testing.assert_allclose(warped.affine, affine)
    far = affine.copy()
    far[:3, 3] += 1000.0  # images on other grids are sampled through world space; not one a metre away
    save_volume(tmp_path / "far.nii.gz", img, far)
    with pytest.raises(VolumeError, match=r"far.nii.gz: does not overlap the ddf's grid .*ddf.nii.gz in world space"):
        warp_file(tmp_path / "far.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "x.nii.gz")
    assert not (tmp_path / "x.nii.gz").exists()


def test_warp_file_reads_deepreg_one_hot_labels_as_their_label_map(tmp_path) -> None:
    from spikereg.data import VolumeError, save_ddf, save_volume, warp_file

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    label_map = np.rint(_smooth_image() * 3)  # nested shells: labels 0..3
    one_hot = np.stack([label_map == k for k in (1, 2, 3)], axis=-1)  # (D, H, W, 3), channel k is label k + 1
    ddf = random_ddf(SHAPE, 3.0, 4, np.random.default_rng(5))
    save_volume(tmp_path / "map.nii.gz", label_map, affine, dtype=np.uint8)
    save_volume(tmp_path / "one_hot.nii.gz", one_hot, affine, dtype=np.uint8)
    save_ddf(tmp_path / "ddf.nii.gz", ddf, affine)
    from_map = warp_file(tmp_path / "map.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "from_map.nii.gz", labels=True)
    from_one_hot = warp_file(tmp_path / "one_hot.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "from_one_hot.nii.gz",
                             labels=True)
    warped = np.asarray(nib.load(from_one_hot).dataobj)
    assert warped.shape == SHAPE and set(np.unique(warped)) == {0, 1, 2, 3}
    assert (warped != label_map).sum() > 100  # the field moved the shells
    np.testing.assert_array_equal(warped, np.asarray(nib.load(from_map).dataobj))
    shifted = affine.copy()
    shifted[1, 3] = 1000.0
    save_volume(tmp_path / "elsewhere.nii.gz", one_hot, shifted, dtype=np.uint8)
    with pytest.raises(VolumeError, match=r"image .*elsewhere.nii.gz: does not overlap the ddf's grid .*ddf.nii.gz"):
        warp_file(tmp_path / "elsewhere.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "out.nii.gz", labels=True)
    with pytest.raises(VolumeError, match=r"image .*one_hot.nii.gz: not a 3-D volume \(shape \(20, 24, 16, 3\)\)"):
        warp_file(tmp_path / "one_hot.nii.gz", tmp_path / "ddf.nii.gz", tmp_path / "out.nii.gz")  # not as labels
    assert not (tmp_path / "out.nii.gz").exists()
