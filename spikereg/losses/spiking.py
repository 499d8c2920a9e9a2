"""Activity terms for spiking networks."""
from __future__ import annotations

import torch


def layer_rates(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-sample mean activity ``(N,)`` of each layer's output (batch first).

    For binary spikes (CUBA, ``(N, C, H, W, T)``) this is spikes per neuron
    per time step; for graded sigma-delta spikes the mean payload magnitude
    (the event count itself has no gradient); for the ANN twin's rates
    ``(N, C, D, H, W)`` the mean rate.
    """
    return [output.abs().flatten(1).mean(dim=1) for output in outputs]


def spike_rate_loss(rates: list[torch.Tensor], target: float) -> torch.Tensor:
    """Mean over layers and samples of ``(rate - target)^2``; zero when every layer fires at ``target``.

    Per sample rather than per batch, so that the term is a mean over samples
    like every other term and splits exactly across distributed workers.
    """
    return torch.stack([((rate - target) ** 2).mean() for rate in rates]).mean()
