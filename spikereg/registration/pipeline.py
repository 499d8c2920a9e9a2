"""``spikereg run`` as a library call: register, write NIfTI outputs and report.json.

Outputs are written into a hidden temporary folder beside ``out`` and moved
into place only when everything succeeded, so a failed or interrupted run
leaves no half-written files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from spikereg.config import ENCODINGS
from spikereg.data import (
    Volume,
    jacobian_determinant,
    normalize_intensity,
    save_ddf,
    save_itk_displacement,
    save_volume,
    warp,
)
from spikereg.data.intensity import DEFAULT_PERCENTILES, prepare
from spikereg.data.io import open_image, staged_folder
from spikereg.data.loaders import PairFiles, load_pair
from spikereg.data.world import describe_grid, resample_like, same_grid, sample_world
from spikereg.errors import SpikeRegError
from spikereg.hardware import load_profile
from spikereg.hardware.energy import DEFAULT_PROFILES
from spikereg.hardware.energy_section import energy_section
from spikereg.interrupts import on_interrupt_note
from spikereg.options import check_bound, check_bounds, check_out_folder
from spikereg.registration.affine import affine_stage, save_transform
from spikereg.registration.backends import open_backend
from spikereg.registration.counts import RASTER_NAME, save_raster
from spikereg.registration.lava_backends import LAVA_CHUNK
from spikereg.registration.register import BackendStats, check_patching, ncc, pyramid_shapes, register
from spikereg.registration.run_report import CHIP_PROFILE, chip_profile_section, layer_table, write_report
from spikereg.registration.verdict import RegistrationFailedError, failures, reach
from spikereg.registration.working_grid import GridPlan, field_onto_grid, native_levels, registration_grid

OUTPUTS = {"ddf": "ddf.nii.gz", "warped": "warped.nii.gz"}
ITK_DDF = "ddf_itk.nii.gz"  # --ddf-format itk: the same field as ITK reads it (mm, LPS)


def _similarity(fixed: np.ndarray, moving: np.ndarray, warped: np.ndarray) -> dict[str, float]:
    f, m, w = (normalize_intensity(v) for v in (fixed, moving, warped))
    return {
        "ncc_before": ncc(f, m),
        "ncc_after": ncc(f, w),
        "mse_before": float(np.mean((f - m) ** 2)),
        "mse_after": float(np.mean((f - w) ** 2)),
    }


def save_registration(folder: Path, ddf: np.ndarray, warped: np.ndarray, affine: np.ndarray,
                      labels: Volume | None = None, warped_labels: np.ndarray | None = None,
                      ddf_format: str = "voxels") -> dict[str, str]:
    """Write the field, the warped image and (nearest-neighbour) warped labels into ``folder``; their names.

    ``ddf_format`` "itk" also writes the field as an ITK displacement field
    (:data:`ITK_DDF`, :func:`spikereg.data.save_itk_displacement`) that
    antsApplyTransforms, SimpleITK and ITK-SNAP apply.

    ``labels`` on the field's grid are warped here; ``warped_labels``, when
    given, are written as they are (labels from another grid, warped by
    :func:`warp_onto_fixed`).
    """
    outputs = dict(OUTPUTS)
    save_ddf(Path(folder) / OUTPUTS["ddf"], ddf, affine)
    save_volume(Path(folder) / OUTPUTS["warped"], warped, affine)
    if ddf_format == "itk":
        outputs["ddf_itk"] = ITK_DDF
        save_itk_displacement(Path(folder) / ITK_DDF, ddf, affine)
    if labels is not None or warped_labels is not None:
        outputs["warped_labels"] = "warped_labels.nii.gz"
        if warped_labels is None:
            warped_labels = warp(labels.data, ddf, mode="nearest")
        save_volume(Path(folder) / outputs["warped_labels"], warped_labels, affine, dtype=np.int16)
    return outputs


def warp_onto_fixed(volume: Volume, ddf: np.ndarray, fixed_affine: np.ndarray, *, labels: bool = False
                    ) -> np.ndarray:
    """``volume`` (any grid) warped by a fixed-grid ``ddf``: out(p) = volume(V^-1 F (p + ddf(p))).

    On the fixed grid itself this is :func:`spikereg.data.warp` (bit for bit);
    otherwise one interpolation straight from the volume's own voxels
    (:func:`spikereg.data.world.sample_world`; linear, or nearest for labels).
    """
    if same_grid(volume, (ddf.shape[1:], fixed_affine)):
        return warp(volume.data, ddf, mode="nearest" if labels else "linear")
    return sample_world(volume, ddf.shape[1:], fixed_affine, order=0 if labels else 1, ddf=ddf)


def total_field(network_ddf: np.ndarray, affine: np.ndarray, world: np.ndarray | None) -> np.ndarray:
    """The fixed-grid field of the network's displacement followed by the affine ``world`` (4x4 RAS, fixed -> moving).

    p + ddf(p) = F^-1 A F (p + u(p)), so that warping the moving image with
    the result (:func:`warp_onto_fixed`) samples it where the affine takes the
    point the network moved p to.
    """
    if world is None:
        return network_ddf
    voxel = np.linalg.inv(affine) @ np.asarray(world, dtype=np.float64) @ affine  # fixed voxel -> fixed voxel
    shape = network_ddf.shape[1:]
    out = np.empty_like(network_ddf, dtype=np.float32)
    j, k = np.meshgrid(np.arange(shape[1], dtype=np.float64), np.arange(shape[2], dtype=np.float64), indexing="ij")
    for i in range(shape[0]):
        point = np.stack([np.full_like(j, i), j, k])
        moved = point + network_ddf[:, i]
        mapped = np.einsum("ab,b...->a...", voxel[:3, :3], moved) + voxel[:3, 3, None, None]
        out[:, i] = mapped - point
    return out


# ``spikereg run``'s options, by PairFiles field: messages name the option the user typed.
RUN_INPUT_OPTIONS = {"fixed": "--fixed", "moving": "--moving", "moving_labels": "--moving-labels"}


def load_inputs(fixed: Path, moving: Path, moving_labels: Path | None = None, *, limit_gb: float | None = None
                ) -> tuple[Volume, Volume, Volume | None]:
    """The fixed and moving images and the moving labels, if any, read and checked as a dataset's pair is.

    :func:`spikereg.data.loaders.load_pair` does the work: both images 3-D,
    on any grids that overlap in world space, the labels a 3-D label map or
    DeepReg's 4-D binary masks (D, H, W, L), turned into the label map, on a
    grid that overlaps the moving image's. The moving image and its labels
    stay on their own grids (:func:`run_registration` samples them from there
    once). ``limit_gb`` (``--memory-budget``) bounds each file's size as
    its header declares it, before any voxel is read.
    """
    files = PairFiles("input", Path(fixed), Path(moving),
                      moving_labels=Path(moving_labels) if moving_labels is not None else None)
    pair = load_pair(files, RUN_INPUT_OPTIONS, limit_gb=limit_gb, resample=False)
    return pair.fixed, pair.moving, pair.moving_labels


def declared_shape(path: Path, what: str) -> tuple[int, int, int] | None:
    """The 3-D shape a NIfTI header declares, without reading voxels; None where it is not a 3-D volume.

    For the memory budget, checked before the volumes are read; a file that
    is not a 3-D volume is reported by :func:`load_inputs` instead.
    """
    path, img = open_image(path, what)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3 or any(s != 1 for s in shape[3:]) or min(shape[:3]) < 1:
        return None
    return shape[:3]


def spacing_note(volume: Volume, meta: dict, model: str | Path, tolerance: float = 0.25,
                 plan: GridPlan | None = None) -> str | None:
    """A sentence where the images' voxels differ from those the model was trained on by more than ``tolerance``.

    Why: the network reads displacements in its own voxels within a fixed
    patch; at another spacing the anatomy in a patch and the motion it can
    see both change scale. Not an error -- the field is still a field -- but
    worth saying how the run meets it (``plan``: :func:`registration_grid`),
    or, without a plan, worth resampling for.
    """
    trained = meta.get("spacing_mm")
    if not trained:
        return None
    # per axis, not the mean: 1 x 1 x 3 mm voxels average to the 1.67 mm of no model, and
    # 4 x 4 x 1 mm ones to a 3 mm that a 4 mm model would pass while one axis is 4x off
    spacing = volume.spacing
    if all(abs(s - trained) <= tolerance * trained for s in spacing):
        return None
    if max(spacing) > (1 + tolerance) * min(spacing):
        has = "anisotropic voxels of " + " x ".join(f"{s:.3g}" for s in spacing) + " mm"
    else:
        has = f"{float(np.mean(spacing)):.3g} mm voxels"
    trained_on = f"model {model} was trained on {trained:g} mm voxels; {volume.path} has {has}: "
    if plan is None:
        return (trained_on + f"resample the images to about {trained:g} mm on every axis for its accuracy "
                "(or pick another model, 'spikereg models')")
    if plan.kind == "native":
        return (trained_on + f"registered at {trained:g} mm first, then on the images' own voxels ({plan.pyramid} "
                f"pyramid levels on the fixed grid; --working-grid registers on a {trained:g} mm working grid only, "
                "faster and less accurate: BENCHMARKS.md, 'Real pairs, read')")
    if plan.kind == "working":
        levels = native_levels(spacing, trained)
        hint = ("without --working-grid: then on the images' own voxels, more accurate" if levels else
                "--fixed-grid: register at the images' own spacing")
        return (trained_on + f"the pair is resampled onto a working grid of {trained:g} mm on every axis "
                f"({'x'.join(map(str, plan.shape))}), registered there, and the field brought back onto the "
                f"fixed grid ({hint})")
    return trained_on + "registered on the fixed grid as it is (--fixed-grid)"


@dataclass
class NetworkInput:
    """The pair as the network reads it, and the way back from its field to the fixed grid.

    ``fixed`` and ``moving`` lie on the registration grid (``plan``:
    :func:`registration_grid`, which also says the pyramid), the moving image through the
    affine pre-alignment ``aligned`` (None: no affine). Any engine with the
    backends' interface registers them (:func:`register`); :meth:`field`
    turns its field into the run's saved one. ``spikereg run`` and the
    benchmarks that compare other engines on the same input use this alone.
    """
    fixed: np.ndarray
    moving: np.ndarray
    plan: GridPlan
    aligned: object | None  # an affine.AffineResult
    intensity: dict
    moving_prepared: Volume  # the moving image after intensity preparation, on its own grid

    @property
    def on_working_grid(self) -> bool:
        return self.plan.on_working_grid

    @property
    def pyramid(self) -> int:
        return self.plan.pyramid

    @property
    def world(self) -> np.ndarray | None:
        return self.aligned.matrix if self.aligned is not None else None

    def field(self, network_ddf: np.ndarray, fixed: Volume) -> np.ndarray:
        """The saved field on ``fixed``'s grid: the network's ``network_ddf`` (registration grid), then the affine."""
        on_fixed = (field_onto_grid(network_ddf, self.plan.affine, fixed.shape, fixed.affine) if self.on_working_grid
                    else network_ddf)
        return total_field(on_fixed, fixed.affine, self.world)


def network_input(fixed: Volume, moving: Volume, meta: dict, *, affine: str | Path | None = None,
                  grid: str = "auto", pyramid: int = 1, percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                  histogram_match: bool = False, n4: bool = False) -> NetworkInput:
    """Prepare intensities, pre-align (an AffineError before any network work) and resample onto the network's grid.

    ``grid`` and ``pyramid``: :func:`registration_grid`; register with ``pyramid=`` the result's ``pyramid``.
    """
    plan = registration_grid(fixed, meta, grid, pyramid)
    grid_shape, grid_affine, on_working_grid = plan.shape, plan.affine, plan.on_working_grid
    fixed_in, moving_in, intensity = prepare(fixed, moving, histogram_match=histogram_match, n4=n4)
    intensity["percentiles"] = [float(p) for p in percentiles]
    aligned = affine_stage(affine, fixed_in, moving_in)
    world = aligned.matrix if aligned is not None else None
    fixed_g = resample_like(fixed_in, (grid_shape, grid_affine)).data if on_working_grid else fixed_in.data
    if world is None and same_grid(moving, (grid_shape, grid_affine)):
        moving_g = moving_in.data
    else:
        moving_g = sample_world(moving_in, grid_shape, grid_affine, world=world)
    return NetworkInput(fixed_g, moving_g, plan, aligned, intensity, moving_in)


def run_options(meta: dict, iterations: int | None, patch_stride: int | None,
                smoothing: float | None = None) -> tuple[int, int, float]:
    """Iterations, patch stride and residual smoothing: the given ones, else the model's defaults; checked."""
    # None, not any falsy value, means "not given": a given 0 is refused, never swapped for a default
    check_bounds({"--iterations": iterations, "--patch-stride": patch_stride, "--smoothing": smoothing})
    run_defaults = meta.get("run", {})
    iterations = run_defaults.get("iterations", 1) if iterations is None else iterations
    patch_stride = run_defaults.get("patch_stride", meta["model"]["patch_size"]) if patch_stride is None \
        else patch_stride
    smoothing = run_defaults.get("smoothing", 0.0) if smoothing is None else smoothing
    check_patching(meta["model"]["patch_size"], meta["reduction"], patch_stride)
    return iterations, patch_stride, smoothing


class MemoryBudgetError(SpikeRegError, ValueError):
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
    if check_bound("--memory-budget", budget_gb) is not None:
        if estimate > budget_gb * 1e9:
            raise MemoryBudgetError(
                f"--memory-budget {budget_gb:g} GB: registering a {'x'.join(map(str, shape))} volume on "
                f"--backend {backend} needs about {estimate / 1e9:.1f} GB at its peak; raise the budget, "
                "or resample the images to a coarser spacing")
    return estimate


def preflight(shape: tuple[int, ...], meta: dict, backend: str, pyramid: int = 1,
              memory_budget_gb: float | None = None, batch_size: int = 32) -> int:
    """The checks that need the volume's shape: pyramid depth, memory budget. Returns the memory estimate."""
    check_bounds({"--pyramid": pyramid, "--batch-size": batch_size})
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
    keep_failed: bool = False,
    overwrite: bool = False,
    affine: str | Path | None = None,
    grid: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    histogram_match: bool = False,
    n4: bool = False,
    ddf_format: str = "voxels",
    synapses: str = "conv",
) -> dict:
    """Register with the exported network on ``backend`` (torch, sim, loihi2); write outputs and ``report.json``.

    Everything that can be checked before the long run is: options, the
    pyramid depth against the model's patch, the memory budget, the hardware
    profiles of the energy report, and the backend itself. After it, the result
    is judged (:func:`spikereg.registration.verdict.failures`: range, NCC,
    folding, reach): an implausible one raises
    :class:`~spikereg.registration.verdict.RegistrationFailedError` and writes
    nothing, or with ``keep_failed`` writes everything with ``status: failed``
    in report.json, then raises. ``out`` must not be
    a file, nor a non-empty folder unless ``overwrite``: the folder is then
    replaced whole (:func:`spikereg.data.io.staged_folder`), never mixed with
    older outputs.

    Grids: ``moving`` (and ``labels``) may lie on any grid overlapping the
    fixed image's. ``affine`` ("auto", an ITK transform file, or None/"none":
    :func:`spikereg.registration.affine.affine_stage`) pre-aligns the moving
    image; the network registers on the grid ``grid`` and ``pyramid`` plan
    (:func:`registration_grid`: by default the model's working grid where the fixed
    image's spacing is far from the model's, or the fixed grid after the model's
    spacing for scans finer by a power of two), and its field is brought back onto the fixed
    grid. ``synapses`` (sim): how Lava holds each layer's synapses
    (:func:`~spikereg.registration.backends.open_backend`); the energy report charges
    what that build stores (``report.json``'s ``energy.synapse_accounting``).
    The saved field is the whole map, network then affine
    (:func:`total_field`), in voxels of the fixed grid, so that ``spikereg
    warp`` with it alone reproduces ``warped.nii.gz``. ``percentiles``,
    ``histogram_match`` and ``n4``: :mod:`spikereg.data.intensity`.
    """
    check_out_folder(out, overwrite=overwrite)

    iterations, patch_stride, smoothing = run_options(meta, iterations, patch_stride, smoothing)
    plan = registration_grid(fixed, meta, grid, pyramid)
    memory_estimate = preflight(plan.shape, meta, backend, plan.pyramid, memory_budget_gb, batch_size)
    profiles = [load_profile(name) for name in DEFAULT_PROFILES]  # a bad profile fails before the long run
    start = time.perf_counter()
    inputs = network_input(fixed, moving, meta, affine=affine, grid=grid, pyramid=pyramid,
                           percentiles=percentiles, histogram_match=histogram_match, n4=n4)
    grid_shape, grid_affine, on_working_grid = plan.shape, plan.affine, plan.on_working_grid
    aligned, world, intensity = inputs.aligned, inputs.world, inputs.intensity
    moving_on_fixed = same_grid(moving, fixed)
    with open_backend(model_path, backend=backend, precision=precision, device=device,
                      batch_size=batch_size, range_stop=not keep_failed, synapses=synapses) as engine:
        result = register(inputs.fixed, inputs.moving, engine, iterations=iterations, patch_stride=patch_stride,
                          pyramid=plan.pyramid, smoothing=smoothing, progress=progress, percentiles=percentiles)
        stats: BackendStats = engine.stats
        window = engine.codec.window
        guard = engine.guard
        model = engine.model  # the file as the backend read it: the energy report reads no other
    inputs.fixed = inputs.moving = None  # the registration grid's copies are done with
    ddf = inputs.field(result.ddf, fixed)
    if world is None and moving_on_fixed and not on_working_grid and inputs.moving_prepared is moving:
        warped = result.warped  # register() warped these very voxels with this very field
    else:
        warped = warp_onto_fixed(moving, ddf, fixed.affine)
    warped_labels = warp_onto_fixed(labels, ddf, fixed.affine, labels=True) if labels is not None else None
    total = time.perf_counter() - start
    jac = jacobian_determinant(ddf)
    moving_before = moving.data if moving_on_fixed else resample_like(moving, fixed).data
    similarity = _similarity(fixed.data, moving_before, warped)
    affine_section = None
    if aligned is not None:
        affine_only = warp_onto_fixed(moving, total_field(np.zeros_like(ddf), fixed.affine, world), fixed.affine)
        f_n = normalize_intensity(fixed.data)
        affine_section = aligned.section(ncc(f_n, normalize_intensity(moving_before)),
                                         ncc(f_n, normalize_intensity(affine_only)))
        del affine_only, f_n
    limit = reach(meta["model"]["max_displacement"], iterations, result.levels)
    # the network's own field, in voxels of the grid it ran on, against what the network can produce
    reasons = failures(result.ddf, similarity, float((jac <= 0).mean()), limit, guard.events)
    if reasons and not keep_failed:
        raise RegistrationFailedError(f"registration failed: {'; '.join(reasons)}. Nothing was written "
                                      "(--keep-failed writes the outputs, marked failed, for inspection)")

    with staged_folder(out, overwrite=overwrite) as staging:
        outputs = save_registration(staging, ddf, warped, fixed.affine, warped_labels=warped_labels,
                                    ddf_format=ddf_format)
        if aligned is not None:
            save_transform(aligned.transform, staging / "affine.tfm")
            outputs["affine"] = "affine.tfm"
        report = {
            "inputs": {"fixed": str(fixed.path), "moving": str(moving.path), "model": str(model_path)},
            "shape": list(fixed.shape),
            "spacing": [round(s, 4) for s in fixed.spacing],
            "backend": backend,
            "precision": precision,
            "synapses": synapses if backend == "sim" else None,  # how Lava's simulator held them
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
            "status": "failed" if reasons else "ok",
            "failure": reasons,
            "similarity": similarity,
            "jacobian": {"min": float(jac.min()), "fraction_nonpositive": float((jac <= 0).mean())},
            "timing": {
                "total_seconds": total,
                "network_seconds": stats.network_seconds,
                "compile_seconds": stats.compile_seconds,
                "host_seconds": result.host_seconds,
            },
            "memory": {"estimated_peak_bytes": memory_estimate, "budget_gb": memory_budget_gb},
            "outputs": outputs,
            "grids": {
                "fixed": describe_grid(fixed),
                "moving": describe_grid(moving),
                "moving_resampled": not moving_on_fixed,
                "registered_on": {"shape": list(grid_shape),
                                  "spacing": [round(float(v), 4) for v in np.linalg.norm(grid_affine[:3, :3], axis=0)],
                                  "working_grid": on_working_grid, "kind": plan.kind,
                                  "levels_finer_than_model": plan.native},
                "ddf": "voxels of the fixed grid along its array axes, fixed -> moving (network, then affine)",
            },
            "intensity": intensity,
            # the options that prepared the pair, as given (spikereg run --pairs --resume compares them)
            "preparation": {"affine": "none" if affine is None else str(affine), "grid": grid,
                            "percentiles": [float(p) for p in percentiles], "histogram_match": histogram_match,
                            "n4": n4},
        }
        if affine_section is not None:
            report["affine"] = affine_section
        # per patch / iteration / layer: spikes, synops, neuron updates
        if stats.counter is not None and stats.counter.counted:
            report["counts"] = stats.counter.section(stats.layer_neurons)
            if stats.counter.raster is not None:
                save_raster(staging / RASTER_NAME, stats.counter.raster)
        report["energy"] = energy_section(report, model, profiles, synapses=synapses)
        report["chip_profile"] = chip_profile_section(backend, load_profile(CHIP_PROFILE), stats.chip_profile)
        report["range"] = guard.section()
        report["reach_voxels"] = limit
        write_report(staging, report)
    if reasons:
        raise RegistrationFailedError(f"registration failed: {'; '.join(reasons)}; the outputs are in {out}, "
                                      "marked failed in report.json")
    return report
