"""The working grid: same box at the model's spacing; fields carried onto the fixed grid mean the same motion."""
import numpy as np
import pytest

from spikereg.data import Volume, warp
from spikereg.registration.working_grid import field_onto_grid, needs_working_grid, resample_to_grid, working_grid


def oblique_affine(spacing, angle_deg=20.0, origin=(-40.0, 12.0, 7.0)):
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def world_of(affine, index):
    return affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]


def test_needs_working_grid_per_axis():
    assert not needs_working_grid((2.0, 2.0, 2.0), 2.0)
    assert not needs_working_grid((2.4, 1.7, 2.0), 2.0)
    assert needs_working_grid((1.0, 1.0, 1.0), 2.0)
    assert needs_working_grid((2.0, 2.0, 3.0), 2.0)  # one axis off is enough
    assert not needs_working_grid((1.0, 1.0, 1.0), None)  # a model without a spacing: no resampling


def test_working_grid_covers_the_same_box_with_the_same_axes():
    affine = oblique_affine((1.0, 1.0, 1.5))
    shape, new = working_grid((60, 50, 40), affine, 2.0)
    assert shape == (30, 25, 30)
    assert np.allclose(np.linalg.norm(new[:3, :3], axis=0), 2.0)
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    assert np.allclose(new[:3, :3] / 2.0, directions)
    # the first voxel's outer corner is the same world point
    assert np.allclose(world_of(new, (-0.5, -0.5, -0.5)), world_of(affine, (-0.5, -0.5, -0.5)))


def test_resample_to_grid_keeps_world_positions():
    affine = oblique_affine((1.0, 1.2, 1.0))
    shape = (40, 36, 30)
    # an image linear in world x: linear interpolation reproduces it exactly inside
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1)
    x = (affine[:3, :3] @ ijk + affine[:3, 3:4])[0].reshape(shape)
    target_shape, target = working_grid(shape, affine, 2.0)
    out = resample_to_grid(Volume(data=x.astype(np.float32), affine=affine), target_shape, target, order=1)
    tijk = np.stack(np.meshgrid(*[np.arange(n) for n in target_shape], indexing="ij")).reshape(3, -1)
    expected = (target[:3, :3] @ tijk + target[:3, 3:4])[0].reshape(target_shape)
    inner = (slice(2, -2),) * 3
    assert np.allclose(out.data[inner], expected[inner], atol=1e-3)
    assert np.array_equal(out.affine, target)


def test_a_constant_working_field_is_the_same_world_shift_on_the_fixed_grid():
    fixed_affine = oblique_affine((1.0, 1.0, 1.0))
    fixed_shape = (40, 40, 40)
    shape, affine = working_grid(fixed_shape, fixed_affine, 2.0)
    ddf = np.zeros((3,) + shape, dtype=np.float32)
    ddf[0], ddf[2] = 1.5, -0.5  # working voxels
    out = field_onto_grid(ddf, affine, fixed_shape, fixed_affine)
    assert out.shape == (3,) + fixed_shape
    assert np.allclose(out[0], 3.0, atol=1e-5) and np.allclose(out[1], 0.0, atol=1e-5)
    assert np.allclose(out[2], -1.0, atol=1e-5)


def test_a_field_carried_onto_a_finer_grid_warps_as_it_does_on_the_coarse_one():
    rng = np.random.default_rng(0)
    fixed_affine = oblique_affine((1.0, 1.0, 1.0), angle_deg=0.0)
    fixed_shape = (48, 48, 48)
    shape, affine = working_grid(fixed_shape, fixed_affine, 2.0)
    # a smooth image and a smooth, varying working field
    smooth = np.asarray(np.meshgrid(*[np.linspace(0, np.pi, n) for n in fixed_shape], indexing="ij"))
    image = (np.sin(smooth[0]) * np.cos(smooth[1] / 2) + 0.3 * smooth[2]).astype(np.float32)
    coarse = np.asarray(np.meshgrid(*[np.linspace(0, np.pi, n) for n in shape], indexing="ij"))
    ddf = np.stack([np.sin(coarse[1]), np.cos(coarse[2]) * 0.8, np.sin(coarse[0] + coarse[1]) * 0.6])
    ddf = (ddf * rng.uniform(0.8, 1.2)).astype(np.float32)
    fine = warp(image, field_onto_grid(ddf, affine, fixed_shape, fixed_affine))
    image_w = resample_to_grid(Volume(data=image, affine=fixed_affine), shape, affine).data
    coarse_warped = warp(image_w, ddf)
    back = resample_to_grid(Volume(data=fine, affine=fixed_affine), shape, affine).data
    inner = (slice(3, -3),) * 3
    error = np.abs(back - coarse_warped)[inner].mean()
    # and not trivially: left in working voxels (not converted), the field moves half as far
    wrong = resample_to_grid(Volume(data=warp(image, field_onto_grid(ddf, affine, fixed_shape, fixed_affine) / 2),
                                    affine=fixed_affine), shape, affine).data
    assert error < 0.2 * np.abs(wrong - coarse_warped)[inner].mean()


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (1.0, 1.0, 3.0)])
def test_field_onto_grid_is_exact_for_fields_linear_in_space(spacing):
    fixed_affine = oblique_affine(spacing, angle_deg=35.0)
    fixed_shape = (30, 28, 12) if spacing[2] == 3.0 else (20, 18, 18)
    shape, affine = working_grid(fixed_shape, fixed_affine, 1.5)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).astype(np.float32)
    gradient = np.array([[0.02, 0.0, 0.01], [0.0, -0.03, 0.0], [0.01, 0.0, 0.02]], dtype=np.float32)
    ddf = np.einsum("ab,bijk->aijk", gradient, ijk) + np.array([0.5, -1.0, 0.25], dtype=np.float32)[:, None, None, None]
    out = field_onto_grid(ddf, affine, fixed_shape, fixed_affine)
    # every fixed voxel: displaced world point = world(working q) + W_l u(q) at q = W^-1 F p
    p = np.stack(np.meshgrid(*[np.arange(n) for n in fixed_shape], indexing="ij")).reshape(3, -1)
    q = np.linalg.inv(affine) @ fixed_affine @ np.vstack([p, np.ones(p.shape[1])])
    inside = np.all((q[:3] >= 0) & (q[:3] <= np.array(shape)[:, None] - 1), axis=0)
    u = gradient @ q[:3] + np.array([0.5, -1.0, 0.25])[:, None]
    expected = np.linalg.inv(fixed_affine[:3, :3]) @ affine[:3, :3] @ u
    assert inside.sum() > 0.5 * p.shape[1]
    assert np.allclose(out.reshape(3, -1)[:, inside], expected[:, inside], atol=1e-4)
