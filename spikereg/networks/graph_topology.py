"""The shape of a spiking graph: its nodes and edges, the U-Net's and a plain chain's, and the delays that align them.

A node is one neuron population (two where it saturates), an edge one synapse
(``conv`` or ``convT``); nodes are in topological order, the input first, and
each node's primary edge (a conv) comes first among its inputs. Every edge
takes one step, as every Lava connection does, plus its ``delay``:
:func:`align_delays` gives the skip edges the delays that make every path into
a node equally long, so a decoder sums the skip and the upsampled path of the
same input frame. :mod:`spikereg.networks.unet` builds SLAYER blocks on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from spikereg.networks.encoding import READOUT_CHANNELS


@dataclass(frozen=True)
class UNetConfig:
    """The tiny U-Net's shape and neurons: ``sdnn`` (sigma-delta, graded spikes) or ``cuba`` (binary spikes)."""

    patch_size: int = 8
    in_channels: int = 4  # spikereg.networks.encoding.input_features: fixed, moving, (F - M)+, (F - M)-
    channels: tuple[int, ...] = (4, 4)  # widths of the resolution levels, finest first (2 or more)
    out_channels: int = READOUT_CHANNELS
    neuron: str = "sdnn"
    threshold: float | None = None  # default: sdnn 1/32, cuba 1.0
    current_decay: float = 0.25  # cuba only
    voltage_decay: float = 0.03  # cuba only
    spike_exp: int = 6  # sdnn only: graded spikes on netx's spike_exp grid
    align_delays: bool = True
    gain: float = 1.0  # weight init scale (x He's; cuba x 3 / sqrt(2) of it, as snn.py)
    seed: int = 0
    # sdnn only: per hidden node (the nodes between input and readout, in topological order) the
    # value it saturates at, 0 for a plain ReLU; a saturated node is two populations relu(x) and
    # relu(x - c) that every successor takes with K and -K (spikereg.networks.folding.FoldedKernel)
    clamp: tuple[float, ...] = ()

    @property
    def graded(self) -> bool:
        return self.neuron == "sdnn"


@dataclass(frozen=True)
class Edge:
    """One synapse of the graph: ``source`` -> ``destination`` (node names)."""

    source: str
    destination: str
    kind: str  # "conv" | "convT"
    kernel: int
    stride: int
    padding: int
    delay: int = 0  # steps beyond the one every connection takes

    @property
    def name(self) -> str:
        return f"{self.source}->{self.destination}"


@dataclass
class Node:
    name: str
    channels: int
    size: int  # spatial side (depth = height = width)
    inputs: list[int] = field(default_factory=list)  # indices into the edge list, primary first
    clamp: float = 0.0  # > 0: saturated at this value, as a pair of populations

    @property
    def paired(self) -> bool:
        return self.clamp > 0

    @property
    def populations(self) -> int:
        """Channels on the chip: a saturated node holds two populations of its units."""
        return self.channels * (2 if self.paired else 1)

    @property
    def features(self) -> int:
        """Folded features ``D*C`` (populations included)."""
        return self.size * self.populations


def unet_topology(config: UNetConfig) -> tuple[list[Node], list[Edge]]:
    """The U-Net's nodes (topological order) and edges (each node's primary edge first).

    ``len(config.channels)`` resolution levels: ``enc1`` at the patch size,
    each further encoder a stride-2 conv of the one before; a bottleneck conv
    at the coarsest level; ``dec_L`` over the bottleneck plus a skip from
    ``enc_L``; every finer ``dec_l`` over a skip from ``enc_l`` (its primary
    edge) plus a 2^3 stride-2 transposed conv of ``dec_{l+1}``; a 3^3 readout.
    """
    p, widths = config.patch_size, list(config.channels)
    levels = len(widths)
    if levels < 2:
        raise ValueError(f"channels {tuple(widths)}: a U-Net needs at least two levels")
    if p % (1 << (levels - 1)):
        raise ValueError(f"patch_size {p}: the U-Net halves it {levels - 1} times, so it must be even "
                         f"(a multiple of {1 << (levels - 1)})")
    sizes = [p >> level for level in range(levels)]
    enc = [Node(f"enc{level + 1}", c, size) for level, (c, size) in enumerate(zip(widths, sizes))]
    dec = [Node(f"dec{level + 1}", c, size) for level, (c, size) in enumerate(zip(widths, sizes))]
    nodes = [Node("input", config.in_channels, p), *enc, Node("bott", widths[-1], sizes[-1]), *dec[::-1],
             Node("out", config.out_channels, p)]
    edges = [Edge("input", "enc1", "conv", 3, 1, 1)]
    edges += [Edge(a.name, b.name, "conv", 3, 2, 1) for a, b in zip(enc, enc[1:])]  # downsampling
    top = enc[-1].name
    edges += [Edge(top, "bott", "conv", 3, 1, 1), Edge("bott", dec[-1].name, "conv", 3, 1, 1),
              Edge(top, dec[-1].name, "conv", 3, 1, 1)]  # the coarsest skip
    for level in range(levels - 2, -1, -1):
        edges += [Edge(enc[level].name, dec[level].name, "conv", 3, 1, 1),  # skip (the primary edge)
                  Edge(dec[level + 1].name, dec[level].name, "convT", 2, 2, 0)]  # upsampling
    edges.append(Edge("dec1", "out", "conv", 3, 1, 1))
    return nodes, edges


def chain_topology(config: UNetConfig, widths: list[int]) -> tuple[list[Node], list[Edge]]:
    """A plain chain of 3^3 convs (``widths`` then the readout): a graph that is also a sequential netx file."""
    size = config.patch_size
    nodes = [Node("input", config.in_channels, size)]
    nodes += [Node(f"conv{i + 1}", c, size) for i, c in enumerate(widths)] + [Node("out", config.out_channels, size)]
    edges = [Edge(a.name, b.name, "conv", 3, 1, 1) for a, b in zip(nodes, nodes[1:])]
    return nodes, edges


def graph_config_of(meta: dict) -> UNetConfig:
    """The graph shape a graph file's metadata records (``graph``; plain graph files: ``model``)."""
    graph = dict(meta.get("graph", meta["model"]))
    graph["channels"] = tuple(graph["channels"])
    graph["clamp"] = tuple(graph.get("clamp", ()))
    return UNetConfig(**graph)


def edge_key(edge: Edge) -> str:
    return f"{edge.source}__{edge.destination}"


def path_lengths(nodes, edges, index) -> dict[str, int]:
    """Longest path, in steps, from the input node to each node (each edge: 1 + its delay)."""
    length = {nodes[0].name: 0}
    for node in nodes[1:]:  # nodes are in topological order
        length[node.name] = max(length[edges[e].source] + 1 + edges[e].delay for e in node.inputs)
    return length


def align_delays(nodes, edges, index) -> list[Edge]:
    """Edges with the extra delays that make every path into each node equally long."""
    incoming = {node.name: [e for e, edge in enumerate(edges) if edge.destination == node.name] for node in nodes}
    length = {nodes[0].name: 0}
    out = list(edges)
    for node in nodes[1:]:
        longest = max(length[edges[e].source] + 1 for e in incoming[node.name])
        for e in incoming[node.name]:
            out[e] = replace(edges[e], delay=longest - length[edges[e].source] - 1)
        length[node.name] = longest
    return out
