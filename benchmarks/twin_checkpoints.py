"""ANN twins of training checkpoints on the accuracy table's template pairs: how far a twin has come.

A training run writes its twin as it learns (``checkpoints/twin.pt`` every
``train.ann_checkpoint_every`` steps); before converting and exporting it,
this registers the first ``--pairs`` pairs of ``benchmarks/accuracy.py``'s
table (the MNI template warped by its recipe, same seed) with each twin and
its own run settings (iterations, patch stride, smoothing from its config, or
``--iterations``/``--patch-stride``/``--smoothing`` for all) and prints EPE
and tissue Dice per twin, with identity, on the same pairs.

    .venv/bin/python benchmarks/twin_checkpoints.py spikereg/pretrained/sdnn_2mm.pt runs/unet/checkpoints/twin.pt
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy  # noqa: E402  (benchmarks/ is not a package)


def main(argv=None) -> int:
    from spikereg.config import config_from_dict
    from spikereg.evaluation import measure_pair
    from spikereg.registration.register import register
    from spikereg.training.trainer import load_twin

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints holding a twin (twin.pt, best.pt, ...)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=12345, help="the accuracy table's (default 12345)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, help="instead of each twin's own run.iterations")
    parser.add_argument("--patch-stride", type=int, help="instead of each twin's own run.patch_stride")
    parser.add_argument("--smoothing", type=float, help="instead of each twin's own run.smoothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # a twin-stage checkpoint holds the config and the twin, no spiking network yet: read only those
    configs = {path: config_from_dict(torch.load(path, map_location="cpu", weights_only=True)["config"],
                                      source=str(path)) for path in args.checkpoints}
    recipes = {(c.data.spacing, c.data.max_displacement, c.data.control_spacing, c.data.noise_std)
               for c in configs.values()}
    if len(recipes) != 1:
        raise SystemExit(f"the checkpoints draw different template pairs ({sorted(recipes)}): compare like with like")
    first = next(iter(configs.values()))
    pair_args = types.SimpleNamespace(data=None, split=None, recipe=None, recipe_set=[], pairs=args.pairs,
                                      seed=args.seed, spacing=first.data.spacing)
    pairs, source = accuracy.held_out_pairs(pair_args, first)
    print(f"pairs: the first {len(pairs)} of the accuracy table ({source}), seed {args.seed}")
    print("| twin | iterations | patch stride | EPE (vox) | tissue Dice | s |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("identity", None)] + [(str(path), path) for path in args.checkpoints]
    for label, path in rows:
        tick = time.perf_counter()
        if path is None:
            backend, settings, run = None, ("", ""), {}
        else:  # each twin loaded once, with its own run settings
            config = configs[path]
            backend = accuracy.AnnBackend(load_twin(path).eval())
            run = {"iterations": args.iterations or config.run.iterations,
                   "patch_stride": args.patch_stride or config.run.patch_stride,
                   "smoothing": config.run.smoothing if args.smoothing is None else args.smoothing}
            settings = (str(run["iterations"]), str(run["patch_stride"]))
        epe, dice = [], []
        for pair in pairs:
            if backend is None:
                ddf = np.zeros((3, *pair.fixed.shape), dtype=np.float32)
            else:
                with torch.no_grad():
                    ddf = register(pair.fixed, pair.moving, backend, **run).ddf
            metrics = measure_pair(pair.fixed, pair.moving, ddf, spacing=pair.spacing,
                                   fixed_labels=pair.fixed_labels, moving_labels=pair.moving_labels,
                                   true_ddf=pair.ddf).values
            epe.append(metrics["epe_vox"])
            dice.append(metrics["dice"])
        print(f"| {label} | {settings[0]} | {settings[1]} | {np.mean(epe):.3f} | {np.mean(dice):.4f} | "
              f"{time.perf_counter() - tick:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
