"""World space: volumes on different grids, compared and resampled through their affines.

Every volume carries a 4x4 voxel-to-world affine (nibabel's convention: RAS+
millimetres). Two volumes are on the *same grid* when their shapes are equal
and their affines agree within :data:`~spikereg.data.io.AFFINE_TOLERANCE_MM`;
otherwise one is resampled onto the other's grid here, through world space:
target voxel ``p`` -> world ``x = G p`` -> (optionally a world-to-world
transform ``A``, e.g. an affine pre-alignment) -> source voxel ``S^-1 A x``,
optionally after a displacement ``p + ddf(p)`` in target voxels
(:func:`sample_world`). Images are sampled linearly, label maps by nearest
neighbour; outside the source the border value is repeated (as
:func:`spikereg.data.warp` does). Where the target's voxels are coarser than
the source's, the source is smoothed first so that it does not alias
(sigma (factor - 1) / 2 source voxels per axis).

Two volumes whose boxes do not overlap in world space cannot be registered
(a wrong affine or the wrong file): :func:`check_overlap` refuses them in
one line that gives the overlap.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from .io import AFFINE_TOLERANCE_MM, Volume, VolumeError, _name

# Less of the smaller box than this inside the other, and two volumes "do not overlap".
MIN_OVERLAP = 0.01
OVERLAP_SAMPLES = 24  # lattice points per axis on which box overlap is measured
ROWS_PER_CHUNK = 16  # target planes per map_coordinates call: bounds the coordinate arrays' memory


class NoOverlapError(VolumeError):
    """Two volumes (an image and its partner, or an image and its labels) do not overlap in world space."""


def _grid(item) -> tuple[tuple[int, int, int], np.ndarray]:
    if isinstance(item, Volume):
        return item.shape, item.affine
    shape, affine = item
    return tuple(int(s) for s in shape), np.asarray(affine, dtype=np.float64)


def same_grid(a, b, tolerance: float = AFFINE_TOLERANCE_MM) -> bool:
    """Whether ``a`` and ``b`` (Volumes or (shape, affine)) have one shape and affines within ``tolerance`` mm."""
    shape_a, affine_a = _grid(a)
    shape_b, affine_b = _grid(b)
    return tuple(shape_a) == tuple(shape_b) and float(np.max(np.abs(affine_a - affine_b))) <= tolerance


def _inside_fraction(shape_a, affine_a, shape_b, affine_b, samples: int) -> float:
    """Fraction of a's box (a lattice of sample points) whose world points lie inside b's box."""
    axes = [np.linspace(-0.5, n - 0.5, 2 * samples + 1)[1::2] for n in shape_a]  # cell centres
    points = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    to_b = np.linalg.inv(affine_b) @ affine_a
    q = to_b[:3, :3] @ points + to_b[:3, 3:4]
    limits = np.asarray(shape_b, dtype=np.float64)[:, None]
    inside = np.all((q >= -0.5) & (q <= limits - 0.5), axis=0)
    return float(inside.mean())


def overlap_fraction(a, b, samples: int = OVERLAP_SAMPLES) -> float:
    """How much of the smaller of the two volumes' boxes lies inside the other's, in world space (0 to 1).

    A box is the volume's voxels with their full extent (centres +- half a
    voxel); whichever box is smaller in world volume is sampled on a lattice
    of ``samples`` points per axis. 1: one box holds the other; 0: disjoint.
    """
    shape_a, affine_a = _grid(a)
    shape_b, affine_b = _grid(b)
    size_a = abs(np.linalg.det(affine_a[:3, :3])) * float(np.prod(shape_a))
    size_b = abs(np.linalg.det(affine_b[:3, :3])) * float(np.prod(shape_b))
    if size_a <= size_b:
        return _inside_fraction(shape_a, affine_a, shape_b, affine_b, samples)
    return _inside_fraction(shape_b, affine_b, shape_a, affine_a, samples)


def check_overlap(volume, reference, what: str, reference_what: str, *, source: object = None,
                  reference_source: object = None, minimum: float = MIN_OVERLAP) -> float:
    """The overlap (:func:`overlap_fraction`); a :class:`NoOverlapError` line where it is below ``minimum``."""
    fraction = overlap_fraction(volume, reference)
    if fraction < minimum:
        name = source if source is not None else (_name(volume.path) if isinstance(volume, Volume) else "")
        ref = reference_source if reference_source is not None else (
            _name(reference.path) if isinstance(reference, Volume) else "")
        raise NoOverlapError(
            f"{what} {name}: does not overlap the {reference_what} {ref} in world space (overlap "
            f"{100 * fraction:.1f} % of the smaller box, at least {100 * minimum:g} % needed); "
            "check both files' affines (sform/qform)")
    return fraction


def zoom_sample(data: np.ndarray, step: float, offset: float, output_shape, **options) -> np.ndarray | None:
    """``data`` sampled at ``step * i + offset`` along every axis (scipy's affine_transform, diagonal matrix).

    The 1-D (diagonal) matrix is meant: SciPy's note that its meaning changed
    in 0.18 concerns this very form, so it is silenced rather than the call
    changed (a 3x3 matrix takes another code path, with other rounding, and
    would change every synthetic pair and the template's resampled grids).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The behavior of affine_transform with a 1-D array",
                                category=UserWarning)
        return ndimage.affine_transform(data, np.full(3, step), offset=offset, output_shape=output_shape, **options)


def _antialias(data: np.ndarray, to_source: np.ndarray) -> np.ndarray:
    """``data`` smoothed where one target voxel spans more than one source voxel along a source axis."""
    factor = np.linalg.norm(to_source[:3, :3], axis=1)  # the target voxel's reach along each source axis
    if np.any(factor > 1.0 + 1e-6):
        return ndimage.gaussian_filter(data, sigma=np.maximum(factor - 1.0, 0.0) / 2.0, mode="nearest")
    return data


def sample_world(volume: Volume, shape: tuple[int, int, int], affine: np.ndarray, *, order: int = 1,
                 world: np.ndarray | None = None, ddf: np.ndarray | None = None,
                 antialias: bool = True) -> np.ndarray:
    """``volume`` sampled at the voxels of the grid (``shape``, ``affine``), float32 array of ``shape``.

    Target voxel ``p`` samples the source at voxel ``V^-1 A G (p + ddf(p))``,
    with ``G`` the target's and ``V`` the volume's affine, ``A`` = ``world``
    (a 4x4 world-to-world transform, default identity) and ``ddf`` a
    (3, *shape) displacement in target voxels (default none). ``order`` 1 is
    linear (images), 0 nearest (labels); images are smoothed first where the
    target is coarser (``antialias``).
    """
    shape = tuple(int(s) for s in shape)
    affine = np.asarray(affine, dtype=np.float64)
    world = np.eye(4) if world is None else np.asarray(world, dtype=np.float64)
    to_source = np.linalg.inv(volume.affine) @ world @ affine  # target voxel -> source voxel
    data = volume.data
    if order > 0 and antialias:
        data = _antialias(data, to_source)
    if ddf is None:
        return ndimage.affine_transform(data, to_source[:3, :3], offset=to_source[:3, 3], output_shape=shape,
                                        order=order, mode="nearest", output=np.float32)
    ddf = np.asarray(ddf, dtype=np.float32)
    if ddf.shape != (3,) + shape:
        raise ValueError(f"sample_world: ddf shape {ddf.shape} does not match the target grid {shape}")
    out = np.empty(shape, dtype=np.float32)
    j, k = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    for start in range(0, shape[0], ROWS_PER_CHUNK):
        i = np.arange(start, min(start + ROWS_PER_CHUNK, shape[0]))
        grid = np.stack(np.broadcast_arrays(i[:, None, None], j[None], k[None])).astype(np.float64)
        grid += ddf[:, i]
        grid = grid.reshape(3, -1)
        coords = to_source[:3, :3] @ grid + to_source[:3, 3:4]
        out[i] = ndimage.map_coordinates(data, coords, order=order, mode="nearest").reshape(len(i), *shape[1:])
    return out


def resample_like(volume: Volume, reference, *, order: int = 1, world: np.ndarray | None = None) -> Volume:
    """``volume`` on ``reference``'s grid (a Volume or (shape, affine)), through world space; keeps its path.

    The same grid and no ``world`` transform: the data as it is (no interpolation).
    """
    shape, affine = _grid(reference)
    if world is None and same_grid(volume, (shape, affine)):
        return Volume(data=volume.data.copy(), affine=affine, path=volume.path)
    return Volume(data=sample_world(volume, shape, affine, order=order, world=world), affine=affine,
                  path=volume.path)


def displacement_mm(ddf: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A (3, D, H, W) field in voxels of the grid ``affine`` as world (RAS, mm) vectors: ``A_l @ ddf``."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    return np.einsum("ij,j...->i...", linear, np.asarray(ddf, dtype=np.float64)).astype(np.float32)


def describe_grid(volume: Volume) -> str:
    """``'181x217x181 at 1 x 1 x 1 mm'`` for messages and reports."""
    return "x".join(map(str, volume.shape)) + " at " + " x ".join(f"{s:.3g}" for s in volume.spacing) + " mm"


__all__ = ["MIN_OVERLAP", "NoOverlapError", "check_overlap", "describe_grid", "displacement_mm",
           "overlap_fraction", "resample_like", "same_grid", "sample_world"]
