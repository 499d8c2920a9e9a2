"""Real, different brains: Colin27 <-> MNI ICBM152 2009a, both directions, 2 mm and 1 mm, files as shipped.

The held-out test of the real-brains issue. Colin27 (Debian's ``mricron-data``,
``ch2bet.nii.gz``: one real subject, skull-stripped, 1 mm, its own grid) and
the MNI ICBM152 2009a average (nilearn's package data, 1 mm, another grid)
are registered in both directions. At 1 mm both files are used as shipped;
at 2 mm the fixed image is the other brain at 2 mm on its own axes and the
moving one is still the 1 mm file as shipped, so ``spikereg run`` resamples it
in world space itself. Nothing is trained or tuned on these pairs.

Rows, on the same pair in one run:

* identity: the moving labels resampled in world space onto the fixed grid;
* affine only: the same, through the affine ``spikereg run --affine auto`` wrote;
* SimpleITK diffeomorphic demons on the fixed image and the affinely aligned
  moving one (benchmarks/accuracy.py's settings);
* ANTs SyN (antspyx defaults: its own affine, then SyN) on the fixed image and
  the moving one resampled onto its grid;
* the ANN twin of the model's checkpoint, through the run's own input and
  output path (``network_input``: intensities, the run's affine.tfm, working
  grid; the field composed and applied as the run does) and its settings;
* the SNN on the netx file: ``spikereg run --backend torch`` and ``--backend sim``
  (Lava's fixed-point simulator), as a user runs them (subprocesses): at 1 mm
  and a 2 mm model, the model's spacing first, then the images' own voxels;
  with ``--working-grid-rows`` also ``--working-grid`` (the 2 mm grid alone).

Tissue labels are a silver standard: one automatic 3-class Gaussian mixture
on each image's brain intensities (classes ordered CSF < GM < WM), applied
identically to every image on its own grid (benchmarks/colin27_pair.py's
``tissue_classes``). Columns: GM and WM Dice, HD95 (mm, mean of GM and WM),
SDlogJ and % J <= 0 of the field on the fixed brain mask, seconds (wall,
including process start for the ``spikereg run`` rows).

Usage::

    .venv/bin/python benchmarks/real_pairs.py --out runs/real_pairs [--spacings 2 1] [--lava-spacings 2] [--write]
    # and, at 1 mm, also the 2 mm model on its working grid alone (spikereg run --working-grid)
    .venv/bin/python benchmarks/real_pairs.py --out runs/real_pairs --working-grid-rows --lava-spacings 2 1 --write
    # another model: a file and the checkpoint holding its ANN twin, e.g. a U-Net, in a section of its own
    .venv/bin/python benchmarks/real_pairs.py --model runs/unet/U.net --checkpoint runs/unet/checkpoints/best.pt \
        --out runs/real_pairs_unet --section "## Real pairs: Colin27 <-> MNI, the spiking U-Net" --write
    # run settings instead of the model's own (every spikereg run and the twin row; OUT belongs to them)
    .venv/bin/python benchmarks/real_pairs.py --out runs/real_pairs_it8 --iterations 8 --smoothing 2

Finished rows are kept in ``OUT/rows.json`` and not recomputed (``--redo`` to
recompute); ``OUT`` belongs to one model (``OUT/model.json`` says which: another
model's run there is refused). ``--write`` replaces the section in BENCHMARKS.md
(``--section`` names another). The model may be a chain or a U-Net graph file
(``spikereg run`` takes either; the ANN twin row runs an ``AnnTwin`` or a
``GraphTwin`` through the same :class:`accuracy.AnnBackend`).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import AnnBackend, ants_syn, demons, model_files  # noqa: E402
from colin27_pair import ensure_colin, tissue_classes  # noqa: E402
from lava_streaming import _rel  # noqa: E402
from sections import heading, write_section  # noqa: E402

from spikereg.data import (  # noqa: E402
    TEMPLATE_FILES,
    Volume,
    load_volume,
    normalize_intensity,
    save_volume,
    template_dir,
    warp,
)
from spikereg.metrics import dice, hausdorff95, log_jacobian_std, nonpositive_jacobian_percent  # noqa: E402
from spikereg.registration.working_grid import resample_to_grid, working_grid  # noqa: E402

SECTION = "## Real pairs: Colin27 <-> MNI"
WORKING = ", working grid"  # spikereg run --working-grid on a scan finer than the model (--working-grid-rows)
METHODS = ["identity", "affine only", "SimpleITK demons", "ANTs SyN", "ANN twin", "SNN torch", "SNN Lava",
           "SNN torch" + WORKING, "SNN Lava" + WORKING]
GM, WM = 2, 3


def brain_files(out: Path, spacing: float) -> dict[str, Path]:
    """Colin27 and MNI at ``spacing`` mm on their own axes (the 1 mm files as shipped at 1 mm)."""
    shipped = {"Colin27": ensure_colin(), "MNI": template_dir() / TEMPLATE_FILES["t1"]}
    if spacing == 1.0:
        return shipped
    files = {}
    for name, path in shipped.items():
        target = out / f"{name}_{spacing:g}mm.nii.gz"
        if not target.exists():
            volume = load_volume(path)
            shape, affine = working_grid(volume.shape, volume.affine, spacing)
            save_volume(target, resample_to_grid(volume, shape, affine).data, affine)
        files[name] = target
    return files


def label_file(out: Path, image: Path) -> Path:
    """The silver-standard tissue labels of ``image``, on its own grid."""
    target = out / (image.name.replace(".nii.gz", "") + "_tissue.nii.gz")
    if not target.exists():
        volume = load_volume(image)
        save_volume(target, tissue_classes(volume.data).astype(np.float32), volume.affine, dtype=np.int16)
    return target


def scores(warped_labels: np.ndarray, fixed_labels: np.ndarray, spacing, ddf: np.ndarray | None,
           seconds: float) -> dict:
    d = dice(warped_labels, fixed_labels, labels=[GM, WM])
    hd = hausdorff95(warped_labels, fixed_labels, labels=[GM, WM], spacing=spacing)
    row = {"gm_dice": d[GM], "wm_dice": d[WM], "tissue_dice": (d[GM] + d[WM]) / 2,
           "hd95_mm": float(np.nanmean([hd[GM], hd[WM]])), "seconds": round(seconds, 1)}
    if ddf is not None:
        mask = fixed_labels > 0
        row.update(sdlogj=log_jacobian_std(ddf, mask), folding_percent=nonpositive_jacobian_percent(ddf, mask))
    return row


def spikereg_run(backend: str, model: str, fixed: Path, moving: Path, moving_labels: Path, out: Path,
                 flags: tuple[str, ...] = ()) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "spikereg", "run", "--backend", backend, "--model", model, "--affine", "auto",
               "--fixed", str(fixed), "--moving", str(moving), "--moving-labels", str(moving_labels),
               "--out", str(out), *flags]
    tick = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
        return {"exit": done.returncode, "error": lines[-1] if lines else "", "seconds": round(seconds, 1)}
    return {"exit": 0, "seconds": seconds, "report": json.loads((out / "report.json").read_text())}


def affine_resample(moving: Path, fixed: Path, transform: Path, labels: bool) -> np.ndarray:
    """``moving`` through the ITK transform file ``transform`` onto ``fixed``'s grid, as a (D, H, W) array."""
    import SimpleITK as sitk

    out = sitk.Resample(sitk.ReadImage(str(moving), sitk.sitkFloat32), sitk.ReadImage(str(fixed)),
                        sitk.ReadTransform(str(transform)),
                        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, 0.0)
    # SimpleITK's arrays are (z, y, x); ours follow the NIfTI's (i, j, k)
    return np.ascontiguousarray(sitk.GetArrayFromImage(out).transpose(2, 1, 0))


def twin_field(twin, meta: dict, fixed: Volume, moving: Volume, transform: Path, report: dict) -> np.ndarray:
    """The ANN twin's field on the fixed grid, through the run's own input and output path.

    ``spikereg run``'s :func:`network_input` (intensities, the run's affine read
    back from ``transform``, the grid and pyramid it registered on) and
    :meth:`NetworkInput.field`, with the run's settings from its ``report``: the
    twin and the SNN differ in the network alone.
    """
    from spikereg.registration.pipeline import network_input
    from spikereg.registration.register import register

    preparation = report["preparation"]
    # the run's own grid and all of its levels: a native run is a pyramid on the fixed grid
    grid = "working" if report["grids"]["registered_on"]["working_grid"] else "fixed"
    inputs = network_input(fixed, moving, meta, affine=transform, grid=grid, pyramid=report["pyramid"],
                           percentiles=tuple(preparation["percentiles"]),
                           histogram_match=preparation["histogram_match"], n4=preparation["n4"])
    backend = AnnBackend(twin)
    result = register(inputs.fixed, inputs.moving, backend, iterations=report["iterations"],
                      patch_stride=report["patch_stride"], pyramid=inputs.pyramid, smoothing=report["smoothing"],
                      percentiles=tuple(preparation["percentiles"]))
    return inputs.field(result.ddf, fixed)


def run_pair(args, out: Path, spacing: float, moving_name: str, fixed_name: str, rows: dict, save) -> None:
    from spikereg.netx_file import read_metadata
    from spikereg.registration.working_grid import native_levels
    from spikereg.training.trainer import load_twin

    files = brain_files(out, spacing)
    fixed_path, moving_path = files[fixed_name], brain_files(out, 1.0)[moving_name]
    fixed_labels_path, moving_labels_path = label_file(out, fixed_path), label_file(out, moving_path)
    fixed = load_volume(fixed_path)
    fixed_labels = load_volume(fixed_labels_path).data.astype(np.int16)
    moving_labels = load_volume(moving_labels_path)
    pair = f"{moving_name} -> {fixed_name}, {spacing:g} mm"
    work = out / pair.replace(" -> ", "_to_").replace(", ", "_").replace(" ", "")
    work.mkdir(parents=True, exist_ok=True)
    done = rows.setdefault(pair, {})

    def record(method: str, row: dict) -> None:
        done[method] = row
        print(f"{pair}: {method}: {json.dumps(row)}", file=sys.stderr, flush=True)
        save()

    if "identity" not in done or args.redo:
        tick = time.perf_counter()
        resampled = resample_to_grid(moving_labels, fixed.shape, fixed.affine, order=0).data.astype(np.int16)
        record("identity", scores(resampled, fixed_labels, fixed.spacing, None, time.perf_counter() - tick))
    runs = {}
    model_spacing = float(read_metadata(args.model_path).get("spacing_mm") or spacing)
    plans = [("torch", "SNN torch", ()), ("sim", "SNN Lava", ())]
    if args.working_grid_rows and native_levels(fixed.spacing, model_spacing):
        # the run's default there is the model's spacing, then the scan's voxels: also the working grid alone
        plans += [("torch", "SNN torch" + WORKING, ("--working-grid",)),
                  ("sim", "SNN Lava" + WORKING, ("--working-grid",))]
    for backend, method, flags in plans:
        if backend == "sim" and spacing not in args.lava_spacings:
            continue
        suffix = "_working" if flags else ""
        key = backend + suffix
        run_out = work / f"run_{key}"
        if method in done and not args.redo and (run_out / "report.json").exists():
            runs[key] = run_out
            continue
        if not args.redo and (run_out / "report.json").exists():  # an earlier run of this command finished it
            report = json.loads((run_out / "report.json").read_text())
            result = {"exit": 0, "seconds": report["timing"]["total_seconds"], "report": report}
        else:
            result = spikereg_run(backend, args.model, fixed_path, moving_path, moving_labels_path, run_out,
                                  flags + settings_flags(args.settings))
        if result["exit"] != 0:
            record(method, {"exit": result["exit"], "error": result["error"], "seconds": result["seconds"]})
            continue
        runs[key] = run_out
        ddf = load_volume_ddf(run_out / "ddf.nii.gz")
        warped = load_volume(run_out / "warped_labels.nii.gz").data.astype(np.int16)
        report = result["report"]
        row = scores(warped, fixed_labels, fixed.spacing, ddf, result["seconds"])
        row.update(status=report.get("status"), affine=report.get("affine", {}).get("metric"),
                   settings={k: report.get(k) for k in ("iterations", "patch_stride", "pyramid", "smoothing")})
        twin_run = runs.get("torch" + suffix)  # the same settings on torch
        if backend == "sim" and twin_run is not None:
            row["equals_torch"] = bool(np.array_equal(ddf, load_volume_ddf(twin_run / "ddf.nii.gz")))
        record(method, row)
    if "torch" not in runs:
        return
    transform = runs["torch"] / "affine.tfm"
    aligned = affine_resample(moving_path, fixed_path, transform, labels=False)
    aligned_labels = affine_resample(moving_labels_path, fixed_path, transform, labels=True).astype(np.int16)
    if "affine only" not in done or args.redo:
        record("affine only", scores(aligned_labels, fixed_labels, fixed.spacing, None, 0.0))
    if "SimpleITK demons" not in done or args.redo:
        tick = time.perf_counter()
        # demons compares intensities directly: both images on one scale (percentiles, as the run does)
        ddf = demons(normalize_intensity(fixed.data), normalize_intensity(aligned))
        seconds = time.perf_counter() - tick
        record("SimpleITK demons", scores(warp(aligned_labels, ddf, mode="nearest").astype(np.int16), fixed_labels,
                                          fixed.spacing, ddf, seconds))
    if "ANTs SyN" not in done or args.redo:
        moving = resample_to_grid(load_volume(moving_path), fixed.shape, fixed.affine).data
        labels = resample_to_grid(moving_labels, fixed.shape, fixed.affine, order=0).data
        tick = time.perf_counter()
        ddf = ants_syn(fixed.data, moving)
        seconds = time.perf_counter() - tick
        record("ANTs SyN", scores(warp(labels, ddf, mode="nearest").astype(np.int16), fixed_labels,
                                  fixed.spacing, ddf, seconds))
    if "ANN twin" not in done or args.redo:
        twin = load_twin(args.checkpoint)
        if twin is None:
            record("ANN twin", {"error": f"no ANN twin stored in {args.checkpoint}"})
        else:
            from spikereg.registration.pipeline import warp_onto_fixed

            report = json.loads((runs["torch"] / "report.json").read_text())
            tick = time.perf_counter()
            ddf = twin_field(twin, read_metadata(args.model_path), fixed, load_volume(moving_path), transform,
                             report)
            warped = warp_onto_fixed(moving_labels, ddf, fixed.affine, labels=True).astype(np.int16)
            seconds = time.perf_counter() - tick
            record("ANN twin", scores(warped, fixed_labels, fixed.spacing, ddf, seconds))


def load_volume_ddf(path: Path) -> np.ndarray:
    from spikereg.data import load_ddf

    return load_ddf(path)[0]


def table(rows: dict) -> list[str]:
    lines = ["| pair | method | GM Dice | WM Dice | tissue Dice | HD95 (mm) | SDlogJ | % J<=0 | s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    means: dict[str, list[float]] = {}
    for pair, methods in rows.items():
        for method in METHODS:
            row = methods.get(method)
            if row is None:
                continue
            if "tissue_dice" not in row:
                error = row.get("error", "failed")
                lines.append(f"| {pair} | {method} | {error} | | | | | | {row.get('seconds', '')} |")
                continue
            means.setdefault(method, []).append(row["tissue_dice"])
            jac = (f"{row['sdlogj']:.3f} | {row['folding_percent']:.3f}" if "sdlogj" in row else " | ")
            lines.append(f"| {pair} | {method} | {row['gm_dice']:.4f} | {row['wm_dice']:.4f} | "
                         f"**{row['tissue_dice']:.4f}** | {row['hd95_mm']:.2f} | {jac} | {row['seconds']} |")
    lines += ["", "| method | mean tissue Dice | pairs |", "|---|---:|---:|"]
    lines += [f"| {m} | {np.mean(v):.4f} | {len(v)} |" for m, v in means.items()]
    return lines


def _paired_means(rows: dict, a: str, b: str) -> tuple[float, float, int] | None:
    """Mean tissue Dice of methods ``a`` and ``b`` over the pairs where both have one."""
    both = [(m[a]["tissue_dice"], m[b]["tissue_dice"]) for m in rows.values()
            if "tissue_dice" in m.get(a, {}) and "tissue_dice" in m.get(b, {})]
    if not both:
        return None
    return float(np.mean([x for x, _ in both])), float(np.mean([y for _, y in both])), len(both)


def targets(rows: dict) -> list[str]:
    """Issue 16's targets, each on the pairs where both of its methods ran."""
    lines = []
    for snn in ("SNN Lava", "SNN torch", "SNN Lava" + WORKING, "SNN torch" + WORKING):
        for other, want in (("ANTs SyN", ">="), ("SimpleITK demons", ">="), ("ANN twin", "within 0.01 of")):
            means = _paired_means(rows, snn, other)
            if means is None or (snn.endswith(WORKING) and other == "ANN twin"):  # the twin row follows the default
                continue
            mine, theirs, count = means
            met = abs(mine - theirs) <= 0.01 if want.startswith("within") else mine >= theirs
            lines.append(f"- {snn} {want} {other} (mean tissue Dice over the {count} pairs both ran): "
                         f"{mine:.4f} vs {theirs:.4f} ({mine - theirs:+.4f}): **{'met' if met else 'missed'}**")
    folding = [m[k]["folding_percent"] for m in rows.values() for k in METHODS if k.startswith("SNN")
               if "folding_percent" in m.get(k, {})]
    if folding:
        lines.append(f"- % J<=0 < 0.1 for the SNN: largest {max(folding):.3f}: "
                     f"**{'met' if max(folding) < 0.1 else 'missed'}**")
    same = [m[k]["equals_torch"] for m in rows.values() for k in ("SNN Lava", "SNN Lava" + WORKING)
            if "equals_torch" in m.get(k, {})]
    if same:
        lines.append(f"- `--backend sim` wrote the same field as `--backend torch`, bit for bit, on "
                     f"{sum(same)} of {len(same)} pairs")
    return ["", "Targets (issue 16, this run):", ""] + lines if lines else []


SETTINGS = ("iterations", "patch_stride", "smoothing")


def given_settings(args) -> dict:
    """The run settings given instead of the model's own (``SETTINGS`` options not left out)."""
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}


def settings_flags(settings: dict) -> tuple[str, ...]:
    """``spikereg run`` options for ``settings`` (:func:`given_settings`)."""
    return tuple(part for name, value in settings.items() for part in ("--" + name.replace("_", "-"), f"{value:g}"))


def claim_folder(out: Path, model: str, checkpoint: Path, settings: dict | None = None) -> None:
    """``OUT/model.json``: the model whose rows OUT keeps; another model's run there is refused (rows would mix).

    The checkpoint's digest is part of the claim: a model retrained under the same name is another model; so
    are run settings given instead of the model's own (``settings``, recorded only where given).
    """
    claim = out / "model.json"
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    mine = {"model": str(model), "checkpoint": str(checkpoint), "sha256": digest}
    if settings:
        mine["settings"] = settings
    if claim.exists() and json.loads(claim.read_text()) != mine:
        raise ValueError(f"--out {out} holds the rows of {claim.read_text().strip()}: give another --out")
    claim.write_text(json.dumps(mine))


def main(argv=None) -> int:
    from spikereg.pretrained import DEFAULT_NAME

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder: images, labels, runs, rows.json")
    parser.add_argument("--model", default=DEFAULT_NAME, help="netx or graph file, or a shipped model's name")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the model's checkpoint, for its ANN twin (default: the shipped model's; a model "
                             "file needs it)")
    parser.add_argument("--section", type=heading, default=SECTION,
                        help="the BENCHMARKS.md section --write replaces (default: %(default)s)")
    parser.add_argument("--spacings", type=float, nargs="+", default=[2.0, 1.0])
    parser.add_argument("--lava-spacings", type=float, nargs="*", default=[2.0],
                        help="spacings whose pairs also run on Lava's simulator (minutes each)")
    parser.add_argument("--directions", nargs="+", default=["Colin27->MNI", "MNI->Colin27"])
    parser.add_argument("--working-grid-rows", action="store_true",
                        help="on pairs finer than the model by a power of two (1 mm for a 2 mm model), where the "
                             "run registers at the model's spacing and then on the images' own voxels, also run "
                             "`spikereg run --working-grid`: the model's working grid alone (rows '..., working grid')")
    parser.add_argument("--iterations", type=int, help="instead of the model's own run.iterations")
    parser.add_argument("--patch-stride", type=int, help="instead of the model's own run.patch_stride")
    parser.add_argument("--smoothing", type=float, help="instead of the model's own run.smoothing (voxels)")
    parser.add_argument("--redo", action="store_true", help="recompute rows kept in OUT/rows.json")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        args.model_path, args.checkpoint = model_files(args.model, args.checkpoint, "its ANN twin is the twin row")
        args.out.mkdir(parents=True, exist_ok=True)
        args.settings = given_settings(args)
        claim_folder(args.out, args.model, args.checkpoint, args.settings)
    except ValueError as error:
        parser.error(str(error))
    store = args.out / "rows.json"
    rows = json.loads(store.read_text()) if store.exists() else {}
    started = datetime.datetime.now(datetime.timezone.utc)

    def save() -> None:
        store.write_text(json.dumps(rows, indent=1))

    for spacing in args.spacings:
        for direction in args.directions:
            moving_name, fixed_name = direction.split("->")
            run_pair(args, args.out, spacing, moving_name, fixed_name, rows, save)
    lines = table(rows) + targets(rows)
    print("\n".join(lines))
    if args.write:
        command = shlex.join(["benchmarks/real_pairs.py", *(argv if argv is not None else sys.argv[1:])])
        machine = f"{platform.node()} ({os.cpu_count()} cores), Python {platform.python_version()}"
        head = [f"Command: `.venv/bin/python {command}` on {machine}, {started:%Y-%m-%d} (rows kept in "
                f"`rows.json` across runs of the same command).",
                f"Model `{args.model}` (ANN twin from `{_rel(args.checkpoint)}`). Silver-standard tissue labels: "
                "a 3-class Gaussian mixture on each image (CSF < GM < WM), applied identically to every image on "
                "its own grid. Nothing is trained or tuned on these pairs.", ""]
        write_section(args.section, args.section + "\n\n" + "\n".join(head + lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
