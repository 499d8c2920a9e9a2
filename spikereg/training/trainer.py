"""Training of the spiking registration network on synthetic real-anatomy pairs.

Pairs come from the MNI ICBM152 T1 warped by random smooth fields whose
ground truth is kept (:mod:`spikereg.data.synth`). Each step draws brain
patches, encodes them into spikes, runs the SLAYER network (surrogate
gradients) and minimises the weighted loss of ``train.loss``
(:mod:`spikereg.losses`): by default the supervised error of the decoded
control-point displacements against the ground-truth field averaged over
each control cell; image similarity, Dice, field regularisers and a
spike-rate term can be mixed in. Displacement magnitudes vary per pair, so
the same network also learns the small residuals that refinement iterations
ask of it.

With ``train.ann_steps`` the ANN twin is trained first and the SNN starts
from its kernels; the twin is kept in every checkpoint (:func:`load_twin`),
so evaluations compare against the very twin the SNN came from. With
``train.steps: 0`` the SNN is the converted twin, not fine-tuned (meant for
SDNN neurons, whose twin is their steady state: close where
``model.neuron.threshold`` is small against the layer values, since
sigma-delta changes below it are never sent), and the step-0 checkpoints
hold it. ``train.twin_from`` takes the twin from an earlier run's checkpoint
instead of training one; ``train.twin_init`` trains that twin ``ann_steps``
further, on this run's pairs. An SDNN's twin is converted with its layers
rescaled for the chip's number formats (:meth:`AnnTwin.balanced_kernels`,
calibrated on training patches), and ``train.ann_range_weight`` shapes the
twin so that rescaling keeps its weights fine; ``train.snn_range_weight``
keeps the fine-tuned SDNN's summed inputs within that calibration bound,
so they still fit Lava's 24-bit range.

A run is repeatable (``train.seed``), resumable (``checkpoints/last.pt``
holds the optimiser, schedule, random streams and step, so a resumed run
ends exactly where an uninterrupted one does) and runs data-parallel under
``torchrun`` (:mod:`spikereg.training.distributed`).
"""
from __future__ import annotations

import math
import pickle
import re
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from spikereg.config import Config, config_from_dict, save_config
from spikereg.data.sampling import PatchBatch, PatchSampler, finetuning_config, synthetic_pairs
from spikereg.losses import (
    RegistrationLoss,
    layer_rates,
    summed_input_bound_loss,
    summed_input_range_loss,
    worst_case_bound_loss,
)
from spikereg.networks.ann import AnnTwin, balanced_max_value
from spikereg.networks.bounds import SATURATION_MARGIN, network_bounds, provably_in_range, summed_input_limit
from spikereg.networks.encoding import decode_displacement
from spikereg.networks.graph_convert import convert_twin, project_into_range
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.graph_twin import GraphTwin
from spikereg.networks.snn import SpikingRegNet
from spikereg.pretrained import resolve_checkpoint
from spikereg.training import distributed
from spikereg.training.distributed import Workers
from spikereg.training.logs import TrainLog
from spikereg.training.optim import make_optimizer, make_scheduler

__all__ = ["check_twin_from", "evaluate", "load_checkpoint", "load_twin", "pretrain_twin", "resume_config",
           "retrain_twin", "train"]

CALIBRATION_PATCHES = 256  # patches whose values set an SDNN's weight balancing (AnnTwin.balanced_kernels)
CHECKPOINT_FORMAT = "spikereg-checkpoint/1"
#: What last.pt's ``training_state`` holds (all of it plain dicts, numbers and tensors: see _read_checkpoint).
TRAINING_STATE = ("optimizer", "scheduler", "sampler_rng", "torch_rng", "best_val_error", "seconds")
Progress = Callable[[int, int, dict], None]


@dataclass
class StoredTwin:
    """The trained ANN twin as checkpoints keep it: its kernels and its error on the held-out patches."""

    state: dict[str, torch.Tensor]  # AnnTwin.state_dict(), on the CPU
    val_error: float  # mean control-point end-point error (voxels) on the validation patches

    def entries(self) -> dict:
        return {"twin_state": self.state, "twin_val_error_voxels": self.val_error}


def save_checkpoint(path: Path, net: SpikingRegNet, config: Config, step: int, val_error: float,
                    training_state: dict | None = None, twin: StoredTwin | None = None) -> None:
    """Write a checkpoint atomically; ``training_state`` (last.pt only) is what ``--resume`` needs."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "state_dict": net.state_dict(),
        "step": step,
        "val_error_voxels": val_error,
    }
    if training_state is not None:
        state["training_state"] = training_state
    if twin is not None:
        state.update(twin.entries())
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _refusal(error: Exception) -> str:
    """What torch's weights-only unpickler refused, in a few words (the global a file asked for)."""
    text = str(error)
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return f"it asks for {found.group(1)}"
    found = re.search(r"WeightsUnpickler error: \s*(.+)", text)
    return found.group(1).strip() if found else error.__class__.__name__


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint's entries, read without running anything the file holds.

    ``weights_only=True``: torch's restricted unpickler builds tensors and plain
    containers, numbers and strings only, which is all a checkpoint holds (the
    config is stored as a dict, the random states as tensors and dicts), so a
    file whose pickle would import or call anything is refused before any of it
    runs. The format tag is checked on what that yields.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: file not found")
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols: the error below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"checkpoint {path}: not a SpikeReg checkpoint or it contains Python objects that "
                         f"SpikeReg refuses to unpickle ({_refusal(error)})") from None
    except Exception as error:  # zip/format errors: not a torch file at all
        raise ValueError(f"checkpoint {path}: not a SpikeReg checkpoint (unreadable as a torch file: "
                         f"{error.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path}: not a SpikeReg checkpoint (no {CHECKPOINT_FORMAT} format tag)")
    _check_entries(path, state)
    return state


def _check_entries(path: Path, state: dict) -> None:
    """The entries the loaders read have the kinds ``save_checkpoint`` writes; one line naming the first that
    does not (a tagged file with, say, no config would otherwise fail deep inside with a KeyError)."""
    def tensors(value) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in value.items())

    expected = {"config": (lambda v: isinstance(v, dict), "a dict"),
                "state_dict": (tensors, "a dict of tensors"),
                "step": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")}
    if "twin_state" in state:
        expected["twin_state"] = (tensors, "a dict of tensors")
        expected["twin_val_error_voxels"] = (lambda v: isinstance(v, (int, float)), "a number")
    if "training_state" in state:
        expected["training_state"] = (lambda v: isinstance(v, dict) and set(TRAINING_STATE) <= set(v),
                                      "a dict with " + ", ".join(TRAINING_STATE))
    for key, (ok, what) in expected.items():
        if key not in state:
            raise ValueError(f"checkpoint {path}: entry {key!r} is missing (expected {what})")
        if not ok(state[key]):
            raise ValueError(f"checkpoint {path}: entry {key!r} is {type(state[key]).__name__}, expected {what}")


def _last_checkpoint(out_dir: Path) -> Path:
    path = Path(out_dir) / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume {out_dir}: no checkpoints/last.pt there (not a training folder, or the "
                                "run stopped before its first checkpoint: start it again)")
    return path


def resume_config(out_dir: str | Path) -> Config:
    """The config of the run in ``out_dir``, as its ``checkpoints/last.pt`` recorded it."""
    path = _last_checkpoint(Path(out_dir))
    return config_from_dict(_read_checkpoint(path)["config"], source=str(path))


def train(config: Config, out_dir: str | Path, progress: Progress | None = None, *, resume: bool = False) -> Path:
    """Train per ``config`` into ``out_dir``; returns the best checkpoint's path.

    ``out_dir`` receives ``config.yaml`` (resolved), ``train_log.csv``,
    ``tensorboard/`` and ``checkpoints/{best,last}.pt``. ``resume`` continues
    the run in ``out_dir`` from ``last.pt`` (``config`` must be that run's,
    see :func:`resume_config`). Under ``torchrun`` every process calls this;
    rank 0 writes the files and reports ``progress``.
    """
    workers = distributed.setup(config.train.device)
    try:
        if config.train.batch_size < workers.world:
            raise ValueError(f"train.batch_size {config.train.batch_size} is smaller than the {workers.world} "
                             "training processes: every process needs at least one patch per step")
        return _train(config, Path(out_dir), progress if workers.is_main else None, resume, workers)
    finally:
        distributed.teardown(workers)


def _train(config: Config, out_dir: Path, progress: Progress | None, resume: bool, workers: Workers) -> Path:
    checkpoints = out_dir / "checkpoints"
    resumed = None
    if resume:
        resumed = _read_checkpoint(_last_checkpoint(out_dir))
        # Compared after loading, so that keys added since the run started (at their defaults) do not count.
        if config_from_dict(resumed["config"], source=str(out_dir)).to_dict() != config.to_dict():
            raise ValueError(f"--resume {out_dir}: the config differs from the one the run was started with; "
                             "a resumed run keeps its own config")
        if "training_state" not in resumed:
            raise ValueError(f"--resume {out_dir}: checkpoints/last.pt holds no training state "
                             "(written by an older SpikeReg); start the run again")
    elif workers.is_main:
        check_twin_from(config)  # a bad twin_from/twin_init fails before the folder exists
        checkpoints.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
    torch.manual_seed(config.train.seed)
    rng = np.random.default_rng(config.train.seed)
    device, batch_size = workers.device, config.train.batch_size
    snn_range_weight = config.train.snn_range_weight if config.model.neuron.type == "sdnn" else 0.0

    net = make_net(config.model)
    graph = isinstance(net, GraphRegNet)
    if graph:  # a U-Net stays provable by projection after every step (project_into_range), not by a penalty
        snn_range_weight = 0.0
    objective = RegistrationLoss(config.train, config.model.max_displacement, net.reduction)
    held_out = max(2, config.data.pairs // 8)

    def patches(recipe: Config) -> tuple[PatchSampler, PatchBatch]:
        """The training stream and the 64 held-out validation patches of ``recipe``'s pairs."""
        pairs = synthetic_pairs(recipe, recipe.data.pairs + held_out, config.train.seed,
                                labels=objective.needs_labels)
        stream = PatchSampler(pairs[:recipe.data.pairs], config.model.patch_size, net.reduction, rng)
        return stream, PatchSampler(pairs[recipe.data.pairs:], config.model.patch_size, net.reduction,
                                    np.random.default_rng(config.train.seed + 1)).sample(64).to(device)

    # The SNN's pairs (calibration, fine-tuning, validation); the twin trains on the data keys' own.
    finetuning = finetuning_config(config)
    sampler, val = patches(finetuning)
    identity_error = float(val.target.norm(dim=1).mean())

    twin, stored_twin = None, None
    if resumed is None and (config.train.ann_steps or config.train.twin_from):
        if config.train.twin_from:
            twin = twin_for(config)
        else:
            twin_sampler, twin_val = (sampler, val) if finetuning is config else patches(config)
            twin = pretrain_twin(config, twin_sampler, progress, workers=workers, objective=objective,
                                 checkpoint=_twin_checkpoints(config, out_dir, twin_val, workers))
        net, converted = _convert(twin, net, config, sampler, device)
        if converted is not config and workers.is_main:  # the scales conversion chose: the run's config
            save_config(converted, out_dir / "config.yaml")
        config = converted
        with torch.no_grad():
            ann_error = float((twin.predict(val.fixed, val.moving) - val.target).norm(dim=1).mean())
        stored_twin = StoredTwin({name: value.detach().cpu() for name, value in twin.state_dict().items()},
                                 ann_error)
    elif resumed is not None and "twin_state" in resumed:  # runs started before twins were stored have none
        stored_twin = StoredTwin(resumed["twin_state"], resumed["twin_val_error_voxels"])
    net.to(device)
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimizer = make_optimizer(parameters, config.train, config.train.learning_rate)
    schedule = make_scheduler(optimizer, config.train)
    best, first_step, seconds = math.inf, 1, 0.0
    if resumed is not None:
        net.load_state_dict(resumed["state_dict"])
        state = resumed["training_state"]
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        best, first_step, seconds = state["best_val_error"], resumed["step"] + 1, state["seconds"]

    # An SDNN that conversion left provably in the chip's range is kept so (export refuses one that is not).
    keep_proven = bool(snn_range_weight) and provably_in_range(net)
    terms = list(objective.weights) + (["summed_input_bound"] if snn_range_weight else []) + (
        ["worst_case_bound"] if keep_proven else [])
    log = TrainLog(out_dir, terms, enabled=workers.is_main, tensorboard=config.train.tensorboard,
                   resume_step=None if resumed is None else resumed["step"])

    def save(step: int, val_error: float, improved: bool, elapsed: float) -> None:
        if not workers.is_main:
            return
        save_checkpoint(checkpoints / "last.pt", net, config, step, val_error, {
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "sampler_rng": sampler.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "best_val_error": best,
            "seconds": elapsed,
        }, stored_twin)
        if improved:
            save_checkpoint(checkpoints / "best.pt", net, config, step, val_error, twin=stored_twin)

    try:
        start = time.perf_counter() - seconds
        if twin is not None:  # the twin, and the SNN right after conversion, as reference rows
            log.row("ann", val_error_voxels=stored_twin.val_error, identity_error_voxels=identity_error)
            snn_error, rate = evaluate(net, val)
            log.row(0, val_error_voxels=snn_error, identity_error_voxels=identity_error, spike_rate=rate)
            log.scalars(0, {"val/error_voxels": snn_error, "val/spike_rate": rate,
                            "val/ann_error_voxels": stored_twin.val_error,
                            "val/identity_error_voxels": identity_error})
            if config.train.steps == 0:  # no fine-tuning: the converted twin is the model
                best = snn_error
                save(0, snn_error, True, time.perf_counter() - start)
        for step in range(first_step, config.train.steps + 1):
            net.train()
            learning_rate = optimizer.param_groups[0]["lr"]
            batch = sampler.sample(batch_size, workers.share(batch_size)).to(device)
            outputs = (lambda b: _graph_outputs(net, b)) if graph else (
                lambda b: _snn_outputs(net, b, snn_range_weight, keep_proven))
            row = _train_step(outputs, batch, objective, optimizer, parameters, workers, config.train.grad_clip,
                              batch_size)
            if graph:
                project_into_range(net)
            schedule.step()
            log.scalars(step, {f"train/{name}": value for name, value in row.items()} | {"lr": learning_rate})
            if step % config.train.checkpoint_every == 0 or step == config.train.steps:
                val_error, rate = evaluate(net, val)
                row.update(val_error_voxels=val_error, spike_rate=rate)
                elapsed = time.perf_counter() - start
                log.row(step, loss=row["loss"], val_error_voxels=val_error, identity_error_voxels=identity_error,
                        spike_rate=rate, seconds=elapsed, learning_rate=learning_rate,
                        **{f"loss_{name}": row[name] for name in terms})
                log.scalars(step, {"val/error_voxels": val_error, "val/spike_rate": rate})
                improved = val_error < best
                best = min(best, val_error)
                save(step, val_error, improved, elapsed)
            if progress is not None:
                progress(step, config.train.steps, row)
    finally:
        log.close()
    distributed.barrier(workers)  # no process returns before rank 0 has written the last checkpoint
    return checkpoints / "best.pt"


def _convert(twin: AnnTwin | GraphTwin, net: SpikingRegNet | GraphRegNet, config: Config, sampler: PatchSampler,
             device: torch.device) -> tuple[SpikingRegNet | GraphRegNet, Config]:
    """The spiking network of ``twin`` and the config it runs with (``config`` itself where nothing changed).

    A U-Net: every node saturated and scaled into the chip's proven range (:func:`convert_twin`); an SDNN
    chain: ReLU layers rescale freely, so each uses the 8-bit weights' range and the decoder divides the
    readout gain out (:meth:`AnnTwin.balanced_kernels`); both calibrated on training patches drawn apart
    from the training stream. A CUBA chain takes the twin's weights as they are.
    """
    graph = isinstance(net, GraphRegNet)
    if not graph and config.model.neuron.type != "sdnn":
        net.load_state_dict(twin.snn_state(), strict=False)
        return net, config
    calibration = sampler.sample(CALIBRATION_PATCHES, rng=np.random.default_rng(config.train.seed + 2))
    if graph:
        net = convert_twin(twin.cpu(), calibration.fixed, calibration.moving).net
        twin.to(device)
        return net, replace(config, model=net.model)
    calibration = calibration.to(device)
    kernels, gain = twin.balanced_kernels(calibration.fixed, calibration.moving, spike_exp=config.model.spike_exp)
    config = replace(config, model=replace(config.model, readout_gain=gain))
    net = SpikingRegNet(config.model)
    net.load_state_dict(twin.snn_state(kernels), strict=False)
    return net, config


def _twin_checkpoints(config: Config, out_dir: Path, val: PatchBatch, workers: Workers):
    """The twin stage's record: its validation error in ``twin_log.csv``, the twin in ``checkpoints/twin.pt``.

    ``twin.pt`` is a checkpoint that ``train.twin_from`` takes (its SNN state is empty), so a long twin
    run can be converted and fine-tuned from any of its records.
    """
    if not workers.is_main:
        return None
    start = time.perf_counter()
    log = out_dir / "twin_log.csv"
    log.write_text("step,loss,val_error_voxels,seconds\n")

    def record(step: int, loss: float, twin) -> None:
        twin.eval()
        with torch.no_grad():
            errors = [(twin.predict(val.fixed[i:i + 16], val.moving[i:i + 16]) - val.target[i:i + 16])
                      .norm(dim=1).flatten(1).mean(dim=1) for i in range(0, len(val), 16)]
        twin.train()
        error = float(torch.cat(errors).mean())
        with log.open("a") as handle:
            handle.write(f"{step},{loss:.5f},{error:.4f},{time.perf_counter() - start:.1f}\n")
        state = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "state_dict": {}, "step": 0,
                 "val_error_voxels": error, "twin_state": {k: v.detach().cpu() for k, v in twin.state_dict().items()},
                 "twin_val_error_voxels": error}
        tmp = out_dir / "checkpoints" / "twin.tmp"
        torch.save(state, tmp)
        tmp.replace(out_dir / "checkpoints" / "twin.pt")

    return record


def _snn_outputs(net: SpikingRegNet, batch: PatchBatch, range_weight: float = 0.0, keep_proven: bool = False
                 ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    """Decoded control grid, per-layer spike rates (the readout decodes the same spikes as ``net.predict``)
    and, for an SDNN with ``range_weight``, the term that keeps its summed inputs in Lava's range."""
    spikes = net.encode(batch.fixed, batch.moving)
    if range_weight:
        summed, outputs = net.summed_inputs(spikes)
        extra = {"summed_input_bound": range_weight * summed_input_bound_loss(
            summed, balanced_max_value(net.config.spike_exp))}
        if keep_proven:  # a network proven in range at conversion stays so
            extra["worst_case_bound"] = range_weight * worst_case_bound_loss(
                network_bounds(net, differentiable=True), summed_input_limit(net.config.spike_exp) * SATURATION_MARGIN)
    else:
        outputs, extra = net.layer_outputs(spikes), {}
    return net.decode(outputs[-1]), layer_rates(outputs), extra


def make_twin(model) -> AnnTwin | GraphTwin:
    """The ANN twin of ``model`` (a :class:`~spikereg.config.ModelConfig`): a chain's or a U-Net's."""
    return GraphTwin(model) if model.architecture == "unet" else AnnTwin(model)


def _graph_outputs(net: GraphRegNet, batch: PatchBatch
                   ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    """A U-Net's field from rest, with its nodes' mean message payloads as the activity term's rates."""
    values = net.from_rest(net.levels(batch.fixed, batch.moving), keep=True)
    return net.decode(values[-1]), layer_rates(values[1:]), {}


def make_net(model) -> SpikingRegNet | GraphRegNet:
    """The spiking network of ``model``: a chain of SLAYER blocks or the registration U-Net."""
    return GraphRegNet(model) if model.architecture == "unet" else SpikingRegNet(model)


def _twin_outputs(twin: AnnTwin | GraphTwin, batch: PatchBatch, range_weight: float = 0.0
                  ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    """Control grid (decoded as ``AnnTwin.predict`` does), per-layer rates and extra terms of the ANN twin."""
    summed, rates = twin.layers(batch.fixed, batch.moving)
    extra = {"summed_input_range": range_weight * summed_input_range_loss(summed)} if range_weight else {}
    return decode_displacement(rates[-1], 1, twin.config.max_displacement), layer_rates(rates), extra


def _train_step(outputs, batch: PatchBatch, objective: RegistrationLoss, optimizer: torch.optim.Optimizer,
                parameters: list[torch.nn.Parameter], workers: Workers, grad_clip: float | None,
                global_batch: int) -> dict[str, float]:
    """One optimiser step on this process's share of the global batch; returns the global loss terms.

    ``outputs(batch)`` gives the control grid, the layer rates and, optionally,
    weighted terms of its own that are added to the objective's.
    """
    controls, rates, *extra = outputs(batch)
    loss, terms = objective(controls, rates, batch)
    for name, value in (extra[0] if extra else {}).items():
        loss, terms = loss + value, {**terms, name: value}
    weight = len(batch) / global_batch  # this share's part of the global mean
    optimizer.zero_grad()
    (loss * weight if workers.world > 1 else loss).backward()
    distributed.all_reduce_gradients(parameters, workers)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    values = torch.stack([loss.detach()] + [value.detach() for value in terms.values()])
    if workers.world > 1:
        values = distributed.all_reduce_sum(values * weight, workers)
    return dict(zip(["loss", *terms], values.tolist()))


def pretrain_twin(config: Config, sampler: PatchSampler, progress: Progress | None = None, *,
                  workers: Workers | None = None, objective: RegistrationLoss | None = None,
                  checkpoint: Callable[[int, float, AnnTwin | GraphTwin], None] | None = None) -> AnnTwin:
    """Train the ANN twin (same kernels, rate units) with the SNN's loss, to initialise the SNN.

    The same optimiser kind as the SNN at ``train.ann_learning_rate``,
    ``train.ann_scheduler`` (default none) and no gradient clipping. With
    ``train.twin_init`` the twin starts from the one stored in that checkpoint
    instead of at random. ``checkpoint(step, loss, twin)`` is called every
    ``train.ann_checkpoint_every`` steps and after the last.
    """
    workers = workers or Workers()
    twin = make_twin(config.model)
    if config.train.twin_init:  # trained further on this config's pairs, from an earlier run's twin
        twin.load_state_dict(twin_for(config, "twin_init").state_dict())
    twin = twin.to(workers.device)
    if objective is None:
        objective = RegistrationLoss(config.train, config.model.max_displacement, config.model.reduction)
    parameters = list(twin.parameters())
    optimizer = make_optimizer(parameters, config.train, config.train.ann_learning_rate)
    batch_size = config.train.batch_size
    range_weight = config.train.ann_range_weight if config.model.neuron.type == "sdnn" else 0.0
    steps, every = config.train.ann_steps, config.train.ann_checkpoint_every
    for step in range(1, steps + 1):
        if config.train.ann_scheduler == "cosine":
            fraction = 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps))
            for group in optimizer.param_groups:
                group["lr"] = config.train.ann_learning_rate * fraction
        batch = sampler.sample(batch_size, workers.share(batch_size)).to(workers.device)
        row = _train_step(lambda b: _twin_outputs(twin, b, range_weight), batch, objective, optimizer, parameters,
                          workers, None, batch_size)
        if checkpoint is not None and ((every and step % every == 0) or step == steps):
            checkpoint(step, row["loss"], twin)
        if progress is not None:
            progress(0, config.train.steps, {"loss": row["loss"], "stage": f"ANN twin {step}/{steps}"})
    return twin


def retrain_twin(config: Config) -> AnnTwin:
    """The ANN twin of a run of ``config``, trained again exactly as :func:`train` trained it.

    For checkpoints written before the twin was stored in them: the same
    seeds, pairs and draws as the start of a run (the SNN is built first
    there, so its initialisation is replayed before the twin's).
    """
    torch.manual_seed(config.train.seed)
    net = make_net(config.model)  # consumes the torch draws it consumes in train()
    objective = RegistrationLoss(config.train, config.model.max_displacement, net.reduction)
    pairs = synthetic_pairs(config, config.data.pairs, config.train.seed, labels=objective.needs_labels)
    sampler = PatchSampler(pairs, config.model.patch_size, net.reduction, np.random.default_rng(config.train.seed))
    twin = pretrain_twin(config, sampler, objective=objective)
    return twin.eval()


@torch.no_grad()
def evaluate(net: SpikingRegNet | GraphRegNet, batch: PatchBatch) -> tuple[float, float]:
    """Mean control-point end-point error (voxels) and mean spike rate over all layers.

    A U-Net's rate: its graded spikes (at most one per unit and patch, from rest) per unit and step
    of its window.
    """
    net.eval()
    if isinstance(net, GraphRegNet):
        errors, messages, units = [], 0, 0
        for first in range(0, len(batch), 16):
            cut = slice(first, first + 16)
            values = net.from_rest(net.levels(batch.fixed[cut], batch.moving[cut]), keep=True)
            errors.append((net.decode(values[-1]) - batch.target[cut]).norm(dim=1).flatten(1).mean(dim=1))
            messages += sum(int((v != 0).sum()) for v in values)
            units += sum(v.numel() for v in values)
        return float(torch.cat(errors).mean()), messages / (units * net.window)
    outputs = net.layer_outputs(net.encode(batch.fixed, batch.moving))
    predicted = net.decode(outputs[-1])
    error = float((predicted - batch.target).norm(dim=1).mean())
    spikes = sum(float(o.sum()) for o in outputs)
    neurons_steps = sum(o.numel() for o in outputs)
    return error, spikes / neurons_steps


def check_twin_from(config: Config) -> None:
    """``train.twin_from`` and ``train.twin_init`` (where given) are checkpoints whose twin has ``config``'s topology.

    Each is read safely. Builds no network (so it draws nothing from torch's
    random stream): run before the output folder is made, so a bad file leaves
    nothing behind.
    """
    for key in ("twin_from", "twin_init"):
        if getattr(config.train, key):
            _check_stored_twin(config, key)


def _check_stored_twin(config: Config, key: str) -> None:
    option = f"train.{key}"
    try:
        path = resolve_checkpoint(getattr(config.train, key))  # a path, or a shipped model's name
        state = _read_checkpoint(path)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"{option} {error}") from None
    if "twin_state" not in state:
        raise ValueError(f"{option} {path}: the checkpoint holds no ANN twin "
                         "(train it with train.ann_steps > 0)")
    keys = ("architecture", "patch_size", "encoding", "channels", "strides", "kernel_size")
    stored = config_from_dict(state["config"], source=str(path)).model
    theirs, ours = ({k: getattr(c, k) for k in keys} | {"neuron": c.neuron.type} for c in (stored, config.model))
    if theirs != ours:
        differing = ", ".join(f"model.{k} {theirs[k]} vs {ours[k]}" for k in theirs if theirs[k] != ours[k])
        raise ValueError(f"{option} {path}: its twin has another topology ({differing})")


def twin_for(config: Config, key: str = "twin_from") -> AnnTwin:
    """The stored twin of ``train.twin_from`` (or ``train.twin_init``), checked to have ``config``'s topology."""
    _check_stored_twin(config, key)
    return load_twin(resolve_checkpoint(getattr(config.train, key)))


def load_twin(path: str | Path) -> AnnTwin | None:
    """The ANN twin the checkpoint's SNN was converted from, or None where the checkpoint holds none.

    Checkpoints keep the twin since ``train`` stored it (runs with
    ``train.ann_steps > 0``); older ones, and runs without a twin, give None.
    The twin's held-out error is in ``twin.val_error_voxels``.
    """
    path = Path(path)
    state = _read_checkpoint(path)
    if "twin_state" not in state:
        return None
    config = config_from_dict(state["config"], source=str(path))
    twin = make_twin(config.model)
    twin.load_state_dict(state["twin_state"])
    twin.val_error_voxels = float(state["twin_val_error_voxels"])
    twin.eval()
    return twin


def load_checkpoint(path: str | Path) -> tuple[SpikingRegNet | GraphRegNet, Config]:
    """Rebuild the network from a checkpoint written by :func:`train`."""
    path = Path(path)
    state = _read_checkpoint(path)
    config = config_from_dict(state["config"], source=str(path))
    net = make_net(config.model)
    net.load_state_dict(state["state_dict"])
    net.eval()
    return net, config
