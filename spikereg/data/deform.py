"""Dense displacement fields: random smooth fields, warping, composition, inversion.

Convention (DeepReg / VoxelMorph / MONAI): a dense displacement field ``ddf``
has shape (3, D, H, W); channel k is the displacement along array axis k, in
voxels. Warping an image with it means

    warped(x) = image(x + ddf(x)),

i.e. the field is a backward map: it says where each output voxel samples
the input. Batched torch tensors are (N, 3, D, H, W).
"""
from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from spikereg.data.io import DDF_FORMATS, load_ddf, load_itk_displacement, save_volume
from spikereg.data.loaders import load_source
from spikereg.data.world import check_overlap, same_grid, sample_world, zoom_sample

_NUMPY_MODES = {"linear": "bilinear", "nearest": "nearest"}


def _check_ddf(ddf: np.ndarray, name: str = "ddf") -> np.ndarray:
    """``ddf`` as a float32 (3, D, H, W) array, or a ValueError."""
    ddf = np.asarray(ddf, dtype=np.float32)
    if ddf.ndim != 4 or ddf.shape[0] != 3:
        raise ValueError(f"{name}: expected shape (3, D, H, W), got {ddf.shape}")
    return ddf


def smooth_random_field(
    shape: tuple[int, int, int],
    peak: float,
    control_spacing: int,
    rng: np.random.Generator,
    *,
    channels: int = 3,
) -> np.ndarray:
    """Smooth random field (channels, *shape), float32, whose largest per-voxel vector norm is ``peak``.

    Gaussian random coefficients on a control grid every ``control_spacing``
    voxels (plus a border) are interpolated with cubic B-splines (a classic
    free-form deformation), then the field is scaled so that the maximum over
    voxels of the norm across channels equals ``peak`` exactly.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"random field: shape must be 3 positive sizes, got {shape}")
    if not (math.isfinite(peak) and peak >= 0):
        raise ValueError(f"random field: peak (max displacement) must be >= 0, got {peak}")
    if int(control_spacing) != control_spacing or control_spacing < 1:
        raise ValueError(f"random field: control_spacing must be a positive integer, got {control_spacing}")
    control_spacing = int(control_spacing)
    if peak == 0:
        return np.zeros((channels, *shape), dtype=np.float32)
    # Output voxel i sits at control coordinate 1 + i / control_spacing. A cubic
    # B-spline at t uses coefficients floor(t)-1 .. floor(t)+2, so
    # (n-1)//control_spacing + 4 control points cover the volume with no
    # boundary handling involved.
    coarse = tuple((n - 1) // control_spacing + 4 for n in shape)
    coeffs = rng.standard_normal((channels, *coarse), dtype=np.float32)
    field = np.empty((channels, *shape), dtype=np.float32)
    for k in range(channels):
        # prefilter=False: the random values are B-spline coefficients (not
        # samples), which gives a smoother field without overshoot.
        zoom_sample(coeffs[k], 1.0 / control_spacing, 1.0, shape, output=field[k], order=3, prefilter=False,
                    mode="nearest")
    largest = float(np.sqrt((field * field).sum(axis=0)).max())
    if largest == 0.0:
        return np.zeros_like(field)
    field *= np.float32(peak / largest)
    return field


def random_ddf(
    shape: tuple[int, int, int],
    max_displacement: float,
    control_spacing: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Smooth random (small-displacement) field (3, *shape), float32, peak |ddf(x)| = ``max_displacement``.

    A cubic B-spline free-form deformation: see :func:`smooth_random_field`.
    """
    return smooth_random_field(shape, max_displacement, control_spacing, rng, channels=3)


def integrate_velocity(velocity: np.ndarray, steps: int = 7) -> np.ndarray:
    """Displacement field of the flow of a stationary velocity field (3, D, H, W), voxels.

    Scaling and squaring (Arsigny et al. 2006) with MONAI's ``DVF2DDF``: the
    velocity is divided by 2**steps, then composed with itself ``steps``
    times. The result is diffeomorphic when each scaled step is small, and
    integrating ``-velocity`` gives its inverse.
    """
    velocity = _check_ddf(velocity, "integrate_velocity: velocity")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"integrate_velocity: steps must be an integer >= 0, got {steps}")
    if not velocity.any():
        return velocity.copy()
    from monai.networks.blocks import DVF2DDF

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Using PyTorch native grid_sample.*", category=UserWarning
        )
        # Border padding, as every other warp here: a zero pad would pull the
        # field towards 0 at the volume's edge.
        integrate = DVF2DDF(num_steps=int(steps), mode="bilinear", padding_mode="border")
        with torch.no_grad():
            ddf = integrate(torch.from_numpy(np.ascontiguousarray(velocity))[None])
    return ddf[0].numpy().astype(np.float32, copy=False)


def random_diffeomorphic_ddf(
    shape: tuple[int, int, int],
    max_velocity: float,
    control_spacing: int,
    rng: np.random.Generator,
    steps: int = 7,
) -> np.ndarray:
    """Random diffeomorphic field (3, *shape): a smooth random velocity field, integrated.

    The velocity is :func:`random_ddf` with peak ``max_velocity`` voxels; the
    displacement after :func:`integrate_velocity` has about that peak (more
    where the flow follows the velocity, less where it turns).
    """
    return integrate_velocity(random_ddf(shape, max_velocity, control_spacing, rng), steps)


@functools.lru_cache(maxsize=16)
def _warp_module(mode: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """One MONAI Warp per (mode, device, dtype).

    Warp caches its reference grid on the device/dtype of the first field it
    sees, so sharing one module across devices would mix devices.
    """
    from monai.networks.blocks import Warp  # imported here: monai takes seconds to import

    with warnings.catch_warnings():
        # Without MONAI's compiled extension Warp says it falls back to torch's
        # grid_sample; that fallback is what we want, so the note is noise.
        warnings.filterwarnings(
            "ignore", message=".*Using PyTorch native grid_sample.*", category=UserWarning
        )
        return Warp(mode=mode, padding_mode="border")


def warp_torch(image: torch.Tensor, ddf: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Differentiable warp: image (N, C, D, H, W) sampled at x + ddf(x), ddf (N, 3, D, H, W) in voxels.

    ``mode`` is "bilinear" (trilinear in 3-D) or "nearest"; outside the volume
    the border value is repeated. Uses monai.networks.blocks.Warp.
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"warp_torch: mode must be 'bilinear' or 'nearest', got {mode!r}")
    if image.ndim != 5 or ddf.ndim != 5 or ddf.shape[1] != 3:
        raise ValueError(
            f"warp_torch: expected image (N, C, D, H, W) and ddf (N, 3, D, H, W), "
            f"got {tuple(image.shape)} and {tuple(ddf.shape)}"
        )
    if image.shape[0] != ddf.shape[0] or image.shape[2:] != ddf.shape[2:]:
        raise ValueError(
            f"warp_torch: image {tuple(image.shape)} and ddf {tuple(ddf.shape)} differ in batch or spatial size"
        )
    ddf = ddf.to(image.dtype)
    return _warp_module(mode, str(image.device), image.dtype)(image, ddf)


def warp(image: np.ndarray, ddf: np.ndarray, *, mode: str = "linear") -> np.ndarray:
    """Warp a (D, H, W) or (C, D, H, W) image with ``ddf`` (3, D, H, W); float32, same shape.

    ``mode`` is "linear" (intensities) or "nearest" (label maps). Outside the
    volume the border value is repeated.
    """
    if mode not in _NUMPY_MODES:
        raise ValueError(f"warp: mode must be one of {sorted(_NUMPY_MODES)}, got {mode!r}")
    image = np.asarray(image, dtype=np.float32)
    ddf = _check_ddf(ddf)
    if image.ndim not in (3, 4) or image.shape[-3:] != ddf.shape[1:]:
        raise ValueError(
            f"warp: image shape {image.shape} must be (D, H, W) or (C, D, H, W) "
            f"matching the ddf's spatial shape {ddf.shape[1:]}"
        )
    if not ddf.any():
        # Exact identity. Through grid_sample a zero field is only identity to
        # ~1e-6 * size: MONAI maps voxel indices to [-1, 1] and back in float32.
        return image.copy()
    img_t = torch.from_numpy(np.ascontiguousarray(image))
    img_t = img_t[None, None] if image.ndim == 3 else img_t[None]
    ddf_t = torch.from_numpy(np.ascontiguousarray(ddf))[None]
    with torch.no_grad():
        out = warp_torch(img_t, ddf_t, mode=_NUMPY_MODES[mode])
    return out.reshape(image.shape).numpy()


def compose(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Field c with warp(warp(img, first), second) ≈ warp(img, c).

    c(x) = second(x) + first(x + second(x)): ``first`` is resampled at the
    points ``second`` maps to (linear interpolation, border padding).
    """
    first = _check_ddf(first, "compose: first")
    second = _check_ddf(second, "compose: second")
    if first.shape != second.shape:
        raise ValueError(f"compose: fields differ in shape, {first.shape} vs {second.shape}")
    out = warp(first, second)
    out += second
    return out


def compose_torch(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Batched, differentiable :func:`compose` for (N, 3, D, H, W) tensors."""
    return second + warp_torch(first, second, mode="bilinear")


def invert(ddf: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Approximate inverse field v of ``ddf`` u, so that compose(u, v) ≈ 0.

    Fixed-point iteration v <- -u(x + v(x)); converges for smooth fields whose
    Jacobian stays well away from zero (small, non-folding deformations).
    """
    u = _check_ddf(ddf)
    if iterations < 1:
        raise ValueError(f"invert: iterations must be >= 1, got {iterations}")
    v = -u  # first iterate, from v = 0
    for _ in range(iterations - 1):
        v = warp(u, v)
        np.negative(v, out=v)
    return v


def jacobian_determinant(ddf: np.ndarray) -> np.ndarray:
    """det of the Jacobian of x -> x + ddf(x) per voxel (D, H, W), central differences.

    Values <= 0 mark folding. One-sided differences are used at the borders (np.gradient).
    """
    ddf = _check_ddf(ddf)
    if min(ddf.shape[1:]) < 2:
        raise ValueError(f"jacobian_determinant: every axis needs >= 2 voxels, got {ddf.shape[1:]}")
    # g[k][j] = d ddf_k / d x_j; J = I + g.
    g = [np.gradient(ddf[k]) for k in range(3)]
    a, b, c = g[0][0] + 1, g[0][1], g[0][2]
    d, e, f = g[1][0], g[1][1] + 1, g[1][2]
    h, i, j = g[2][0], g[2][1], g[2][2] + 1
    det = a * (e * j - f * i) - b * (d * j - f * h) + c * (d * i - e * h)
    return det.astype(np.float32, copy=False)


def warp_file(image: str | Path, ddf: str | Path, out: str | Path, *, labels: bool = False,
              ddf_format: str = "voxels") -> Path:
    """Warp the NIfTI ``image`` with the field file ``ddf`` (:func:`~spikereg.data.io.save_ddf`) into ``out``.

    ``labels``: nearest-neighbour sampling and an integer (int16) file, for
    label maps; DeepReg's 4-D multi-label arrays (D, H, W, L) of binary masks
    are read as the label map they encode (label k+1 for channel k,
    :func:`~spikereg.data.loaders.label_map_from_channels`), so the output is
    a 3-D label map. The image may lie on any grid that overlaps the field's
    in world space: out(p) = image(V^-1 F (p + ddf(p))), with F the field's and
    V the image's affine (on the field's grid itself, :func:`warp`); the output
    is on the field's grid. Written atomically. ``ddf_format`` "itk": ``ddf``
    is an ITK displacement field (mm, LPS; :func:`~spikereg.data.io.load_itk_displacement`),
    e.g. ``spikereg run --ddf-format itk``'s or one ANTs wrote.
    """
    volume = load_source(Path(image), "image", labels=labels)
    if ddf_format not in DDF_FORMATS:
        raise ValueError(f"--ddf-format {ddf_format!r}: choose 'voxels' (spikereg's ddf.nii.gz) or 'itk'")
    field, affine = load_ddf(ddf) if ddf_format == "voxels" else load_itk_displacement(ddf, what="ddf")
    if same_grid(volume, (field.shape[1:], affine)):
        warped = warp(volume.data, field, mode="nearest" if labels else "linear")
    else:
        check_overlap(volume, (field.shape[1:], affine), "image", "ddf's grid", reference_source=ddf)
        warped = sample_world(volume, field.shape[1:], affine, order=0 if labels else 1, ddf=field)
    return save_volume(out, warped, affine, dtype=np.int16 if labels else np.float32)
