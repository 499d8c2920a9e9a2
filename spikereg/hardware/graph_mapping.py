"""Size a graph netx file (``spikereg-graph/1``, :mod:`lava_export.graph_file`) against a chip, edge by edge.

The model of :mod:`spikereg.hardware.mapping`, with a layer's synapses, fan-in
and synaptic memory the **sums over its incoming edges** (a skip connection
and an upsampling edge land on the same neurons):

* a ``conv`` edge counts its in-bounds connections as a conv layer does;
* a ``convT`` (transposed, upsampling) edge counts, per axis and tap ``a``, the
  inputs ``i`` whose output ``i*stride - padding + a`` lies inside the
  destination;
* **fan-in counts the nonzero synapses onto one neuron** (NONZERO's choice,
  :meth:`~spikereg.hardware.rules.SynapseAccounting.fan_in`), as the chip holds
  them: a ``conv`` edge's is the most nonzero weights of one output channel; a
  ``convT`` edge's the most nonzero weights of one output channel among the taps
  that reach one output together (those ``a`` with the same ``a mod stride`` per
  axis), an upper bound that outputs near the border may not reach. The dense
  fan-in, zeros included (``in_channels / groups x k_h x k_w``, and
  ``in_channels x ceil(k_h / s_h) x ceil(k_w / s_w)`` for ``convT``), is not
  checked: the zero depth blocks of depth folding take no synapse;
* **synaptic memory holds the nonzero synapses only** (:data:`~spikereg.hardware.rules.NONZERO`):
  every edge is a sparse synapse list, so the zero depth blocks of depth
  folding and the weights that quantize to zero take none; ``synapses``
  (every in-bounds connection) is listed beside ``nonzero_synapses``;
* an edge with ``delay`` ``d > 0`` stores ``bit_length(d)`` delay bits per
  synapse (Loihi 2 synaptic delays, at most the profile's
  ``max_synaptic_delay_steps``; Lava's simulator runs it as ``d`` identity
  relays, :mod:`lava_export.graph_builder`, which a chip does not need:
  :data:`~spikereg.hardware.rules.DELAY_RELAYS`).

The energy report charges the same edges (:mod:`spikereg.hardware.graph_energy`).
Nothing here imports Lava.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from spikereg.hardware.mapping import LayerMap, MappingError, MappingReport, _as_profile, map_network, netx_text
from spikereg.hardware.netx_layers import read_network
from spikereg.hardware.rules import (
    DELAY_RELAYS,
    NONZERO,
    delay_bits,
    delay_problem,
    exponent_problem,
    layer_problems,
    synapse_accounting,
)
from spikereg.hardware.synapses import conv_nonzero_fan_in, taps_in_bounds
from spikereg.netx_file import Group, NetxFile, read_edges


@dataclass
class EdgeMap:
    """What one edge (synapse) of a graph needs on the chip."""

    index: int
    source: int
    destination: int
    name: str
    type: str
    delay: int
    synapses: int  # every in-bounds connection, zero weights included
    nonzero_synapses: int  # the ones the chip stores and charges
    fan_in: int  # the most nonzero synapses onto one destination neuron (NONZERO's fan-in)
    synaptic_memory_bits: int  # nonzero synapses x (weight bits + delay bits)
    source_neurons: int = 0  # the source population (its spikes are what the edge's synapses receive)


@dataclass
class GraphMappingReport(MappingReport):
    edges: list[EdgeMap] = field(default_factory=list)
    synapse_accounting: str = NONZERO.name
    names: list[str] = field(default_factory=list)  # node names, by layer index

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["edges"] = [asdict(edge) for edge in self.edges]
        return data

    def to_text(self) -> str:
        lines = [super().to_text(), "", f"{'edge':>4}  {'from -> to':<18} {'type':<6} {'delay':>5} "
                 f"{'synapses':>11} {'nonzero':>11} {'fan-in':>7} {'memory':>11}"]
        for e in self.edges:
            lines.append(f"{e.index:>4}  {e.name:<18} {e.type:<6} {e.delay:>5} {e.synapses:>11,} "
                         f"{e.nonzero_synapses:>11,} {e.fan_in:>7} {e.synaptic_memory_bits:>11,}")
        return "\n".join(lines)


def _pair(group: Group, name: str) -> tuple[int, int]:
    value = np.asarray(group[name][()]).reshape(-1)
    return (int(value[0]), int(value[0])) if value.size == 1 else (int(value[0]), int(value[1]))


def conv_transpose_taps(n_in: int, n_out: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Per tap ``a``, the inputs ``i`` whose output ``i*s - p + a`` lies inside the destination."""
    index = np.arange(n_in)[:, None] * stride - padding + np.arange(kernel)[None, :]
    return ((index >= 0) & (index < n_out)).sum(axis=0)


def conv_transpose_nonzero_fan_in(weight: np.ndarray, stride: tuple[int, int]) -> int:
    """The most nonzero weights of a transposed conv ``weight`` ``(in, out, k_h, k_w)`` onto one output.

    Output ``o`` is reached by tap ``a`` only when ``o + padding - a`` is a multiple of the
    stride, so the taps reaching one output share ``a mod stride`` per axis (at most
    ``ceil(k / stride)`` of them). The count bounds every output from above: per output channel
    and residue pair, the nonzero weights over all input channels and those taps (an output
    near the border reaches fewer inputs); 0 for an all-zero weight.
    """
    sh, sw = stride
    nonzero = weight != 0
    return max((int(nonzero[:, :, rh::sh, rw::sw].sum(axis=(0, 2, 3)).max(initial=0))
                for rh in range(sh) for rw in range(sw)), default=0)


def _edge_counts(kind: str, group: Group, in_shape, out_shape) -> tuple[int, int, int, int]:
    """(synapses, nonzero, dense fan-in, nonzero fan-in) of one edge; shapes in SLAYER's (C, H, W)."""
    weight = np.asarray(group["weight"][()])
    if weight.ndim == 5:
        weight = weight[..., 0]
    (c_in, h_in, w_in), (_, h_out, w_out) = in_shape, out_shape
    sh, sw = _pair(group, "stride")
    ph, pw = _pair(group, "padding")
    if kind == "conv":
        dh, dw = _pair(group, "dilation")
        k_h, k_w = weight.shape[-2:]
        groups = int(np.asarray(group["groups"][()]))
        taps = np.outer(taps_in_bounds(h_in, h_out, k_h, sh, ph, dh), taps_in_bounds(w_in, w_out, k_w, sw, pw, dw))
        per_pair = (weight != 0).sum(axis=(0, 1))
        return (int(weight.shape[0] * weight.shape[1] * taps.sum()), int((per_pair * taps).sum()),
                int(c_in // groups * k_h * k_w), conv_nonzero_fan_in(weight))
    if kind == "convT":
        k_h, k_w = weight.shape[-2:]
        taps = np.outer(conv_transpose_taps(h_in, h_out, k_h, sh, ph), conv_transpose_taps(w_in, w_out, k_w, sw, pw))
        per_pair = (weight != 0).sum(axis=(0, 1))
        return (int(weight.shape[0] * weight.shape[1] * taps.sum()), int((per_pair * taps).sum()),
                int(c_in * math.ceil(k_h / sh) * math.ceil(k_w / sw)), conv_transpose_nonzero_fan_in(weight, (sh, sw)))
    raise MappingError(f"edge type {kind!r}: graph files hold conv and convT edges")


def map_graph(source: str | Path | NetxFile, profile) -> GraphMappingReport:
    """Size the graph file ``source`` (a path, or the file already read: sizing it for several chips reads
    it once) against ``profile``: one row per layer, one per edge."""
    chip = _as_profile(profile)
    network = source if isinstance(source, NetxFile) else read_network(source)
    path, root = network.path, network.root
    npc = int(chip.neurons_per_core.value)
    mem_per_core = int(chip.synaptic_memory_bits_per_core.value)
    cores_per_chip = int(chip.cores_per_chip.value)
    max_fan_in = int(chip.max_fan_in.value)
    weight_bits = int(chip.weight_bits.value)
    names, edges = read_edges(path)
    problems = [p for p in [exponent_problem(chip)] if p is not None]
    notes: list[str] = []
    layers: list[LayerMap] = []
    edge_maps: list[EdgeMap] = []
    shapes = [tuple(int(v) for v in np.asarray(root[f"layer/{i}/shape"]).reshape(-1)) for i in range(len(names))]
    for edge in edges:
        synapses, nonzero, dense_fan_in, nonzero_fan_in = _edge_counts(
            edge.kind, root[edge.group], shapes[edge.source], shapes[edge.destination])
        fan_in = NONZERO.fan_in(dense_fan_in, nonzero_fan_in)  # a graph file's edges hold nonzero synapses
        bits = weight_bits + delay_bits(edge.delay)
        name = f"{names[edge.source]}->{names[edge.destination]}"
        edge_maps.append(EdgeMap(edge.index, edge.source, edge.destination, name, edge.kind, edge.delay,
                                 synapses, nonzero, fan_in, NONZERO.stored(synapses, nonzero) * bits,
                                 int(np.prod(shapes[edge.source]))))
        edge_problems = [] if edge.primary else layer_problems(root[edge.group], chip)
        edge_problems += [p for p in [delay_problem(edge.delay, chip)] if p is not None]
        problems.extend(f"edge {edge.index} ({name}): {p}" for p in edge_problems)
    for index, name in enumerate(names):
        group = root[f"layer/{index}"]
        kind = netx_text(group["type"][()])
        mine = [e for e in edge_maps if e.destination == index]
        neurons = int(np.prod(shapes[index])) if (index or "neuron" in group) else 0
        host = index == 0 and "neuron" in group  # the SDNN input: the host's delta encoder
        memory = sum(e.synaptic_memory_bits for e in mine)
        fan_in = sum(e.fan_in for e in mine)
        cores = max(math.ceil(neurons / npc), math.ceil(memory / mem_per_core), 1) if neurons and not host else 0
        tag = f"layer {index} ({name})"
        problems.extend(f"{tag}: {p}" for p in layer_problems(group, chip))
        if fan_in > max_fan_in:
            problems.append(f"{tag}: fan-in {fan_in} over its {len(mine)} edges exceeds {chip.name} "
                            f"max_fan_in {max_fan_in}")
        layers.append(LayerMap(index=index, type=kind, neurons=neurons,
                               synapses=sum(e.synapses for e in mine),
                               nonzero_synapses=sum(e.nonzero_synapses for e in mine), fan_in=fan_in,
                               synaptic_memory_bits=memory, cores=cores, shape=shapes[index],
                               placement="host" if host else "chip"))
    notes.append(f"synapses stored: {NONZERO.name} only ({NONZERO.rule})")
    if any(e.delay for e in edge_maps):
        notes.append(DELAY_RELAYS)
    total_cores = sum(layer.cores for layer in layers)
    if total_cores > cores_per_chip:
        problems.append(f"network needs {total_cores} cores, {chip.name} has {cores_per_chip} per chip")
    return GraphMappingReport(
        layers=layers, total_neurons=sum(la.neurons for la in layers if la.placement == "chip"),
        total_synapses=sum(e.synapses for e in edge_maps), total_nonzero=sum(e.nonzero_synapses for e in edge_maps),
        cores=total_cores, chips=math.ceil(total_cores / cores_per_chip), fits_one_chip=total_cores <= cores_per_chip,
        profile_name=chip.name, problems=problems,
        total_synaptic_memory_bits=sum(e.synaptic_memory_bits for e in edge_maps), notes=notes, path=str(path),
        neurons_per_core=npc, synaptic_memory_bits_per_core=mem_per_core, cores_per_chip=cores_per_chip,
        host_neurons=sum(la.neurons for la in layers if la.placement == "host"), edges=edge_maps,
        names=list(names))


def is_graph(path: str | Path | NetxFile) -> bool:
    """True for an HDF5 file with a ``spikereg-graph/1`` graph group (anything else: False, no error)."""
    path = Path(path.path if isinstance(path, NetxFile) else path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as handle:
            return "graph" in handle and handle["graph"].attrs.get("format") == "spikereg-graph/1"
    except (OSError, KeyError, RuntimeError):  # truncated or corrupt: the netx mapper says so in its words
        return False


def map_model(path: str | Path, profile, synapses: str = "conv") -> MappingReport:
    """``spikereg map``: a graph file edge by edge (:func:`map_graph`, nonzero synapses whatever ``synapses``
    says), any other netx file with its synapses built as ``synapses`` says (:func:`map_network`)."""
    graph = is_graph(path)
    synapse_accounting(graph, synapses)  # an unknown value is refused for a graph file too
    if graph:
        return map_graph(path, profile)
    return map_network(path, profile, synapses)
