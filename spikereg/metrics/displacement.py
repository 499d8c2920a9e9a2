"""Quality of a displacement field: error against the truth, and its regularity."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spikereg.data.deform import jacobian_determinant

# Learn2Reg (and DeepReg) clip the Jacobian determinant into [1e-9, 1e9]
# before the log, so folded voxels count as very compressed rather than NaN.
JACOBIAN_CLIP = (1e-9, 1e9)


def _field(ddf: np.ndarray, name: str) -> np.ndarray:
    ddf = np.asarray(ddf, dtype=np.float32)
    if ddf.ndim != 4 or ddf.shape[0] != 3:
        raise ValueError(f"{name}: expected a field of shape (3, D, H, W), got {ddf.shape}")
    return ddf


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from the field's spatial shape {shape}")
    if not mask.any():
        raise ValueError("mask is empty: no voxel to measure")
    return mask


def end_point_error(
    ddf: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> float:
    """Mean |ddf(x) - reference(x)| over ``mask``: in voxels, or in mm when ``spacing`` (mm per axis) is given."""
    ddf, reference = _field(ddf, "ddf"), _field(reference, "reference ddf")
    if ddf.shape != reference.shape:
        raise ValueError(f"ddf shape {ddf.shape} differs from the reference's {reference.shape}")
    error = ddf - reference
    if spacing is not None:
        error *= np.asarray(spacing, dtype=np.float32).reshape(3, 1, 1, 1)
    norm = np.sqrt((error * error).sum(axis=0))
    return float(norm[_mask(mask, norm.shape)].mean(dtype=np.float64))


def log_jacobian_std(ddf: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SDlogJ: standard deviation of log(det J) over ``mask``, det J clipped to [1e-9, 1e9].

    0 for any field with a constant Jacobian (a translation, no field at all);
    smooth registrations are usually below 0.1.
    """
    det = jacobian_determinant(_field(ddf, "ddf"))
    log_det = np.log(np.clip(det, *JACOBIAN_CLIP))
    return float(log_det[_mask(mask, det.shape)].std(dtype=np.float64))


def nonpositive_jacobian_percent(ddf: np.ndarray, mask: np.ndarray | None = None) -> float:
    """% of the voxels in ``mask`` where det J <= 0, i.e. where the field folds."""
    det = jacobian_determinant(_field(ddf, "ddf"))
    return float(100.0 * np.mean(det[_mask(mask, det.shape)] <= 0))
