"""The training objective: a weighted sum of loss terms, weights from ``train.loss``.

Image and regularisation terms work on the dense field: the predicted
control grid upsampled to voxels exactly as the registration pipeline does
(:func:`spikereg.registration.patches.upsample`), then the moving patch (and
its one-hot labels) warped with :func:`spikereg.data.deform.warp_torch`.
Every term is a mean over equally sized samples, so a batch split across
distributed workers gives the same loss as the whole batch.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict

import torch
import torch.nn.functional as F

from spikereg.config import LossConfig, TrainConfig
from spikereg.data.deform import warp_torch
from spikereg.losses.spiking import spike_rate_loss
from spikereg.losses.supervised import displacement_loss

TERMS = tuple(asdict(LossConfig()))
FIELD_TERMS = ("mse", "lncc", "mi", "dice", "bending", "diffusion")  # need the dense field


def dense_field(controls: torch.Tensor, reduction: int) -> torch.Tensor:
    """Control grid ``(N, 3, g, g, g)`` -> dense field ``(N, 3, g r, g r, g r)``, differentiable.

    Control point ``j`` sits at the centre of voxels ``[r j, r (j+1))``:
    trilinear with ``align_corners=False``, as in ``patches.upsample``.
    """
    return F.interpolate(controls, scale_factor=reduction, mode="trilinear", align_corners=False)


class RegistrationLoss(torch.nn.Module):
    """``sum(weight * term)`` over the terms with a positive weight in ``train.loss``.

    ``forward(controls, rates, batch)`` takes the predicted control grid in
    voxels, each layer's per-sample activity (:func:`spikereg.losses.spiking.layer_rates`)
    and a batch with ``fixed``, ``moving`` ``(N, 1, P, P, P)``, ``target``
    (ground-truth control grid) and, for ``dice``, ``fixed_labels`` /
    ``moving_labels`` (class indices); it returns the total and the
    unweighted value of every active term.
    """

    def __init__(self, train: TrainConfig, max_displacement: float, reduction: int, label_classes: int = 3) -> None:
        super().__init__()
        from monai import losses  # imported here: monai takes seconds to import

        self.weights = {name: weight for name, weight in asdict(train.loss).items() if weight > 0}
        self.max_displacement, self.reduction, self.label_classes = max_displacement, reduction, label_classes
        self.target_spike_rate = train.target_spike_rate
        self.lncc = losses.LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=train.lncc_kernel_size)
        self.mi = losses.GlobalMutualInformationLoss(num_bins=train.mi_bins)
        # Tissue Dice: grey and white matter, background left out as in the evaluation.
        self.dice = losses.DiceLoss(include_background=False)
        self.bending = losses.BendingEnergyLoss()
        self.diffusion = losses.DiffusionLoss()

    @property
    def needs_labels(self) -> bool:
        return "dice" in self.weights

    def terms(self, controls: torch.Tensor, rates: list[torch.Tensor], batch) -> dict[str, torch.Tensor]:
        """Unweighted value of every active term."""
        values: dict[str, torch.Tensor] = {}
        active = self.weights
        if "displacement" in active:
            values["displacement"] = displacement_loss(controls, batch.target, self.max_displacement)
        if any(name in active for name in FIELD_TERMS):
            ddf = dense_field(controls, self.reduction)
            if any(name in active for name in ("mse", "lncc", "mi")):
                warped = warp_torch(batch.moving, ddf)
                if "mse" in active:
                    values["mse"] = F.mse_loss(warped, batch.fixed)
                if "lncc" in active:
                    values["lncc"] = self.lncc(warped, batch.fixed)
                if "mi" in active:
                    values["mi"] = self.mi(warped, batch.fixed)
            if "dice" in active:
                values["dice"] = self.dice(warp_torch(self.one_hot(batch.moving_labels), ddf),
                                           self.one_hot(batch.fixed_labels))
            with warnings.catch_warnings():
                # MONAI 1.6 indexes with lists, which torch flags as deprecated on every call.
                warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
                if "bending" in active:
                    values["bending"] = self.bending(ddf)
                if "diffusion" in active:
                    values["diffusion"] = self.diffusion(ddf)
        if "spike_rate" in active:
            values["spike_rate"] = spike_rate_loss(rates, self.target_spike_rate)
        return values

    def one_hot(self, labels: torch.Tensor | None) -> torch.Tensor:
        """Class indices ``(N, 1, D, H, W)`` -> one-hot ``(N, classes, D, H, W)`` in the labels' float dtype."""
        if labels is None:
            raise ValueError("the dice loss term needs label maps, and this batch has none")
        from monai.networks.utils import one_hot

        return one_hot(labels.round(), self.label_classes, dim=1)

    def forward(self, controls: torch.Tensor, rates: list[torch.Tensor], batch) -> tuple[torch.Tensor, dict]:
        values = self.terms(controls, rates, batch)
        total = None
        for name, value in values.items():
            weighted = value * self.weights[name]
            total = weighted if total is None else total + weighted
        return total, values
