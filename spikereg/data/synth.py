"""Synthetic registration pairs with a known ground-truth displacement field.

A pair is built from one base image (the MNI template): the base is first
warped by a random field v to get a "different subject" (moving), and the
moving image is warped by a second random field u to get fixed. So
``warp(moving, u) == fixed`` (before intensity changes and noise), and u is
the field a perfect registration of moving onto fixed would find. Fields are
B-spline displacements or integrated velocity fields (diffeomorphic); each
image then gets its own contrast, bias field and noise, as two acquisitions
would. :func:`write_dataset` writes train/val/test splits in DeepReg's paired
layout (:mod:`spikereg.data.loaders`).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikereg.options import check_bound, check_bounds

from .deform import random_ddf, random_diffeomorphic_ddf, smooth_random_field, warp
from .io import save_ddf, save_volume
from .loaders import NIFTI_SUFFIX, PairFiles
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


DEFORMATIONS = ("bspline", "diffeomorphic")


def random_affine_ddf(shape, rng: np.random.Generator, *, rotation: float = 0.0, scale: float = 0.0,
                      shift: float = 0.0) -> np.ndarray:
    """Displacement (3, *shape), voxels, of a random affine about the volume's centre.

    Rotation about each axis uniform in +-``rotation`` degrees, scale 1 + uniform(+-``scale``) per
    axis, translation uniform in +-``shift`` voxels: the residual an affine pre-alignment leaves
    between two real subjects (isotropic voxels assumed, as the template's are).
    """
    angles = np.deg2rad(rng.uniform(-rotation, rotation, 3))
    factors = 1.0 + rng.uniform(-scale, scale, 3)
    offset = rng.uniform(-shift, shift, 3)
    matrix = np.diag(factors)
    for axis, angle in enumerate(angles):
        a, b = [k for k in range(3) if k != axis]
        turn = np.eye(3)
        turn[a, a] = turn[b, b] = np.cos(angle)
        turn[a, b], turn[b, a] = -np.sin(angle), np.sin(angle)
        matrix = turn @ matrix
    centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1) - centre[:, None]
    ddf = (matrix - np.eye(3)) @ grid + offset[:, None]
    return ddf.reshape(3, *shape).astype(np.float32)


def synthesize_image(tissue: np.ndarray, means: np.ndarray, rng: np.random.Generator, *,
                     noise: float = 0.03, blur: float = 1.0) -> np.ndarray:
    """An image drawn from tissue probabilities (K, D, H, W), SynthMorph-style, in [0, 1].

    Each class k gets intensity ``means[k]`` plus its own voxel noise (std up to ``noise``); the
    mixture by partial volume is blurred with a random Gaussian (sigma up to ``blur`` voxels), as a
    scanner's point-spread function would. The network then learns registration rather than one
    template's look (Hoffmann et al., SynthMorph, 2022).
    """
    from scipy import ndimage

    image = np.zeros(tissue.shape[1:], dtype=np.float32)
    for k in range(tissue.shape[0]):
        spread = np.float32(rng.uniform(0.0, noise))
        image += tissue[k] * (np.float32(means[k]) + spread * rng.standard_normal(image.shape, dtype=np.float32))
    sigma = float(rng.uniform(0.0, blur))
    if sigma > 0:
        image = ndimage.gaussian_filter(image, sigma)
    return np.clip(image, 0.0, 1.0)


def tissue_classes_from_template(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Probabilities (4, D, H, W) of background, CSF, grey and white matter from the template's maps.

    CSF is the brain's share that is neither grey nor white matter (the template is skull-stripped:
    its brain is where T1 > 0).
    """
    brain = (t1 > 0.02).astype(np.float32)
    gm, wm = np.minimum(gm, brain), np.minimum(wm, brain)
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    background = np.clip(1.0 - brain, 0.0, 1.0)
    return np.stack([background, csf, gm, wm]).astype(np.float32)


def _deformation(kind: str, shape, magnitude: float, control_spacing: int, rng: np.random.Generator) -> np.ndarray:
    """One random field of ``kind``: a B-spline displacement, or an integrated velocity field."""
    if kind == "bspline":
        return random_ddf(shape, magnitude, control_spacing, rng)
    return random_diffeomorphic_ddf(shape, magnitude, control_spacing, rng)


def change_intensity(
    image: np.ndarray, rng: np.random.Generator, *, bias_field: float = 0.0, gamma_std: float = 0.0
) -> np.ndarray:
    """A different acquisition of ``image`` (values in [0, 1]): contrast change, then bias field.

    Contrast: ``image ** g`` with log g ~ N(0, ``gamma_std``). Bias: a smooth
    multiplicative field exp(b(x) - max b) with |b| up to ``bias_field``, on a
    control grid of about a third of the volume (MR coil inhomogeneity is that
    smooth), so gains lie in [exp(-2 bias_field), 1] and values stay in [0, 1].
    Nothing is drawn from ``rng`` for a change that is 0.
    """
    if gamma_std > 0:
        image = np.power(image, np.float32(np.exp(rng.normal(0.0, gamma_std))), dtype=np.float32)
    if bias_field > 0:
        log_gain = smooth_random_field(image.shape, bias_field, max(1, max(image.shape) // 3), rng, channels=1)[0]
        log_gain -= log_gain.max()
        image = image * np.exp(log_gain)
    return image


def check_options(*, deformation: str = "bspline", noise_std: float = 0.0, bias_field: float = 0.0,
                  gamma_std: float = 0.0) -> None:
    """Raise a ValueError naming the option unless these pair options are valid."""
    if deformation not in DEFORMATIONS:
        raise ValueError(f"--deformation {deformation}: must be one of {', '.join(DEFORMATIONS)}")

    check_bounds({"--noise-std": noise_std, "--bias-field": bias_field, "--gamma-std": gamma_std})


def make_pair(
    base: np.ndarray,
    rng: np.random.Generator,
    *,
    max_displacement: float,
    control_spacing: int,
    base_labels: np.ndarray | None = None,
    base_displacement: float | None = None,
    noise_std: float = 0.0,
    deformation: str = "bspline",
    bias_field: float = 0.0,
    gamma_std: float = 0.0,
    coarse_displacement: float = 0.0,
    coarse_control_spacing: int = 32,
    affine: tuple[float, float, float] = (0.0, 0.0, 0.0),
    tissue: np.ndarray | None = None,
    contrast_jitter: float = 0.05,
) -> SyntheticPair:
    """One synthetic pair from ``base`` (D, H, W); random draws come from ``rng`` only.

    moving = warp(base, v) with |v| up to ``base_displacement`` (default
    ``max_displacement``) varies the anatomy; fixed = warp(moving, u) with
    |u| up to ``max_displacement``; the returned ddf is u. ``deformation``
    "bspline" draws small-displacement B-spline fields (:func:`random_ddf`);
    "diffeomorphic" integrates random stationary velocity fields of that peak
    (:func:`random_diffeomorphic_ddf`). Labels follow the same fields with
    nearest-neighbour sampling. Each image then gets its own intensity change
    (:func:`change_intensity`: ``gamma_std``, ``bias_field``) and Gaussian
    noise of ``noise_std``, clipped to [0, 1]. With the defaults the result
    (and the draws from ``rng``) are what they were before those options existed.

    Inter-subject options: ``coarse_displacement`` adds to both v and u a second, smooth field of
    that peak on a control grid every ``coarse_control_spacing`` voxels (differences between people
    are large and smooth, 5-10 voxels at 2 mm); ``affine`` (rotation degrees, scale, shift voxels)
    adds a random affine residual to u (:func:`random_affine_ddf`); ``tissue`` (K, D, H, W class
    probabilities) replaces ``base`` by images synthesized from it (:func:`synthesize_image`):
    random class intensities drawn once per pair, each image's jittered by ``contrast_jitter``, so
    both images share one random contrast, as two scans of one protocol do.
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
    check_options(deformation=deformation, noise_std=noise_std, bias_field=bias_field, gamma_std=gamma_std)
    if base_displacement is None:
        base_displacement = max_displacement
    shape = base.shape
    v = _deformation(deformation, shape, base_displacement, control_spacing, rng)
    u = _deformation(deformation, shape, max_displacement, control_spacing, rng)
    if coarse_displacement > 0:
        v = v + _deformation(deformation, shape, coarse_displacement, coarse_control_spacing, rng)
        u = u + _deformation(deformation, shape, coarse_displacement, coarse_control_spacing, rng)
    if any(affine):
        rotation, scale, shift = affine
        u = u + random_affine_ddf(shape, rng, rotation=rotation, scale=scale, shift=shift)
    if tissue is not None:
        # Background (class 0) stays 0: the images are skull-stripped brains.
        means = np.concatenate([[0.0], rng.uniform(0.05, 1.0, tissue.shape[0] - 1)])

        def one_scan() -> np.ndarray:
            jittered = means + np.concatenate([[0.0], rng.normal(0.0, contrast_jitter, means.size - 1)])
            return synthesize_image(tissue, np.clip(jittered, 0.0, 1.0), rng)

        fixed_base, base = one_scan(), one_scan()
        moving = warp(base, v)
        fixed = warp(warp(fixed_base, v), u)
    else:
        moving = warp(base, v)
        fixed = warp(moving, u)
    moving_labels = fixed_labels = None
    if base_labels is not None:
        moving_labels = warp(base_labels, v, mode="nearest")
        fixed_labels = warp(moving_labels, u, mode="nearest")
    if bias_field > 0 or gamma_std > 0:
        fixed, moving = (change_intensity(img, rng, bias_field=bias_field, gamma_std=gamma_std)
                         for img in (fixed, moving))
    if noise_std > 0:
        for img in (fixed, moving):
            img += rng.normal(0.0, noise_std, size=shape).astype(np.float32)
            np.clip(img, 0.0, 1.0, out=img)
    return SyntheticPair(fixed=fixed, moving=moving, ddf=u, fixed_labels=fixed_labels, moving_labels=moving_labels)


SPLITS = ("train", "val", "test")


def split_sizes(n_pairs: int, fractions: tuple[float, float, float]) -> dict[str, int]:
    """How many of ``n_pairs`` go to train, val and test for ``fractions`` (summing to 1).

    val and test get the rounded share, train the rest, so every pair lands somewhere.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or not all(np.isfinite(f) and f >= 0 for f in fractions) \
            or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"--split {','.join(f'{f:g}' for f in fractions)}: need three fractions "
                         "train,val,test, each >= 0, summing to 1 (e.g. 0.7,0.15,0.15)")
    val, test = (int(round(n_pairs * f)) for f in fractions[1:])
    test = min(test, n_pairs - val)
    return {"train": n_pairs - val - test, "val": val, "test": test}


def write_dataset(
    out_dir: Path,
    n_pairs: int,
    *,
    spacing: float,
    seed: int,
    max_displacement: float,
    control_spacing: int,
    noise_std: float = 0.0,
    deformation: str = "bspline",
    bias_field: float = 0.0,
    gamma_std: float = 0.0,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[PairFiles]]:
    """Write ``n_pairs`` MNI-based pairs as a DeepReg paired dataset; returns the files per split.

    ``out_dir/{train,val,test}/`` each hold ``fixed_images/``,
    ``moving_images/``, ``fixed_labels/``, ``moving_labels/`` (0 background,
    1 grey, 2 white matter, uint8) and ``ddfs/`` (the ground-truth field, see
    :func:`save_ddf`, voxel units), one ``pair_NNN.nii.gz`` per pair in each,
    on the template's grid at ``spacing`` mm: what
    :func:`spikereg.data.loaders.load_dataset` reads. Pairs are numbered
    over the whole dataset, train first, then val, then test
    (:func:`split_sizes`). Pair i is byte-identical for a given seed and
    options whatever ``n_pairs`` and ``split`` are. A split folder that
    already exists is replaced, and only once every pair is written, so an
    interrupted run leaves the old dataset (or nothing). ``progress(done,
    total)`` is called after each pair.
    """
    check_bound("--pairs", n_pairs)  # 0 pairs would be an empty dataset that evaluate and train then refuse
    sizes = split_sizes(n_pairs, split)
    check_options(deformation=deformation, noise_std=noise_std, bias_field=bias_field, gamma_std=gamma_std)
    out_dir = Path(out_dir)
    t1 = load_mni("t1", spacing)
    labels = tissue_labels(spacing).data
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".synth.{os.getpid()}.partial"
    # One independent stream per pair: pair i is the same whatever n_pairs is.
    streams = iter(np.random.SeedSequence(seed).spawn(n_pairs))
    written: dict[str, list[PairFiles]] = {}
    try:
        index = 0
        for name in SPLITS:
            written[name] = []
            for _ in range(sizes[name]):
                pair = make_pair(
                    t1.data,
                    np.random.default_rng(next(streams)),
                    max_displacement=max_displacement,
                    control_spacing=control_spacing,
                    base_labels=labels,
                    noise_std=noise_std,
                    deformation=deformation,
                    bias_field=bias_field,
                    gamma_std=gamma_std,
                )
                files = PairFiles.paired(out_dir / name, f"pair_{index:03d}", NIFTI_SUFFIX)
                staged = PairFiles.paired(staging / name, files.name, NIFTI_SUFFIX)
                save_volume(staged.fixed, pair.fixed, t1.affine)
                save_volume(staged.moving, pair.moving, t1.affine)
                save_volume(staged.fixed_labels, pair.fixed_labels, t1.affine, dtype=_LABEL_DTYPE)
                save_volume(staged.moving_labels, pair.moving_labels, t1.affine, dtype=_LABEL_DTYPE)
                save_ddf(staged.ddf, pair.ddf, t1.affine)
                written[name].append(files)
                index += 1
                if progress is not None:
                    progress(index, n_pairs)
        for name in SPLITS:
            if not sizes[name]:
                continue
            target = out_dir / name
            old = out_dir / f".{name}.{os.getpid()}.old"
            if target.exists():
                os.replace(target, old)
            os.replace(staging / name, target)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
