"""Multi-process training with torch.distributed (launched by ``torchrun``).

Data parallel with a shared sampler: every process draws the same global
batch from the same seeded sampler (so the random stream, and the batch, are
exactly the single-process ones), keeps its own contiguous share of it, and
weights its loss by ``share / batch``. Summing the gradients over processes
(one all-reduce per step) then gives the single-process gradient up to
floating-point order, so the parameters -- and the optimiser -- stay equal on
every process. Only rank 0 writes files.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
variables; without them (or with ``WORLD_SIZE=1``) training is single-process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Workers:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this module started the process group and must end it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` items (sizes differ by at most one)."""
        base, extra = divmod(count, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device`` -> a torch device; ``auto`` is cuda where available."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device 'cuda': torch sees no CUDA device here; use cpu or auto")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"train.device 'cuda': process {local_rank} on this machine has no GPU of its own "
                             f"({torch.cuda.device_count()} visible); start at most that many per machine")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str) -> Workers:
    """Join the torchrun process group if launched by torchrun; gloo on CPU, NCCL on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank)
    if world == 1:
        return Workers(device=target)
    owns = not dist.is_initialized()
    if owns:
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return Workers(rank=dist.get_rank(), world=dist.get_world_size(), device=target, owns_group=owns)


def teardown(workers: Workers) -> None:
    if workers.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_gradients(parameters: list[torch.nn.Parameter], workers: Workers) -> None:
    """Sum every gradient over processes (one flat all-reduce)."""
    if workers.world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for parameter, grad in zip(parameters, grads):
        size = grad.numel()
        parameter.grad = flat[offset:offset + size].view_as(grad).clone()
        offset += size


def all_reduce_sum(values: torch.Tensor, workers: Workers) -> torch.Tensor:
    """Sum of a (detached) tensor over processes."""
    if workers.world > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def barrier(workers: Workers) -> None:
    if workers.world > 1:
        dist.barrier()
