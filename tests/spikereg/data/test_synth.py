"""Synthetic pairs: the returned field registers moving onto fixed; files are reproducible."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikereg.data import (
    load_ddf,
    load_mni,
    load_volume,
    make_pair,
    warp,
    write_pairs,
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


NAMES = ["ddf.nii.gz", "fixed.nii.gz", "fixed_labels.nii.gz", "moving.nii.gz", "moving_labels.nii.gz"]


def test_write_pairs_files_and_determinism(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    kwargs = dict(spacing=4.0, seed=123, max_displacement=2.0, control_spacing=8, noise_std=0.01)
    first = write_pairs(tmp_path / "a", 2, progress=lambda d, t: calls.append((d, t)), **kwargs)
    # A second run (with fewer pairs: pair i must not depend on n_pairs)
    # writes byte-identical files.
    second = write_pairs(tmp_path / "b", 1, **kwargs)
    assert calls == [(1, 2), (2, 2)]
    assert [p.name for p in first] == ["pair_000", "pair_001"]
    assert [p.name for p in second] == ["pair_000"]
    for folder in first + second:
        assert sorted(p.name for p in folder.iterdir()) == NAMES  # no temp files left
    for name in NAMES:
        assert (first[0] / name).read_bytes() == (second[0] / name).read_bytes(), name
    # Different pairs differ.
    assert (first[0] / "ddf.nii.gz").read_bytes() != (first[1] / "ddf.nii.gz").read_bytes()


def test_written_pair_is_consistent(tmp_path: Path) -> None:
    (folder,) = write_pairs(tmp_path, 1, spacing=4.0, seed=7, max_displacement=2.0, control_spacing=8)
    template = load_mni("t1", 4.0)
    fixed = load_volume(folder / "fixed.nii.gz")
    moving = load_volume(folder / "moving.nii.gz")
    ddf, affine = load_ddf(folder / "ddf.nii.gz")
    assert fixed.shape == moving.shape == template.shape == (49, 58, 47)
    assert ddf.shape == (3, 49, 58, 47)
    for aff in (fixed.affine, moving.affine, affine):
        np.testing.assert_allclose(aff, template.affine, atol=1e-5)
    assert np.sqrt((ddf**2).sum(axis=0)).max() == pytest.approx(2.0, rel=1e-5)
    # The stored field registers the stored images (float32 files, no noise).
    assert _mse(warp(moving.data, ddf), fixed.data) < 1e-10
    assert _mse(moving.data, fixed.data) > 1e-3
    fixed_labels = load_volume(folder / "fixed_labels.nii.gz").data
    moving_labels = load_volume(folder / "moving_labels.nii.gz").data
    assert set(np.unique(fixed_labels).tolist()) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(warp(moving_labels, ddf, mode="nearest"), fixed_labels)
