"""Cutting volumes into overlapping cubic patches and stitching control grids back.

The network maps a ``P^3`` patch to a ``g^3`` grid of control points, one per
``r^3`` block of voxels (``r = P / g``). Patches start every ``stride`` voxels
(a multiple of ``r``), so every patch's control points land on one global
control grid of the padded volume; where patches overlap their predictions
are averaged with weights that favour each patch's centre (its border control
points see zero padding and are least reliable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of one volume lie."""

    shape: tuple[int, int, int]  # original volume
    padded: tuple[int, int, int]  # volume padded so the patches tile it
    patch: int
    stride: int
    origins: np.ndarray  # (P, 3) voxel origin of each patch in the padded volume

    def __len__(self) -> int:
        return len(self.origins)


def patch_grid(shape: tuple[int, ...], patch: int, stride: int) -> PatchGrid:
    """Patches of side ``patch`` every ``stride`` voxels covering ``shape`` (padded as needed)."""
    padded, starts = [], []
    for size in shape:
        count = max(1, -(-(size - patch) // stride) + 1)
        padded.append((count - 1) * stride + patch)
        starts.append(np.arange(count) * stride)
    mesh = np.stack(np.meshgrid(*starts, indexing="ij"), axis=-1).reshape(-1, 3)
    return PatchGrid(tuple(int(s) for s in shape), tuple(padded), patch, stride, mesh)


def pad_to(volume: np.ndarray, padded: tuple[int, int, int]) -> np.ndarray:
    """Zero-pad a ``(D, H, W)`` volume at the far end of each axis."""
    pads = [(0, p - s) for s, p in zip(volume.shape, padded)]
    return np.pad(volume, pads) if any(after for _, after in pads) else volume


def extract(volume: np.ndarray, grid: PatchGrid, indices: slice | None = None) -> torch.Tensor:
    """Patches ``(P, 1, patch, patch, patch)`` of an already padded volume (float32)."""
    p = grid.patch
    origins = grid.origins if indices is None else grid.origins[indices]
    out = np.empty((len(origins), 1, p, p, p), dtype=np.float32)
    for i, (z, y, x) in enumerate(origins):
        out[i, 0] = volume[z:z + p, y:y + p, x:x + p]
    return torch.from_numpy(out)


def blend_weights(grid_size: int) -> np.ndarray:
    """``(g, g, g)`` separable weights: 1 at the centre, falling towards the border."""
    centre = (grid_size - 1) / 2.0
    ramp = 1.0 - np.abs(np.arange(grid_size) - centre) / (centre + 1.0)
    return np.einsum("i,j,k->ijk", ramp, ramp, ramp).astype(np.float32)


def stitch(controls: np.ndarray, grid: PatchGrid, reduction: int) -> np.ndarray:
    """Weighted average of per-patch control grids ``(P, 3, g, g, g)`` -> ``(3, *padded/r)``."""
    g = controls.shape[-1]
    coarse_shape = tuple(s // reduction for s in grid.padded)
    total = np.zeros((3,) + coarse_shape, dtype=np.float32)
    weight = np.zeros(coarse_shape, dtype=np.float32)
    w = blend_weights(g)
    for control, origin in zip(controls, grid.origins):
        z, y, x = (int(o) // reduction for o in origin)
        total[:, z:z + g, y:y + g, x:x + g] += control * w
        weight[z:z + g, y:y + g, x:x + g] += w
    return total / np.maximum(weight, 1e-12)


def upsample(coarse: np.ndarray, reduction: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Control grid ``(3, d, h, w)`` -> dense field ``(3, *shape)`` (trilinear, cell centres).

    Control point ``j`` describes voxels ``[r j, r (j+1))``, i.e. sits at
    ``r (j + 1/2) - 1/2``: exactly ``align_corners=False`` interpolation.
    """
    dense = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(coarse))[None],
        scale_factor=reduction, mode="trilinear", align_corners=False,
    )[0].numpy()
    return dense[:, : shape[0], : shape[1], : shape[2]]
