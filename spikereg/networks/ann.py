"""The ANN twin: the spiking network's topology with rate-valued (clipped ReLU) units.

Each layer is the same 3-D convolution as the SNN's -- the SNN's trainable
tensors *are* 3-D kernels (see :class:`~spikereg.networks.folding.FoldedKernel`)
-- followed by ``clamp(x / threshold, 0, 1)``: roughly the firing rate an
integrate-and-fire neuron reaches for a steady input current ``x`` (at most
one spike per step). Rounding the rate to whole spikes per window (tried:
straight-through ``floor(x T) / T``) made the converted SNN no better after
fine-tuning and the twin worse, so the twin stays unquantized. The twin trains like any CNN; its kernels initialise the
SNN, which is then fine-tuned with surrogate gradients (SpikeReg's
train-ANN, convert, fine-tune path).

For an SDNN (``model.neuron.type: sdnn``) the twin is exact rather than
approximate: a sigma-delta ReLU layer's value *is* ``relu(conv(x))`` of its
input values, once the changes have propagated (up to sub-threshold
residues), so the twin is a plain ReLU CNN on the same graded input levels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from spikereg.config import ModelConfig
from spikereg.networks.bounds import INPUT_MAX, SATURATION_MARGIN, message_limit, summed_input_limit
from spikereg.networks.encoding import READOUT_CHANNELS, decode_displacement, graded_levels, input_features

# Balancing targets (SLAYER's units). Weights: the 8-bit grid spans [-4, 3.97] in steps of 1/32.
# Values, as fractions of the chip's limits at the model's spike_exp (spikereg.networks.bounds:
# a layer's summed input travels in 24 bits and Lava wraps past it; a hidden layer's graded
# spikes in 16-bit messages): the calibration patches' largest is kept 2 times below each
# limit, for inputs unlike them. The readout's values are kept to a sixteenth of the summed
# input's limit: its worst case over every input grows with the network's gain, and the
# saturation that proves the range at export (bounds.saturate_for_chip) then clips the last
# hidden layer near its calibration peak rather than far below it.
BALANCED_MAX_WEIGHT = 3.9
BALANCED_VALUE_FRACTION = 1 / 2
BALANCED_READOUT_FRACTION = 1 / 16


def balanced_max_value(spike_exp: int) -> float:
    """The largest ``|summed input|`` balancing (and SDNN fine-tuning) leaves a layer on calibration patches."""
    return summed_input_limit(spike_exp) * BALANCED_VALUE_FRACTION


class AnnTwin(torch.nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        layers = list(zip(config.channels, config.strides)) + [(READOUT_CHANNELS, 1)]
        c_in, kernels = config.in_channels, []
        for c_out, _ in layers:
            kernel = torch.empty(c_out, c_in, k, k, k).normal_(0.0, 1.0 / (c_in * k**3) ** 0.5)
            kernels.append(torch.nn.Parameter(kernel))
            c_in = c_out
        self.kernels = torch.nn.ParameterList(kernels)
        self.strides = [s for _, s in layers]

    def rates(self, fixed: torch.Tensor, moving: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's rates for ``(N, 1, P, P, P)`` patch pairs."""
        return self.layers(fixed, moving)[1]

    def layers(self, fixed: torch.Tensor, moving: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's summed input (the conv's output) and its rates, in one pass."""
        x = input_features(fixed, moving, force=self.config.encoding == "intensity+force")
        graded = self.config.neuron.type == "sdnn"
        if graded:
            x = graded_levels(x)  # the SDNN's input levels
        summed, rates = [], []
        for kernel, stride in zip(self.kernels, self.strides):
            x = F.conv3d(x, kernel, stride=stride, padding=kernel.shape[-1] // 2)
            summed.append(x)
            x = F.relu(x) if graded else torch.clamp(x / self.config.neuron.threshold, 0.0, 1.0)
            rates.append(x)
        return summed, rates

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(N, 3, g, g, g)`` displacement in voxels, decoded exactly as the SNN's readout."""
        rates = self.rates(fixed, moving)[-1]
        return decode_displacement(rates, 1, self.config.max_displacement)

    def snn_state(self, kernels: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The kernels (or ``kernels``) under the SNN's parameter names (``load_state_dict(..., strict=False)``)."""
        return {f"blocks.{i}.synapse.parametrizations.weight.original": k.detach().clone()
                for i, k in enumerate(self.kernels if kernels is None else kernels)}

    @torch.no_grad()
    def balanced_kernels(self, fixed: torch.Tensor, moving: torch.Tensor, spike_exp: int | None = None,
                         max_weight: float = BALANCED_MAX_WEIGHT, max_value: float | None = None
                         ) -> tuple[list[torch.Tensor], float]:
        """The kernels rescaled layer by layer for the chip's number formats, and the readout gain.

        Why: the chip's weights are 8-bit, in steps of 1/32 of the unit SLAYER
        trains in, and a trained ReLU twin's kernels are a few tenths:
        quantized as they are, a layer keeps a dozen levels. A ReLU
        layer is positively homogeneous, ``relu(s W x) = s relu(W x)``, so
        scaling layer ``l`` by ``s_l`` scales every later value by the product:
        the network computes the same field with a readout ``gain`` times
        larger, which the decoder divides out (``model.readout_gain``). Each
        ``s_l`` is as large as the weights allow (largest weight ``max_weight``)
        but keeps, on the calibration patches ``fixed``/``moving``, the layer's
        largest summed input (before the ReLU, either sign) within ``max_value``
        (default: half the 24-bit limit at ``spike_exp``, the SNN's; by default
        the twin's ``model.spike_exp``), a hidden layer's graded spikes within
        half the 16-bit message limit (the first layer's over every input within
        the saturation margin of it: its inputs are the host's bounded levels,
        and export cannot saturate what feeds it), and the readout's values
        within :data:`BALANCED_READOUT_FRACTION` of the summed-input limit. At
        ``spike_exp`` 6 (+-32) the value bound, not the weights, sets every
        scale and the weights keep few levels; at ``spike_exp`` 0 (+-2048,
        spikes on the 1/64 delta grid) the first layers reach the weights'
        range (BENCHMARKS.md, "Conversion at the chip's spike_exp").
        Graded (sdnn) twins only: a CUBA layer's clipped rate is not homogeneous.
        """
        if self.config.neuron.type != "sdnn":
            raise ValueError("weight balancing needs ReLU (model.neuron.type sdnn) layers")
        spike_exp = self.config.spike_exp if spike_exp is None else spike_exp
        if max_value is None:
            max_value = balanced_max_value(spike_exp)
        summed, rates = self.layers(fixed, moving)
        value_caps = [message_limit(spike_exp) * BALANCED_VALUE_FRACTION] * (len(rates) - 1) + [
            summed_input_limit(spike_exp) * BALANCED_READOUT_FRACTION]
        kernels, gain = [], 1.0
        for index, (kernel, layer_input, layer_output, value_cap) in enumerate(
                zip(self.kernels, summed, rates, value_caps)):
            scale = max_weight / float(kernel.abs().max().clamp(min=1e-12))
            if index == 0 and len(self.kernels) > 1:  # its inputs are the host's levels: its worst case is known
                worst_spike = float(kernel.clamp(min=0).flatten(1).sum(dim=1).max()) * INPUT_MAX
                scale = min(scale, message_limit(spike_exp) * SATURATION_MARGIN / worst_spike)
            for peak, cap in ((float(layer_input.abs().max()), max_value), (float(layer_output.max()), value_cap)):
                if peak > 0:
                    scale = min(scale, cap / (gain * peak))
            kernels.append(kernel.detach() * scale)
            gain *= scale
        return kernels, gain
