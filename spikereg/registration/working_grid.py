"""The model's working grid: register at the spacing the network was trained on, answer on the fixed grid.

A network reads displacements in its own voxels within a fixed patch, so a
model trained at 2 mm sees a 1 mm scan's anatomy and motion at the wrong
scale. Images finer or coarser than the model's spacing are therefore
registered on a grid of the fixed image's extent and orientation at the
model's spacing, and the field is brought back onto the fixed grid, where
the full-resolution moving image is warped with it. Isotropic images finer
than the model's spacing by a power of two are instead registered on their own
grid, at the model's spacing first (:func:`registration_grid` plans which).

With F and W the fixed and working grids' voxel-to-world affines (linear
parts F_l, W_l), a working field u_w moves working voxel q to q + u_w(q),
that is world point x = W q to x + W_l u_w(q); on the fixed grid, voxel
p = F^-1 x moves by

    u_f(p) = F_l^-1 W_l u_w(W^-1 F p),

which :func:`field_onto_grid` evaluates (u_w trilinear between working
voxels, repeated at the border as :func:`spikereg.data.warp` does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spikereg.data import Volume
from spikereg.data.world import sample_world

# Off by more than this on any axis, the images are registered on the working grid.
SPACING_TOLERANCE = 0.25
ROWS_PER_CHUNK = 16  # fixed-grid planes per interpolation: bounds the coordinate arrays' memory


def native_levels(spacing: tuple[float, ...], model_spacing: float | None) -> int:
    """Pyramid levels from the model's spacing down to isotropic voxels of ``spacing``, halving each level.

    0 unless the voxels are isotropic and finer than the model's by a power of two (5 %): 2 for 1 mm voxels
    and a 2 mm model (:func:`registration_grid`'s ``auto`` plan: the model's spacing first, then the scan's own
    voxels).
    """
    if not model_spacing or max(spacing) > 1.05 * min(spacing):
        return 0
    ratio = float(model_spacing) / float(np.mean(spacing))
    halvings = int(round(np.log2(ratio))) if ratio > 1 else 0
    return halvings + 1 if halvings >= 1 and abs(ratio - 2**halvings) < 0.05 * ratio else 0


def needs_working_grid(spacing: tuple[float, ...], model_spacing: float | None,
                       tolerance: float = SPACING_TOLERANCE) -> bool:
    """Whether voxels of ``spacing`` mm differ from the model's by more than ``tolerance`` on some axis."""
    if not model_spacing:
        return False
    return any(abs(s - model_spacing) > tolerance * model_spacing for s in spacing)


GRIDS = ("auto", "working", "fixed")


@dataclass(frozen=True)
class GridPlan:
    """The grid the network registers on (``shape``, ``affine``), and the pyramid levels it runs there.

    ``native`` counts the levels finer than the model's spacing that the
    ``auto`` grid adds on the fixed grid (0 elsewhere): a 1 mm scan and a 2 mm
    model register at 2 mm first, then on the scan's own voxels.
    """
    shape: tuple[int, int, int]
    affine: np.ndarray
    on_working_grid: bool
    pyramid: int
    native: int = 0

    @property
    def kind(self) -> str:
        return "working" if self.on_working_grid else ("native" if self.native else "fixed")


def registration_grid(fixed: Volume, meta: dict, grid: str = "auto", pyramid: int = 1) -> GridPlan:
    """Where the network registers ``fixed``'s pair, and with how many pyramid levels.

    ``pyramid`` counts levels at and above the model's training spacing
    (``spacing_mm``); ``grid``:

    - ``working``: the model's working grid (:mod:`spikereg.registration.working_grid`) where the fixed
      image's voxels differ from the model's by more than 25 % on some axis, else the fixed grid;
    - ``fixed``: the fixed grid as it is, ``pyramid`` levels on it;
    - ``auto`` (default): as ``working``, except for isotropic voxels finer than the model's by a power of
      two (:func:`~spikereg.registration.working_grid.native_levels`): there the fixed grid, with the levels
      down from the model's spacing added below ``pyramid``'s, so the last passes see the scan's own voxels.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid {grid!r}: choose one of {', '.join(GRIDS)}")
    spacing = meta.get("spacing_mm")
    finer = native_levels(fixed.spacing, spacing) - 1 if grid == "auto" else -1
    if finer > 0:
        return GridPlan(fixed.shape, fixed.affine, False, pyramid + finer, finer)
    if grid != "fixed" and needs_working_grid(fixed.spacing, spacing):
        shape, affine = working_grid(fixed.shape, fixed.affine, float(spacing))
        return GridPlan(shape, affine, True, pyramid)
    return GridPlan(fixed.shape, fixed.affine, False, pyramid)


def working_grid(shape: tuple[int, int, int], affine: np.ndarray, spacing: float
                 ) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid covering the same box as (``shape``, ``affine``) with ``spacing`` mm voxels, same axes.

    Voxel corners of the first voxel coincide, as in the template's own
    resampling; the shape is the box's extent over the new voxel size, rounded.
    """
    affine = np.asarray(affine, dtype=np.float64)
    current = np.linalg.norm(affine[:3, :3], axis=0)
    factor = float(spacing) / current  # new voxel in old voxels, per axis
    new_shape = tuple(max(1, int(round(n / f))) for n, f in zip(shape, factor))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * factor
    new_affine[:3, 3] = affine[:3, :3] @ ((factor - 1.0) / 2.0) + affine[:3, 3]
    return new_shape, new_affine


def resample_to_grid(volume: Volume, shape: tuple[int, int, int], affine: np.ndarray, *,
                     order: int = 1) -> Volume:
    """``volume`` sampled at the voxel centres of (``shape``, ``affine``) in world space.

    Linear (``order`` 1) for images, nearest (0) for labels; outside the
    image the border value is repeated. Coarser targets are smoothed first
    (sigma (factor - 1) / 2 source voxels per axis) so they do not alias.
    """
    affine = np.asarray(affine, dtype=np.float64)
    return Volume(data=sample_world(volume, shape, affine, order=order), affine=affine, path=volume.path)


def field_onto_grid(ddf: np.ndarray, ddf_affine: np.ndarray, shape: tuple[int, int, int],
                    affine: np.ndarray) -> np.ndarray:
    """A (3, D, H, W) field in voxels of grid ``ddf_affine``, as a field in voxels of (``shape``, ``affine``)."""
    ddf = np.asarray(ddf, dtype=np.float32)
    ddf_affine = np.asarray(ddf_affine, dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    to_source = np.linalg.inv(ddf_affine) @ affine  # target voxel -> field voxel
    vectors = np.linalg.inv(affine[:3, :3]) @ ddf_affine[:3, :3]  # field voxels -> target voxels
    out = np.empty((3,) + tuple(shape), dtype=np.float32)
    j, k = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    for start in range(0, shape[0], ROWS_PER_CHUNK):
        i = np.arange(start, min(start + ROWS_PER_CHUNK, shape[0]))
        grid = np.stack(np.broadcast_arrays(i[:, None, None], j[None], k[None])).reshape(3, -1).astype(np.float64)
        coords = to_source[:3, :3] @ grid + to_source[:3, 3:4]
        sampled = np.stack([ndimage.map_coordinates(ddf[c], coords, order=1, mode="nearest")
                            for c in range(3)])
        out[:, i] = (vectors @ sampled).reshape(3, len(i), shape[1], shape[2])
    return out
