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
    """Patches ``(P, 1, patch, patch, patch)`` of an already padded volume (float32).

    ``indices`` picks some patches (a chunk), so a caller need not hold all of
    a large volume's patches at once.
    """
    p = grid.patch
    origins = grid.origins if indices is None else grid.origins[indices]
    windows = np.lib.stride_tricks.sliding_window_view(volume, (p, p, p))  # a view: no copy
    z, y, x = origins.T
    out = np.asarray(windows[z, y, x], dtype=np.float32)[:, None]  # one gather, one copy
    return torch.from_numpy(np.ascontiguousarray(out))


def blend_weights(grid_size: int) -> np.ndarray:
    """``(g, g, g)`` separable weights: 1 at the centre, falling towards the border."""
    centre = (grid_size - 1) / 2.0
    ramp = 1.0 - np.abs(np.arange(grid_size) - centre) / (centre + 1.0)
    return np.einsum("i,j,k->ijk", ramp, ramp, ramp).astype(np.float32)


class Stitcher:
    """Accumulates per-patch control grids chunk by chunk into one global control grid.

    Overlapping predictions are averaged with :func:`blend_weights`; only the
    coarse grid (``padded / reduction`` per axis) is held, never the patches.
    """

    def __init__(self, grid: PatchGrid, reduction: int, grid_size: int) -> None:
        coarse_shape = tuple(s // reduction for s in grid.padded)
        self.reduction = reduction
        self.total = np.zeros((3,) + coarse_shape, dtype=np.float32)
        self.weight = np.zeros(coarse_shape, dtype=np.float32)
        self.blend = blend_weights(grid_size)

    def add(self, controls: np.ndarray, origins: np.ndarray) -> None:
        """``controls`` ``(n, 3, g, g, g)`` of the patches at ``origins`` ``(n, 3)``."""
        g, w = self.blend.shape[0], self.blend
        for control, origin in zip(controls, origins):
            z, y, x = (int(o) // self.reduction for o in origin)
            self.total[:, z:z + g, y:y + g, x:x + g] += control * w
            self.weight[z:z + g, y:y + g, x:x + g] += w

    def result(self) -> np.ndarray:
        """The weighted average ``(3, *padded / reduction)``."""
        return self.total / np.maximum(self.weight, 1e-12)


def stitch(controls: np.ndarray, grid: PatchGrid, reduction: int) -> np.ndarray:
    """Weighted average of per-patch control grids ``(P, 3, g, g, g)`` -> ``(3, *padded/r)``."""
    stitcher = Stitcher(grid, reduction, controls.shape[-1])
    stitcher.add(controls, grid.origins)
    return stitcher.result()


def upsample(coarse: np.ndarray, reduction: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Control grid ``(3, d, h, w)`` -> dense field ``(3, *shape)`` (trilinear, cell centres).

    Control point ``j`` describes voxels ``[r j, r (j+1))``, i.e. sits at
    ``r (j + 1/2) - 1/2``: exactly ``align_corners=False`` interpolation.
    """
    dense = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(coarse))[None],
        scale_factor=reduction, mode="trilinear", align_corners=False,
    )[0].numpy()
    return np.ascontiguousarray(dense[:, : shape[0], : shape[1], : shape[2]])


def downsample(volume: np.ndarray) -> np.ndarray:
    """Halve a ``(D, H, W)`` volume: mean of each 2^3 block (a partial block at an odd edge
    averages the voxels it has), float32. Voxel ``j`` of the result covers ``2j, 2j+1``."""
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    return F.avg_pool3d(tensor, 2, ceil_mode=True)[0, 0].numpy()


def upsample_field(ddf: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A field of a :func:`downsample`-d volume on the finer grid ``shape``: twice the size
    and twice the value (a coarse voxel is two fine ones)."""
    dense = upsample(ddf, 2, shape)
    dense *= 2.0
    return dense


def smooth_field(ddf: np.ndarray, sigma: float) -> np.ndarray:
    """Each component of a ``(3, D, H, W)`` field blurred by a Gaussian of ``sigma`` voxels (float32).

    The host's regulariser between refinement iterations, as demons smooths
    its update field: patches predict each control point from 16 voxels of
    context, and neighbouring patches' errors are independent, so the
    residual carries patch-sized noise that a smooth deformation does not.
    """
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(component, sigma, mode="nearest") for component in ddf]).astype(np.float32)
