"""Supervised loss on the ground-truth displacement of synthetic pairs."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def displacement_loss(predicted: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """Mean squared control-point error, in units of the readout's full scale.

    The target is clamped to the readout's range (``+-scale`` voxels): a
    displacement the network cannot express should not dominate the loss.
    """
    return F.mse_loss(predicted / scale, target.clamp(-scale, scale) / scale)
