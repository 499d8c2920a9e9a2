"""Scans finer than the model, on synthetic pairs: the working grid alone, or then a pass on the scan's own voxels.

A 2 mm model registers a 1 mm scan on its 2 mm working grid by default;
``--fixed-grid --pyramid 2`` registers at 2 mm first and then refines on the
1 mm voxels. Which is better is decided here, on synthetic 1 mm pairs with a
known field (the MNI template warped by random B-spline fields: a fine one
and a coarse one), never on the real pairs of ``benchmarks/real_pairs.py``.
Each mode is ``spikereg run --backend torch --affine none`` as a user runs it;
end-point error (voxels) over the brain (fixed intensity above 10 % of its
maximum) against the true field, and the run's wall time.

    .venv/bin/python benchmarks/fine_scans.py --out runs/fine_scans [--model sdnn-2mm-mixed] [--spacing 1]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = {"working grid (default)": ("--working-grid",),
         "then native (`--fixed-grid --pyramid 2`)": ("--fixed-grid", "--pyramid", "2")}
FIELDS = {"fine (3 voxels, control points every 6)": (3.0, 6), "coarse (6 voxels, every 16)": (6.0, 16)}


def main(argv=None) -> int:
    import nibabel as nib

    from spikereg.data import load_ddf, load_mni, make_pair
    from spikereg.pretrained import DEFAULT_NAME

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder: the pairs and the runs")
    parser.add_argument("--model", default=DEFAULT_NAME,
                        help="netx file, or a shipped model's name (default: %(default)s)")
    parser.add_argument("--spacing", type=float, default=1.0, help="mm of the synthetic scans (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    template = load_mni("t1", args.spacing)
    print(f"pairs: MNI ICBM152 T1 at {args.spacing:g} mm warped by random B-spline fields (noise 0.02, seed "
          f"{args.seed}); model {args.model}; `spikereg run --backend torch --affine none`")
    print("| field | identity EPE (vox) | " + " | ".join(f"{m}: EPE (vox) | s" for m in MODES) + " |")
    print("|---|---:|" + "---:|---:|" * len(MODES))
    for label, (displacement, control) in FIELDS.items():
        pair = make_pair(template.data, np.random.default_rng(args.seed), max_displacement=displacement,
                         control_spacing=control, noise_std=0.02)
        name = label.split()[0]
        paths = {}
        for kind in ("fixed", "moving"):
            paths[kind] = args.out / f"{name}_{kind}.nii.gz"
            nib.save(nib.Nifti1Image(getattr(pair, kind).astype(np.float32), template.affine), paths[kind])
        mask = pair.fixed > 0.1 * pair.fixed.max()
        cells = [f"{np.linalg.norm(pair.ddf, axis=0)[mask].mean():.3f}"]
        for mode, flags in MODES.items():
            run = args.out / f"{name}_{'native' if '--pyramid' in flags else 'working'}"
            command = [sys.executable, "-m", "spikereg", "run", "--backend", "torch", "--model", args.model,
                       "--affine", "none", "--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]),
                       "--out", str(run), *flags]
            tick = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - tick
            if done.returncode != 0:
                raise SystemExit(f"{mode}: spikereg run failed: {done.stderr.strip().splitlines()[-1]}")
            ddf = load_ddf(run / "ddf.nii.gz")[0]
            cells += [f"{np.linalg.norm(ddf - pair.ddf, axis=0)[mask].mean():.3f}", f"{seconds:.0f}"]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
