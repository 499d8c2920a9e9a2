"""The host process: register a fixed/moving volume pair with a patch-wise spiking network.

For each refinement iteration: warp the moving image by the field so far,
cut both volumes into overlapping patches, let the backend predict each
patch's control grid, stitch and upsample to a dense residual field, and
compose it onto the field so far. The backend is anything with the
:class:`PatchBackend` shape: SLAYER in PyTorch, or the exported netx file on
Lava (:mod:`spikereg.registration.backends`).

With a pyramid of ``L`` levels the pair is first halved ``L - 1`` times; the
coarsest level is registered first (there a patch sees ``2**(L-1)`` times the
displacement range), and each finer level starts from the coarser field,
upsampled twice in size and value.

Memory stays bounded for 1 mm volumes: patches are cut and predicted one
chunk at a time (the backend's ``chunk_size``) and stitched into the coarse
control grid as they come, and the full-size arrays are float32.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch

from spikereg.data import compose, normalize_intensity, warp
from spikereg.metrics import ncc  # noqa: F401  (re-exported: the one global NCC, see spikereg.metrics)
from spikereg.registration.patches import (
    PatchGrid,
    Stitcher,
    downsample,
    extract,
    pad_to,
    patch_grid,
    smooth_field,
    upsample,
    upsample_field,
)


@dataclass
class BackendStats:
    """What a backend measured while predicting (summed over calls)."""

    layer_spikes: np.ndarray | None = None  # (layers,) spikes per layer
    layer_neurons: list[int] = field(default_factory=list)
    input_spikes: int = 0  # encoded host -> network spikes
    time_steps: int = 0
    patches: int = 0
    network_seconds: float = 0.0
    compile_seconds: float = 0.0
    step_spikes: list[np.ndarray] = field(default_factory=list)  # per call: (layers, steps)
    counter: Any = None  # a spikereg.registration.counts.SpikeCounter: per-neuron counts, synops, raster
    chip_profile: dict | None = None  # loihi2: lava-loihi's power and time probes (LavaRun.chip_profile), latest

    def add(self, layer_spikes: np.ndarray, steps: int, patches: int, seconds: float) -> None:
        spikes = np.asarray(layer_spikes, dtype=np.int64)
        self.layer_spikes = spikes if self.layer_spikes is None else self.layer_spikes + spikes
        self.time_steps += steps
        self.patches += patches
        self.network_seconds += seconds


class PatchBackend(Protocol):
    name: str
    patch_size: int
    reduction: int
    chunk_size: int  # patches per predict() call that register() hands over
    stats: BackendStats

    def reset(self) -> None:
        """Start a new stream: the next patch finds the network at rest (register() calls it first)."""

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        """``(P, 1, p, p, p)`` patch pairs -> ``(P, 3, g, g, g)`` control displacements (voxels)."""


@dataclass
class Registration:
    ddf: np.ndarray  # (3, D, H, W) voxels; warp(moving, ddf) ~ fixed
    warped: np.ndarray
    iterations: int  # per pyramid level
    patches_per_iteration: int  # at full resolution
    host_seconds: float
    backend: str
    levels: int = 1
    patches: int = 0  # over all levels and iterations


def check_patching(patch: int, reduction: int, stride: int) -> None:
    """A patch stride the model can stitch: a positive multiple of its control spacing, at most a patch."""
    if patch % reduction:
        raise ValueError(f"model patch size {patch} is not a multiple of its control-grid spacing {reduction}")
    if stride <= 0 or stride % reduction or stride > patch:
        raise ValueError(f"--patch-stride {stride}: must be a positive multiple of {reduction} "
                         f"(the model's control-grid spacing) and at most its patch size {patch}")


def pyramid_shapes(shape: tuple[int, ...], levels: int, patch: int) -> list[tuple[int, int, int]]:
    """Volume shape at each level, finest first; refuses a coarser level smaller than the model's patch."""
    if levels < 1:
        raise ValueError(f"--pyramid {levels}: must be at least 1 (1 = no pyramid)")
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(levels - 1):
        shapes.append(tuple(-(-s // 2) for s in shapes[-1]))
    coarsest = shapes[-1]
    if levels > 1 and min(coarsest) < patch:
        usable = 1
        while usable < levels and min(shapes[usable]) >= patch:
            usable += 1
        raise ValueError(
            f"--pyramid {levels}: the coarsest level would be {'x'.join(map(str, coarsest))} voxels, smaller than "
            f"the model's {patch}-voxel patch; use --pyramid {usable} or less")
    return shapes


def _refine(fixed_n: np.ndarray, moving_n: np.ndarray, ddf: np.ndarray | None, backend: PatchBackend,
            grid: PatchGrid, iterations: int, stage: str,
            progress: Callable[[str, int, int, int], None] | None, smoothing: float = 0.0) -> np.ndarray:
    """``iterations`` residual passes at one resolution, patches cut and predicted chunk by chunk."""
    shape = fixed_n.shape
    fixed_p = pad_to(fixed_n, grid.padded)
    chunk = max(1, int(getattr(backend, "chunk_size", len(grid))))
    for iteration in range(iterations):
        current = warp(moving_n, ddf) if ddf is not None else moving_n
        moving_p = pad_to(current, grid.padded)
        del current
        stitcher: Stitcher | None = None
        label = f"{stage}iteration {iteration + 1}/{iterations}"
        if backend.stats.counter is not None:
            backend.stats.counter.start_iteration(label)
        for first in range(0, len(grid), chunk):
            cut = slice(first, min(first + chunk, len(grid)))

            # the backend reports within this call; add what earlier calls ran for totals so far
            steps_before = backend.stats.time_steps
            spikes_before = int(backend.stats.layer_spikes.sum()) if backend.stats.layer_spikes is not None else 0

            def report(done: int, steps: int, spikes: int, offset: int = first) -> None:
                if progress is not None:
                    progress(f"{label}, {steps_before + steps:,} steps", min(offset + done, len(grid)), len(grid),
                             spikes_before + spikes)

            controls = backend.predict(extract(fixed_p, grid, cut), extract(moving_p, grid, cut), progress=report)
            if stitcher is None:
                stitcher = Stitcher(grid, backend.reduction, controls.shape[-1])
            stitcher.add(controls, grid.origins[cut])
        del moving_p
        residual = upsample(stitcher.result(), backend.reduction, shape)
        if smoothing > 0:
            residual = smooth_field(residual, smoothing)
        ddf = compose(ddf, residual) if ddf is not None else residual
    return ddf


def register(
    fixed: np.ndarray,
    moving: np.ndarray,
    backend: PatchBackend,
    *,
    iterations: int,
    patch_stride: int,
    pyramid: int = 1,
    smoothing: float = 0.0,
    progress: Callable[[str, int, int, int], None] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> Registration:
    """Register ``moving`` onto ``fixed`` (both ``(D, H, W)``, same shape).

    ``pyramid`` levels (1: full resolution only) each run ``iterations``
    refinement passes, coarsest first. ``smoothing`` (voxels) blurs each
    pass's residual field before it is composed (0: not at all).
    ``progress(stage, patches_done, patches_total, spikes_so_far)`` reports long work; ``stage``
    names the level and iteration and the time steps run so far. Both images
    are first scaled so that their ``percentiles`` map to 0 and 1
    (:func:`spikereg.data.intensity.normalize`).
    """
    start = time.perf_counter()
    network_before = backend.stats.network_seconds
    patches_before = backend.stats.patches
    check_patching(backend.patch_size, backend.reduction, patch_stride)
    shapes = pyramid_shapes(fixed.shape, pyramid, backend.patch_size)
    # One registration, one stream: a pair's field never depends on the pairs registered before it
    # (a sigma-delta network on the chip otherwise keeps their residues).
    backend.reset()
    fixed_levels = [normalize_intensity(fixed, *percentiles)]
    moving_levels = [normalize_intensity(moving, *percentiles)]
    for _ in shapes[1:]:
        fixed_levels.append(downsample(fixed_levels[-1]))
        moving_levels.append(downsample(moving_levels[-1]))
    ddf = None
    for level in reversed(range(len(shapes))):
        if ddf is not None:
            ddf = upsample_field(ddf, shapes[level])
        stage = f"level {len(shapes) - level}/{len(shapes)}, " if len(shapes) > 1 else ""
        grid = patch_grid(shapes[level], backend.patch_size, patch_stride)
        ddf = _refine(fixed_levels[level], moving_levels[level], ddf, backend, grid, iterations, stage, progress,
                      smoothing)
        fixed_levels.pop()
        moving_levels.pop()
    warped = warp(moving, ddf)
    network = backend.stats.network_seconds - network_before
    return Registration(
        ddf=ddf,
        warped=warped,
        iterations=iterations,
        patches_per_iteration=len(patch_grid(shapes[0], backend.patch_size, patch_stride)),
        host_seconds=time.perf_counter() - start - network,
        backend=backend.name,
        levels=len(shapes),
        patches=backend.stats.patches - patches_before,
    )
