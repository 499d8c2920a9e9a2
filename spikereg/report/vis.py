"""``spikereg vis``: pictures of any registration from its NIfTI files (as DeepReg's ``deepreg_vis``).

:func:`registration_figures` is the core shared with ``spikereg report``: from
the volumes (and optionally the warped image and the displacement field) it
makes the slices, checkerboard, deformation grid and Jacobian-determinant
figures. :func:`visualize` loads the files, checks that they lie on one grid,
writes the figures as PNG and, on request, an animated GIF that pages through
the slices of one plane.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from spikereg.data import Volume, VolumeError, check_pair, jacobian_determinant, load_ddf, load_volume
from spikereg.report import figures

GIF_NAME = "slices.gif"
GIF_FRAME_MS = 120
GIF_MIN_SIDE = 192  # pixels: small volumes are scaled up (nearest) so the GIF is readable


@dataclass(frozen=True)
class Picture:
    """One figure of a registration: file stem, a title, and the figure."""

    name: str
    title: str
    figure: Figure


def registration_figures(fixed: Volume, moving: Volume, warped: Optional[Volume] = None,
                         ddf: Optional[np.ndarray] = None,
                         planes: Sequence[str] = figures.PLANES) -> list[Picture]:
    """Slices of fixed/moving(/warped), checkerboard, deformation grid and Jacobian map."""
    affine = fixed.affine
    images = {"fixed": fixed.data, "moving": moving.data}
    if warped is not None:
        images["warped"] = warped.data
    pictures = [Picture("slices", "fixed, moving and warped slices" if warped is not None
                        else "fixed and moving slices", figures.registration_slices(images, affine, planes))]
    if warped is not None:
        pictures.append(Picture("checkerboard_before", "checkerboard of fixed and moving (before)",
                                figures.checkerboard(fixed.data, moving.data, affine, planes,
                                                     names=("fixed", "moving"))))
        pictures.append(Picture("checkerboard", "checkerboard of fixed and warped (after)",
                                figures.checkerboard(fixed.data, warped.data, affine, planes)))
    else:
        pictures.append(Picture("checkerboard", "checkerboard of fixed and moving",
                                figures.checkerboard(fixed.data, moving.data, affine, planes,
                                                     names=("fixed", "moving"))))
    if ddf is not None:
        pictures.append(Picture("deformation_grid", "deformation grid",
                                figures.deformation_grid(ddf, affine, planes, background=fixed.data)))
        pictures.append(Picture("jacobian", "Jacobian determinant of the transform",
                                figures.jacobian_map(jacobian_determinant(ddf), affine, planes)))
    return pictures


def _check_same_grid(reference: Volume, other: Volume, option: str) -> None:
    try:
        check_pair(reference, other)
    except VolumeError as error:
        raise VolumeError(f"{option} {other.path}: not on the fixed image's grid ({error})") from None


def load_inputs(fixed: Path, moving: Path, warped: Optional[Path] = None, ddf: Optional[Path] = None
                ) -> tuple[Volume, Volume, Optional[Volume], Optional[np.ndarray]]:
    """Load and check the files: all on the fixed image's grid, the field ``(3, D, H, W)`` of its shape."""
    fixed_v = load_volume(fixed, what="--fixed")
    moving_v = load_volume(moving, what="--moving")
    check_pair(fixed_v, moving_v)
    warped_v = None
    if warped is not None:
        warped_v = load_volume(warped, what="--warped")
        _check_same_grid(fixed_v, warped_v, "--warped")
    field = None
    if ddf is not None:
        field, _ = load_ddf(ddf, what="--ddf")
        if field.shape[1:] != fixed_v.shape:
            raise VolumeError(f"--ddf {ddf}: field of shape {field.shape[1:]} does not match the fixed image's "
                              f"{fixed_v.shape}")
        if min(field.shape[1:]) < 2:
            raise VolumeError(f"--ddf {ddf}: every axis needs at least 2 voxels for a Jacobian, "
                              f"got {field.shape[1:]}")
    return fixed_v, moving_v, warped_v, field


def _grey(volume: np.ndarray) -> np.ndarray:
    lo, hi = figures.display_range(volume)
    return np.clip((volume - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def slice_frames(images: Sequence[np.ndarray], axis: int, spacing: Sequence[float]) -> list[Image.Image]:
    """One greyscale frame per slice across ``axis``: the images side by side, mm aspect, upright."""
    greys = [_grey(v) for v in images]
    horizontal, vertical = (a for a in range(3) if a != axis)
    # one screen pixel per finest voxel side (mm aspect), scaled up so the shorter side is readable
    finest = min(spacing[horizontal], spacing[vertical])
    base = (images[0].shape[horizontal] * spacing[horizontal] / finest,
            images[0].shape[vertical] * spacing[vertical] / finest)
    scale = max(1.0, GIF_MIN_SIDE / min(base))
    size = (max(1, round(base[0] * scale)), max(1, round(base[1] * scale)))
    gap = np.zeros((size[1], 4), dtype=np.uint8)
    frames = []
    for index in range(images[0].shape[axis]):
        tiles = []
        for grey in greys:
            plane = np.take(grey, index, axis=axis).T[::-1]  # vertical axis up, as in the PNGs
            tiles.append(np.asarray(Image.fromarray(plane).resize(size, Image.NEAREST)))
            tiles.append(gap)
        frame = np.concatenate(tiles[:-1], axis=1)
        # a position bar along the bottom: where in the volume this slice lies (it also keeps
        # identical slices, e.g. empty ones at the ends, from being merged into one GIF frame)
        bar = np.zeros((6, frame.shape[1]), dtype=np.uint8)
        bar[2:, : max(1, round(frame.shape[1] * (index + 1) / images[0].shape[axis]))] = 200
        frames.append(Image.fromarray(np.concatenate([frame, bar], axis=0)))
    return frames


def write_gif(frames: Sequence[Image.Image], path: Path, frame_ms: int = GIF_FRAME_MS) -> Path:
    """An endlessly looping GIF, written whole or not at all."""
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=list(frames[1:]), duration=frame_ms,
                       loop=0)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def visualize(fixed: Path, moving: Path, out: Path, warped: Optional[Path] = None, ddf: Optional[Path] = None,
              plane: Optional[str] = None, gif: bool = False,
              progress: Optional[Callable[[str], None]] = None) -> list[Path]:
    """Write the registration's pictures (PNG) into ``out``, and ``slices.gif`` with ``gif``.

    ``plane`` limits the PNGs to one plane (default: all three) and picks the
    plane the GIF pages through (default: axial). Returns the written files.
    """
    if plane is not None and plane not in figures.PLANES:
        raise ValueError(f"--plane {plane!r}: choose one of {', '.join(figures.PLANES)}")
    fixed_v, moving_v, warped_v, field = load_inputs(fixed, moving, warped, ddf)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    planes = (plane,) if plane else figures.PLANES
    written = []
    for picture in registration_figures(fixed_v, moving_v, warped_v, field, planes):
        if progress is not None:
            progress(picture.name)
        written.append(figures.save_png(picture.figure, out / f"{picture.name}.png"))
    if gif:
        if progress is not None:
            progress("gif")
        axis = figures.plane_axes(fixed_v.affine)[plane or "axial"]
        volumes = [fixed_v.data, moving_v.data] + ([warped_v.data] if warped_v is not None else [])
        frames = slice_frames(volumes, axis, figures.spacing_of(fixed_v.affine))
        written.append(write_gif(frames, out / GIF_NAME))
    return written
