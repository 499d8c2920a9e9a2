"""A U-Net twin trained further on the field after its passes (an experiment, issue 17).

The pipeline runs a model in passes: each warps the moving image by the field so
far and adds the predicted residual (``compose``). A twin trained on one pass
learns to predict the whole displacement at once, and needs 8 passes to reach
the chain's accuracy. Here a stored twin is trained ``--steps`` more with the
loss on the field after ``--passes`` passes, unrolled and differentiated
through the warps (``--passes 1``: the control, trained the same way on one
pass). Crops of ``--crop`` voxels give the warps room: the loss is the
end-point error on the central patch (the model's own size). The result is a
checkpoint in the input's format, so ``benchmarks/twin_checkpoints.py`` scores
it with any run settings:

    .venv/bin/python benchmarks/unrolled_twin.py TWIN.pt --passes 2 --steps 1500 --out runs/unrolled2.pt
    .venv/bin/python benchmarks/twin_checkpoints.py TWIN.pt runs/unrolled2.pt --iterations 2 --smoothing 2
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch


def unrolled_field(twin, fixed: torch.Tensor, moving: torch.Tensor, passes: int) -> torch.Tensor:
    """The field after ``passes`` passes, each on the moving image warped by the field so far (as ``register``)."""
    from spikereg.data.deform import compose_torch, warp_torch

    field = twin.predict(fixed, moving)
    for _ in range(passes - 1):
        field = compose_torch(field, twin.predict(fixed, warp_torch(moving, field)))
    return field


def main(argv=None) -> int:
    from spikereg.config import config_from_dict
    from spikereg.data.sampling import PatchSampler, synthetic_pairs
    from spikereg.training.trainer import load_twin

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("twin", type=Path, help="a checkpoint holding a U-Net twin (twin.pt, best.pt)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--crop", type=int, default=40, help="voxels per side of each training crop")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="cosine down to 5 %% of it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    state = torch.load(args.twin, map_location="cpu", weights_only=True)
    config = config_from_dict(state["config"], source=str(args.twin))
    patch = config.model.patch_size
    margin = (args.crop - patch) // 2
    if margin < 0 or args.crop % 8:
        parser.error(f"--crop {args.crop}: at least the patch ({patch}) and a multiple of 8 (the U-Net's levels)")
    twin = load_twin(args.twin).train()
    pairs = synthetic_pairs(config, config.data.pairs, args.seed)  # the twin's recipe, another draw of it
    sampler = PatchSampler(pairs, args.crop, 1, np.random.default_rng(args.seed))
    optimizer = torch.optim.Adam(twin.parameters(), lr=args.learning_rate)
    centre = (slice(None), slice(None)) + (slice(margin, margin + patch),) * 3
    tick, log_every = time.perf_counter(), max(1, args.steps // 20)
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - 1) / args.steps)))
        batch = sampler.sample(args.batch_size)
        field = unrolled_field(twin, batch.fixed, batch.moving, args.passes)
        loss = (field - batch.target)[centre].norm(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == args.steps:
            print(f"step {step}/{args.steps}: EPE after {args.passes} pass(es) {float(loss.detach()):.3f} vox "
                  f"({time.perf_counter() - tick:.0f} s)", flush=True)
    state["twin_state"] = {name: value.detach().clone() for name, value in twin.state_dict().items()}
    state["twin_val_error_voxels"] = float("nan")  # not measured here: twin_checkpoints.py scores it
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
