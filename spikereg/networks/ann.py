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
from spikereg.networks.encoding import READOUT_CHANNELS, decode_displacement, graded_levels, input_features

# A sigma-delta layer's summed input travels from Lava's (and Loihi 2's) conv/dense to its
# neuron as a 24-bit number with 18 fractional bits: within +-32 in SLAYER's units, and it
# wraps past that (measured: a readout of 76 came back as 12; the 2 mm model balanced to 16
# or 24 verified exactly on 8 patches, to 32 or more it did not). Export checks it
# (lava_export.verify), training keeps it (train.snn_range_weight).
SUMMED_INPUT_LIMIT = 32.0
# Balancing targets (SLAYER's units). Weights: the 8-bit grid spans [-4, 3.97] in steps of
# 1/32. Summed inputs: the calibration patches' largest is kept 2 times below the limit,
# for inputs unlike them (lower bounds shrink the first layers' weights).
BALANCED_MAX_WEIGHT = 3.9
BALANCED_MAX_VALUE = SUMMED_INPUT_LIMIT / 2


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
    def balanced_kernels(self, fixed: torch.Tensor, moving: torch.Tensor, max_weight: float = BALANCED_MAX_WEIGHT,
                         max_value: float = BALANCED_MAX_VALUE) -> tuple[list[torch.Tensor], float]:
        """The kernels rescaled layer by layer for the chip's number formats, and the readout gain.

        Why: the chip's weights are 8-bit, in steps of 1/32 of the unit SLAYER
        trains in; a trained ReLU twin's kernels are small (largest |w| about
        0.3), so quantized as they are they keep a handful of levels (measured:
        whole-volume EPE 0.1 voxel worse than the twin). A ReLU layer is
        positively homogeneous, ``relu(s W x) = s relu(W x)``, so scaling layer
        ``l`` by ``s_l`` scales every later value by the product: the network
        computes the same field with a readout ``gain`` times larger, which the
        decoder divides out (``model.readout_gain``). Each ``s_l`` is as large
        as the weights allow (largest weight ``max_weight``) but keeps the
        layer's largest summed input (before the ReLU, either sign) on the
        calibration patches ``fixed``/``moving`` at most ``max_value``: Lava's
        conv sends it to the neuron as a 24-bit number with 18 fractional bits
        (measured: a readout of 76 came back as 12), and Loihi 2's is signed.
        Graded (sdnn) twins only: a CUBA layer's clipped rate is not homogeneous.
        """
        if self.config.neuron.type != "sdnn":
            raise ValueError("weight balancing needs ReLU (model.neuron.type sdnn) layers")
        peaks = [float(summed.abs().max()) for summed in self.layers(fixed, moving)[0]]
        kernels, gain = [], 1.0
        for kernel, peak in zip(self.kernels, peaks):
            scale = max_weight / float(kernel.abs().max().clamp(min=1e-12))
            if peak > 0:
                scale = min(scale, max_value / (gain * peak))
            kernels.append(kernel.detach() * scale)
            gain *= scale
        return kernels, gain
