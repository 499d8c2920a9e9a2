"""Worst-case ranges of a sigma-delta *graph* (:class:`~spikereg.networks.unet.SpikingUNet`), for every input.

The interval arithmetic of :mod:`spikereg.networks.bounds`, with a node's
synaptic input the **sum over its incoming edges**: every source unit sends
in total ``sent in (-vth, hi + vth)`` and per step ``|spike| < hi + 2 vth``
(``hi`` its largest activation), an edge ``e`` with 8-bit weights ``W_e``
(SLAYER's units, summed over its taps) contributes at most ``|W_e| step`` per
step and ``|W_e| max(sent_hi, -sent_lo)`` in total, and the node's activation
is at most ``max(0, sum_e (W_e+ sent_hi + W_e- sent_lo) + bias)``.

Each edge is one Lava connection process whose per-step output the chip holds
in 24 bits (Lava's ``Conv`` wraps it), and the destination adds them up, so
the table checks each edge's per-step input, and each node's per-step total,
summed input and graded spike, against the limits of
:func:`~spikereg.networks.bounds.summed_input_limit` and
:func:`~spikereg.networks.bounds.message_limit`. A transposed (upsampling)
edge is charged every tap of its kernel for every output, which is loose but
true.
"""
from __future__ import annotations

import torch

from spikereg.networks.bounds import (
    ACTIVATION_SHIFT,
    INPUT_MAX,
    UV_LIMIT,
    RangeCheck,
    _geometric,
    message_limit,
    summed_input_limit,
)


def edge_weight(net, edge, differentiable: bool = False) -> torch.Tensor:
    """``edge``'s 8-bit weight in SLAYER's units as ``(out features, in features, taps)``.

    ``differentiable``: gradients pass to the 3-D kernel (SLAYER's quantization is straight-through).
    """
    synapse = net.edge_synapse(edge)
    neuron = net.blocks[edge.destination].neuron
    weight = synapse.weight[..., 0]
    weight = neuron.quantize_8bit(weight if differentiable else weight.detach())
    if edge.kind == "convT":  # torch's (in, out, k_h, k_w)
        weight = weight.transpose(0, 1)
    return weight.reshape(weight.shape[0], weight.shape[1], -1)


def node_pairs(node) -> tuple[torch.Tensor, torch.Tensor]:
    """A saturated node's pairs in the folded layout ``d * 2C + c``: units ``(d, c)`` and ``(d, C + c)``."""
    first = torch.tensor([d * 2 * node.channels + c for d in range(node.size) for c in range(node.channels)])
    return first, first + node.channels


def saturating_credit(net, edge, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """The saturated source's pairs that really deliver ``clamp(x, 0, c)`` over ``edge``, or None.

    Credit only for what the file's numbers hold: both units of every pair
    get the same weights on every edge into the source, the second a bias
    lower by ``c > 0`` (the first none), and ``edge`` takes them with ``w``
    and ``-w``. Anything else is bounded unit by unit (true, only looser).
    """
    source = net.nodes[net.index[edge.source]]
    if not source.paired:
        return None
    first, second = node_pairs(source)
    if not bool((weight[:, second] == -weight[:, first]).all()):
        return None
    for e in source.inputs:
        into = edge_weight(net, net.edges[e])
        if not bool((into[first] == into[second]).all()):
            return None
    neuron = net.blocks[source.name].neuron
    if not getattr(neuron, "bias_is_set", False):
        return None
    bias = neuron.bias.detach().reshape(-1)
    levels = bias[first] - bias[second]
    if not bool((bias[first] == 0).all()) or not bool((levels > 0).all()) or len(set(levels.tolist())) != 1:
        return None
    return first, second, float(levels[0])


def graph_bounds(net, input_max: float = INPUT_MAX, differentiable: bool = False) -> tuple[dict, dict]:
    """Per node and per edge worst cases (largest over the units), SLAYER's units.

    Returns ``(nodes, edges)``: ``nodes[name]`` holds ``synaptic``, ``summed``,
    ``activation``, ``spike``; ``edges[edge name]`` holds ``synaptic`` and
    ``summed`` (that edge's contribution alone). With ``differentiable`` the
    values are 0-d tensors with gradients to the kernels (a training penalty
    can keep them below the chip's limit, as ``train.snn_range_weight`` does
    for a chain).
    """
    value = (lambda t: t.max()) if differentiable else (lambda t: float(t.max()))
    first = net.nodes[0]
    hi = {first.name: torch.full((first.features,), float(input_max))}
    vth = {first.name: float(net.input_block.neuron.threshold)}
    nodes, edges = {}, {}
    for node in net.nodes[1:]:
        synaptic = summed = upper = 0.0
        for e in node.inputs:
            edge = net.edges[e]
            weight = edge_weight(net, edge, differentiable)
            src_hi, src_vth = hi[edge.source], vth[edge.source]
            if weight.shape[1] != src_hi.shape[0]:
                raise ValueError(f"edge {edge.name} takes {weight.shape[1]} inputs, {edge.source} gives "
                                 f"{src_hi.shape[0]}")
            w_abs = weight.abs().sum(dim=-1)
            sent_hi, sent_lo, step = src_hi + src_vth, torch.full_like(src_hi, -src_vth), src_hi + 2 * src_vth
            credit = saturating_credit(net, edge, weight)
            if credit is not None:  # a saturated source's pairs deliver clamp(x, 0, c) minus two residues
                first, second, level = credit
                sent_hi, sent_lo, step = sent_hi.clone(), sent_lo.clone(), step.clone()
                sent_hi[first], sent_lo[first], step[first] = level + 2 * src_vth, -2 * src_vth, level + 4 * src_vth
                for tensor in (sent_hi, sent_lo, step):
                    tensor[second] = 0.0
            e_syn = w_abs @ step
            e_sum = w_abs @ torch.maximum(sent_hi, -sent_lo)
            e_up = weight.clamp(min=0).sum(dim=-1) @ sent_hi + weight.clamp(max=0).sum(dim=-1) @ sent_lo
            edges[edge.name] = {"synaptic": value(e_syn), "summed": value(e_sum)}
            synaptic, summed, upper = synaptic + e_syn, summed + e_sum, upper + e_up
        neuron = net.blocks[node.name].neuron
        if getattr(neuron, "bias_is_set", False):
            upper = upper + neuron.bias.detach().reshape(-1)
        activation = torch.as_tensor(upper).clamp(min=0)
        threshold = float(neuron.threshold)
        nodes[node.name] = {"synaptic": value(synaptic), "summed": value(summed),
                            "activation": value(activation), "spike": value(activation + 2 * threshold)}
        hi[node.name], vth[node.name] = activation, threshold
    return nodes, edges


def graph_worst_case_table(net) -> list[RangeCheck]:
    """Every edge's and node's worst cases beside the chip's limits (``layer``: the destination's index)."""
    limit = summed_input_limit(net.config.spike_exp)
    message = message_limit(net.config.spike_exp)
    nodes, edges = graph_bounds(net)
    rows = []
    for node in net.nodes[1:]:
        layer = net.index[node.name]
        for e in node.inputs:
            edge = net.edges[e]
            rows.append(RangeCheck(layer, f"edge {edge.name} synaptic input per step",
                                   edges[edge.name]["synaptic"], limit, "SLAYER units"))
        bound = nodes[node.name]
        rows.append(RangeCheck(layer, f"{node.name} synaptic input per step (all edges)", bound["synaptic"], limit,
                               "SLAYER units"))
        rows.append(RangeCheck(layer, f"{node.name} summed input", bound["summed"], limit, "SLAYER units"))
        if node is not net.nodes[-1]:  # the readout's spikes go to the host in 32-bit words
            rows.append(RangeCheck(layer, f"{node.name} graded spike", bound["spike"], message, "SLAYER units"))
    return rows


def graph_cuba_table(net, window: int) -> list[RangeCheck]:
    """A CUBA graph's worst-case current and voltage per node (Lava's integers), summed over incoming edges.

    As :func:`spikereg.networks.bounds.cuba_bounds` for a chain: each step a
    neuron receives at most the sum of ``|w|`` of its 8-bit weights, over
    *every* incoming edge, shifted left by 6, into a current that decays by
    ``iDecay / 4096`` and is reset every window; the rows per edge give each
    edge's share.
    """
    rows = []
    for node in net.nodes[1:]:
        layer = net.index[node.name]
        neuron = net.blocks[node.name].neuron
        params = neuron.device_params
        fan = None
        for e in node.inputs:
            edge = net.edges[e]
            synapse = net.edge_synapse(edge)
            weight = neuron.quantize_8bit(synapse.weight[..., 0].detach(), descale=True)
            if edge.kind == "convT":
                weight = weight.transpose(0, 1)
            share = weight.abs().reshape(weight.shape[0], -1).sum(dim=-1) * 2**ACTIVATION_SHIFT
            rows.append(RangeCheck(layer, f"edge {edge.name} input per step", float(share.max()), float(UV_LIMIT),
                                   "Lava integer"))
            fan = share if fan is None else fan + share
        current = float(fan.max()) * _geometric(int(params["iDecay"]), window)
        below = current * _geometric(int(params["vDecay"]), window)
        above = int(params["vThMant"]) * 2**ACTIVATION_SHIFT + current
        rows.append(RangeCheck(layer, f"{node.name} current", current, float(UV_LIMIT), "Lava integer"))
        rows.append(RangeCheck(layer, f"{node.name} voltage", max(below, above), float(UV_LIMIT), "Lava integer"))
    return rows
