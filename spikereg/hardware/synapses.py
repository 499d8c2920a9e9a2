"""What one netx layer needs: neurons, synapses (in-bounds connections), nonzero synapses, fan-ins, delay bits.

The counting half of :mod:`spikereg.hardware.mapping`, whose docstring states the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from spikereg.hardware.netx_layers import NetxLayer
from spikereg.netx_file import is_group

#: netx clamps synaptic delays to this many time steps (``hdf5.py``, ``create_dense``).
NETX_MAX_DELAY = 62


def taps_in_bounds(n_in: int, n_out: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """For each kernel tap along one axis, how many output positions it connects to an input.

    Output ``o`` and tap ``k`` read input ``o*stride - padding + k*dilation``; the tap
    is a real connection only when that index lies in ``[0, n_in)``.
    """
    index = np.arange(n_out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    return ((index >= 0) & (index < n_in)).sum(axis=0)


def conv_out(n_in: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output length (SLAYER convolves with torch)."""
    return (n_in + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass
class Counts:
    neurons: int = 0
    synapses: int = 0
    nonzero: int = 0
    fan_in: int = 0  # the most synapses onto one neuron, zero weights included (dense accounting)
    nonzero_fan_in: int = 0  # the most nonzero weights onto one neuron (nonzero accounting)
    weight_copies: int = 1  # complex dense layers store a real and an imaginary weight


def most_in_a_row(mask: np.ndarray) -> int:
    """The most True entries in one row of the 2-D boolean ``mask`` (0 for none, or no rows)."""
    rows = mask.sum(axis=1)
    return int(rows.max()) if rows.size else 0


def conv_nonzero_fan_in(weight: np.ndarray) -> int:
    """The most nonzero weights onto one neuron of a conv ``weight`` ``(out, in/groups, kh, kw)``:
    an interior neuron of the output channel that has the most (0 for an all-zero weight)."""
    return most_in_a_row((weight != 0).reshape(weight.shape[0], int(np.prod(weight.shape[1:]))))


def count_conv(layer: NetxLayer, in_shape: Optional[tuple[int, ...]]) -> tuple[Counts, tuple[int, ...]]:
    if in_shape is None:
        raise layer.error(
            "input shape unknown: no earlier input or conv layer gives it "
            "(netx would need input_shape=... as well)"
        )
    if len(in_shape) != 3:
        raise layer.error(
            f"a conv layer needs a (C, H, W) input, the previous layer gives shape {list(in_shape)}"
        )
    weight = layer.numbers("weight")
    if weight.ndim == 5 and weight.shape[-1] == 1:  # SLAYER's trailing time axis of size 1
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise layer.error(f"dataset 'weight' must be (out, in/groups, kh, kw), got shape {list(weight.shape)}")
    c_out, c_in_group, kh, kw = (int(s) for s in weight.shape)
    groups = layer.scalar_int("groups")
    sh, sw = layer.pair("stride")
    ph, pw = layer.pair("padding")
    dh, dw = layer.pair("dilation")
    if groups <= 0 or min(sh, sw, dh, dw) <= 0 or min(ph, pw) < 0:
        raise layer.error(
            f"groups, stride and dilation must be positive and padding non-negative, got "
            f"groups={groups} stride={(sh, sw)} padding={(ph, pw)} dilation={(dh, dw)}"
        )
    c_in, h_in, w_in = in_shape
    if c_in_group * groups != c_in:
        raise layer.error(
            f"weight expects {c_in_group} x {groups} groups = {c_in_group * groups} input channels, "
            f"the previous layer gives {c_in}"
        )
    if layer.has("inChannels") and layer.scalar_int("inChannels") != c_in:
        raise layer.error(f"inChannels {layer.scalar_int('inChannels')} != {c_in} input channels")
    if layer.has("outChannels") and layer.scalar_int("outChannels") != c_out:
        raise layer.error(f"outChannels {layer.scalar_int('outChannels')} != weight's {c_out}")
    if layer.has("kernelSize") and layer.pair("kernelSize") != (kh, kw):
        raise layer.error(f"kernelSize {layer.pair('kernelSize')} != weight's ({kh}, {kw})")
    expected = (c_out, conv_out(h_in, kh, sh, ph, dh), conv_out(w_in, kw, sw, pw, dw))
    shape = layer.shape()
    if shape != expected:
        raise layer.error(
            f"shape {list(shape)} does not match the convolution of a {list(in_shape)} input "
            f"(expected {list(expected)})"
        )
    taps = np.outer(
        taps_in_bounds(h_in, expected[1], kh, sh, ph, dh),
        taps_in_bounds(w_in, expected[2], kw, sw, pw, dw),
    )  # (kh, kw): output positions each tap connects, for one (out, in) channel pair
    counts = Counts(
        neurons=int(np.prod(shape)),
        synapses=int(c_out * c_in_group * taps.sum()),
        nonzero=int(((weight != 0).sum(axis=(0, 1)) * taps).sum()),
        fan_in=c_in_group * kh * kw,
        nonzero_fan_in=conv_nonzero_fan_in(weight),
    )
    return counts, shape


def count_dense(layer: NetxLayer, in_shape: Optional[tuple[int, ...]]) -> tuple[Counts, tuple[int, ...]]:
    shape = layer.shape()
    n_out = int(np.prod(shape))
    copies = 1
    if "weight" in layer.group and is_group(layer.group["weight"]):
        # complex synapse: SLAYER writes weight/real and weight/imag
        real, imag = layer.numbers("weight/real"), layer.numbers("weight/imag")
        if real.shape != imag.shape:
            raise layer.error(f"weight/real {list(real.shape)} and weight/imag {list(imag.shape)} differ")
        weights = [real.reshape(n_out, -1) if real.ndim == 1 else real,
                   imag.reshape(n_out, -1) if imag.ndim == 1 else imag]
        mask = (weights[0] != 0) | (weights[1] != 0)
        copies = 2
    else:
        weight = layer.numbers("weight")
        if weight.ndim == 1:  # netx reshapes a flat weight to (out, -1)
            weight = weight.reshape(n_out, -1)
        weights = [weight]
        mask = weight != 0
    if weights[0].ndim != 2 or weights[0].shape[0] != n_out:
        raise layer.error(
            f"dataset 'weight' must be (out, in) with out = {n_out} neurons (shape {list(shape)}), "
            f"got {list(weights[0].shape)}"
        )
    n_in = int(weights[0].shape[1])
    if in_shape is not None and int(np.prod(in_shape)) != n_in:
        raise layer.error(
            f"weight has {n_in} inputs, the previous layer outputs {int(np.prod(in_shape))} "
            f"(shape {list(in_shape)})"
        )
    if layer.has("inFeatures") and layer.scalar_int("inFeatures") != n_in:
        raise layer.error(f"inFeatures {layer.scalar_int('inFeatures')} != weight's {n_in} inputs")
    if layer.has("outFeatures") and layer.scalar_int("outFeatures") != n_out:
        raise layer.error(f"outFeatures {layer.scalar_int('outFeatures')} != {n_out} neurons")
    counts = Counts(
        neurons=n_out,
        synapses=n_out * n_in,
        nonzero=int(mask.sum()),
        fan_in=n_in,
        nonzero_fan_in=most_in_a_row(mask),
        weight_copies=copies,
    )
    if layer.kind == "dense_rec":
        rec = layer.numbers("weight_rec")
        if rec.ndim == 1:
            rec = rec.reshape(n_out, -1)
        if rec.shape != (n_out, n_out):
            raise layer.error(f"dataset 'weight_rec' must be ({n_out}, {n_out}), got {list(rec.shape)}")
        counts.synapses += n_out * n_out
        counts.nonzero += int(np.count_nonzero(rec))
        counts.fan_in += n_out
        # a neuron's input and recurrent nonzero weights, the most over the neurons
        counts.nonzero_fan_in = most_in_a_row(np.concatenate([mask, rec != 0], axis=1))
    return counts, (n_out,)


def synapse_delay_bits(layer: NetxLayer, notes: list[str]) -> int:
    if not layer.has("delay"):
        return 0
    delay = layer.numbers("delay")
    if delay.size == 0:
        return 0
    largest = int(np.max(delay))
    if largest > NETX_MAX_DELAY:
        notes.append(
            f"layer {layer.index} ({layer.kind}): delay up to {largest} steps; netx clamps to {NETX_MAX_DELAY}"
        )
        largest = NETX_MAX_DELAY
    return max(largest, 0).bit_length()
