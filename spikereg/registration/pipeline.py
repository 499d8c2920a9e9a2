"""``spikereg run`` as a library call: register, write NIfTI outputs and report.json.

Outputs are written into a hidden temporary folder beside ``out`` and moved
into place only when everything succeeded, so a failed or interrupted run
leaves no half-written files.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from spikereg.data import Volume, jacobian_determinant, normalize_intensity, save_ddf, save_volume, warp
from spikereg.hardware import load_profile
from spikereg.registration.register import BackendStats, ncc, register
from spikereg.report.energy import DEFAULT_PROFILES, energy_report
from spikereg.report.summary import layer_table, write_report

OUTPUTS = {"ddf": "ddf.nii.gz", "warped": "warped.nii.gz"}


def _similarity(fixed: np.ndarray, moving: np.ndarray, warped: np.ndarray) -> dict[str, float]:
    f, m, w = (normalize_intensity(v) for v in (fixed, moving, warped))
    return {
        "ncc_before": ncc(f, m),
        "ncc_after": ncc(f, w),
        "mse_before": float(np.mean((f - m) ** 2)),
        "mse_after": float(np.mean((f - w) ** 2)),
    }


def _publish(staging: Path, out: Path) -> None:
    """Move finished outputs from ``staging`` into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        os.replace(item, out / item.name)
    staging.rmdir()


def run_options(meta: dict, iterations: int | None, patch_stride: int | None) -> tuple[int, int]:
    """Iterations and patch stride: the given ones, else the model's defaults; checked."""
    run_defaults = meta.get("run", {})
    iterations = iterations or run_defaults.get("iterations", 1)
    patch_stride = patch_stride or run_defaults.get("patch_stride", meta["model"]["patch_size"])
    patch, reduction = meta["model"]["patch_size"], meta["reduction"]
    if patch_stride <= 0 or patch_stride % reduction or patch_stride > patch:
        raise ValueError(f"--patch-stride {patch_stride}: must be a positive multiple of {reduction} "
                         f"(the model's control-grid spacing) and at most its patch size {patch}")
    if iterations <= 0:
        raise ValueError(f"--iterations {iterations}: must be at least 1")
    return iterations, patch_stride


def run_registration(
    fixed: Volume,
    moving: Volume,
    model_path: Path,
    meta: dict,
    out: Path,
    *,
    backend: str = "sim",
    precision: str = "fixed",
    iterations: int | None = None,
    patch_stride: int | None = None,
    labels: Volume | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
) -> dict:
    """Register with the exported network on Lava; write outputs and ``report.json`` into ``out``."""
    from spikereg.registration.backends import LavaBackend

    iterations, patch_stride = run_options(meta, iterations, patch_stride)
    profiles = [load_profile(name) for name in DEFAULT_PROFILES]  # a bad profile fails before the long run
    start = time.perf_counter()
    with LavaBackend(model_path, backend=backend, precision=precision) as lava:
        result = register(fixed.data, moving.data, lava, iterations=iterations,
                          patch_stride=patch_stride, progress=progress)
        stats: BackendStats = lava.stats
    total = time.perf_counter() - start
    jac = jacobian_determinant(result.ddf)

    out = Path(out)
    staging = out.parent / f".{out.name}.{os.getpid()}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        outputs = dict(OUTPUTS)
        save_ddf(staging / OUTPUTS["ddf"], result.ddf, fixed.affine)
        save_volume(staging / OUTPUTS["warped"], result.warped, fixed.affine)
        if labels is not None:
            warped_labels = warp(labels.data, result.ddf, mode="nearest")
            outputs["warped_labels"] = "warped_labels.nii.gz"
            save_volume(staging / outputs["warped_labels"], warped_labels, fixed.affine, dtype=np.int16)
        report = {
            "inputs": {"fixed": str(fixed.path), "moving": str(moving.path), "model": str(model_path)},
            "shape": list(fixed.shape),
            "spacing": [round(s, 4) for s in fixed.spacing],
            "backend": backend,
            "precision": precision,
            "iterations": iterations,
            "patch_size": meta["model"]["patch_size"],
            "patch_stride": patch_stride,
            "patches_per_iteration": result.patches_per_iteration,
            "time_steps_per_patch": lava.codec.window,
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
            "outputs": outputs,
        }
        report["energy"] = energy_report(report, model_path, profiles)
        write_report(staging, report)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
