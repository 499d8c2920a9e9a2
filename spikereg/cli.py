"""The ``spikereg`` command line: a thin shell over the library.

Each command parses options, calls one library function and prints; every
expected failure (bad file, bad option, missing backend) is one red line on
stderr and exit code 1, with no partial outputs left behind.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Cheap to import (plain Python; yaml and a dict of paths: the help texts name the shipped configs and
# models). Every other SpikeReg module is imported inside the command that needs it, and only here:
# these are the package's only imports inside functions, kept there so that `spikereg --help` and each
# command start without importing torch, h5py, matplotlib, MONAI or Lava (tests/test_layers.py).
from spikereg import interrupts
from spikereg.config import load_config, shipped_configs
from spikereg.errors import SpikeRegError
from spikereg.options import check_bound, check_bounds, check_out_file, check_out_folder
from spikereg.pretrained import DEFAULT_MODEL, DEFAULT_NAME, SHIPPED, resolve_checkpoint, resolve_model, shipped_models

app = typer.Typer(
    help=(
        "SpikeReg: 3-D medical image registration with a spiking neural network "
        "trained in lava-dl SLAYER, exported to netx and run on Lava or Loihi 2.\n\n"
        "Pipeline: train -> export --to netx -> run --backend sim|loihi2 -> report."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make datasets from real anatomy (MNI ICBM152 in nilearn's package data).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

_SYNAPSES_HELP = ("sim only: how Lava holds each layer's synapses: 'conv' (stock netx's Conv, each depth-folded "
                  "weight whole, zero depth blocks included) or 'sparse' (Lava's Sparse lists of the nonzero "
                  "synapses only: the same field, and the energy report charges only what that build stores).")
_MODEL_HELP = ("Exported netx file (spikereg export) or a shipped model's name (" + ", ".join(SHIPPED)
               + "; 'spikereg models' lists them); default: " + DEFAULT_NAME + ", the most accurate.")
# --working-grid/--fixed-grid, not given / given: the library's grid (spikereg.registration.working_grid.GRIDS)
GRID_FLAGS = {None: "auto", True: "working", False: "fixed"}
_GRID_OPTION = typer.Option(
    None, "--working-grid/--fixed-grid",
    help="Where the network registers. Default: the model's working grid (its training spacing) when the "
         "fixed image's voxels differ from it by more than 25 %, except isotropic voxels finer than the "
         "model's by a power of two, registered at the model's spacing first, then on their own voxels. "
         "--working-grid: always the working grid (faster on fine scans, less accurate); --fixed-grid: the "
         "fixed grid as it is, with --pyramid levels on it.")


def _user_errors() -> tuple[type[BaseException], ...]:
    # Every SpikeReg error derives from SpikeRegError; ValueError and FileNotFoundError remain for
    # the checks that raise builtins (option parsing, typer's paths) and for libraries' refusals.
    return (SpikeRegError, FileNotFoundError, ValueError)


@contextmanager
def _cli_errors() -> Iterator[None]:
    """Turn expected failures into one line and exit code 1; SIGINT, SIGTERM, SIGHUP into one line and 128 + signal."""
    try:
        with interrupts.stop_signals_raise():  # SIGTERM and SIGHUP unwind like Ctrl-C: Lava stopped, staging removed
            yield
    except KeyboardInterrupt as error:
        console.print(f"[red]{interrupts.describe(error)}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(interrupts.exit_code(error))
    except _user_errors() as error:
        message = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


class LoggedProgress(Progress):
    """rich's bar on a terminal; where stderr is a file or a pipe (batch jobs, CI logs), a plain line now and then.

    A redirected rich bar shows nothing until it ends, so a 10-minute training
    run in a log file would say nothing at all: there, every ``every_s``
    seconds (and when a task that ran longer completes), one line with the
    bar's own fields. ``SPIKEREG_PROGRESS_SECONDS`` sets the interval; 0 turns
    the lines off (the test suite does, so that a slow machine's output stays
    what the tests expect).
    """

    every_s = float(os.environ.get("SPIKEREG_PROGRESS_SECONDS", "30") or 30)

    def __init__(self, *columns, **options) -> None:
        super().__init__(*columns, **options)
        self._logged: dict = {}

    def add_task(self, *args, **fields):
        task_id = super().add_task(*args, **fields)
        self._logged[task_id] = time.monotonic()
        return task_id

    def update(self, task_id, **fields) -> None:
        super().update(task_id, **fields)
        if self.console.is_terminal or self.every_s <= 0:
            return
        with self._lock:
            task = self._tasks[task_id]
            now = time.monotonic()
            # the end of a task that already logged (short work stays as quiet as before)
            finished = (task.total is not None and task.completed >= task.total
                        and (task.elapsed or 0) >= self.every_s)
            last = self._logged.get(task_id, now)
            if last == math.inf or (now - last < self.every_s and not finished):
                return
            self._logged[task_id] = math.inf if finished else now  # a finished task says so once
            count = f"{task.completed:g}/{task.total:g}" if task.total is not None else f"{task.completed:g}"
            line = f"{task.description}: {count}  {task.fields.get('info', '')}".rstrip()
            elapsed = int(task.elapsed or 0)
        self.console.print(f"{line}  [{elapsed // 60}:{elapsed % 60:02d}]", markup=False, highlight=False,
                           soft_wrap=True)


def _progress() -> Progress:
    return LoggedProgress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
    )


@app.command()
def train(
    config: Optional[List[Path]] = typer.Option(None, "--config", "-c",
                                                help="YAML config file, or a shipped config's name ("
                                                     + ", ".join(shipped_configs()) + "; demo is "
                                                     "configs/demo.yaml); repeat to merge (later files "
                                                     "win, key by key)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Output folder (checkpoints/, config.yaml, train_log.csv, tensorboard/)."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set train.steps=100"),
    resume: Optional[Path] = typer.Option(None, "--resume",
                                          help="Continue the run in this folder from checkpoints/last.pt, with its "
                                               "own config; it ends where an uninterrupted run would."),
) -> None:
    """Train the spiking registration network (SLAYER, surrogate gradients) on synthetic real-anatomy pairs.

    Multi-process (data parallel, same result as one process):
    torchrun --standalone --nproc_per_node 2 -m spikereg train --config ... --out ...
    """
    with _cli_errors():
        from spikereg.training.trainer import check_twin_from, resume_config
        from spikereg.training.trainer import train as run_training

        if resume is not None:
            if config or overrides or (out is not None and out != resume):
                raise ValueError(f"--resume {resume}: a resumed run keeps its own folder and config; "
                                 "leave out --config, --set and --out")
            cfg, out = resume_config(resume), resume
        elif not config or out is None:
            raise ValueError("train needs --config FILE|NAME and --out DIR (or --resume DIR)")
        else:
            # before the config is read and pairs are made: a run into an old run's folder would mix
            # their checkpoints and logs
            check_out_folder(out, hint=f"give a new folder, or continue that run with --resume {out}")
            cfg = load_config(config, overrides)
            check_twin_from(cfg)  # a bad twin_from/twin_init is one line before the progress bar starts
        if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 shows progress and writes
            run_training(cfg, out, resume=resume is not None)
            return
        with _progress() as bar:
            task = bar.add_task("training", total=cfg.train.steps, info="preparing pairs")

            def report(step: int, total: int, row: dict) -> None:
                info = f"loss {row['loss']:.4f}"
                if "stage" in row:  # the ANN twin's pre-training, before SNN step 1
                    bar.update(task, description=row["stage"], info=info)
                    return
                if "val_error_voxels" in row:
                    report.val = f"  val EPE {row['val_error_voxels']:.3f} vox"
                bar.update(task, description="SNN", completed=step, info=info + getattr(report, "val", ""))

            try:
                best = run_training(cfg, out, progress=report, resume=resume is not None)
            except KeyboardInterrupt:
                bar.stop()
                if (Path(out) / "checkpoints" / "last.pt").is_file():
                    console.print(f"continue with: spikereg train --resume {out}", highlight=False, soft_wrap=True)
                raise
        console.print(f"best checkpoint: {best}")


def _export_nir(net, cfg, out: Path, verify_patches: int, range_mode: str) -> None:
    """``export --to nir``: the chip's quantization (a netx file, kept out of sight), then its NIR graph."""
    import tempfile

    from lava_export.netx import export_netx
    from lava_export.nir_graph import NirExportError, export_nir

    if cfg.model.neuron.type != "cuba":
        raise NirExportError(f"--to nir: the checkpoint's neurons are {cfg.model.neuron.type!r}; NIR has no "
                             "sigma-delta neuron, so only CUBA networks (model.neuron.type: cuba) export to NIR")
    with tempfile.TemporaryDirectory(prefix="spikereg-nir-") as folder:
        quantized = Path(folder) / "model.net"
        export_netx(net, quantized, spacing=cfg.data.spacing, run_defaults=asdict(cfg.run), verify_patches=0,
                    profile=None, range_mode=range_mode)
        console.print(f"exporting the chip's quantized network -> {out}"
                      + (" (verifying in snnTorch)" if verify_patches else ""))
        result = export_nir(quantized, out, verify_patches=verify_patches, spacing=cfg.data.spacing)
    console.print(f"wrote {out}")
    if result is not None:
        layers = ", ".join(f"{a:.4f}" for a in result.layer_agreement)
        console.print(f"verified in {result.framework}: {result.patches} patches x {result.time_steps} steps; "
                      f"neuron-steps equal to SLAYER per layer {layers} (required {result.required}); readout "
                      f"through the NIR graph alone {result.readout_agreement:.4f} (the chip truncates its "
                      "decayed current, NIR does not: README 'NIR')", highlight=False, soft_wrap=True)


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint from 'spikereg train' (checkpoints/best.pt) or a "
                                           "shipped model's name (" + ", ".join(SHIPPED) + ")."),
    to: str = typer.Option("netx", "--to", help="Export format: 'netx' (lava-dl netx HDF5) or 'nir' (a NIR "
                                                "graph of the chip's quantized CUBA network, checked in snnTorch)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file, e.g. model.net or model.nir."),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Run sample patches through SLAYER and Lava and require equal spikes."),
    verify_patches: int = typer.Option(4, help="Real-anatomy patches used for verification."),
    profile: str = typer.Option("loihi2", "--profile",
                                help="Chip the network must fit (hardware_profiles/ name or YAML path); "
                                     "'none' skips the check. Writes <model>.map.json."),
    range_mode: str = typer.Option("proven", "--range",
                                   help="proven: refuse a network that some input could drive past the chip's "
                                        "integer widths (worst case from the weights); guarded: export it "
                                        "anyway, every run then checks its layers and stops at the range; "
                                        "saturate (sdnn): make it provable (spike_exp 0, saturated layers)."),
    spike_exp: Optional[int] = typer.Option(None, "--spike-exp",
                                            help="sdnn: graded spikes with 6 + N fractional bits (netx's "
                                                 "spike_exp; default the checkpoint's, 6): each step down "
                                                 "doubles the 24-bit range and halves the precision."),
    stream: bool = typer.Option(False, "--stream",
                                help="sdnn: stream patches back to back (what --backend loihi2 runs) instead of "
                                     "each from rest (the default, on torch and sim)."),
) -> None:
    """Export a checkpoint to a netx HDF5 file that stock lava.lib.dl.netx loads, and verify it on Lava."""
    with _cli_errors():
        from lava_export.netx import export_netx, mapping_summary, range_summary, resolve_profile, sidecar
        from spikereg.training.trainer import load_checkpoint

        if to not in ("netx", "nir"):
            raise ValueError(f"--to {to!r}: unsupported export format; choose 'netx' or 'nir'")
        check_out_file(out)
        check_bound("--verify-patches", verify_patches)
        chip = None if profile.lower() == "none" else resolve_profile(profile)  # a bad name fails first
        checkpoint = resolve_checkpoint(checkpoint)
        net, cfg = load_checkpoint(checkpoint)
        if cfg.model.architecture == "unet":
            _export_unet(net, cfg, checkpoint, to, out, verify_patches if verify else 0, chip, range_mode, spike_exp)
            return
        if to == "nir":
            _export_nir(net, cfg, out, verify_patches if verify else 0, range_mode)
            return
        console.print(f"exporting {checkpoint} -> {out}" + (" (verifying on Lava)" if verify else ""))
        result = export_netx(net, out, spacing=cfg.data.spacing, run_defaults=asdict(cfg.run),
                             verify_patches=verify_patches if verify else 0, profile=chip, range_mode=range_mode,
                             spike_exp=spike_exp, stream=stream)
        console.print(f"wrote {out}")
        console.print(range_summary(out), highlight=False, soft_wrap=True)
        if chip is not None:
            console.print(mapping_summary(json.loads(sidecar(out, "map").read_text())), highlight=False,
                          soft_wrap=True)
        if result is not None and result.tolerance:  # SDNN: graded values, within the derived tolerance
            console.print(
                f"verified: {result.patches} patches, Lava == SLAYER within {result.tolerance:g} on all "
                f"{result.readout_elements} readout values and {result.graded_values_compared} graded values "
                f"(largest difference {result.max_graded_error:g}), and on every layer's message counts "
                f"({sum(result.layer_spikes_lava)} graded spikes), on template patches and "
                f"{len(result.stress_kinds)} unlike them ({', '.join(result.stress_kinds)}); largest summed "
                f"input {max(result.summed_input_peaks):.1f} on {result.range_patches} patches, against the "
                f"+-{result.summed_input_limit:g} the chip holds"
            )
        elif result is not None:
            console.print(
                f"verified: {result.patches} patches, Lava == SLAYER on all "
                f"{result.readout_elements} readout values and every layer's spike counts "
                f"({sum(result.layer_spikes_lava)} spikes)"
            )


def _export_unet(net, cfg, checkpoint: Path, to: str, out: Path, verify_patches: int, chip, range_mode: str,
                 spike_exp: Optional[int]) -> None:
    """``spikereg export`` of a U-Net checkpoint: a graph netx file, proven in range, verified on Lava from rest."""
    from lava_export.graph_verify import export_unet
    from lava_export.netx import sidecar

    if to != "netx":
        raise ValueError(f"--to {to}: a U-Net exports to netx (a graph file); NIR 1.0 has no node for its "
                         "upsampling edges, nor for sigma-delta neurons")
    if range_mode != "proven":
        raise ValueError(f"--range {range_mode}: a U-Net is always exported proven in range (its conversion "
                         "saturated every node at spike_exp 0)")
    if spike_exp is not None and spike_exp != cfg.model.spike_exp:
        raise ValueError(f"--spike-exp {spike_exp}: a U-Net keeps the spike_exp its conversion proved "
                         f"({cfg.model.spike_exp})")
    console.print(f"exporting {checkpoint} -> {out}" + (" (verifying on Lava, every patch from rest)"
                                                       if verify_patches else ""))
    result = export_unet(net, out, spacing=cfg.data.spacing, run_defaults=asdict(cfg.run),
                         verify_patches=verify_patches, profile=chip)
    console.print(f"wrote {out}: a graph netx file ({len(net.nodes)} layers, {len(net.edges)} edges), proven in "
                  "the chip's range for every input", highlight=False, soft_wrap=True)
    if chip is not None:
        mapping = json.loads(sidecar(out, "map").read_text())
        console.print(f"{chip.name}: {mapping['cores']} cores on {mapping['chips']} chip(s), nonzero synapses "
                      f"{mapping['total_nonzero']:,} of {mapping['total_synapses']:,}", highlight=False)
    if result is not None:
        console.print(f"verified: {result.patches} patches from rest ({', '.join(sorted(set(result.kinds)))}), "
                      f"Lava == SLAYER on every layer (largest difference {max(result.max_error):g}, "
                      f"{sum(result.messages_lava):,} graded spikes, none off their step)", highlight=False,
                      soft_wrap=True)


@app.command()
def run(
    fixed: Optional[Path] = typer.Option(None, "--fixed", "-f", help="Fixed image (NIfTI)."),
    moving: Optional[Path] = typer.Option(None, "--moving", "-m", help="Moving image (NIfTI), any grid that overlaps "
                                          "--fixed in world space (resampled through the affines)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: ddf.nii.gz, warped.nii.gz, report.json "
                             "(with --pairs: one folder per pair and cohort.csv)."),
    model: Optional[Path] = typer.Option(None, "--model", metavar="PATH|NAME", help=_MODEL_HELP),
    backend: str = typer.Option("sim", "--backend", "-b",
                                help="torch: SLAYER on the file's quantized weights (fast, same field); "
                                     "sim: Lava CPU simulator; loihi2: Loihi 2 chip (needs lava-loihi)."),
    device: str = typer.Option("cpu", help="torch only: cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(32, help="torch only: patches per forward pass."),
    precision: str = typer.Option("fixed", help="sim only: 'fixed' (Loihi-exact) or 'float' models."),
    synapses: str = typer.Option("conv", help=_SYNAPSES_HELP),
    iterations: Optional[int] = typer.Option(None, help="Refinement iterations per pyramid level "
                                             "(default: the model's)."),
    patch_stride: Optional[int] = typer.Option(None, help="Voxels between patch origins (default: the model's); "
                                               "larger is faster, smaller overlaps more."),
    pyramid: int = typer.Option(1, help="Coarse-to-fine levels at and above the model's spacing, each halving "
                                "the volume (1: the model's spacing only); catches displacements larger than "
                                "the model's range. Scans finer than the model get their finer levels on top "
                                "(see --working-grid/--fixed-grid)."),
    smoothing: Optional[float] = typer.Option(None, help="Gaussian sigma (voxels) blurring each iteration's "
                                              "residual field, as demons does (default: the model's; 0: none)."),
    memory_budget: Optional[float] = typer.Option(None, help="GB; refuse, before any work, a volume whose "
                                                  "estimated peak memory exceeds it."),
    moving_labels: Optional[Path] = typer.Option(None, help="Label map to warp with the field (nearest)."),
    pairs: Optional[Path] = typer.Option(None, help="CSV of pairs (columns fixed, moving[, moving_labels, name]; "
                                         "paths relative to the CSV) instead of --fixed/--moving."),
    engine: str = typer.Option("local", help="--pairs: 'local' (in this process) or 'dask'."),
    address: Optional[str] = typer.Option(None, help="--engine dask: scheduler address (tcp://host:8786); "
                                          "default: a local cluster of --workers processes."),
    workers: int = typer.Option(2, help="--engine dask without --address: local worker processes."),
    keep_failed: bool = typer.Option(False, "--keep-failed",
                                     help="Write the outputs of a failed registration (implausible field, or a "
                                          "layer at the chip's range), marked failed in report.json; the exit "
                                          "code still says it failed."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing, non-empty --out folder as a whole (without it, "
                                        "such a folder is refused)."),
    resume: bool = typer.Option(False, "--resume", help="--pairs: keep the pairs an earlier run into --out "
                                "registered with the same files, model and options; run the rest."),
    affine: str = typer.Option("auto", "--affine", metavar="auto|none|FILE",
                               help="Affine pre-alignment before the network: auto (SimpleITK, Mattes MI, "
                                    "multi-resolution, centre-of-mass start), none, or an ITK transform file "
                                    "(.tfm/.mat, fixed -> moving points). Saved as affine.tfm."),
    use_working_grid: Optional[bool] = _GRID_OPTION,
    percentiles: str = typer.Option("1,99", "--percentiles", metavar="LOW,HIGH",
                                    help="Intensity normalisation: these percentiles of each image map to 0 and 1."),
    histogram_match: bool = typer.Option(False, "--histogram-match",
                                         help="Match the moving image's histogram to the fixed one's (SimpleITK) "
                                              "before registering (the output keeps the original intensities)."),
    n4: bool = typer.Option(False, "--n4", help="N4 bias-field correction of both images (SimpleITK, on a shrunk "
                                                 "image) before registering."),
    ddf_format: str = typer.Option("voxels", "--ddf-format", metavar="voxels|itk",
                                   help="itk: also write ddf_itk.nii.gz, the field (affine included) as an ITK "
                                        "displacement field (mm, LPS, fixed grid) that antsApplyTransforms, "
                                        "SimpleITK and ITK-SNAP apply."),
) -> None:
    """Register MOVING onto FIXED (or every row of --pairs) with the exported network."""
    with _cli_errors():
        from spikereg.data.intensity import parse_percentiles
        from spikereg.data.io import DDF_FORMATS
        from spikereg.netx_file import read_metadata
        from spikereg.registration.backends import check_backend
        from spikereg.registration.pipeline import (
            declared_shape,
            load_inputs,
            preflight,
            run_options,
            run_registration,
            spacing_note,
        )
        from spikereg.registration.working_grid import registration_grid

        check_bounds({"--iterations": iterations, "--patch-stride": patch_stride, "--pyramid": pyramid,
                      "--smoothing": smoothing, "--batch-size": batch_size, "--memory-budget": memory_budget,
                      "--workers": workers})
        lohi = parse_percentiles(percentiles)
        if ddf_format not in DDF_FORMATS:
            raise ValueError(f"--ddf-format {ddf_format!r}: choose 'voxels' (ddf.nii.gz only) or 'itk' "
                             "(also ddf_itk.nii.gz)")
        if affine not in ("auto", "none"):
            from spikereg.registration.affine import read_transform

            read_transform(Path(affine))  # a bad file fails now, before any work
        if resume and pairs is None:
            raise ValueError("--resume applies to --pairs only (a single pair is one run: run it again)")
        # a bad --out fails now, not after the registration; --resume continues an earlier cohort's folder
        check_out_folder(out, overwrite=overwrite, keep_existing=resume)

        if pairs is not None and (fixed or moving or moving_labels):
            raise ValueError("--pairs replaces --fixed, --moving and --moving-labels; give one or the other")
        if pairs is None and (fixed is None or moving is None):
            raise ValueError("run needs --fixed and --moving (or --pairs CSV)")
        check_backend(backend, precision, device, synapses)  # fails now, before any work

        model = DEFAULT_MODEL if model is None else resolve_model(model)
        meta = read_metadata(model)
        iterations, patch_stride, smoothing = run_options(meta, iterations, patch_stride, smoothing)
        options = dict(backend=backend, precision=precision, synapses=synapses, device=device, batch_size=batch_size,
                       iterations=iterations, patch_stride=patch_stride, pyramid=pyramid, smoothing=smoothing,
                       memory_budget_gb=memory_budget, affine=affine if affine in ("auto", "none") else str(
                           Path(affine).resolve()), grid=GRID_FLAGS[use_working_grid], percentiles=lohi,
                       histogram_match=histogram_match, n4=n4, ddf_format=ddf_format)
        if pairs is not None:
            from spikereg.registration.cohort import COHORT_CSV, FAILED, CohortError, read_pairs, register_cohort

            specs = read_pairs(pairs)
            with _progress() as bar:
                task = bar.add_task(f"pairs ({engine})", total=len(specs), info="")
                rows = register_cohort(specs, model, out, engine=engine, address=address, workers=workers,
                                       progress=lambda done, total: bar.update(task, completed=done),
                                       overwrite=overwrite, resume=resume, **options)
            for row in rows:
                if row["status"] == FAILED:
                    console.print(f"{row['name']}: [red]failed[/red] ({row['message']})", highlight=False,
                                  soft_wrap=True)
                else:
                    console.print(f"{row['name']}: NCC {row['ncc_before']:.4f} -> {row['ncc_after']:.4f}"
                                  + (f" ({row['message']})" if row["message"] else ""), highlight=False)
            failed = sum(row["status"] == FAILED for row in rows)
            if failed:  # the others' outputs are kept; the exit code says the cohort is not complete
                raise CohortError(f"{failed} of {len(rows)} pairs failed, see {Path(out) / COHORT_CSV}")
            console.print(f"outputs in {out}: one folder per pair, {COHORT_CSV}")
            return
        shape = declared_shape(fixed, "--fixed")  # the budget from the header, before any voxel is read
        if shape is not None:
            preflight(shape, meta, backend, pyramid, memory_budget, batch_size)
        fixed_vol, moving_vol, labels = load_inputs(fixed, moving, moving_labels, limit_gb=memory_budget)
        plan = registration_grid(fixed_vol, meta, options["grid"], pyramid)
        preflight(plan.shape, meta, backend, plan.pyramid, memory_budget, batch_size)
        note = spacing_note(fixed_vol, meta, model, plan=plan)
        if note is not None:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
        with _progress() as bar:
            task = bar.add_task("registering", total=None, info="")

            def report(stage: str, done: int, total: int, spikes: int) -> None:
                bar.update(task, description=stage, completed=done, total=total, info=f"{spikes:,} spikes")

            result = run_registration(fixed_vol, moving_vol, model, meta, out, labels=labels, progress=report,
                                      keep_failed=keep_failed, overwrite=overwrite, **options)
        sim = result["similarity"]
        console.print(f"NCC moving vs fixed {sim['ncc_before']:.4f} -> warped vs fixed {sim['ncc_after']:.4f}")
        console.print(f"outputs in {out}: " + ", ".join(result["outputs"].values()))


@app.command()
def report(
    folder: Path = typer.Argument(..., help="Output folder of 'spikereg run'."),
    pages: bool = typer.Option(True, "--pages/--no-pages",
                               help="Also write report.md, report.html and figures/ into FOLDER."),
) -> None:
    """Print a readable summary of a run's report.json; write report.md and a self-contained report.html."""
    with _cli_errors():
        from spikereg.report.summary import read_report, render

        result = read_report(folder)
        Console().print(render(result), highlight=False)
        if pages:
            from spikereg.report.html import write_pages

            with console.status("drawing figures") as status:
                written = write_pages(folder, result, progress=lambda what: status.update(f"drawing {what}"))
            for note in written.notes:
                console.print(f"[yellow]not shown:[/yellow] {note}", highlight=False, soft_wrap=True)
            console.print(f"wrote {written.markdown}, {written.html} and {len(written.figures)} figures")


@app.command()
def vis(
    fixed: Path = typer.Option(..., "--fixed", "-f", help="Fixed image (NIfTI)."),
    moving: Path = typer.Option(..., "--moving", "-m", help="Moving image (NIfTI), on the fixed image's grid."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs (and slices.gif)."),
    warped: Optional[Path] = typer.Option(None, "--warped", "-w", help="Warped moving image (NIfTI)."),
    ddf: Optional[Path] = typer.Option(None, "--ddf", "-d", help="Displacement field (ddf.nii.gz of 'spikereg run')."),
    plane: Optional[str] = typer.Option(None, "--plane",
                                        help="axial, coronal or sagittal: PNGs of this plane only "
                                             "and the GIF's plane (default: all three; GIF axial)."),
    gif: bool = typer.Option(False, "--gif", help="Also write slices.gif, paging through the slices."),
) -> None:
    """Pictures of a registration from NIfTI files: slices, checkerboard, deformation grid, Jacobian, GIF."""
    with _cli_errors():
        from spikereg.report.vis import visualize

        with console.status("drawing") as status:
            written = visualize(fixed, moving, out, warped=warped, ddf=ddf, plane=plane, gif=gif,
                                progress=lambda what: status.update(f"drawing {what}"))
        console.print(f"wrote {len(written)} files to {out}: " + ", ".join(p.name for p in written))


@app.command(name="map")
def map_command(
    model: Path = typer.Argument(..., help="netx HDF5 file or a shipped model's name (" + ", ".join(SHIPPED) + ")."),
    profile: str = typer.Option("loihi2", help="Hardware profile name (hardware_profiles/) or YAML path."),
    synapses: str = typer.Option(
        "conv", "--synapses",
        help="How a sequential file's synapses are built: 'conv' (default), as stock netx builds it, Lava's "
             "Conv holding each depth-folded weight whole, so synapses on zero weights take synaptic memory; "
             "'sparse', Lava's Sparse lists of the nonzero synapses only (lava_export's LavaGraph, verified equal "
             "to SLAYER), so zero weights take none and fewer cores are needed. Graph (U-Net) files are always "
             "mapped with nonzero synapses only."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Neurons, synapses, synaptic memory and cores the network needs on a chip."""
    with _cli_errors():
        from spikereg.hardware.graph_mapping import map_model  # graph files (skip connections) edge by edge

        result = map_model(resolve_model(model), profile, synapses)
        # soft_wrap: rich would break long lines at the terminal width, splitting table rows and JSON strings
        Console().print(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text(), highlight=False,
                        soft_wrap=True)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """The shipped models, whose names --model takes: what each is, whether its files are here, their sizes."""
    with _cli_errors():
        from rich.table import Table

        rows = shipped_models()
        if as_json:
            Console().print(json.dumps(rows, indent=2), highlight=False, soft_wrap=True)
            return
        table = Table(title="Shipped models: spikereg run --model NAME")
        for column in ("name", "description", "files", "netx", "checkpoint"):
            table.add_column(column, justify="right" if column in ("netx", "checkpoint") else "left",
                             overflow="fold", no_wrap=column in ("name", "files"))  # what users type or scan for
        for row in rows:
            sizes = [f"{row[kind + '_bytes'] / 1e6:.2f} MB" if row[kind + "_bytes"] is not None
                     else "[red]missing[/red]" for kind in ("netx", "checkpoint")]
            table.add_row(row["name"] + (" (default)" if row["default"] else ""), row["description"],
                          "[green]present[/green]" if row["present"] else "[red]not installed[/red]", *sizes)
        Console().print(table)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", "-o",
                             help="Output folder: train/, val/, test/ in DeepReg's paired layout "
                                  "(fixed_images/, moving_images/, fixed_labels/, moving_labels/, ddfs/)."),
    pairs: int = typer.Option(4, help="Number of pairs, over all splits."),
    spacing: float = typer.Option(4.0, help="Voxel size in mm."),
    split: str = typer.Option("0.7,0.15,0.15", help="Fractions of pairs for train,val,test (sum 1)."),
    deformation: str = typer.Option("bspline", help="bspline: small-displacement B-spline fields; "
                                                    "diffeomorphic: integrated random velocity fields."),
    max_displacement: float = typer.Option(3.0, help="Largest ground-truth displacement (diffeomorphic: "
                                                     "velocity), voxels."),
    control_spacing: int = typer.Option(8, help="Voxels between the random field's control points."),
    noise_std: float = typer.Option(0.02, help="Gaussian intensity noise (images in [0, 1])."),
    bias_field: float = typer.Option(0.0, help="Smooth multiplicative bias field: largest |log gain| "
                                               "(0.2 is a strong MR bias); 0 = none."),
    gamma_std: float = typer.Option(0.0, help="Contrast change: image ** g, log g ~ N(0, gamma-std) "
                                              "(0.1 is typical); 0 = none."),
    seed: int = typer.Option(0, help="Random seed (same seed and options, same files)."),
) -> None:
    """Synthetic pairs (fixed, moving, ground-truth ddf, tissue labels) from the MNI template."""
    with _cli_errors():
        from spikereg.data import write_dataset
        from spikereg.data.synth import check_options, split_sizes

        check_bounds({"--pairs": pairs, "--spacing": spacing, "--max-displacement": max_displacement,
                      "--control-spacing": control_spacing, "--noise-std": noise_std, "--bias-field": bias_field,
                      "--gamma-std": gamma_std})
        check_out_folder(out, keep_existing=True)  # synth replaces whole splits inside an existing dataset

        fractions = _split_fractions(split)
        split_sizes(pairs, fractions)  # bad options fail before the progress bar
        check_options(deformation=deformation, noise_std=noise_std, bias_field=bias_field, gamma_std=gamma_std)
        with _progress() as bar:
            task = bar.add_task("pairs", total=pairs, info="")
            written = write_dataset(out, pairs, spacing=spacing, seed=seed, max_displacement=max_displacement,
                                    control_spacing=control_spacing, noise_std=noise_std, deformation=deformation,
                                    bias_field=bias_field, gamma_std=gamma_std, split=fractions,
                                    progress=lambda done, total: bar.update(task, completed=done))
        console.print(f"wrote {pairs} pairs to {out}: "
                      + ", ".join(f"{name} {len(files)}" for name, files in written.items()))


def _split_fractions(split: str) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(part) for part in split.split(","))
    except ValueError:
        fractions = ()
    if len(fractions) != 3:
        raise ValueError(f"--split {split}: expected three comma-separated fractions train,val,test "
                         "(e.g. 0.7,0.15,0.15)")
    return fractions


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", "-d", help="Dataset folder in DeepReg's paired, unpaired or grouped "
                                                        "layout (NIfTI or HDF5), e.g. from 'spikereg data synth'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: metrics.csv, metrics_per_label.csv, "
                                                      "metrics_summary.csv (and pairs/ with --save-outputs)."),
    split: Optional[str] = typer.Option("test", help="Subfolder of --data to evaluate (train, val, test); "
                                                     "'' for --data itself."),
    model: Optional[Path] = typer.Option(None, "--model", metavar="PATH|NAME", help=_MODEL_HELP),
    backend: str = typer.Option("torch", "--backend", "-b",
                                help="torch: SLAYER on the file's weights (fast, same spikes as Lava); "
                                     "sim: Lava CPU simulator; loihi2: Loihi 2 chip."),
    precision: str = typer.Option("fixed", help="sim only: 'fixed' (Loihi-exact) or 'float' models."),
    synapses: str = typer.Option("conv", help=_SYNAPSES_HELP),
    device: str = typer.Option("cpu", help="torch only: cpu, cuda or cuda:N."),
    iterations: Optional[int] = typer.Option(None, help="Refinement iterations (default: the model's)."),
    patch_stride: Optional[int] = typer.Option(None, help="Voxels between patch origins (default: the model's)."),
    pyramid: int = typer.Option(1, help="Coarse-to-fine levels at and above the model's spacing, as for "
                                "'spikereg run' (1: the model's spacing only)."),
    use_working_grid: Optional[bool] = _GRID_OPTION,
    smoothing: Optional[float] = typer.Option(None, help="Gaussian sigma (voxels) blurring each iteration's "
                                              "residual field, as demons does (default: the model's; 0: none)."),
    batch_size: int = typer.Option(32, help="torch only: patches per forward pass."),
    save_outputs: bool = typer.Option(False, "--save-outputs",
                                      help="Also write each pair's ddf, warped image and labels under pairs/."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing, non-empty --out folder as a whole (without it, "
                                        "such a folder is refused)."),
    percentiles: str = typer.Option("1,99", "--percentiles", metavar="LOW,HIGH",
                                    help="Intensity normalisation: these percentiles of each image map to 0 and 1."),
    histogram_match: bool = typer.Option(False, "--histogram-match",
                                         help="Match each moving image's histogram to its fixed image's first."),
    n4: bool = typer.Option(False, "--n4", help="N4 bias-field correction of both images of each pair first."),
    l2r: Optional[Path] = typer.Option(None, "--l2r", metavar="FOLDER",
                                       help="Also write every pair's field as Learn2Reg's evaluation reads it "
                                            "(disp_FFFF_MMMM.nii.gz, (D, H, W, 3) voxels) into FOLDER; the "
                                            "images must carry Learn2Reg case numbers (TASK_NNNN_NNNN.nii.gz)."),
) -> None:
    """Register every pair of a dataset split and write Dice, HD95, EPE, NCC, SDlogJ, folding, time and spikes."""
    with _cli_errors():
        from spikereg.data import load_dataset
        from spikereg.data.intensity import parse_percentiles
        from spikereg.evaluation import EVALUATION_FILES
        from spikereg.evaluation import evaluate as run_evaluation
        from spikereg.netx_file import read_metadata
        from spikereg.registration.backends import check_backend
        from spikereg.registration.pipeline import run_options

        check_bounds({"--iterations": iterations, "--patch-stride": patch_stride, "--pyramid": pyramid,
                      "--smoothing": smoothing, "--batch-size": batch_size})
        lohi = parse_percentiles(percentiles)
        check_out_folder(out, overwrite=overwrite)  # a bad --out fails now, not after every pair
        if l2r is not None:
            check_out_folder(l2r, overwrite=overwrite)

        dataset = load_dataset(data, split or None)
        check_backend(backend, precision, device, synapses)  # all of these fail now, before any work

        model = DEFAULT_MODEL if model is None else resolve_model(model)
        iterations, patch_stride, smoothing = run_options(read_metadata(model), iterations, patch_stride, smoothing)
        with _progress() as bar:
            task = bar.add_task("pairs", total=len(dataset), info=dataset.files[0].name)

            def report(done: int, total: int, name: str) -> None:
                bar.update(task, completed=done, info=name)

            result = run_evaluation(model, dataset, out, backend=backend, precision=precision, synapses=synapses,
                                    device=device,
                                    iterations=iterations, patch_stride=patch_stride, pyramid=pyramid,
                                    smoothing=smoothing, batch_size=batch_size, save_outputs=save_outputs,
                                    progress=report, overwrite=overwrite, percentiles=lohi,
                                    histogram_match=histogram_match, n4=n4, l2r=l2r,
                                    grid=GRID_FLAGS[use_working_grid])
        summary = result.summary
        for before, after, label in (("dice_before", "dice", "mean Dice"),
                                     ("epe_before_vox", "epe_vox", "EPE (voxels)"), ("ncc_before", "ncc", "NCC")):
            if summary[after]["count"]:
                console.print(f"{label}: {summary[before]['mean']:.4f} before -> {summary[after]['mean']:.4f} "
                              f"after (mean of {summary[after]['count']} pairs)")
        console.print(f"wrote {', '.join(EVALUATION_FILES.values())} to {out}")
        if l2r is not None:
            console.print(f"wrote {len(dataset)} Learn2Reg fields to {l2r}")


@app.command()
def warp(
    image: Path = typer.Option(..., "--image", "-i", help="Image or label map to warp (NIfTI)."),
    ddf: Path = typer.Option(..., "--ddf", "-d", help="Displacement field from 'spikereg run' (ddf.nii.gz)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output NIfTI file (.nii.gz or .nii)."),
    labels: bool = typer.Option(False, "--labels/--image-values", "--nearest",
                                help="A label map: nearest-neighbour sampling, integer output."),
    ddf_format: str = typer.Option("voxels", "--ddf-format", metavar="voxels|itk",
                                   help="voxels: spikereg's ddf.nii.gz; itk: an ITK displacement field (mm, LPS; "
                                        "'run --ddf-format itk' writes one, ANTs and SimpleITK too)."),
) -> None:
    """Warp any image or label map with a displacement field: out(x) = image(x + ddf(x))."""
    with _cli_errors():
        from spikereg.data import warp_file

        check_out_file(out)
        written = warp_file(image, ddf, out, labels=labels, ddf_format=ddf_format)
        console.print(f"wrote {written}")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
