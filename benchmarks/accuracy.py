"""Registration accuracy on held-out synthetic real-anatomy pairs, peers side by side.

Methods, on the same pairs in one run: identity, SimpleITK diffeomorphic demons
(if SimpleITK is installed: ``pip install SimpleITK``), the ANN twin and the
SNN (SLAYER, the exact spikes Lava produces) of a checkpoint, with the same
patching, stitching and refinement. Metrics over the brain mask: mean
end-point error against the ground-truth field (voxels), NCC, mean tissue
Dice (grey and white matter from the MNI maps, labels warped with each
field), % voxels with Jacobian <= 0, seconds per pair.

    .venv/bin/python benchmarks/accuracy.py --pairs 5 --write

The pairs come from a seed the training never used (``--seed``), at the
checkpoint's spacing. ``--write`` replaces the ``## Registration accuracy``
section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Registration accuracy"


def dice(a: np.ndarray, b: np.ndarray, labels=(1, 2)) -> float:
    scores = []
    for label in labels:
        x, y = a == label, b == label
        denominator = x.sum() + y.sum()
        scores.append(2.0 * (x & y).sum() / denominator if denominator else 1.0)
    return float(np.mean(scores))


def demons(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """SimpleITK diffeomorphic demons; returns a (3, D, H, W) voxel-unit field in our convention."""
    import SimpleITK as sitk

    f, m = sitk.GetImageFromArray(fixed.astype(np.float32)), sitk.GetImageFromArray(moving.astype(np.float32))
    filt = sitk.DiffeomorphicDemonsRegistrationFilter()
    filt.SetNumberOfIterations(50)
    filt.SetStandardDeviations(1.5)
    field = filt.Execute(f, m)
    # SimpleITK arrays are (z, y, x, vector(x, y, z)); unit spacing, so mm == voxels.
    array = sitk.GetArrayFromImage(field)
    return np.ascontiguousarray(array[..., ::-1].transpose(3, 0, 1, 2)).astype(np.float32)


class AnnBackend:
    """The ANN twin behind the same patch interface as the SNN backends."""

    name = "ann"

    def __init__(self, twin, patch_size: int, reduction: int) -> None:
        from spikereg.registration.register import BackendStats

        self.twin, self.patch_size, self.reduction, self.stats = twin, patch_size, reduction, BackendStats()

    @torch.no_grad()
    def predict(self, fixed, moving, progress=None):
        return np.concatenate([self.twin.predict(fixed[i:i + 64], moving[i:i + 64]).numpy()
                               for i in range(0, len(fixed), 64)])


def main(argv=None) -> int:
    from spikereg.data import jacobian_determinant, load_mni, make_pair, tissue_labels, warp
    from spikereg.networks.ann import AnnTwin
    from spikereg.pretrained import DEFAULT_CHECKPOINT
    from spikereg.registration.backends import TorchBackend
    from spikereg.registration.register import ncc, register
    from spikereg.training.trainer import load_checkpoint, pretrain_twin, PatchSampler, synthetic_pairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    net, config = load_checkpoint(args.checkpoint)
    # The twin the SNN started from is not stored; retrain it the same way (same seed, steps).
    train_pairs = synthetic_pairs(config, config.data.pairs, config.train.seed)
    sampler = PatchSampler(train_pairs, config.model.patch_size, net.reduction,
                           np.random.default_rng(config.train.seed))
    torch.manual_seed(config.train.seed)
    twin = pretrain_twin(config, sampler) if config.train.ann_steps else AnnTwin(config.model)

    base = load_mni("t1", config.data.spacing).data
    labels = tissue_labels(config.data.spacing).data
    rng = np.random.default_rng(args.seed)
    methods = ["identity", "ANN twin", "SNN (SLAYER = Lava spikes)"]
    try:
        import SimpleITK  # noqa: F401
        methods.insert(1, "SimpleITK demons")
    except ImportError:
        print("SimpleITK not installed: demons skipped", file=sys.stderr)
    rows = {m: [] for m in methods}
    for index in range(args.pairs):
        pair = make_pair(base, rng, max_displacement=config.data.max_displacement,
                         control_spacing=config.data.control_spacing, base_labels=labels,
                         noise_std=config.data.noise_std)
        mask = pair.fixed > 0.1
        for method in methods:
            tick = time.perf_counter()
            if method == "identity":
                ddf = np.zeros_like(pair.ddf)
            elif method == "SimpleITK demons":
                ddf = demons(pair.fixed, pair.moving)
            else:
                backend = (AnnBackend(twin, config.model.patch_size, net.reduction) if method == "ANN twin"
                           else TorchBackend(net))
                ddf = register(pair.fixed, pair.moving, backend, iterations=config.run.iterations,
                               patch_stride=config.run.patch_stride).ddf
            seconds = time.perf_counter() - tick
            warped = warp(pair.moving, ddf)
            warped_labels = warp(pair.moving_labels, ddf, mode="nearest")
            rows[method].append({
                "epe": float(np.linalg.norm(ddf - pair.ddf, axis=0)[mask].mean()),
                "ncc": ncc(pair.fixed, warped),
                "dice": dice(np.rint(pair.fixed_labels), np.rint(warped_labels)),
                "fold": float((jacobian_determinant(ddf) <= 0).mean() * 100),
                "seconds": seconds,
            })
        print(f"pair {index + 1}/{args.pairs} done", file=sys.stderr)

    header = "| method | EPE (vox) | NCC | tissue Dice | % Jacobian <= 0 | s / pair |\n|---|---:|---:|---:|---:|---:|"
    lines = [header]
    for method, results in rows.items():
        mean = {k: np.mean([r[k] for r in results]) for k in results[0]}
        lines.append(f"| {method} | {mean['epe']:.3f} | {mean['ncc']:.4f} | {mean['dice']:.4f} | "
                     f"{mean['fold']:.3f} | {mean['seconds']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        from spikereg.data.io import write_text_atomic

        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        section = (
            f"{SECTION}\n\nHeld-out synthetic pairs (MNI ICBM152 T1 warped by random smooth fields, seed {args.seed}, "
            f"{config.data.spacing:g} mm, max displacement {config.data.max_displacement:g} voxels), "
            f"{args.pairs} pairs, model `{args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT) else args.checkpoint}`, "
            f"{config.run.iterations} iterations, patch stride {config.run.patch_stride}. The SNN row runs SLAYER, "
            "whose spikes Lava's fixed-point simulator reproduces exactly (every export is verified), "
            "so its field is the one `spikereg run --backend sim` returns. Metrics over voxels with T1 > 0.1.\n\n"
            f"```bash\n.venv/bin/python benchmarks/accuracy.py --pairs {args.pairs} --seed {args.seed} --write\n```\n\n"
            f"{table}\n\n- machine: {len(__import__('os').sched_getaffinity(0))} cores, {cpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}\n- date: {datetime.date.today()}\n"
        )
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        if SECTION in text:
            head, rest = text.split(SECTION, 1)
            tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
            text = head + section + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section
        write_text_atomic(path, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
