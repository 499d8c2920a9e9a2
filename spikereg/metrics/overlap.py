"""Per-label overlap of two label maps: Dice and HD95 (MONAI)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch


def label_values(*label_maps: np.ndarray) -> list[int]:
    """The foreground labels (non-zero integers) present in any of ``label_maps``, sorted."""
    values: set[int] = set()
    for labels in label_maps:
        values.update(int(v) for v in np.unique(np.rint(labels)) if v != 0)
    return sorted(values)


def _one_hot(predicted: np.ndarray, reference: np.ndarray, labels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, L, D, H, W) float tensors, one channel per label, as MONAI's metrics take them."""
    predicted, reference = np.asarray(predicted), np.asarray(reference)
    if predicted.shape != reference.shape or predicted.ndim != 3:
        raise ValueError(f"label maps must be 3-D and of one shape, got {predicted.shape} and {reference.shape}")
    predicted, reference = np.rint(predicted), np.rint(reference)

    def hot(labels_map: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([labels_map == label for label in labels]))[None].float()

    return hot(predicted), hot(reference)


def _labels(predicted: np.ndarray, reference: np.ndarray, labels: Sequence[int] | None) -> list[int]:
    return list(labels) if labels is not None else label_values(predicted, reference)


def dice(predicted: np.ndarray, reference: np.ndarray, labels: Sequence[int] | None = None) -> dict[int, float]:
    """Dice 2|P∩R| / (|P| + |R|) per label (default: every non-zero label in either map).

    A label absent from both maps scores 1 (nothing to find, nothing found);
    absent from one only, 0.
    """
    from monai.metrics import compute_dice

    labels = _labels(predicted, reference, labels)
    if not labels:
        return {}
    p, r = _one_hot(predicted, reference, labels)
    # ignore_empty=False: an empty reference scores 1 for an empty prediction, 0 otherwise.
    scores = compute_dice(p, r, include_background=True, ignore_empty=False)[0]
    return {label: float(score) for label, score in zip(labels, scores)}


def hausdorff95(
    predicted: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[int] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> dict[int, float]:
    """95th-percentile symmetric Hausdorff distance between label surfaces, in mm, per label.

    ``spacing`` is the voxel size along each array axis (mm). NaN where a label
    is missing from either map (no surface to measure from).
    """
    from monai.metrics import compute_hausdorff_distance

    labels = _labels(predicted, reference, labels)
    if not labels:
        return {}
    p, r = _one_hot(predicted, reference, labels)
    with warnings.catch_warnings():
        # MONAI warns (and returns nan/inf) for an empty class; we turn that into NaN below.
        warnings.filterwarnings("ignore", message=".*is all 0.*", category=UserWarning)
        # MONAI 1.5+ warns about its own internal call of get_mask_edges.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        distances = compute_hausdorff_distance(p, r, include_background=True, percentile=95,
                                               spacing=[float(s) for s in spacing])[0]
    result = {}
    for index, label in enumerate(labels):
        present = bool(p[0, index].any()) and bool(r[0, index].any())
        result[label] = float(distances[index]) if present else float("nan")
    return result
