"""Registration losses for training: supervised displacement, image similarity
(MSE, LNCC, mutual information, Dice) on the warped moving patch, field
regularisers (bending energy, diffusion) and a spike-rate term, combined by
:class:`RegistrationLoss` with the weights of ``train.loss``."""
from spikereg.losses.objective import TERMS, RegistrationLoss, dense_field
from spikereg.losses.spiking import (
    layer_rates,
    spike_rate_loss,
    summed_input_bound_loss,
    summed_input_range_loss,
    worst_case_bound_loss,
)
from spikereg.losses.supervised import displacement_loss

__all__ = ["TERMS", "RegistrationLoss", "dense_field", "displacement_loss", "layer_rates", "spike_rate_loss",
           "summed_input_bound_loss", "summed_input_range_loss", "worst_case_bound_loss"]
