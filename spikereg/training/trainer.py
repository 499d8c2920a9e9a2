"""Supervised training of the spiking registration network on synthetic real-anatomy pairs.

Pairs come from the MNI ICBM152 T1 warped by random smooth fields whose
ground truth is kept (:mod:`spikereg.data.synth`). Each step draws brain
patches, encodes them into spikes, runs the SLAYER network (surrogate
gradients) and regresses the decoded control-point displacements onto the
ground-truth field averaged over each control cell. Displacement magnitudes
vary per pair, so the same network also learns the small residuals that
refinement iterations ask of it.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spikereg.config import Config, save_config
from spikereg.data import load_mni, make_pair
from spikereg.networks.ann import AnnTwin
from spikereg.networks.snn import SpikingRegNet

BRAIN_FRACTION = 0.15  # a training patch must be at least this much brain (mean intensity)


@dataclass
class PatchBatch:
    fixed: torch.Tensor  # (N, 1, P, P, P)
    moving: torch.Tensor
    target: torch.Tensor  # (N, 3, g, g, g) ground-truth displacement per control cell, voxels


class PatchSampler:
    """Random brain patches, with control-grid targets, from a set of synthetic pairs."""

    def __init__(self, pairs: list, patch: int, reduction: int, rng: np.random.Generator) -> None:
        self.pairs, self.patch, self.reduction, self.rng = pairs, patch, reduction, rng
        self.origins = [self._brain_origins(pair.fixed) for pair in pairs]

    def _brain_origins(self, image: np.ndarray) -> np.ndarray:
        """Origins of all patches (every voxel) whose mean intensity says they hold brain."""
        p = self.patch
        # Box sums from a summed-area table: the mean of every p^3 patch at once.
        table = np.pad(image.astype(np.float64), ((1, 0), (1, 0), (1, 0))).cumsum(0).cumsum(1).cumsum(2)
        sums = (table[p:, p:, p:] - table[:-p, p:, p:] - table[p:, :-p, p:] - table[p:, p:, :-p]
                + table[:-p, :-p, p:] + table[:-p, p:, :-p] + table[p:, :-p, :-p] - table[:-p, :-p, :-p])
        return np.argwhere(sums / p**3 >= BRAIN_FRACTION)

    def sample(self, count: int) -> PatchBatch:
        p = self.patch
        fixed, moving, target = [], [], []
        for _ in range(count):
            index = int(self.rng.integers(len(self.pairs)))
            pair, origins = self.pairs[index], self.origins[index]
            z, y, x = origins[int(self.rng.integers(len(origins)))]
            cut = np.s_[z:z + p, y:y + p, x:x + p]
            fixed.append(pair.fixed[cut])
            moving.append(pair.moving[cut])
            target.append(pair.ddf[(slice(None),) + cut])
        to = lambda arrays: torch.from_numpy(np.stack(arrays))  # noqa: E731
        ddf = to(target)
        return PatchBatch(
            fixed=to(fixed)[:, None],
            moving=to(moving)[:, None],
            target=F.avg_pool3d(ddf, self.reduction),
        )


def synthetic_pairs(config: Config, count: int, seed: int) -> list:
    """``count`` training pairs at the configured spacing, magnitudes varied per pair."""
    rng = np.random.default_rng(seed)
    base = load_mni("t1", config.data.spacing).data
    pairs = []
    for _ in range(count):
        scale = float(rng.uniform(0.25, 1.0))
        pairs.append(make_pair(
            base, rng,
            max_displacement=config.data.max_displacement * scale,
            control_spacing=config.data.control_spacing,
            noise_std=config.data.noise_std,
        ))
    return pairs


def displacement_loss(predicted: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """Mean squared control-point error, in units of the readout's full scale."""
    return F.mse_loss(predicted / scale, target.clamp(-scale, scale) / scale)


def save_checkpoint(path: Path, net: SpikingRegNet, config: Config, step: int, val_error: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "format": "spikereg-checkpoint/1",
        "config": config.to_dict(),
        "state_dict": net.state_dict(),
        "step": step,
        "val_error_voxels": val_error,
    }, tmp)
    tmp.replace(path)


def train(
    config: Config,
    out_dir: Path,
    progress: Callable[[int, int, dict], None] | None = None,
) -> Path:
    """Train per ``config`` into ``out_dir``; returns the best checkpoint's path.

    ``out_dir`` receives ``config.yaml`` (resolved), ``train_log.csv`` and
    ``checkpoints/{best,last}.pt``.
    """
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    torch.manual_seed(config.train.seed)
    rng = np.random.default_rng(config.train.seed)

    net = SpikingRegNet(config.model)
    held_out = max(2, config.data.pairs // 8)
    pairs = synthetic_pairs(config, config.data.pairs + held_out, config.train.seed)
    sampler = PatchSampler(pairs[:config.data.pairs], config.model.patch_size, net.reduction, rng)
    val = PatchSampler(pairs[config.data.pairs:], config.model.patch_size, net.reduction,
                       np.random.default_rng(config.train.seed + 1)).sample(64)
    identity_error = float(val.target.norm(dim=1).mean())

    twin = None
    if config.train.ann_steps:
        twin = pretrain_twin(config, sampler, progress)
        net.load_state_dict(twin.snn_state(), strict=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.train.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.train.steps)
    scale = config.model.max_displacement
    best = math.inf
    log_path = out_dir / "train_log.csv"
    with log_path.open("w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["step", "loss", "val_error_voxels", "identity_error_voxels", "spike_rate", "seconds"])
        start = time.perf_counter()
        if twin is not None:  # the twin, and the SNN right after conversion, as reference rows
            with torch.no_grad():
                ann_error = float((twin.predict(val.fixed, val.moving) - val.target).norm(dim=1).mean())
            log.writerow(["ann", "", f"{ann_error:.4f}", f"{identity_error:.4f}", "", ""])
            snn_error, rate = evaluate(net, val)
            log.writerow([0, "", f"{snn_error:.4f}", f"{identity_error:.4f}", f"{rate:.4f}", ""])
        for step in range(1, config.train.steps + 1):
            net.train()
            batch = sampler.sample(config.train.batch_size)
            spikes = net.encode(batch.fixed, batch.moving)
            readout = net(spikes)
            loss = displacement_loss(net.decode(readout), batch.target, scale)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.train.grad_clip)
            optimizer.step()
            schedule.step()
            row = {"loss": float(loss.detach())}
            if step % config.train.checkpoint_every == 0 or step == config.train.steps:
                val_error, rate = evaluate(net, val)
                row.update(val_error_voxels=val_error, spike_rate=rate)
                log.writerow([step, f"{row['loss']:.5f}", f"{val_error:.4f}", f"{identity_error:.4f}",
                              f"{rate:.4f}", f"{time.perf_counter() - start:.1f}"])
                log_file.flush()
                save_checkpoint(out_dir / "checkpoints" / "last.pt", net, config, step, val_error)
                if val_error < best:
                    best = val_error
                    save_checkpoint(out_dir / "checkpoints" / "best.pt", net, config, step, val_error)
            if progress is not None:
                progress(step, config.train.steps, row)
    return out_dir / "checkpoints" / "best.pt"


def pretrain_twin(config: Config, sampler: PatchSampler,
                  progress: Callable[[int, int, dict], None] | None = None) -> AnnTwin:
    """Train the ANN twin (same kernels, rate units) to initialise the SNN."""
    twin = AnnTwin(config.model)
    optimizer = torch.optim.Adam(twin.parameters(), lr=config.train.ann_learning_rate)
    scale = config.model.max_displacement
    for step in range(1, config.train.ann_steps + 1):
        batch = sampler.sample(config.train.batch_size)
        loss = displacement_loss(twin.predict(batch.fixed, batch.moving), batch.target, scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(0, config.train.steps,
                     {"loss": float(loss.detach()), "stage": f"ANN twin {step}/{config.train.ann_steps}"})
    return twin


@torch.no_grad()
def evaluate(net: SpikingRegNet, batch: PatchBatch) -> tuple[float, float]:
    """Mean control-point end-point error (voxels) and mean spike rate over all layers."""
    net.eval()
    outputs = net.layer_outputs(net.encode(batch.fixed, batch.moving))
    predicted = net.decode(outputs[-1])
    error = float((predicted - batch.target).norm(dim=1).mean())
    spikes = sum(float(o.sum()) for o in outputs)
    neurons_steps = sum(o.numel() for o in outputs)
    return error, spikes / neurons_steps


def load_checkpoint(path: str | Path) -> tuple[SpikingRegNet, Config]:
    """Rebuild the network from a checkpoint written by :func:`train`."""
    from spikereg.config import config_from_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle/zip errors: not a checkpoint
        raise ValueError(f"checkpoint {path}: not a SpikeReg checkpoint ({error.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "spikereg-checkpoint/1":
        raise ValueError(f"checkpoint {path}: not a SpikeReg checkpoint (no spikereg-checkpoint/1 format tag)")
    config = config_from_dict(state["config"], source=str(path))
    net = SpikingRegNet(config.model)
    net.load_state_dict(state["state_dict"])
    net.eval()
    return net, config
