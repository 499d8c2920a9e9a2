"""The ANN twin of a sigma-delta graph (:mod:`spikereg.networks.unet`): the same edges, ReLU nodes.

Every edge of the graph holds one trainable 3-D kernel (a conv or a 2^3
transposed conv); a node's value is ``relu(sum over its edges of the edge's
convolution of its source)``, on the graded input levels the chip receives.
That is what the spiking graph computes from rest once its messages have
arrived (:meth:`~spikereg.networks.unet.SpikingGraph.from_rest`), up to its
8-bit weights, the graded-spike grid and the delta threshold, so the twin
trains like any CNN (VoxelMorph's U-Net on 2 cores) and its kernels then
start the spiking graph: the train-ANN, convert, fine-tune path of the
chain (:mod:`spikereg.networks.ann`), for a graph.

The parameter of edge ``a -> b`` is ``kernels[a__b]``, the same tensor the
spiking graph's parametrization of that edge holds (:meth:`snn_state`):
``(C_out, C_in, 3, 3, 3)`` for a conv, ``(C_in, C_out, 2, 2, 2)`` for the
upsampling transposed conv (torch's layouts).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from spikereg.config import ModelConfig
from spikereg.networks.encoding import decode_displacement, graded_levels, input_features
from spikereg.networks.graph_topology import Edge, Node, UNetConfig, edge_key, unet_topology
from spikereg.networks.unet import apply_edge

READOUT_INIT = 0.01  # the readout's kernels, times He's: the field starts near zero


def unet_config(model: ModelConfig) -> UNetConfig:
    """The graph shape of a ``model.architecture: unet`` config."""
    return UNetConfig(patch_size=model.patch_size, in_channels=model.in_channels, channels=tuple(model.channels),
                      neuron="sdnn", threshold=model.neuron.threshold, spike_exp=model.spike_exp)


def incoming(nodes: list[Node], edges: list[Edge]) -> dict[str, list[int]]:
    """Each node's incoming edges, as indices into ``edges``, in the order they are listed."""
    into: dict[str, list[int]] = {node.name: [] for node in nodes}
    for index, edge in enumerate(edges):
        into[edge.destination].append(index)
    return into


def kernel_shape(edge: Edge, source: Node, destination: Node) -> tuple[int, ...]:
    if edge.kind == "convT":
        return (source.channels, destination.channels) + (edge.kernel,) * 3
    return (destination.channels, source.channels) + (edge.kernel,) * 3


class GraphTwin(torch.nn.Module):
    """ReLU U-Net with one 3-D kernel per edge of :func:`~spikereg.networks.graph_topology.unet_topology`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.architecture != "unet":
            raise ValueError(f"model.architecture {config.architecture!r}: GraphTwin is the twin of a unet")
        self.config = config
        self.nodes, self.edges = unet_topology(unet_config(config))
        self.index = {node.name: i for i, node in enumerate(self.nodes)}
        self.into = incoming(self.nodes, self.edges)
        kernels = {}
        for edge in self.edges:
            source, destination = self.nodes[self.index[edge.source]], self.nodes[self.index[edge.destination]]
            fan = len(self.into[edge.destination])
            # He's gain on the 3-D kernel's fan-in, shared between a node's edges (as SpikingGraph)
            std = (2.0 / (source.channels * edge.kernel**3 * fan)) ** 0.5
            kernels[edge_key(edge)] = torch.nn.Parameter(
                torch.empty(kernel_shape(edge, source, destination)).normal_(0.0, std))
        self.kernels = torch.nn.ParameterDict(kernels)
        with torch.no_grad():  # the readout starts near zero, as VoxelMorph's flow layer does
            for e in self.into[self.nodes[-1].name]:
                self.kernels[edge_key(self.edges[e])].mul_(READOUT_INIT)

    @property
    def hidden(self) -> list[Node]:
        """The nodes between the input and the readout (the ones ``model.clamp`` saturates)."""
        return self.nodes[1:-1]

    def layers(self, fixed: torch.Tensor, moving: torch.Tensor,
               kernels: dict[str, torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every node's summed input and value (the input node left out), in node order."""
        kernels = self.kernels if kernels is None else kernels
        x = graded_levels(input_features(fixed, moving, force=self.config.encoding == "intensity+force"))
        values = {self.nodes[0].name: x}  # (model.clamp is conversion's, in the spiking graph's units: not the twin's)
        summed, rates = [], []
        for node in self.nodes[1:]:
            z = None
            for e in self.into[node.name]:
                edge = self.edges[e]
                part = apply_edge(edge, kernels[edge_key(edge)], values[edge.source])
                z = part if z is None else z + part
            y = F.relu(z + self.config.readout_bias) if node is self.nodes[-1] else F.relu(z)
            summed.append(z)
            rates.append(y)
            values[node.name] = y
        return summed, rates

    def rates(self, fixed: torch.Tensor, moving: torch.Tensor) -> list[torch.Tensor]:
        return self.layers(fixed, moving)[1]

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(N, 3, P, P, P)`` displacement in voxels, decoded as the spiking graph's readout."""
        return decode_displacement(self.rates(fixed, moving)[-1], 1, self.config.max_displacement)

    def snn_state(self, kernels: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The kernels under the spiking graph's parameter names (``load_state_dict(..., strict=False)``)."""
        kernels = self.kernels if kernels is None else kernels
        state = {}
        for node in self.nodes[1:]:
            for position, e in enumerate(self.into[node.name]):
                edge = self.edges[e]
                name = f"blocks.{node.name}.synapse" if position == 0 else f"synapses.{edge_key(edge)}"
                state[f"{name}.parametrizations.weight.original"] = kernels[edge_key(edge)].detach().clone()
        return state
