"""Synthetic pairs: the returned field registers moving onto fixed; files are reproducible."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikereg.data import (
    change_intensity,
    jacobian_determinant,
    load_ddf,
    load_mni,
    load_volume,
    make_pair,
    random_ddf,
    split_sizes,
    warp,
    write_dataset,
)

SHAPE = (24, 28, 20)


def _base() -> tuple[np.ndarray, np.ndarray]:
    """A smooth ellipsoid 'brain' with an inner 'white matter' core, and its labels."""
    grids = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in SHAPE), indexing="ij")
    r = np.sqrt(sum(g * g for g in grids))
    image = np.clip(1.5 - 1.5 * r, 0, 1).astype(np.float32) * (1 + 0.3 * np.sin(6 * grids[0]))
    image = (image / image.max()).astype(np.float32)
    labels = np.where(r < 0.4, 2.0, np.where(r < 0.8, 1.0, 0.0)).astype(np.float32)
    return image, labels


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_ground_truth_field_registers_moving_onto_fixed() -> None:
    base, labels = _base()
    pair = make_pair(base, np.random.default_rng(0), max_displacement=3.0, control_spacing=6, base_labels=labels)
    assert pair.fixed.shape == pair.moving.shape == SHAPE
    assert pair.ddf.shape == (3, *SHAPE)
    assert pair.fixed.dtype == pair.moving.dtype == pair.ddf.dtype == np.float32
    peak = np.sqrt((pair.ddf**2).sum(axis=0)).max()
    assert peak == pytest.approx(3.0, rel=1e-5)
    before = _mse(pair.moving, pair.fixed)
    after = _mse(warp(pair.moving, pair.ddf), pair.fixed)
    assert before > 1e-3  # the pair is really misaligned
    assert after < 1e-6 * before + 1e-12  # without noise: fixed is exactly warp(moving, ddf)
    # The anatomy was varied too: moving is not the base.
    assert _mse(pair.moving, base) > 1e-4
    # Labels follow the same fields with nearest-neighbour sampling.
    assert set(np.unique(pair.moving_labels).tolist()) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(warp(pair.moving_labels, pair.ddf, mode="nearest"), pair.fixed_labels)
    assert np.mean(pair.moving_labels != pair.fixed_labels) > 0.01


def test_noisy_pair_is_still_registered_by_ddf() -> None:
    base, _ = _base()
    noise = 0.02
    pair = make_pair(base, np.random.default_rng(1), max_displacement=3.0, control_spacing=6, noise_std=noise)
    assert pair.fixed_labels is None and pair.moving_labels is None
    assert pair.fixed.min() >= 0.0 and pair.fixed.max() <= 1.0
    before = _mse(pair.moving, pair.fixed)
    after = _mse(warp(pair.moving, pair.ddf), pair.fixed)
    # After registration only noise remains: about noise^2 from fixed plus a
    # smoothed share from moving (clipping at 0 lowers it).
    assert after < 2 * noise**2
    assert after < 0.25 * before


def test_base_displacement_zero_keeps_anatomy_and_rng_is_the_only_source() -> None:
    base, labels = _base()
    pair = make_pair(
        base, np.random.default_rng(2), max_displacement=2.0, control_spacing=6,
        base_labels=labels, base_displacement=0.0,
    )
    np.testing.assert_array_equal(pair.moving, base)
    np.testing.assert_array_equal(pair.moving_labels, labels)
    again = make_pair(
        base, np.random.default_rng(2), max_displacement=2.0, control_spacing=6,
        base_labels=labels, base_displacement=0.0,
    )
    np.testing.assert_array_equal(pair.fixed, again.fixed)
    np.testing.assert_array_equal(pair.ddf, again.ddf)


def test_make_pair_rejects_label_shape_mismatch() -> None:
    base, _ = _base()
    with pytest.raises(ValueError, match="base_labels shape"):
        make_pair(base, np.random.default_rng(0), max_displacement=1.0, control_spacing=6,
                  base_labels=np.zeros((2, 2, 2)))


def test_diffeomorphic_pair_folds_nowhere_and_is_registered_by_ddf() -> None:
    base, labels = _base()
    pair = make_pair(base, np.random.default_rng(4), max_displacement=4.0, control_spacing=4,
                     base_labels=labels, deformation="diffeomorphic")
    # Velocities this rough make a B-spline displacement of the same peak fold;
    # their flow does not.
    assert jacobian_determinant(random_ddf(SHAPE, 4.0, 4, np.random.default_rng(0))).min() <= 0
    assert jacobian_determinant(pair.ddf).min() > 0
    assert _mse(warp(pair.moving, pair.ddf), pair.fixed) < 1e-6 * _mse(pair.moving, pair.fixed)
    np.testing.assert_array_equal(warp(pair.moving_labels, pair.ddf, mode="nearest"), pair.fixed_labels)
    with pytest.raises(ValueError, match="--deformation affine: must be one of bspline, diffeomorphic"):
        make_pair(base, np.random.default_rng(0), max_displacement=1.0, control_spacing=6, deformation="affine")


def test_intensity_changes_differ_per_image_and_stay_in_range() -> None:
    base, _ = _base()
    plain = make_pair(base, np.random.default_rng(5), max_displacement=2.0, control_spacing=6)
    changed = make_pair(base, np.random.default_rng(5), max_displacement=2.0, control_spacing=6,
                        bias_field=0.3, gamma_std=0.2)
    np.testing.assert_array_equal(plain.ddf, changed.ddf)  # geometry is drawn first, unchanged
    for before, after in ((plain.fixed, changed.fixed), (plain.moving, changed.moving)):
        assert after.min() >= 0 and after.max() <= 1
        assert _mse(before, after) > 1e-4
    # Fixed and moving are different acquisitions: their gain maps differ, so
    # the ground truth no longer maps one onto the other exactly...
    assert _mse(warp(changed.moving, changed.ddf), changed.fixed) > 1e-5
    # ...but a bias field is smooth: the ratio to the unbiased image varies
    # slowly (neighbouring voxels in the brain differ little).
    inside = plain.fixed > 0.2
    ratio = np.where(inside, changed.fixed / np.maximum(plain.fixed, 1e-6), np.nan)
    bias_only = change_intensity(plain.fixed, np.random.default_rng(0), bias_field=0.3)
    gain = bias_only[inside] / plain.fixed[inside]
    assert gain.max() <= 1 + 1e-6 and gain.min() >= np.exp(-0.6) - 1e-6 and gain.min() < 0.95
    assert np.nanmax(np.abs(np.diff(ratio, axis=0))) < 0.5


SPLIT_DIRS = ["ddfs", "fixed_images", "fixed_labels", "moving_images", "moving_labels"]


def test_split_sizes() -> None:
    assert split_sizes(10, (0.7, 0.15, 0.15)) == {"train": 6, "val": 2, "test": 2}
    assert split_sizes(1, (0.7, 0.15, 0.15)) == {"train": 1, "val": 0, "test": 0}
    assert split_sizes(3, (0.0, 0.0, 1.0)) == {"train": 0, "val": 0, "test": 3}
    with pytest.raises(ValueError, match="summing to 1"):
        split_sizes(3, (0.5, 0.5, 0.5))


def test_write_dataset_layout_and_determinism(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    kwargs = dict(spacing=8.0, seed=123, max_displacement=2.0, control_spacing=4, noise_std=0.01)
    first = write_dataset(tmp_path / "a", 3, split=(1 / 3, 1 / 3, 1 / 3),
                          progress=lambda d, t: calls.append((d, t)), **kwargs)
    # Another split and fewer pairs: pair i does not depend on either.
    second = write_dataset(tmp_path / "b", 1, split=(0, 0, 1), **kwargs)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert {k: [p.name for p in v] for k, v in first.items()} == \
        {"train": ["pair_000"], "val": ["pair_001"], "test": ["pair_002"]}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["test", "train", "val"]  # no staging left
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (tmp_path / "a" / split).iterdir()) == SPLIT_DIRS
    (only,) = second["test"]
    assert only.name == "pair_000" and not (tmp_path / "b" / "train").exists()
    for kind in ("fixed", "moving", "ddf", "fixed_labels", "moving_labels"):
        assert getattr(first["train"][0], kind).read_bytes() == getattr(only, kind).read_bytes(), kind
    assert first["train"][0].ddf.read_bytes() != first["val"][0].ddf.read_bytes()
    # Writing again replaces a split rather than mixing old and new pairs.
    write_dataset(tmp_path / "a", 1, split=(1, 0, 0), **{**kwargs, "seed": 9})
    assert first["train"][0].ddf.read_bytes() != only.ddf.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a" / "train" / "ddfs").iterdir()) == ["pair_000.nii.gz"]


def test_written_pair_is_consistent(tmp_path: Path) -> None:
    (pair,) = write_dataset(tmp_path, 1, spacing=4.0, seed=7, max_displacement=2.0, control_spacing=8)["train"]
    template = load_mni("t1", 4.0)
    fixed = load_volume(pair.fixed)
    moving = load_volume(pair.moving)
    ddf, affine = load_ddf(pair.ddf)
    assert fixed.shape == moving.shape == template.shape == (49, 58, 47)
    assert ddf.shape == (3, 49, 58, 47)
    for aff in (fixed.affine, moving.affine, affine):
        np.testing.assert_allclose(aff, template.affine, atol=1e-5)
    assert np.sqrt((ddf**2).sum(axis=0)).max() == pytest.approx(2.0, rel=1e-5)
    # The stored field registers the stored images (float32 files, no noise).
    assert _mse(warp(moving.data, ddf), fixed.data) < 1e-10
    assert _mse(moving.data, fixed.data) > 1e-3
    fixed_labels = load_volume(pair.fixed_labels).data
    moving_labels = load_volume(pair.moving_labels).data
    assert set(np.unique(fixed_labels).tolist()) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(warp(moving_labels, ddf, mode="nearest"), fixed_labels)
