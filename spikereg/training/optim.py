"""Optimiser and learning-rate schedule from ``train`` config keys."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from spikereg.config import TrainConfig


def make_optimizer(parameters: Iterable[torch.nn.Parameter], train: TrainConfig,
                   learning_rate: float) -> torch.optim.Optimizer:
    """``train.optimizer`` (adam | adamw | sgd) with ``train.weight_decay`` (and ``train.momentum`` for sgd)."""
    parameters = list(parameters)
    if train.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=train.weight_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=train.weight_decay)
    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, momentum=train.momentum,
                               weight_decay=train.weight_decay)
    raise ValueError(f"train.optimizer {train.optimizer!r}: choose adam, adamw or sgd")


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """``train.scheduler``: cosine to 0 over ``train.steps``, step decay, or a constant rate ("none")."""
    if train.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, train.steps)
    if train.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, train.scheduler_step, gamma=train.scheduler_gamma)
    if train.scheduler == "none":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"train.scheduler {train.scheduler!r}: choose cosine, step or none")
