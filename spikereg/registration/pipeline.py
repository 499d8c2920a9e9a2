"""``spikereg run`` as a library call: register, write NIfTI outputs and report.json.

Outputs are written into a hidden temporary folder beside ``out`` and moved
into place only when everything succeeded, so a failed or interrupted run
leaves no half-written files.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from spikereg.data import Volume, jacobian_determinant, normalize_intensity, save_ddf, save_volume, warp
from spikereg.data.io import staged_folder
from spikereg.data.loaders import PairFiles, load_pair
from spikereg.hardware import load_profile
from spikereg.interrupts import on_interrupt_note
from spikereg.config import ENCODINGS
from spikereg.registration.register import BackendStats, check_patching, ncc, pyramid_shapes, register
from spikereg.report.counts import RASTER_NAME, save_raster
from spikereg.report.energy import DEFAULT_PROFILES, energy_report
from spikereg.report.summary import CHIP_PROFILE, chip_profile_section, layer_table, write_report

OUTPUTS = {"ddf": "ddf.nii.gz", "warped": "warped.nii.gz"}


def _similarity(fixed: np.ndarray, moving: np.ndarray, warped: np.ndarray) -> dict[str, float]:
    f, m, w = (normalize_intensity(v) for v in (fixed, moving, warped))
    return {
        "ncc_before": ncc(f, m),
        "ncc_after": ncc(f, w),
        "mse_before": float(np.mean((f - m) ** 2)),
        "mse_after": float(np.mean((f - w) ** 2)),
    }


def save_registration(folder: Path, ddf: np.ndarray, warped: np.ndarray, affine: np.ndarray,
                      labels: Volume | None = None) -> dict[str, str]:
    """Write the field, the warped image and (nearest-neighbour) warped labels into ``folder``; their names."""
    outputs = dict(OUTPUTS)
    save_ddf(Path(folder) / OUTPUTS["ddf"], ddf, affine)
    save_volume(Path(folder) / OUTPUTS["warped"], warped, affine)
    if labels is not None:
        outputs["warped_labels"] = "warped_labels.nii.gz"
        save_volume(Path(folder) / outputs["warped_labels"], warp(labels.data, ddf, mode="nearest"), affine,
                    dtype=np.int16)
    return outputs


# ``spikereg run``'s options, by PairFiles field: messages name the option the user typed.
RUN_INPUT_OPTIONS = {"fixed": "--fixed", "moving": "--moving", "moving_labels": "--moving-labels"}


def load_inputs(fixed: Path, moving: Path, moving_labels: Path | None = None
                ) -> tuple[Volume, Volume, Volume | None]:
    """The fixed and moving images and the moving labels, if any, read and checked as a dataset's pair is.

    :func:`spikereg.data.loaders.load_pair` does the work: both images 3-D
    and on one grid, the labels a 3-D label map or DeepReg's 4-D binary masks
    (D, H, W, L), turned into the label map, on the moving image's grid (shape
    and affine).
    """
    files = PairFiles("input", Path(fixed), Path(moving),
                      moving_labels=Path(moving_labels) if moving_labels is not None else None)
    pair = load_pair(files, RUN_INPUT_OPTIONS)
    return pair.fixed, pair.moving, pair.moving_labels


def spacing_note(volume: Volume, meta: dict, model: str | Path, tolerance: float = 0.25) -> str | None:
    """A sentence where the images' voxels differ from those the model was trained on by more than ``tolerance``.

    Why: the network reads displacements in its own voxels within a fixed
    patch; at another spacing the anatomy in a patch and the motion it can
    see both change scale. Not an error -- the field is still a field -- but
    worth resampling for.
    """
    trained = meta.get("spacing_mm")
    if not trained:
        return None
    spacing = float(np.mean(volume.spacing))
    if abs(spacing - trained) <= tolerance * trained:
        return None
    return (f"model {model} was trained on {trained:g} mm voxels; {volume.path} has {spacing:.3g} mm: "
            f"resample the images to about {trained:g} mm for its accuracy (or pick another model, 'spikereg models')")


def run_options(meta: dict, iterations: int | None, patch_stride: int | None,
                smoothing: float | None = None) -> tuple[int, int, float]:
    """Iterations, patch stride and residual smoothing: the given ones, else the model's defaults; checked."""
    run_defaults = meta.get("run", {})
    iterations = iterations or run_defaults.get("iterations", 1)
    patch_stride = patch_stride or run_defaults.get("patch_stride", meta["model"]["patch_size"])
    smoothing = run_defaults.get("smoothing", 0.0) if smoothing is None else smoothing
    check_patching(meta["model"]["patch_size"], meta["reduction"], patch_stride)
    if iterations <= 0:
        raise ValueError(f"--iterations {iterations}: must be at least 1")
    if smoothing < 0:
        raise ValueError(f"--smoothing {smoothing}: must be >= 0 voxels (0: no smoothing)")
    return iterations, patch_stride, smoothing


class MemoryBudgetError(ValueError):
    """The registration's estimated peak memory exceeds the budget given."""


# Peak memory model: bytes = BASE_BYTES[backend] + VOLUME_COPIES * 4 * voxels + one batch of
# encoded patches. VOLUME_COPIES counts the float32 full-volume arrays alive at the peak
# (inputs, normalized and padded copies, the field and the residual (3 each), MONAI's
# sampling grid, the Jacobian's derivatives); BASE_BYTES is the interpreter with torch,
# MONAI (and Lava's runtime processes). benchmarks/speed.py measured (BENCHMARKS.md, "Speed
# and memory") torch peaks of 1.02 GB (2 mm brain) and 1.71 GB (1 mm): 23 volume copies over a
# 0.92 GB base; 30 copies keep the estimate about 15 % above what was measured (a budget
# should refuse a little early rather than let a run be killed).
VOLUME_COPIES = 30
BASE_BYTES = {"torch": 700 * 2**20, "sim": 1100 * 2**20, "loihi2": 1100 * 2**20}
LAVA_CHUNK = 64  # patches per Lava stream (LavaBackend.chunk_size)


def estimate_peak_bytes(shape: tuple[int, ...], meta: dict, backend: str, batch_size: int = 32) -> int:
    """Estimated peak resident memory of registering a volume of ``shape`` with the model of ``meta``."""
    voxels = int(np.prod(shape))
    model = meta["model"]
    channels = ENCODINGS.get(model.get("encoding", "intensity"), 10)
    span = meta.get("window", 16) + meta.get("layers", 3)
    batch = batch_size if backend == "torch" else LAVA_CHUNK
    # a batch's rate-coded features (float32, time last) and their folded copy
    patch_bytes = 2 * batch * channels * model["patch_size"] ** 3 * span * 4
    return BASE_BYTES.get(backend, BASE_BYTES["sim"]) + VOLUME_COPIES * 4 * voxels + patch_bytes


def check_memory(shape: tuple[int, ...], meta: dict, backend: str, budget_gb: float | None,
                 batch_size: int = 32) -> int:
    """The estimate; raises :class:`MemoryBudgetError` where it exceeds ``budget_gb`` (None: no limit)."""
    estimate = estimate_peak_bytes(shape, meta, backend, batch_size)
    if budget_gb is not None:
        if budget_gb <= 0:
            raise ValueError(f"--memory-budget {budget_gb}: must be a positive number of GB")
        if estimate > budget_gb * 1e9:
            raise MemoryBudgetError(
                f"--memory-budget {budget_gb:g} GB: registering a {'x'.join(map(str, shape))} volume on "
                f"--backend {backend} needs about {estimate / 1e9:.1f} GB at its peak; raise the budget, "
                "or resample the images to a coarser spacing")
    return estimate


def preflight(shape: tuple[int, ...], meta: dict, backend: str, pyramid: int = 1,
              memory_budget_gb: float | None = None, batch_size: int = 32) -> int:
    """The checks that need the volume's shape: pyramid depth, memory budget. Returns the memory estimate."""
    pyramid_shapes(shape, pyramid, meta["model"]["patch_size"])
    return check_memory(shape, meta, backend, memory_budget_gb, batch_size)


@on_interrupt_note("no outputs written")  # staged_folder removed them, or they were never begun
def run_registration(
    fixed: Volume,
    moving: Volume,
    model_path: Path,
    meta: dict,
    out: Path,
    *,
    backend: str = "sim",
    precision: str = "fixed",
    device: str = "cpu",
    batch_size: int = 32,
    iterations: int | None = None,
    patch_stride: int | None = None,
    pyramid: int = 1,
    smoothing: float | None = None,
    memory_budget_gb: float | None = None,
    labels: Volume | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
) -> dict:
    """Register with the exported network on ``backend`` (torch, sim, loihi2); write outputs and ``report.json``.

    Everything that can be checked before the long run is: options, the
    pyramid depth against the model's patch, the memory budget, the hardware
    profiles of the energy report, and the backend itself.
    """
    from spikereg.registration.backends import open_backend

    iterations, patch_stride, smoothing = run_options(meta, iterations, patch_stride, smoothing)
    memory_estimate = preflight(fixed.shape, meta, backend, pyramid, memory_budget_gb, batch_size)
    profiles = [load_profile(name) for name in DEFAULT_PROFILES]  # a bad profile fails before the long run
    start = time.perf_counter()
    with open_backend(model_path, backend=backend, precision=precision, device=device,
                      batch_size=batch_size) as engine:
        result = register(fixed.data, moving.data, engine, iterations=iterations,
                          patch_stride=patch_stride, pyramid=pyramid, smoothing=smoothing, progress=progress)
        stats: BackendStats = engine.stats
        window = engine.codec.window
    total = time.perf_counter() - start
    jac = jacobian_determinant(result.ddf)

    with staged_folder(out) as staging:
        outputs = save_registration(staging, result.ddf, result.warped, fixed.affine, labels)
        report = {
            "inputs": {"fixed": str(fixed.path), "moving": str(moving.path), "model": str(model_path)},
            "shape": list(fixed.shape),
            "spacing": [round(s, 4) for s in fixed.spacing],
            "backend": backend,
            "precision": precision,
            "device": device,
            "iterations": iterations,
            "patch_size": meta["model"]["patch_size"],
            "patch_stride": patch_stride,
            "smoothing": smoothing,
            "patches_per_iteration": result.patches_per_iteration,
            "pyramid": result.levels,
            "patches": result.patches,
            "time_steps_per_patch": window,
            "time_steps": stats.time_steps,
            "layers": layer_table(stats.layer_spikes, stats.layer_neurons, stats.time_steps),
            "input_spikes": int(stats.input_spikes),
            "spikes_per_step": [s.tolist() for s in stats.step_spikes],
            "similarity": _similarity(fixed.data, moving.data, result.warped),
            "jacobian": {"min": float(jac.min()), "fraction_nonpositive": float((jac <= 0).mean())},
            "timing": {
                "total_seconds": total,
                "network_seconds": stats.network_seconds,
                "compile_seconds": stats.compile_seconds,
                "host_seconds": result.host_seconds,
            },
            "memory": {"estimated_peak_bytes": memory_estimate, "budget_gb": memory_budget_gb},
            "outputs": outputs,
        }
        if stats.counter is not None and stats.counter.counted:  # per patch / iteration / layer: spikes, synops, neuron updates
            report["counts"] = stats.counter.section(stats.layer_neurons)
            if stats.counter.raster is not None:
                save_raster(staging / RASTER_NAME, stats.counter.raster)
        report["energy"] = energy_report(report, model_path, profiles)
        report["chip_profile"] = chip_profile_section(backend, load_profile(CHIP_PROFILE), stats.chip_profile)
        write_report(staging, report)
    return report
