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


def summed_input_bound_loss(summed: list[torch.Tensor], bound: float) -> torch.Tensor:
    """Mean over layers and samples of ``relu(m / bound - 1)^2``, ``m`` a sample's largest ``|summed input|`` in the
    layer.

    Why: conversion scales a sigma-delta network so that every layer's summed
    input fits Lava's and Loihi 2's 24-bit range (+-32 in SLAYER's units at spike_exp 6) with
    room to spare (``bound``, :meth:`AnnTwin.balanced_kernels`), but SLAYER
    fine-tuning is free to grow the weights again: measured on the 2 mm model,
    1,000 unpenalised steps took the largest summed inputs on 4,096 training
    patches from 18-23 to 31-41, past the range, and Lava's answer for those
    patches wrapped around. Zero while every sample stays within ``bound``.
    """
    terms = [torch.relu(x.abs().flatten(1).amax(dim=1) / bound - 1.0).pow(2).mean() for x in summed]
    return torch.stack(terms).mean()


def summed_input_range_loss(summed: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of ``relu(-x / p - 1)^2`` for every summed input ``x``, with ``p`` the layer's positive peak.

    Why: a sigma-delta layer on Lava / Loihi 2 carries its summed input in 24
    bits (+-32 in SLAYER's units), so conversion scales each layer to fit its
    largest summed input of either sign (``AnnTwin.balanced_kernels``). A ReLU
    twin happily learns negative sums many times its positive range (measured
    at 2 mm: -41 against +11 in the first layer); the ReLU hides them, but they
    forced the first layer's 8-bit weights 2.6x smaller than trained. This term
    is zero while negatives stay within the positive range, and scale-free
    (``p`` is detached), so it reshapes the twin without shrinking it.
    """
    terms = []
    for x in summed:
        peak = x.detach().clamp(min=0).amax().clamp(min=1e-3)
        terms.append(torch.relu(-x / peak - 1.0).pow(2).mean())
    return torch.stack(terms).mean()


def worst_case_bound_loss(bounds: list[torch.Tensor], limit: float) -> torch.Tensor:
    """Mean over layers of ``relu(b / limit - 1)^2``, ``b`` the layer's worst case over every input.

    ``bounds`` are :func:`spikereg.networks.bounds.network_bounds` (differentiable): each
    neuron's largest per-step synaptic input and summed input for any image. Why: export
    refuses a network whose worst case passes the chip's 24-bit range, and conversion leaves
    fine-tuning a margin below it; this term keeps fine-tuning inside. Zero while it holds.
    """
    terms = [torch.relu(bound[:, :2].amax() / limit - 1.0).pow(2) for bound in bounds]
    return torch.stack(terms).mean()

