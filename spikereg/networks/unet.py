"""A spiking U-Net: a graph of SLAYER blocks (sigma-delta or CUBA) with skip connections.

Topology (the default two resolution levels; ``P`` the patch side, ``c1``/``c2``
the widths of the levels; a longer ``channels`` adds levels the same way,
:func:`~spikereg.networks.graph_topology.unet_topology`)::

    input (P^3, C_in)
      -> enc1 (P^3, c1)          conv 3^3
      -> enc2 ((P/2)^3, c2)      conv 3^3 stride 2        (the downsampling edge)
      -> bott ((P/2)^3, c2)      conv 3^3
      -> dec2 ((P/2)^3, c2)      conv 3^3 of bott  +  conv 3^3 of enc2 (level-2 skip)
      -> dec1 (P^3, c1)          conv 3^3 of enc1 (level-1 skip)  +  conv^T 2^3 stride 2 of dec2
                                 (the upsampling edge)
      -> out (P^3, 6)            conv 3^3, the readout

Every node is one neuron population; every edge one synapse. A node with
several inputs (``conv(concat(skip, up))``) is several synapses whose outputs
are **summed before the neuron**: exactly what a Lava InPort does with what
several OutPorts send, so the export maps 1:1 onto Lava connection processes
(:mod:`lava_export.graph_builder`).

All 3-D convolutions reach Lava's 2-D ``Conv`` through the exact depth folding
of :mod:`spikereg.networks.folding` (features ``d*C + c``); the transposed
upsampling edge folds the same way with the transposed band
(:class:`~spikereg.networks.folding.DepthFoldT`). Each node is a stock ``slayer.block.sigma_delta.Conv``
block built for its *primary* edge (its first input, always a conv), so
SLAYER's own ``export_hdf5`` writes its layer group; the other edges are
SLAYER synapses quantized by the destination neuron's ``quantize_8bit``, as a
block's own synapse is.

Timing. Every block delays its output by one step (``delay_shift``), as every
Lava connection does: a node at step ``t`` sees its sources' outputs of step
``t - 1``. An edge may add ``delay`` more steps (the synapse output shifted
in time). With ``align_delays`` (default) the skip edges get the delays that
make every path from the input to a node equally long, so a decoder sums the
skip and the upsampled path *of the same input frame* (a U-Net's meaning);
Lava then needs delay buffers on those edges (relays). The nodes, edges and
delays themselves are :mod:`spikereg.networks.graph_topology`'s.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import torch
from torch.nn.utils import parametrize

from spikereg import compat
from spikereg.networks.folding import DepthFold, DepthFoldT, FoldedKernel, FoldedKernelT
from spikereg.networks.graph_topology import (
    Edge,
    Node,
    UNetConfig,
    align_delays,
    edge_key,
    graph_config_of,
    path_lengths,
    unet_topology,
)
from spikereg.networks.snn import graded_spike_scale, neuron_step
from spikereg.netx_file import read_edges, read_netx


def biased_readout_step(neuron, z: torch.Tensor, messages: list | None = None) -> torch.Tensor:
    """A readout with a bias ``b`` (on the ``1 / w_scale`` grid, at least the threshold), from rest: its value.

    At the window's first step, before any input, the unit's activation is
    already ``relu(b) = b``, which it sends; when its input ``z`` arrives it
    sends the change ``relu(z + b) - b`` floored to the spike grid, or nothing
    below the delta threshold. Its value, the sum of the two, is
    ``b + Q(relu(z + b) - b)``: what SLAYER's block and Lava's process give
    over the window (tested). ``messages`` receives both per patch.
    Straight-through gradients, as SLAYER's quantizers.
    """
    n, c, d = z.shape[:3]
    bias = neuron.bias.reshape(d, c).t().reshape(1, c, d, 1, 1).to(z)
    if float(bias.min()) < float(neuron.delta.threshold):
        raise ValueError("a readout bias must be at least the delta threshold (conversion rounds it onto the grid)")
    change = torch.relu(z + bias) - bias
    sent = torch.where(change.abs() >= neuron.delta.threshold, change, torch.zeros_like(change))
    step = 1 / neuron.delta.scale
    quantized = sent + (torch.floor(sent.detach() / step) * step - sent.detach())
    if messages is not None:
        messages.append(torch.full((n,), float(bias[0].numel() * z.shape[3] * z.shape[4]), device=z.device)
                        + graded_spike_count(sent))
    return bias + quantized


def graded_spike_count(value: torch.Tensor) -> torch.Tensor:
    """How many units of each patch of ``value`` ``(N, ...)`` send a graded spike (are nonzero), ``(N,)``."""
    dims = tuple(range(1, value.dim()))  # summed in place: flattening a channels-last tensor would copy it
    if value[0].numel() <= 2**24:  # float32 counts ones exactly this far; |sign| sums 3x faster than a bool mask
        return torch.sign(value).abs_().sum(dim=dims).to(torch.int32)
    return (value != 0).sum(dim=dims, dtype=torch.int32)


def apply_edge(edge: Edge, kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The edge's 3-D convolution of ``x`` ``(N, C, D, H, W)`` (torch's kernel layouts)."""
    if edge.kind == "convT":
        return torch.nn.functional.conv_transpose3d(x, kernel, stride=edge.stride, padding=edge.padding)
    return torch.nn.functional.conv3d(x, kernel, stride=edge.stride, padding=edge.padding)


def _step_delay(x: torch.Tensor, steps: int) -> torch.Tensor:
    """``x`` shifted ``steps`` later in time (zeros first), same length."""
    if steps <= 0:
        return x
    return torch.nn.functional.pad(x, (steps, 0))[..., : x.shape[-1]]


class SpikingGraph(torch.nn.Module):
    """A graph of SLAYER blocks; input ``(N, P*C_in, P, P, T)`` folded (sdnn: graded levels, cuba: spikes).

    ``nodes`` in topological order, the input first; ``edges`` with each
    node's primary edge (a conv) listed before its other inputs.
    """

    def __init__(self, config: UNetConfig, nodes: list[Node], edges: list[Edge], architecture: str = "graph") -> None:
        super().__init__()
        self.config = config
        self.architecture = architecture
        slayer = compat.slayer()
        self._slayer = slayer
        if config.neuron not in ("sdnn", "cuba"):
            raise ValueError(f"neuron {config.neuron!r}: choose sdnn or cuba")
        if config.graded:
            kind = slayer.block.sigma_delta
            neuron = dict(threshold=config.threshold or 1 / 32, activation=torch.nn.functional.relu,
                          requires_grad=False)
        else:
            kind = slayer.block.cuba
            neuron = dict(threshold=config.threshold or 1.0, current_decay=config.current_decay,
                          voltage_decay=config.voltage_decay, requires_grad=False)
        self.neuron_params = neuron
        clamps = [0.0] * len(nodes)
        if config.clamp:
            if not config.graded:
                raise ValueError("clamp (saturated nodes) applies to sdnn graphs")
            if len(config.clamp) != len(nodes) - 2:
                raise ValueError(f"clamp: one value per hidden node ({len(nodes) - 2}), got {len(config.clamp)}")
            clamps[1:-1] = [float(c) for c in config.clamp]
        nodes = [replace(node, inputs=[], clamp=c) for node, c in zip(nodes, clamps)]  # this graph's own
        self.nodes = nodes
        self.index = {node.name: i for i, node in enumerate(nodes)}
        if config.align_delays:
            edges = align_delays(nodes, edges, self.index)
        self.edges = edges
        for e, edge in enumerate(edges):
            nodes[self.index[edge.destination]].inputs.append(e)
        torch.manual_seed(config.seed)
        self.input_block = kind.Input(neuron) if config.graded else None
        blocks, synapses = {}, {}
        for node in nodes[1:]:
            primary = edges[node.inputs[0]]
            if primary.kind != "conv":
                raise ValueError(f"node {node.name}: its first input must be a conv edge (SLAYER exports it)")
            src = nodes[self.index[primary.source]]
            block = kind.Conv(neuron, src.features, node.features, primary.kernel, stride=primary.stride,
                              padding=primary.padding, delay_shift=True)
            self._fold(block.synapse, primary, src, node, len(node.inputs))
            blocks[node.name] = block
            for e in node.inputs[1:]:
                edge = edges[e]
                src = nodes[self.index[edge.source]]
                if edge.kind == "conv":
                    syn = slayer.synapse.Conv(src.features, node.features, edge.kernel, stride=edge.stride,
                                              padding=edge.padding, pre_hook_fx=block.neuron.quantize_8bit)
                elif edge.kind == "convT":
                    syn = slayer.synapse.ConvTranspose(src.features, node.features, edge.kernel,
                                                       stride=edge.stride, padding=edge.padding,
                                                       pre_hook_fx=block.neuron.quantize_8bit)
                else:
                    raise ValueError(f"edge {edge.name}: unknown kind {edge.kind!r}")
                self._fold(syn, edge, src, node, len(node.inputs))
                synapses[edge_key(edge)] = syn
        self.blocks = torch.nn.ModuleDict(blocks)
        self.synapses = torch.nn.ModuleDict(synapses)
        for node in nodes[1:]:
            if node.paired:  # the second population computes relu(x - c)
                offsets = torch.tensor([0.0] * node.channels + [-node.clamp] * node.channels).repeat(node.size)
                self.blocks[node.name].neuron.bias.data = offsets.reshape(-1, 1, 1)
                self.blocks[node.name].neuron.bias_is_set = True
        if config.graded:
            scale = graded_spike_scale(config.spike_exp)  # graded spikes on netx's spike_exp grid
            for block in self.chip_layers:
                block.neuron.s_scale = block.neuron.delta.scale = scale
        self.eval()

    def _fold(self, synapse, edge: Edge, src: Node, dst: Node, fan: int) -> None:
        fold_type, kernel_type = (DepthFold, FoldedKernel) if edge.kind == "conv" else (DepthFoldT, FoldedKernelT)
        fold = fold_type(src.size, edge.kernel, edge.stride, edge.padding)
        if fold.depth_out != dst.size:
            raise ValueError(f"edge {edge.name}: depth {src.size} -> {fold.depth_out}, node has {dst.size}")
        parametrize.register_parametrization(synapse, "weight", kernel_type(
            fold, dst.channels, src.channels, paired_out=dst.paired, paired_in=src.paired))
        with torch.no_grad():  # He's gain on the 3-D kernel's fan-in, shared between a node's edges
            std = self.config.gain * (2.0 / (src.channels * edge.kernel**3 * fan)) ** 0.5
            if not self.config.graded:  # a gain that makes binary layers spike (snn.py: 3 / sqrt(fan-in))
                std *= 3.0 / 2.0**0.5
            synapse.parametrizations.weight.original.normal_(0.0, std)

    # -- structure ----------------------------------------------------------------
    @property
    def chip_layers(self) -> list[torch.nn.Module]:
        """(sdnn: the input block, then) every node's block, in the file's layer order."""
        first = [self.input_block] if self.input_block is not None else []
        return first + [self.blocks[node.name] for node in self.nodes[1:]]

    def edge_synapse(self, edge: Edge):
        """The SLAYER synapse of ``edge`` (the destination block's own for its primary edge)."""
        node = self.nodes[self.index[edge.destination]]
        if self.edges[node.inputs[0]] == edge:
            return self.blocks[node.name].synapse
        return self.synapses[edge_key(edge)]

    @property
    def path_lengths(self) -> dict[str, int]:
        """Steps from the input block's output to each node's output (the longest path)."""
        return path_lengths(self.nodes, self.edges, self.index)

    # -- forward ------------------------------------------------------------------
    def node_outputs(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Every node's graded spikes over all of ``frames``' steps (input block first).

        A node's synaptic input is the sum over its edges of each synapse's
        output, shifted by the edge's extra delay, then the neuron and the
        block's one-step delay: what Lava's connection processes deliver.
        """
        outs = [self.input_block(frames) if self.input_block is not None else frames]
        for node in self.nodes[1:]:
            block = self.blocks[node.name]
            z = None
            for e in node.inputs:
                edge = self.edges[e]
                part = _step_delay(self.edge_synapse(edge)(outs[self.index[edge.source]]), edge.delay)
                z = part if z is None else z + part
            y = block.neuron(z)
            outs.append(self._slayer.block.base.step_delay(block, y))
        return outs

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.node_outputs(frames)[-1]

    # -- from rest, in one pass --------------------------------------------------
    def kernel3d(self, edge: Edge) -> torch.Tensor:
        """``edge``'s 8-bit kernel in SLAYER's units over the chip's populations, as a 3-D conv's weight.

        SLAYER quantizes the folded weight element by element, and folding only
        copies the 3-D kernel's taps (and adds zeros), so this is the folded
        weight the chip holds, unfolded; gradients pass straight through.
        """
        synapse = self.edge_synapse(edge)
        parametrization = synapse.parametrizations.weight[0]
        kernel = parametrization.populations(synapse.parametrizations.weight.original)
        return self.blocks[edge.destination].neuron.quantize_8bit(kernel)

    def from_rest(self, levels: torch.Tensor, keep: bool = False,
                  messages: list | None = None) -> torch.Tensor | list[torch.Tensor]:
        """SDNN: every node's graded spikes for input ``levels`` ``(N, C_in, P, P, P)`` held from rest.

        Why one pass is exact: from rest, with the input held and every path
        into a node equally long (``align_delays``), each node's inputs all
        arrive in one step, so each unit sends at most one graded spike -- its
        activation floored to the spike grid, or nothing below the delta
        threshold -- and never again (its residue stays below the threshold).
        That is what SLAYER's blocks and Lava's processes compute over the
        window; here each edge is one 3-D convolution of the 8-bit kernel
        (:meth:`kernel3d`) and each node SLAYER's own neuron on that one step,
        so the values are equal bit for bit (sums of multiples of the graded
        quantum stay exact in float32 within the chip's proven range). Batched;
        the cost of one ANN forward pass instead of a window of folded steps.
        Differentiable (SLAYER's straight-through quantizers): fine-tuning trains
        exactly what the chip computes. Returns the readout's graded spikes
        ``(N, 6, P, P, P)`` (its value), or with ``keep`` every node's spikes
        ``(N, populations, D, H, W)``, the input first. ``messages`` (a list)
        receives each node's graded spikes per patch, ``(N,)``, the input first,
        as they are made (so a run need not keep every node's values).
        """
        if not self.config.graded:
            raise ValueError("from_rest applies to sigma-delta (sdnn) graphs: CUBA spikes live in time")
        length = self.path_lengths
        if any(edge.delay != length[edge.destination] - length[edge.source] - 1 for edge in self.edges):
            raise ValueError("from_rest needs every path into a node equally long (align_delays)")
        last_read = {edge.source: max(self.index[e.destination] for e in self.edges if e.source == edge.source)
                     for edge in self.edges}
        def made(value: torch.Tensor) -> torch.Tensor:
            if messages is not None:
                messages.append(graded_spike_count(value))
            return value

        if not torch.is_grad_enabled() and levels.device.type == "cpu":
            # channels-last convolutions run about a third faster on CPU; exact all the same (see above)
            levels = levels.contiguous(memory_format=torch.channels_last_3d)
        values = {self.nodes[0].name: made(neuron_step(self.input_block.neuron, levels))}
        outputs = [values[self.nodes[0].name]]
        for position, node in enumerate(self.nodes[1:], start=1):
            z = None
            for e in node.inputs:
                edge = self.edges[e]
                part = apply_edge(edge, self.kernel3d(edge), values[edge.source])
                z = part if z is None else z.add_(part)
                del part
            neuron = self.blocks[node.name].neuron
            if node is self.nodes[-1] and getattr(neuron, "bias_is_set", False):
                values[node.name] = biased_readout_step(neuron, z, messages)
            else:
                values[node.name] = made(neuron_step(neuron, z))
            del z
            outputs.append(values[node.name])
            if not keep:  # a 1 mm brain's batches: hold only what a later node still reads
                for name in [name for name, last in last_read.items() if last == position]:
                    values.pop(name, None)
                    outputs[self.index[name]] = None
        return outputs if keep else outputs[-1]

    def summed_inputs(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Every node's summed input (its sigma state, before the ReLU)."""
        summed: list[torch.Tensor] = []
        hooks = [self.blocks[n.name].neuron.sigma.register_forward_hook(lambda _m, _i, out: summed.append(out))
                 for n in self.nodes[1:]]
        try:
            self.node_outputs(frames)
        finally:
            for hook in hooks:
                hook.remove()
        return summed

    def metadata(self) -> dict:
        return {"format": "spikereg-graph/1", "model": asdict(self.config), "architecture": self.architecture,
                "nodes": [n.name for n in self.nodes],
                "topology": {"nodes": [{"name": n.name, "channels": n.channels, "size": n.size} for n in self.nodes],
                             "edges": [asdict(e) for e in self.edges]},
                "path_lengths": self.path_lengths,
                "layout": "netx (x, y, f) = (W, H, D*C) with feature d*C + c"}

    @classmethod
    def from_graph_file(cls, path) -> "SpikingGraph":
        """The graph of an exported file, carrying the file's 8-bit weights and its edges' delays.

        Shapes come from the metadata's topology; each edge's weight is the
        file's integer weight over SLAYER's ``w_scale``, taken back to the 3-D
        kernel through the fold's right inverse (exact for a file SLAYER wrote:
        every copy of a kernel slice holds the same value; a file edited since
        is not reproduced, which verification then shows); delays are the
        file's ``/graph/edge/<k>/delay``.
        """
        netx = read_netx(path)
        meta = netx.metadata
        config = replace(graph_config_of(meta), align_delays=False)
        topology = meta["topology"]
        nodes = [Node(n["name"], n["channels"], n["size"]) for n in topology["nodes"]]
        edges = [Edge(**e) for e in topology["edges"]]
        delays = file_delays(path, [n.name for n in nodes])
        edges = [replace(e, delay=delays[(e.source, e.destination)]) for e in edges]
        net = cls(config, nodes, edges, architecture=meta.get("architecture", "graph"))
        return net.load_file_weights(netx)

    def load_file_weights(self, netx) -> "SpikingGraph":
        """Every edge's weight from a graph file already read (:func:`spikereg.netx_file.read_netx`)."""
        _, file_edges = read_edges(netx.path)
        names = [n.name for n in self.nodes]
        groups = {(names[e.source], names[e.destination]): np.asarray(netx.root[f"{e.group}/weight"])
                  for e in file_edges}
        for edge in self.edges:
            weight = torch.as_tensor(groups[(edge.source, edge.destination)], dtype=torch.float32)
            synapse = self.edge_synapse(edge)
            if tuple(weight.shape) != tuple(synapse.weight.shape[:-1]):
                raise ValueError(f"model {netx.path}: edge {edge.name} weight has shape {tuple(weight.shape)}, "
                                 f"its metadata implies {tuple(synapse.weight.shape[:-1])}")
            scale = self.blocks[edge.destination].neuron.w_scale
            with torch.no_grad():
                synapse.weight = (weight / scale).unsqueeze(-1)
        for index, node in enumerate(self.nodes[1:], start=1):  # saturated nodes: the file's own offsets
            group = netx.root[f"layer/{index}"]
            neuron = self.blocks[node.name].neuron
            wanted = node.paired or bool(getattr(neuron, "bias_is_set", False))  # pairs' offsets, a biased readout
            if ("bias" in group) != wanted:
                raise ValueError(f"model {netx.path}: layer {index} ({node.name}) "
                                 f"{'has a bias' if 'bias' in group else 'has no bias'}, but its metadata says it "
                                 f"{'has' if wanted else 'has none'}")
            if wanted:
                bias = torch.as_tensor(np.asarray(group["bias"]), dtype=torch.float32) / neuron.w_scale
                neuron.bias.data = bias.reshape(neuron.bias.shape)
        return self.eval()


def file_delays(path, names: list[str]) -> dict[tuple[str, str], int]:
    """Each edge's extra delay as the file says, by (source, destination) name."""
    _, file_edges = read_edges(path)
    return {(names[e.source], names[e.destination]): e.delay for e in file_edges}


class SpikingUNet(SpikingGraph):
    """The spiking U-Net of :func:`unet_topology` (default: the tiny two-level one)."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        config = config or UNetConfig()
        super().__init__(config, *unet_topology(config), architecture=f"unet{len(config.channels)}")
