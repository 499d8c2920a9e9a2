"""Metrics on cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from spikereg.metrics import (
    dice,
    end_point_error,
    hausdorff95,
    label_values,
    log_jacobian_std,
    ncc,
    nonpositive_jacobian_percent,
)

SHAPE = (20, 22, 18)


def _cube(lo: int = 5, hi: int = 15, value: int = 1) -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.float32)
    labels[lo:hi, lo:hi, lo:hi] = value
    return labels


def test_dice_identical_disjoint_and_shifted_cube() -> None:
    cube = _cube()
    assert dice(cube, cube) == {1: 1.0}
    assert dice(_cube(0, 4), _cube(10, 14)) == {1: 0.0}
    # A 10-voxel cube shifted by 2 along one axis overlaps 8 of its 10 slices.
    shifted = np.roll(cube, 2, axis=0)
    assert dice(shifted, cube)[1] == pytest.approx(0.8)
    # Per label, on a two-label map: label 2 shifted, label 1 untouched.
    two = cube.copy()
    two[0:3, 0:3, 0:3] = 2
    moved = two.copy()
    moved[0:3, 0:3, 0:3] = 0
    moved[0:3, 0:3, 1:4] = 2
    scores = dice(moved, two)
    assert scores[1] == 1.0 and scores[2] == pytest.approx(2 * 18 / 54)
    assert label_values(two, moved) == [1, 2]
    assert dice(cube, cube, labels=[1, 7]) == {1: 1.0, 7: 1.0}  # absent from both: nothing missed


def test_hd95_of_shifted_cube_is_the_shift_in_mm() -> None:
    cube = _cube()
    assert hausdorff95(cube, cube) == {1: 0.0}
    shifted = np.roll(cube, 2, axis=0)
    assert hausdorff95(shifted, cube)[1] == pytest.approx(2.0)
    assert hausdorff95(shifted, cube, spacing=(3.0, 1.0, 1.0))[1] == pytest.approx(6.0)
    assert hausdorff95(shifted, cube, spacing=(1.0, 3.0, 1.0))[1] == pytest.approx(2.0)
    assert np.isnan(hausdorff95(np.zeros(SHAPE), cube)[1])


def test_end_point_error_in_voxels_and_mm_with_mask() -> None:
    truth = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype(np.float32)
    assert end_point_error(truth, truth) == 0.0
    off = truth.copy()
    off[1] += 3.0
    off[2] += 4.0
    assert end_point_error(off, truth) == pytest.approx(5.0)
    assert end_point_error(off, truth, spacing=(1.0, 2.0, 0.5)) == pytest.approx(np.hypot(6.0, 2.0))
    mask = np.zeros(SHAPE, dtype=bool)
    mask[0, 0, 0] = True
    half = truth.copy()
    half[:, 0, 0, 0] += 1.0
    assert end_point_error(half, truth, mask) == pytest.approx(np.sqrt(3.0))
    with pytest.raises(ValueError, match="mask is empty"):
        end_point_error(half, truth, np.zeros(SHAPE, dtype=bool))
    with pytest.raises(ValueError, match="differs from the reference"):
        end_point_error(truth[:, 1:], truth)


def test_jacobian_metrics_of_smooth_and_folding_fields() -> None:
    zero = np.zeros((3, *SHAPE), dtype=np.float32)
    assert log_jacobian_std(zero) == 0.0 and nonpositive_jacobian_percent(zero) == 0.0
    translation = np.ones_like(zero) * 2.5
    assert log_jacobian_std(translation) == pytest.approx(0.0, abs=1e-6)
    # x -> 1.2 x: det J = 1.2**3 everywhere: no spread either.
    scale = 0.2 * np.indices(SHAPE, dtype=np.float32)
    assert log_jacobian_std(scale) == pytest.approx(0.0, abs=1e-5)
    # Half the volume squashed by 0.5 along one axis: log det is 0 or log 0.5,
    # so its std is |log 0.5| / 2 away from the edge between the halves.
    squash = np.zeros_like(zero)
    squash[0] = -0.5 * np.indices(SHAPE, dtype=np.float32)[0]
    squash[0, :, :, SHAPE[2] // 2:] = 0.0
    mask = np.ones(SHAPE, dtype=bool)
    mask[:, :, SHAPE[2] // 2 - 1: SHAPE[2] // 2 + 1] = False  # the edge mixes both halves
    assert log_jacobian_std(squash, mask) == pytest.approx(np.log(2) / 2, rel=1e-4)
    # A field that mirrors axis 0 inside a slab (x0 -> 20 - x0 for x0 in 8..11)
    # folds: with central differences det J = -1 on slices 9 and 10, 2 of 20.
    fold = np.zeros_like(zero)
    fold[0, 8:12] = -2 * (np.arange(8, 12, dtype=np.float32) - 10)[:, None, None]
    assert nonpositive_jacobian_percent(fold) == pytest.approx(10.0)
    inside = np.zeros(SHAPE, dtype=bool)
    inside[9:11] = True
    assert nonpositive_jacobian_percent(fold, inside) == 100.0
    assert log_jacobian_std(fold) > 1.0  # clipped log of det <= 0 is log 1e-9: a huge spread


def test_ncc_known_values() -> None:
    a = np.random.default_rng(1).random(SHAPE)
    assert ncc(a, a) == pytest.approx(1.0)
    assert ncc(a, 3 * a + 2) == pytest.approx(1.0)
    assert ncc(a, -a) == pytest.approx(-1.0)
    assert ncc(a, np.ones(SHAPE)) == 0.0
    b = np.random.default_rng(2).random(SHAPE)
    assert abs(ncc(a, b)) < 0.05
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:10] = True
    mixed = np.where(mask, a, b)
    assert ncc(a, mixed, mask) == pytest.approx(1.0) and ncc(a, mixed) < 0.8
