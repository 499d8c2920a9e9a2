"""Conversion of a U-Net twin into a spiking graph whose every node provably stays in the chip's range.

Why it differs from the chain's balancing (:meth:`~spikereg.networks.ann.AnnTwin.balanced_kernels`):
a trained ReLU network's worst case over every input compounds from node to
node (the positive part of each node's weights multiplies it), and a U-Net
has ten nodes on its longest path. So every hidden node saturates
(``model.clamp``: the pair of populations ``relu(x)`` and ``relu(x - c)`` of
:class:`~spikereg.networks.folding.FoldedKernel`), at the largest value it
reached on calibration patches: typical images never reach it, and whatever
an image does, a node's input is bounded by its own weights times its
sources' levels. Graded spikes go on netx's ``spike_exp`` 0 grid (1/64; the
24 bits then hold +-2048).

Each node ``n`` is scaled by ``s_n`` (ReLU and clamp commute with a positive
scale: ``clamp(s x, 0, s c) = s clamp(x, 0, c)``), so edge ``a -> n``'s
kernel becomes ``K s_n / s_a`` and the readout comes out ``s_out`` times
larger (``model.readout_gain``). Each ``s_n`` is as large as allowed by
four limits: the 8-bit weights' range on every incoming edge, the chip's
24-bit range for the node's worst-case input and the 16-bit graded message
for its largest activation (``margin`` of each, room for fine-tuning), and
the 16-bit bias that holds ``-c``. The result is checked
with :func:`~spikereg.networks.graph_bounds.graph_worst_case_table` on the
quantized weights.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from spikereg.networks.ann import BALANCED_MAX_WEIGHT
from spikereg.networks.bounds import (
    CHIP_SPIKE_EXP,
    INPUT_MAX,
    SATURATION_MARGIN,
    message_limit,
    summed_input_limit,
)
from spikereg.networks.graph_bounds import graph_worst_case_table
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.graph_topology import edge_key
from spikereg.networks.graph_twin import GraphTwin

CLAMP_MAX = (2**15 - 1) / 64  # -c is a 16-bit bias mantissa of 1/64 steps (spikereg.config checks it)


@dataclass
class Conversion:
    """What conversion chose, node by node (twin units: ``peak``; chip units: ``clamp``)."""

    net: GraphRegNet
    scales: dict[str, float]
    peaks: dict[str, float]  # the twin's largest value per node on the calibration patches
    bounds: dict[str, float]  # each node's worst-case input per unit of its scale (twin units)

    @property
    def gain(self) -> float:
        return self.net.model.readout_gain


def _row_l1(kernel: torch.Tensor, transposed: bool) -> torch.Tensor:
    """Per output channel and input channel: the sum of ``|w|`` over the taps, ``(C_out, C_in)``."""
    if transposed:  # (C_in, C_out, k, k, k)
        kernel = kernel.transpose(0, 1)
    return kernel.abs().flatten(2).sum(dim=-1)


@torch.no_grad()
def convert_twin(twin: GraphTwin, fixed: torch.Tensor, moving: torch.Tensor, *,
                 spike_exp: int = CHIP_SPIKE_EXP, margin: float = SATURATION_MARGIN,
                 max_weight: float = BALANCED_MAX_WEIGHT) -> Conversion:
    """The spiking U-Net of ``twin``, calibrated on the patch pairs ``fixed``/``moving``, proven in range.

    Raises ValueError where no scale keeps a node within the chip's range
    (its weights alone are too large), naming the node.
    """
    twin.eval()
    values = twin.rates(fixed, moving)
    names = [node.name for node in twin.nodes[1:]]
    peaks = {name: float(value.max()) for name, value in zip(names, values)}
    limit = summed_input_limit(spike_exp) * margin
    message = message_limit(spike_exp) * margin  # a hidden node's first population sends relu(x) itself
    level = {twin.nodes[0].name: INPUT_MAX}  # each source's largest value in twin units (its clamp)
    scales = {twin.nodes[0].name: 1.0}
    bounds = {}
    readout = twin.nodes[-1].name
    for node in twin.nodes[1:]:
        worst = positive = 0.0
        cap = np.inf
        for e in twin.into[node.name]:
            edge = twin.edges[e]
            kernel = twin.kernels[edge_key(edge)]
            transposed = edge.kind == "convT"
            worst = worst + _row_l1(kernel, transposed).sum(dim=1) * level[edge.source]
            positive = positive + _row_l1(kernel.clamp(min=0), transposed).sum(dim=1) * level[edge.source]
            cap = min(cap, max_weight * scales[edge.source] / float(kernel.abs().max().clamp(min=1e-12)))
        bounds[node.name] = float(worst.max())
        cap = min(cap, limit / bounds[node.name])
        if node.name == readout and twin.config.readout_bias > 0:  # its bias is a 16-bit mantissa
            cap = min(cap, CLAMP_MAX / twin.config.readout_bias)
        if node.name != readout:  # the readout's values go to the host in 32-bit words
            cap = min(cap, message / float(positive.max()))
            peak = max(peaks[node.name], 1e-6)
            cap = min(cap, CLAMP_MAX / peak)
            level[node.name] = peak
        scales[node.name] = float(cap)
    kernels = {}
    for edge in twin.edges:
        kernels[edge_key(edge)] = twin.kernels[edge_key(edge)] * (scales[edge.destination] / scales[edge.source])
    clamps = [float(np.floor(scales[n.name] * peaks[n.name] * 64) / 64) for n in twin.hidden]
    if min(clamps) <= 0:
        raise ValueError(f"node {twin.hidden[int(np.argmin(clamps))].name}: it never fired on the calibration "
                         "patches, so it has no level to saturate at")
    model = replace(twin.config, spike_exp=spike_exp, clamp=clamps, readout_gain=scales[readout])
    net = load_twin_kernels(GraphRegNet(model), twin, kernels)
    if model.readout_bias > 0:  # scaled with the readout, on the grid Lava adds biases on, at least the threshold
        neuron = net.blocks[readout].neuron
        grid = float(neuron.w_scale)
        net.set_readout_bias(max(round(model.readout_bias * scales[readout] * grid) / grid, float(neuron.threshold)))
    over = [row for row in graph_worst_case_table(net) if not row.ok]
    if over:
        worst_row = max(over, key=lambda row: row.bound / row.limit)
        raise ValueError(f"conversion left {len(over)} quantities past the chip's range, e.g. "
                         f"{worst_row.describe()}")
    return Conversion(net, scales, peaks, bounds)


def load_twin_kernels(net: GraphRegNet, twin: GraphTwin, kernels: dict[str, torch.Tensor] | None = None
                      ) -> GraphRegNet:
    """``net`` with the twin's kernels (or ``kernels``) on every edge; every edge must receive one."""
    result = net.load_state_dict(twin.snn_state(kernels), strict=False)
    trainable = {name for name, _ in net.named_parameters() if name.endswith("original")}
    if result.unexpected_keys or trainable & set(result.missing_keys):
        raise ValueError(f"twin and spiking graph differ: unexpected {result.unexpected_keys[:3]}, "
                         f"missing {sorted(trainable & set(result.missing_keys))[:3]}")
    return net.eval()


def kernel_bounds(net: GraphRegNet) -> dict[str, tuple[float, float]]:
    """Per node: its worst per-step (or summed) input and its largest activation, from the 3-D kernels.

    The bounds of :func:`~spikereg.networks.graph_bounds.graph_bounds` for an
    interior unit (which sees every tap, so no unit sees more), computed on the
    8-bit 3-D kernels instead of the folded weights: cheap enough to run after
    every fine-tuning step. A saturated source counts as ``c`` plus the
    residues; the input as its largest level.
    """
    vth = {node.name: float(net.blocks[node.name].neuron.threshold) for node in net.nodes[1:]}
    vth[net.nodes[0].name] = float(net.input_block.neuron.threshold)
    level = {net.nodes[0].name: INPUT_MAX}
    out = {}
    with torch.no_grad():
        for node in net.nodes[1:]:
            worst = positive = 0.0
            for e in node.inputs:
                edge = net.edges[e]
                source = net.nodes[net.index[edge.source]]
                kernel = net.blocks[node.name].neuron.quantize_8bit(
                    net.edge_synapse(edge).parametrizations.weight.original)
                transposed = edge.kind == "convT"
                worst = worst + _row_l1(kernel, transposed).sum(dim=1) * (level[source.name] + 4 * vth[source.name])
                positive = positive + (_row_l1(kernel.clamp(min=0), transposed) * (level[source.name] + 2 * vth[
                    source.name]) + _row_l1(kernel.clamp(max=0), transposed) * 2 * vth[source.name]).sum(dim=1)
            out[node.name] = (float(worst.max()), float(positive.max()) + 2 * vth[node.name])
            level[node.name] = node.clamp if node.paired else float(positive.max())
    return out


def project_into_range(net: GraphRegNet, margin: float = SATURATION_MARGIN) -> dict[str, float]:
    """Scale down the incoming kernels of every node whose worst case passes ``margin`` of the chip's range.

    Fine-tuning's projection: after each optimiser step a node whose 8-bit
    weights grew past what the range allows is shrunk back onto it (its
    saturation levels stay), so the network stays provable throughout.
    Uses :func:`kernel_bounds` (no unit exceeds them). Returns the factor
    applied per node (only nodes that needed one).
    """
    limit = summed_input_limit(net.config.spike_exp) * margin
    message = message_limit(net.config.spike_exp) * margin
    readout = net.nodes[-1].name
    applied = {}
    with torch.no_grad():
        for node in net.nodes[1:]:  # in topological order: a node's bound uses its sources' fixed ones
            for _ in range(20):  # the 8-bit rounding of the shrunk kernels can land above: shrink again
                worst, activation = kernel_bounds(net)[node.name]
                ratio = max(worst / limit, activation / message if node.name != readout else 0.0)
                if ratio < 1.0:
                    break
                factor = 0.995 / ratio
                for e in node.inputs:
                    net.edge_synapse(net.edges[e]).parametrizations.weight.original.mul_(factor)
                applied[node.name] = applied.get(node.name, 1.0) * factor
            else:
                raise ValueError(f"node {node.name}: its weights cannot be brought within the chip's range")
    return applied
