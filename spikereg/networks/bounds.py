"""Worst-case ranges of a sigma-delta network, for every input: what the chip's integers must hold.

Lava's (and Loihi 2's) sigma-delta layer receives, at every step, the sum of
its synapses' weights times the graded spikes that arrived, as a 24-bit signed
integer (Lava's ``Conv`` wraps it: ``lava.proc.conv.utils.signed_clamp``), and
accumulates it into its state ``sigma``. In SLAYER's units one integer step is
``2**-(12 + spike_exp)`` (weights ``2**-6``, spikes ``2**-(6 + spike_exp)``), so
both must stay within ``+-2**(11 - spike_exp)`` (:func:`summed_input_limit`).
Past it Lava wraps without a word; a sample of patches cannot show that no
image will get there, so these bounds follow from the weights alone, by
interval arithmetic through the layers:

* the host's input levels lie in ``[0, GRADED_LEVELS * GRADED_STEP]``;
* a layer's delta unit sends, in total, its activation minus a residue smaller
  than its threshold ``vth``: ``sent in (-vth, hi + vth)`` for an activation in
  ``[0, hi]``, and so one step's spike lies in ``(-(hi + 2 vth), hi + 2 vth)``;
* a neuron's summed input is ``sum_i w_i sent_i`` and one step's synaptic input
  ``sum_i w_i spike_i``: each is bounded by ``sum_i |w_i| x`` its input's bound,
  and the activation by the positive part ``max(0, sum_i max(w_i lo_i, w_i hi_i) + bias)``;
* a saturated layer (``model.clamp``) is a pair of populations ``relu(x)`` and
  ``relu(x - c)`` taken with ``w`` and ``-w``: the pair delivers ``clamp(x, 0, c)``
  minus two residues, ``(-2 vth, c + 2 vth)`` in total and ``(-(c + 4 vth), c + 4 vth)``
  per step, whatever ``x`` is. Without saturation the upper bounds compound from
  layer to layer (the positive part of each layer's weights multiplies them).

Lava computes each step's synaptic sum exactly (float64 or integers) and wraps
only the result, so a bound on the final sum is what matters there.
Everything here is plain torch on weights in SLAYER's units, differentiable,
so training can keep the bounds (``train.snn_range_weight``) and conversion can
choose the saturation levels; export checks them on the file's own integers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from spikereg.networks.encoding import GRADED_LEVELS, GRADED_STEP
from spikereg.networks.snn import SpikingRegNet

SUMMED_INPUT_BITS = 24  # Lava's Conv output and Loihi 2's dendritic accumulator, signed
MESSAGE_BITS = 16  # graded spikes between layers: netx's num_message_bits for sigma-delta layers
INPUT_MAX = GRADED_LEVELS * GRADED_STEP  # the largest input level the host sends (3.97)


def summed_input_limit(spike_exp: int) -> float:
    """The largest ``|summed input|`` a 24-bit state holds, in SLAYER's units: ``2**(11 - spike_exp)``."""
    return float(2 ** (SUMMED_INPUT_BITS - 1 - 12 - int(spike_exp)))


def message_limit(spike_exp: int) -> float:
    """The largest ``|graded spike|`` a 16-bit message holds, in SLAYER's units."""
    return float(2 ** (MESSAGE_BITS - 1 - 6 - int(spike_exp)))


@dataclass(frozen=True)
class LayerBound:
    """One sigma-delta conv/dense layer's worst cases over every input (SLAYER's units)."""

    synaptic: float  # largest |synaptic input| in one step (Lava's Conv output)
    summed: float  # largest |summed input| (the neuron's sigma state)
    activation: float  # largest activation (after the ReLU and bias)
    spike: float  # largest |graded spike| it sends

    @property
    def peak(self) -> float:
        return max(self.synaptic, self.summed)


def _taps(weight: torch.Tensor, part) -> torch.Tensor:
    """``(out, in, *taps)`` -> ``(out, in)``: ``part`` of each weight summed over a conv's taps.

    Interior neurons see every tap, so the bound covers the border too.
    """
    return part(weight).reshape(weight.shape[0], weight.shape[1], -1).sum(dim=-1)


def _pairs_that_saturate(prev_weight, prev_bias, weight, first, second):
    """The pairs ``(first[j], second[j])`` that really deliver ``clamp(x, 0, c_j)`` to ``weight``'s layer.

    Both units must compute the same ``x`` (equal weight rows in the layer
    before), the second with a bias lower by ``c_j > 0``, and this layer must
    take them with ``w`` and ``-w``. Anything else gets no credit: its two units
    are then bounded one by one, which is still true, only looser.
    """
    same_x = (prev_weight[first] == prev_weight[second]).reshape(len(first), -1).all(dim=1)
    b1 = prev_bias[first] if prev_bias is not None else torch.zeros(len(first))
    b2 = prev_bias[second] if prev_bias is not None else torch.zeros(len(second))
    levels = (b1 - b2).detach()
    mirrored = (weight[:, second] == -weight[:, first]).transpose(0, 1).reshape(len(first), -1).all(dim=1)
    keep = same_x & mirrored & (levels > 0) & (b1.detach() == 0)
    return first[keep], second[keep], levels[keep]


def layer_bounds(weights: list[torch.Tensor], thresholds: list[float], biases: list[torch.Tensor | None],
                 pairs: list[tuple[torch.Tensor, torch.Tensor] | None], input_threshold: float,
                 input_max: float = INPUT_MAX) -> list[torch.Tensor]:
    """Every layer's per-neuron worst cases, as ``(out, 4)``: synaptic, summed, activation, spike.

    ``weights[l]`` ``(out, in, *taps)`` in SLAYER's units over the units of the
    layer before (the first over the host's input features); ``biases[l]`` per
    output unit or None; ``pairs[l]`` the saturating pairs among layer ``l``'s
    output units as index tensors ``(first, second)`` (``second`` computes
    ``relu(x - c)``; see :func:`_pairs_that_saturate` for what earns the credit),
    or None. Differentiable in the weights and biases.
    """
    first_weight = weights[0]
    hi = torch.full((first_weight.shape[1],), float(input_max), dtype=first_weight.dtype,
                    device=first_weight.device)
    vth = torch.full_like(hi, float(input_threshold))
    results = []
    for index, (weight, threshold, bias) in enumerate(zip(weights, thresholds, biases)):
        if weight.shape[1] != hi.shape[0]:
            raise ValueError(f"layer {index + 1} takes {weight.shape[1]} inputs, the layer before gives "
                             f"{hi.shape[0]}")
        w_abs, w_pos, w_neg = (_taps(weight, f) for f in (torch.abs, lambda w: w.clamp(min=0),
                                                            lambda w: w.clamp(max=0)))
        # each input unit: the total it sends lies in (lo, hi + residue), one step's spike within +-step
        sent_hi, sent_lo, step = hi + vth, -vth, hi + 2 * vth
        saturating = pairs[index - 1] if index > 0 else None
        if saturating is not None:
            first, second, levels = _pairs_that_saturate(weights[index - 1], biases[index - 1], weight,
                                                         *saturating)
            # the pair as one unit of weight w: clamp(x, 0, c) minus two residues
            sent_hi, sent_lo, step = sent_hi.clone(), sent_lo.clone(), step.clone()
            sent_hi[first] = levels + 2 * vth[first]
            sent_lo[first] = -2 * vth[first]
            step[first] = levels + 4 * vth[first]
            for tensor in (sent_hi, sent_lo, step):
                tensor[second] = 0.0
        synaptic = w_abs @ step
        summed = w_abs @ torch.maximum(sent_hi, -sent_lo)
        upper = w_pos @ sent_hi + w_neg @ sent_lo
        if bias is not None:
            upper = upper + bias
        activation = upper.clamp(min=0)
        results.append(torch.stack([synaptic, summed, activation, activation + 2 * threshold], dim=-1))
        hi, vth = activation, torch.full_like(activation, float(threshold))
    return results


def summarize(bounds: list[torch.Tensor]) -> list[LayerBound]:
    """Each layer's largest worst cases over its neurons."""
    return [LayerBound(*(float(v) for v in bound.detach().max(dim=0).values.double())) for bound in bounds]


def saturating_pairs(clamp: float, channels: int, depth: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A saturated layer's pairs in the folded feature layout ``d * 2C + c``: ``(d, c)`` and ``(d, C + c)``."""
    if clamp <= 0:
        return None
    first = torch.tensor([d * 2 * channels + c for d in range(depth) for c in range(channels)])
    return first, first + channels


def network_bounds(net, differentiable: bool = False) -> list:
    """The worst cases of a sigma-delta :class:`~spikereg.networks.snn.SpikingRegNet` on its 8-bit weights.

    Folded weights quantized as SLAYER quantizes them in its forward pass (and
    as export writes them); returns :class:`LayerBound` per layer, or with
    ``differentiable`` the per-neuron tensors of :func:`layer_bounds` (for a
    training penalty: SLAYER's quantization passes gradients straight through).
    """
    if net.input_block is None:
        raise ValueError("worst-case summed inputs apply to sigma-delta (sdnn) networks")
    weights, thresholds, biases, pairs = [], [], [], []
    clamps = list(net.config.clamp) or [0.0] * len(net.config.channels)
    for index, (block, fold) in enumerate(zip(net.blocks, net.folds)):
        weights.append(block.neuron.quantize_8bit(block.synapse.weight[..., 0]))
        thresholds.append(float(block.neuron.threshold))
        biases.append(block.neuron.bias.reshape(-1) if block.neuron.bias_is_set else None)
        clamp = clamps[index] if index < len(clamps) else 0.0
        channels = net.config.channels[index] if index < len(net.config.channels) else 0
        pairs.append(saturating_pairs(clamp, channels, fold.depth_out))
    bounds = layer_bounds(weights, thresholds, biases, pairs, float(net.input_block.neuron.threshold))
    return bounds if differentiable else summarize(bounds)


# -- CUBA (binary spikes): Lava's bit-accurate LIF, lava.proc.lif.models ---------------------
UV_LIMIT = 2 ** (SUMMED_INPUT_BITS - 1) - 1  # current u wraps past it, voltage v is clipped to it
DECAY_UNITY = 4096  # decays are 12-bit fractions
ACTIVATION_SHIFT = 6  # the synaptic input is left-shifted by 6 before it joins the current


def _geometric(decay: int, steps: int) -> float:
    """``sum_{k < steps} (1 - decay / 4096)**k``: how much a constant input piles up within a window."""
    keep = 1.0 - decay / DECAY_UNITY
    return float(steps) if keep >= 1.0 else (1.0 - keep**steps) / (1.0 - keep)


def cuba_bounds(net) -> list[dict]:
    """A CUBA network's worst-case current and voltage per layer, in Lava's integers, for every input.

    Each step a neuron receives ``sum_i w_i s_i`` with binary spikes ``s_i``
    (at most the sum of ``|w_i|`` of its 8-bit weights), shifted left by 6,
    into a current that decays by ``iDecay / 4096`` per step and is reset with
    the voltage every window (netx's ``reset_interval``). The voltage adds the
    current and resets on a spike, so above it stays below ``vth`` plus one
    step's current; below, it piles up like the current. Lava wraps the current
    past ``2**23`` and clips the voltage, which SLAYER does not do.
    """
    window = net.window
    out = []
    for index, block in enumerate(net.blocks, start=1):
        params = block.neuron.device_params
        weight = block.neuron.quantize_8bit(block.synapse.weight[..., 0].detach(), descale=True)
        fan = float(_taps(weight, torch.abs).max()) * 2**ACTIVATION_SHIFT
        current = fan * _geometric(int(params["iDecay"]), window)
        below = current * _geometric(int(params["vDecay"]), window)
        above = int(params["vThMant"]) * 2**ACTIVATION_SHIFT + current
        out.append({"layer": index, "current": current, "voltage": max(below, above), "limit": float(UV_LIMIT)})
    return out


@dataclass(frozen=True)
class RangeCheck:
    """One quantity of one layer against the width the chip holds it in."""

    layer: int  # 1-based, as netx numbers the conv/dense layers after the input
    quantity: str
    bound: float  # worst case over every input
    limit: float
    units: str

    @property
    def ok(self) -> bool:
        return self.bound < self.limit

    def describe(self) -> str:
        return (f"layer {self.layer}'s {self.quantity} can reach {self.bound:,.1f} ({self.units}), past the "
                f"+-{self.limit:,.0f} the chip holds")


def worst_case_table(net) -> list[RangeCheck]:
    """Every layer's worst cases, for every input, beside the chip's limits (both neuron families)."""
    if net.input_block is None:
        return [check for row in cuba_bounds(net)
                for check in (RangeCheck(row["layer"], "current", row["current"], row["limit"], "Lava integer"),
                              RangeCheck(row["layer"], "voltage", row["voltage"], row["limit"], "Lava integer"))]
    limit = summed_input_limit(net.config.spike_exp)
    message = message_limit(net.config.spike_exp)
    bounds = network_bounds(net)
    rows = []
    for layer, bound in enumerate(bounds, start=1):
        rows.append(RangeCheck(layer, "synaptic input per step", bound.synaptic, limit, "SLAYER units"))
        rows.append(RangeCheck(layer, "summed input", bound.summed, limit, "SLAYER units"))
        if layer < len(bounds):  # the readout's spikes go to the host in 32-bit words
            rows.append(RangeCheck(layer, "graded spike", bound.spike, message, "SLAYER units"))
    return rows


SATURATION_MARGIN = 0.9  # of the limit, left to the worst case after saturation: room for fine-tuning
CHIP_SPIKE_EXP = 0  # the spike_exp saturation uses: +-2048 in 24 bits, spikes on the 1/64 delta grid


def provably_in_range(net) -> bool:
    return all(check.ok for check in worst_case_table(net))


def saturate_for_chip(net, margin: float = SATURATION_MARGIN):
    """``net`` (sigma-delta) in a form whose every layer provably stays in the chip's range.

    Why: a trained ReLU network's worst case compounds from layer to layer (the
    shipped 2 mm model: 111 / 1,392 / 22,086 against +-32), far beyond any
    rescaling the 8-bit weights survive. Two changes bound it at (measured)
    no cost on patches: graded spikes on netx's ``spike_exp`` 0 grid (1/64, the
    delta threshold's own; the 24 bits then hold +-2048), and each hidden layer
    whose successor would still overflow saturates at the largest level ``c``
    (a multiple of 1/64) that keeps the successor within ``margin`` of the
    limits: its summed input's and, for a hidden successor, its graded
    spikes' (16-bit messages, +-512). Same trained kernels; returns a new network (the readout gain, too).
    """
    if net.input_block is None:
        raise ValueError("saturation applies to sigma-delta (sdnn) networks")
    kernels = {name: value for name, value in net.state_dict().items() if name.endswith("original")}
    hidden = len(net.config.channels)
    clamps = [0.0] * hidden
    limit, message = summed_input_limit(CHIP_SPIKE_EXP), message_limit(CHIP_SPIKE_EXP)

    def build(levels: list[float]):
        candidate = SpikingRegNet(replace(net.config, spike_exp=CHIP_SPIKE_EXP,
                                          clamp=levels if any(levels) else []))
        candidate.load_state_dict(kernels, strict=False)
        return candidate.eval()

    def bounded(bounds: list[LayerBound], index: int) -> list[tuple[float, float]]:
        """Layer ``index``'s bounded quantities as (worst case, the chip's limit): its summed input, and a hidden
        layer's graded spikes (16-bit messages: a saturated layer's first population still sends relu(x) itself)."""
        quantities = [(bounds[index].peak, limit)]
        if index < hidden:
            quantities.append((bounds[index].spike, message))
        return quantities

    candidate = build(clamps)
    for layer in range(hidden):
        bounds = network_bounds(candidate)
        # what feeds this layer is already saturated (or is the host's levels): its own limits, not the margin
        over = [f"{name} {value:,.1f}" for name, (value, cap) in zip(("worst-case summed input", "graded spike"),
                                                                      bounded(bounds, layer)) if value >= cap]
        if over:
            raise ValueError(f"layer {layer + 1}'s {over[0]} exceeds the chip's range (+-{limit:,.0f} summed, "
                             f"+-{message:,.0f} per spike) even with the layers before it saturated: "
                             "its weights are too large for the chip")
        if all(value < cap * margin for value, cap in bounded(bounds, layer + 1)):
            continue
        # The successor's bounds are linear in c once this layer saturates: solve each from two levels.
        at = [bounded(network_bounds(build(clamps[:layer] + [level] + clamps[layer + 1:])), layer + 1)
              for level in (1.0, 2.0)]
        levels = []
        for (one, cap), (two, _) in zip(*at):
            slope = two - one
            levels.append(1.0 + (cap * margin - one) / slope if slope > 0 else 511.0)
        clamps[layer] = min(511.0, float(np.floor(min(levels) * 64) / 64))
        if clamps[layer] <= 0:
            raise ValueError(f"layer {layer + 2}'s weights alone exceed the chip's range: no saturation "
                             f"level of layer {layer + 1} keeps it within +-{limit * margin:,.0f} (summed) and "
                             f"+-{message * margin:,.0f} (spikes)")
        candidate = build(clamps)
    return candidate
