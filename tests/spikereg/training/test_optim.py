"""Optimiser and schedule built from train config keys."""
import pytest
import torch

from spikereg.config import TrainConfig
from spikereg.training.optim import make_optimizer, make_scheduler


def learning_rates(train: TrainConfig, steps: int) -> list[float]:
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(2))], train, 1.0)
    schedule = make_scheduler(optimizer, train)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("sgd", torch.optim.SGD)])
def test_optimizer_kind_and_settings(name, cls):
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))],
                               TrainConfig(optimizer=name, weight_decay=0.02, momentum=0.8), 0.5)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.5 and group["weight_decay"] == 0.02
    assert name != "sgd" or group["momentum"] == 0.8


def test_schedules():
    assert learning_rates(TrainConfig(scheduler="none"), 4) == [1.0] * 4
    assert learning_rates(TrainConfig(scheduler="step", scheduler_step=2, scheduler_gamma=0.5), 5) == \
        [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = learning_rates(TrainConfig(scheduler="cosine", steps=4), 4)
    assert cosine == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])  # (1 + cos(pi t / 4)) / 2
