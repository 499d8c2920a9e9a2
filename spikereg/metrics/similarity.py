"""Image similarity."""
from __future__ import annotations

import numpy as np


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Global normalized cross-correlation of two volumes over ``mask`` (1 = equal up to gain and offset).

    0 when either image is constant there. Sums accumulate in float64, but no
    float64 copy of a volume is made (1 mm brains are large).
    """
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"ncc: images differ in shape, {a.shape} vs {b.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        a, b = a[mask], b[mask]
    a = a - np.float32(a.mean(dtype=np.float64))
    b = b - np.float32(b.mean(dtype=np.float64))
    # float32 products, float64 accumulation (np.sum converts buffer by buffer, not the whole array)
    numerator = np.sum(a * b, dtype=np.float64)
    denominator = np.sqrt(np.sum(a * a, dtype=np.float64) * np.sum(b * b, dtype=np.float64))
    return float(numerator / denominator) if denominator > 0 else 0.0
