"""The host process: register a fixed/moving volume pair with a patch-wise spiking network.

For each refinement iteration: warp the moving image by the field so far,
cut both volumes into overlapping patches, let the backend predict each
patch's control grid, stitch and upsample to a dense residual field, and
compose it onto the field so far. The backend is anything with the
:class:`PatchBackend` shape: SLAYER in PyTorch, or the exported netx file on
Lava (:mod:`spikereg.registration.backends`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from spikereg.data import compose, normalize_intensity, warp
from spikereg.registration.patches import extract, pad_to, patch_grid, stitch, upsample


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
    stats: BackendStats

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        """``(P, 1, p, p, p)`` patch pairs -> ``(P, 3, g, g, g)`` control displacements (voxels)."""


@dataclass
class Registration:
    ddf: np.ndarray  # (3, D, H, W) voxels; warp(moving, ddf) ~ fixed
    warped: np.ndarray
    iterations: int
    patches_per_iteration: int
    host_seconds: float
    backend: str


def register(
    fixed: np.ndarray,
    moving: np.ndarray,
    backend: PatchBackend,
    *,
    iterations: int,
    patch_stride: int,
    progress: Callable[[str, int, int, int], None] | None = None,
) -> Registration:
    """Register ``moving`` onto ``fixed`` (both ``(D, H, W)``, same shape).

    ``progress(stage, patches_done, patches_total, spikes_so_far)`` reports long work.
    """
    start = time.perf_counter()
    network_before = backend.stats.network_seconds
    shape = fixed.shape
    grid = patch_grid(shape, backend.patch_size, patch_stride)
    fixed_n = pad_to(normalize_intensity(fixed), grid.padded)
    moving_n = normalize_intensity(moving)
    ddf = np.zeros((3,) + tuple(shape), dtype=np.float32)
    for iteration in range(iterations):
        current = warp(moving_n, ddf) if iteration else moving_n
        fixed_p = extract(fixed_n, grid)
        moving_p = extract(pad_to(current, grid.padded), grid)

        def report(done: int, steps: int, spikes: int, it: int = iteration) -> None:
            if progress is not None:
                progress(f"iteration {it + 1}/{iterations}", done, len(grid), spikes)

        controls = backend.predict(fixed_p, moving_p, progress=report)
        coarse = stitch(controls, grid, backend.reduction)
        residual = upsample(coarse, backend.reduction, shape)
        ddf = compose(ddf, residual) if iteration else residual.astype(np.float32)
    warped = warp(moving, ddf)
    network = backend.stats.network_seconds - network_before
    return Registration(
        ddf=ddf,
        warped=warped,
        iterations=iterations,
        patches_per_iteration=len(grid),
        host_seconds=time.perf_counter() - start - network,
        backend=backend.name,
    )


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Global normalized cross-correlation of two volumes (1 = identical up to gain/offset)."""
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0
