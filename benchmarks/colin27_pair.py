"""A real pair the models never saw: Colin27 onto the MNI ICBM152 2009a template, on every backend.

Colin27 (Debian's ``mricron-data``, ``ch2bet.nii.gz``: one real subject,
skull-stripped, 1 mm, its own grid) is resampled in world coordinates onto the
2 mm MNI grid and registered as the moving image with the MNI T1 as the fixed
one, by ``spikereg run`` itself (a subprocess per backend, as a user runs it).
Colin27 is for evaluation only: nothing is trained or tuned on it.

What it measures (BENCHMARKS.md, "A real pair: Colin27 -> MNI"):

* whether ``--backend torch`` and ``--backend sim`` write the same field, bit
  for bit (the range issue: Lava used to wrap on this pair and write garbage);
* grey/white-matter Dice before and after, from one automatic 3-class
  intensity segmentation (a Gaussian mixture on each image's brain voxels,
  classes ordered by mean intensity: CSF, GM, WM) applied identically to both
  images: a silver standard, not a manual one;
* the run's own verdict (exit code, ``status``) and its range section.

Usage: ``.venv/bin/python benchmarks/colin27_pair.py [--backends torch sim] [--write]``
(installs ``mricron-data`` with apt where it is missing and the user is root).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
COLIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
SECTION = "## A real pair: Colin27 -> MNI"


def ensure_colin() -> Path:
    if COLIN.exists():
        return COLIN
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "mricron-data"], check=False, capture_output=True)
        if not COLIN.exists():
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "mricron-data"], check=True, capture_output=True)
    if not COLIN.exists():
        sys.exit(f"error: {COLIN} not found; install Debian's mricron-data (apt-get install mricron-data)")
    return COLIN


def resample_onto(data: np.ndarray, affine: np.ndarray, shape: tuple, target_affine: np.ndarray,
                  order: int = 1) -> np.ndarray:
    """``data`` (with ``affine``) sampled at the voxel centres of a grid ``shape`` / ``target_affine`` (world space)."""
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = target_affine[:3, :3] @ ijk + target_affine[:3, 3:4]
    source = np.linalg.inv(affine)
    coords = source[:3, :3] @ world + source[:3, 3:4]
    return ndimage.map_coordinates(data, coords, order=order, mode="constant", cval=0.0).reshape(shape)


def tissue_classes(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """0 background, 1 CSF, 2 GM, 3 WM: a 3-class Gaussian mixture on the brain's intensities."""
    from sklearn.mixture import GaussianMixture

    brain = image > 0.05 * image.max()
    values = image[brain].reshape(-1, 1)
    mixture = GaussianMixture(3, random_state=seed).fit(values[:: max(1, len(values) // 200000)])
    order = np.argsort(mixture.means_.ravel())
    rank = np.empty(3, dtype=np.int16)
    rank[order] = np.arange(1, 4)
    labels = np.zeros(image.shape, dtype=np.int16)
    labels[brain] = rank[mixture.predict(values)]
    return labels


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return float(2 * (x & y).sum() / max(1, x.sum() + y.sum()))


def tissue_dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([dice(a, b, 2), dice(a, b, 3)]))


def main(argv=None) -> int:
    from spikereg.pretrained import DEFAULT_NAME

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "sim"])
    parser.add_argument("--model", default=DEFAULT_NAME,
                        help="netx file, or a shipped model's name (default: %(default)s)")
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from spikereg.data import load_mni

    colin = nib.load(ensure_colin())
    fixed = load_mni("t1", args.spacing)
    moving = resample_onto(colin.get_fdata(dtype=np.float32), colin.affine, fixed.shape, fixed.affine)
    moving = (moving / moving.max()).astype(np.float32)
    work = args.out or Path(tempfile.mkdtemp(prefix="colin27_"))
    work.mkdir(parents=True, exist_ok=True)
    fixed_labels, moving_labels = tissue_classes(fixed.data), tissue_classes(moving)
    for name, data in (("fixed", fixed.data), ("moving", moving), ("moving_labels", moving_labels)):
        nib.save(nib.Nifti1Image(data, fixed.affine), work / f"{name}.nii.gz")
    rows = {"identity": {"dice": tissue_dice(moving_labels, fixed_labels)}}
    fields = {}
    for backend in args.backends:
        out = work / f"run_{backend}"
        shutil.rmtree(out, ignore_errors=True)
        command = [str(ROOT / ".venv/bin/spikereg"), "run", "--backend", backend, "--model", args.model,
                   "--fixed", str(work / "fixed.nii.gz"), "--moving", str(work / "moving.nii.gz"),
                   "--moving-labels", str(work / "moving_labels.nii.gz"), "--out", str(out)]
        tick = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - tick
        lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
        row = {"exit": done.returncode, "seconds": round(seconds, 1), "last_line": lines[-1] if lines else ""}
        if done.returncode == 0:
            ddf = nib.load(out / "ddf.nii.gz").get_fdata(dtype=np.float32)
            fields[backend] = ddf
            warped = nib.load(out / "warped_labels.nii.gz").get_fdata().astype(np.int16)
            report = json.loads((out / "report.json").read_text())
            row.update(dice=tissue_dice(warped, fixed_labels), status=report.get("status"),
                       ncc=[round(report["similarity"]["ncc_before"], 4), round(report["similarity"]["ncc_after"], 4)],
                       folding=report["jacobian"]["fraction_nonpositive"],
                       largest_voxels=float(np.abs(ddf).max()),
                       range_proven=report.get("range", {}).get("proven"))
        rows[backend] = row
        print(backend, json.dumps(row), flush=True)
    same = None
    if len(fields) == 2:
        a, b = fields.values()
        same = bool(a.shape == b.shape and np.array_equal(a, b))
    result = {"rows": rows, "torch_equals_sim_bit_for_bit": same, "model": args.model, "spacing_mm": args.spacing,
              "command": "benchmarks/colin27_pair.py " + " ".join(argv or sys.argv[1:]),
              "machine": f"{platform.node()} ({os.cpu_count()} cores), {platform.python_version()}",
              "date": datetime.date.today().isoformat()}
    print(json.dumps(result, indent=2))
    (work / "colin27_result.json").write_text(json.dumps(result, indent=2))
    if args.write:
        from sections import write_section

        lines = [f"Command: `.venv/bin/python {result['command']}` on {result['machine']}, {result['date']}.",
                 f"Model `{args.model}`, {args.spacing:g} mm. Colin27 resampled (world coordinates, trilinear) "
                 "onto the MNI grid; tissue Dice = mean of GM and WM from a 3-class Gaussian mixture applied "
                 "to each image (silver standard).", "",
                 "| run | exit | status | tissue Dice | NCC before -> after | % J<=0 | largest (voxels) | s |",
                 "|---|---:|---|---:|---|---:|---:|---:|",
                 f"| identity | | | {rows['identity']['dice']:.4f} | | | | |"]
        for backend in args.backends:
            r = rows[backend]
            if r["exit"] == 0:
                lines.append(f"| `--backend {backend}` | 0 | {r['status']} | {r['dice']:.4f} | {r['ncc'][0]} -> "
                             f"{r['ncc'][1]} | {100 * r['folding']:.3f} | {r['largest_voxels']:.2f} | "
                             f"{r['seconds']} |")
            else:
                lines.append(f"| `--backend {backend}` | {r['exit']} | {r['last_line']} | | | | | {r['seconds']} |")
        lines += ["", f"torch and sim fields equal bit for bit: **{same}**."]
        write_section(SECTION, SECTION + "\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
