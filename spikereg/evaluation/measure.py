"""The metrics of one registered pair, as rows for metrics.csv."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spikereg.data import normalize_intensity, warp
from spikereg.metrics import (
    dice,
    end_point_error,
    hausdorff95,
    label_values,
    log_jacobian_std,
    ncc,
    nonpositive_jacobian_percent,
)

# The intensity threshold of brain_mask on a [0, 1]-normalised image: it
# separates head from air in T1 images (the MNI T1's background is < 0.05).
FOREGROUND_THRESHOLD = 0.1


@dataclass
class PairMetrics:
    """Pair-level numbers (``values``) and per-label ones (``labels``: label -> metric -> value).

    NaN marks a metric that does not apply (no ground truth, a label missing
    from one map).
    """

    values: dict[str, float]
    labels: dict[int, dict[str, float]] = field(default_factory=dict)


def brain_mask(fixed: np.ndarray, fixed_labels: np.ndarray | None = None) -> np.ndarray:
    """Where field metrics are measured: the fixed image's labelled voxels, else its foreground."""
    if fixed_labels is not None and np.any(fixed_labels > 0):
        return np.rint(fixed_labels) > 0
    mask = normalize_intensity(fixed) > FOREGROUND_THRESHOLD
    return mask if mask.any() else np.ones(fixed.shape, dtype=bool)


def measure_pair(
    fixed: np.ndarray,
    moving: np.ndarray,
    ddf: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    fixed_labels: np.ndarray | None = None,
    moving_labels: np.ndarray | None = None,
    true_ddf: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    labels: Sequence[int] | None = None,
) -> PairMetrics:
    """Everything we report for ``ddf`` registering ``moving`` onto ``fixed`` (all on one grid).

    Pair values: ``ncc_before`` / ``ncc`` (moving / warped vs fixed, over the
    mask), ``epe_before_vox`` (identity's error), ``epe_vox``, ``epe_mm``
    (against ``true_ddf``), ``dice_before`` / ``dice`` and ``hd95_mm`` (means
    over labels), ``sdlogj`` and ``jacobian_nonpositive_pct`` (over the mask).
    Per label: ``dice_before``, ``dice``, ``hd95_mm``. ``mask`` defaults to
    :func:`brain_mask`; ``labels`` to every non-zero label of the two maps.
    """
    nan = float("nan")
    if mask is None:
        mask = brain_mask(fixed, fixed_labels)
    warped = warp(moving, ddf)
    values = {
        "ncc_before": ncc(fixed, moving, mask),
        "ncc": ncc(fixed, warped, mask),
        "epe_before_vox": nan, "epe_vox": nan, "epe_mm": nan,
        "dice_before": nan, "dice": nan, "hd95_mm": nan,
        "sdlogj": log_jacobian_std(ddf, mask),
        "jacobian_nonpositive_pct": nonpositive_jacobian_percent(ddf, mask),
    }
    if true_ddf is not None:
        values["epe_before_vox"] = end_point_error(np.zeros_like(true_ddf), true_ddf, mask)
        values["epe_vox"] = end_point_error(ddf, true_ddf, mask)
        values["epe_mm"] = end_point_error(ddf, true_ddf, mask, spacing=spacing)
    per_label: dict[int, dict[str, float]] = {}
    if fixed_labels is not None and moving_labels is not None:
        warped_labels = warp(moving_labels, ddf, mode="nearest")
        labels = list(labels) if labels is not None else label_values(fixed_labels, moving_labels)
        before = dice(moving_labels, fixed_labels, labels)
        after = dice(warped_labels, fixed_labels, labels)
        distance = hausdorff95(warped_labels, fixed_labels, labels, spacing)
        per_label = {label: {"dice_before": before[label], "dice": after[label], "hd95_mm": distance[label]}
                     for label in labels}
        if per_label:
            for name in ("dice_before", "dice", "hd95_mm"):
                values[name] = float(np.nanmean([row[name] for row in per_label.values()])) \
                    if not all(np.isnan(row[name]) for row in per_label.values()) else nan
    return PairMetrics(values, per_label)
