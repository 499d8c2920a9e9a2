"""Synthetic registration pairs with a known ground-truth displacement field.

A pair is built from one base image (the MNI template): the base is first
warped by a random field v to get a "different subject" (moving), and the
moving image is warped by a second random field u to get fixed. So
``warp(moving, u) == fixed`` (before noise), and u is the field a perfect
registration of moving onto fixed would find.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .deform import random_ddf, warp
from .io import save_ddf, save_volume
from .template import load_mni, tissue_labels

# Label maps hold 0, 1, 2: uint8 on disk is exact and 4x smaller than float32.
_LABEL_DTYPE = np.uint8


@dataclass
class SyntheticPair:
    """fixed, moving (D, H, W) float32 in [0, 1]; ddf (3, D, H, W) voxels with warp(moving, ddf) ≈ fixed."""

    fixed: np.ndarray
    moving: np.ndarray
    ddf: np.ndarray
    fixed_labels: np.ndarray | None
    moving_labels: np.ndarray | None


def make_pair(
    base: np.ndarray,
    rng: np.random.Generator,
    *,
    max_displacement: float,
    control_spacing: int,
    base_labels: np.ndarray | None = None,
    base_displacement: float | None = None,
    noise_std: float = 0.0,
) -> SyntheticPair:
    """One synthetic pair from ``base`` (D, H, W); random draws come from ``rng`` only.

    moving = warp(base, v) with |v| up to ``base_displacement`` (default
    ``max_displacement``) varies the anatomy; fixed = warp(moving, u) with
    |u| up to ``max_displacement``; the returned ddf is u. Labels follow the
    same fields with nearest-neighbour sampling. Gaussian noise of
    ``noise_std`` is then added to both images, clipped to [0, 1].
    """
    base = np.asarray(base, dtype=np.float32)
    if base.ndim != 3:
        raise ValueError(f"make_pair: base must be 3-D, got shape {base.shape}")
    if base_labels is not None:
        base_labels = np.asarray(base_labels, dtype=np.float32)
        if base_labels.shape != base.shape:
            raise ValueError(
                f"make_pair: base_labels shape {base_labels.shape} differs from base shape {base.shape}"
            )
    if noise_std < 0:
        raise ValueError(f"make_pair: noise_std must be >= 0, got {noise_std}")
    if base_displacement is None:
        base_displacement = max_displacement
    shape = base.shape
    v = random_ddf(shape, base_displacement, control_spacing, rng)
    u = random_ddf(shape, max_displacement, control_spacing, rng)
    moving = warp(base, v)
    fixed = warp(moving, u)
    moving_labels = fixed_labels = None
    if base_labels is not None:
        moving_labels = warp(base_labels, v, mode="nearest")
        fixed_labels = warp(moving_labels, u, mode="nearest")
    if noise_std > 0:
        for img in (fixed, moving):
            img += rng.normal(0.0, noise_std, size=shape).astype(np.float32)
            np.clip(img, 0.0, 1.0, out=img)
    return SyntheticPair(fixed=fixed, moving=moving, ddf=u, fixed_labels=fixed_labels, moving_labels=moving_labels)


def write_pairs(
    out_dir: Path,
    n_pairs: int,
    *,
    spacing: float,
    seed: int,
    max_displacement: float,
    control_spacing: int,
    noise_std: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write ``n_pairs`` MNI-based pairs to ``out_dir/pair_000`` ... and return those folders.

    Each folder holds fixed.nii.gz, moving.nii.gz, ddf.nii.gz (see
    :func:`save_ddf`, voxel units), fixed_labels.nii.gz and
    moving_labels.nii.gz (0 background, 1 grey, 2 white matter), all on the
    template's grid at ``spacing`` mm. Output is byte-identical for a given
    seed, and pair i does not depend on ``n_pairs``. ``progress(done, total)``
    is called after each pair.
    """
    if n_pairs < 0:
        raise ValueError(f"write_pairs: n_pairs must be >= 0, got {n_pairs}")
    out_dir = Path(out_dir)
    t1 = load_mni("t1", spacing)
    labels = tissue_labels(spacing).data
    # One independent stream per pair: pair i is the same whatever n_pairs is.
    streams = np.random.SeedSequence(seed).spawn(n_pairs)
    folders: list[Path] = []
    for i, stream in enumerate(streams):
        pair = make_pair(
            t1.data,
            np.random.default_rng(stream),
            max_displacement=max_displacement,
            control_spacing=control_spacing,
            base_labels=labels,
            noise_std=noise_std,
        )
        folder = out_dir / f"pair_{i:03d}"
        save_volume(folder / "fixed.nii.gz", pair.fixed, t1.affine)
        save_volume(folder / "moving.nii.gz", pair.moving, t1.affine)
        save_ddf(folder / "ddf.nii.gz", pair.ddf, t1.affine)
        save_volume(folder / "fixed_labels.nii.gz", pair.fixed_labels, t1.affine, dtype=_LABEL_DTYPE)
        save_volume(folder / "moving_labels.nii.gz", pair.moving_labels, t1.affine, dtype=_LABEL_DTYPE)
        folders.append(folder)
        if progress is not None:
            progress(i + 1, n_pairs)
    return folders
