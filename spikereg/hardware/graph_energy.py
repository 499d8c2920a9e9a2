"""The energy of a graph file's run (``spikereg-graph/1``: the U-Net's skip and upsampling edges), edge by edge.

What :mod:`spikereg.hardware.energy` does for a chain, on the graph mapping
(:func:`~spikereg.hardware.graph_mapping.map_graph`), so that ``spikereg map``
and the energy report count the same synapses:

* **Synops per edge** = the messages its source node sent x the edge's mean
  nonzero fan-out per source neuron (its nonzero synapses over the source's
  neurons). Every patch runs from rest, so each unit sends at most one graded
  spike per patch: a node's spikes are its messages. Only nonzero synapses
  are stored and charged (:data:`~spikereg.hardware.rules.NONZERO`); what the
  zero weights would have taken is reported per edge, not charged. A node's
  synops are the sum over its incoming edges.
* **Neuron updates**: every on-chip node's neurons (a saturated node's two
  populations both) every step; the input node is the host's delta encoder.
  Delay relays are not neurons (:data:`~spikereg.hardware.rules.DELAY_RELAYS`).
* **Spike messages**: every node's messages, the input node's (the encoder's,
  as they enter the chip) once.
* **Streamed schedule** (a chip with the schedule's figures, Loihi 2):
  :func:`graph_streamed_rows`, see :data:`FROM_REST`.
* **ANN twin** (:class:`~spikereg.networks.graph_twin.GraphTwin`, from the
  file's topology): per edge a ``conv3d`` of ``out voxels x c_out x c_in x k^3``
  MACs or a ``conv_transpose3d`` of ``in voxels x c_in x c_out x k^3``, on the
  twin's channels (no saturated pairs); host bytes: the fixed and moving
  patches in, the ``3 x grid^3`` displacement out, float32.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from spikereg.hardware.activity import Activity, EnergyError, LayerSynops, check_count
from spikereg.hardware.energy import (
    DEFAULT_PROFILES,
    FLOAT_BYTES,
    PJ,
    SECTION_MODEL,
    priced,
    report_field,
    run_counts,
    run_patches,
    split_profiles,
)
from spikereg.hardware.graph_mapping import EdgeMap, GraphMappingReport, map_graph
from spikereg.hardware.loihi2_schedule import LayerLoad, OpTimes, Schedule, ScheduleError, plan, schedule_figures
from spikereg.hardware.netx_layers import read_network
from spikereg.hardware.profiles import NeuromorphicProfile, Profile
from spikereg.hardware.rules import DELAY_RELAYS, NONZERO
from spikereg.hardware.streamed import passes_of, schedule_rows
from spikereg.netx_file import NetxFile, load_model

#: How the streamed schedule runs a from-rest graph (report.json repeats it in the schedule's notes).
FROM_REST = (
    "every patch from rest: each unit sends at most one message per patch, and all of a patch's messages fall "
    "within its own window (the file's window holds the longest path plus the host's encoder and readout steps), "
    "so patches follow each other a window apart, without drain steps or 64-patch streams; each node's neuron "
    "state is reset at its window's boundary, as netx's reset_interval resets CUBA layers, assumed free on Loihi 2 "
    "(part of the neuron update every neuron already makes every step: no extra step, update or message charged); "
    "not verified on a chip (Lava's CPU SigmaDelta has no reset; the torch backend runs each patch alone)")

SYNOPS_METHOD = ("per edge: messages of its source node x the edge's mean nonzero fan-out per source neuron "
                 "(every patch from rest: at most one message per unit)")


@dataclass(frozen=True)
class EdgeSynops:
    """The synaptic operations of one edge over a run: its source's messages x its mean fan-out."""

    edge: EdgeMap
    events: int  # messages the source node sent

    @property
    def fanout(self) -> float:
        """Mean synapses per source neuron, zero weights included."""
        return self.edge.synapses / self.edge.source_neurons

    @property
    def nonzero_fanout(self) -> float:
        """Mean nonzero synapses per source neuron: what a message is charged."""
        return self.edge.nonzero_synapses / self.edge.source_neurons

    @property
    def nonzero(self) -> float:
        return self.events * self.nonzero_fanout

    @property
    def zero_weights(self) -> float:
        """Synops the zero weights would take if they were stored: reported, not charged."""
        return self.events * (self.fanout - self.nonzero_fanout)


def edge_synops(mapping: GraphMappingReport, spikes: Sequence[int]) -> list[EdgeSynops]:
    """Every edge of ``mapping`` driven by its source's messages (``spikes``: one count per layer)."""
    if len(spikes) != len(mapping.layers):
        raise EnergyError(f"{len(spikes)} layer spike counts for a graph of {len(mapping.layers)} layers")
    return [EdgeSynops(edge, check_count(spikes[edge.source], f"spikes of layer {edge.source}"))
            for edge in mapping.edges]


def graph_activity(mapping: GraphMappingReport, spikes: Sequence[int]) -> tuple[Activity, list[EdgeSynops]]:
    """The run's events in the units they are charged in, per node, and its edges' synops."""
    edges = edge_synops(mapping, spikes)
    synops = [LayerSynops(index=layer.index, events=sum(e.events for e in edges if e.edge.destination == layer.index),
                          effective=sum(e.nonzero for e in edges if e.edge.destination == layer.index),
                          structural_zeros=0.0)  # NONZERO: zero weights are neither stored nor charged
              for layer in mapping.layers if layer.index > 0]
    return Activity(synops=synops, neurons=mapping.total_neurons, spikes=sum(int(s) for s in spikes),
                    layer_neurons=sum(layer.neurons for layer in mapping.layers)), edges


# -- the ANN twin -----------------------------------------------------------------------


def twin_edge_macs(meta: dict[str, Any]) -> dict[str, int]:
    """MACs per patch of each edge of the U-Net's ANN twin, by edge name ``source->destination``."""
    topology = meta.get("topology")
    if not isinstance(topology, dict):
        raise EnergyError("graph file metadata has no 'topology': cannot size the ANN twin")
    nodes = {node["name"]: node for node in topology["nodes"]}
    macs = {}
    for edge in topology["edges"]:
        source, destination = nodes[edge["source"]], nodes[edge["destination"]]
        # a conv computes every output voxel; a transposed conv scatters every input voxel over k^3 outputs
        voxels = (source if edge["kind"] == "convT" else destination)["size"] ** 3
        macs[f"{edge['source']}->{edge['destination']}"] = (
            voxels * source["channels"] * destination["channels"] * edge["kernel"] ** 3)
    return macs


def twin_io_bytes(meta: dict[str, Any]) -> int:
    """Host bytes per patch of the twin: fixed and moving patches in, the displacement (3 x grid^3) out."""
    patch = int(meta["model"]["patch_size"])
    grid = int(meta.get("grid_size", patch))
    return (2 * patch ** 3 + 3 * grid ** 3) * FLOAT_BYTES


# -- the report section -----------------------------------------------------------------


def _checked_spikes(report: dict[str, Any], mapping: GraphMappingReport) -> list[int]:
    rows = report_field(report, "layers")
    if len(rows) != len(mapping.layers) or any(int(row["neurons"]) != layer.neurons
                                               for row, layer in zip(rows, mapping.layers)):
        raise EnergyError(f"report layers (neurons {[row['neurons'] for row in rows]}) do not match the nodes of "
                          f"{mapping.path} (neurons {[layer.neurons for layer in mapping.layers]})")
    return [check_count(row["spikes"], f"spikes of layer {row.get('layer')}") for row in rows]


def delays_section(edges: Sequence[EdgeSynops], chips: Sequence[NeuromorphicProfile]) -> Optional[dict[str, Any]]:
    """How the delayed edges are charged, and each chip's limit on a synaptic delay (None: no delayed edge)."""
    longest = max((e.edge.delay for e in edges), default=0)
    if not longest:
        return None
    return {"longest": longest, "edges": [e.edge.name for e in edges if e.edge.delay], "rule": DELAY_RELAYS,
            "limits": {chip.name: dataclasses.asdict(chip.max_synaptic_delay_steps) for chip in chips
                       if chip.max_synaptic_delay_steps is not None}}


def graph_energy_report(report: dict[str, Any], model_path: Union[str, Path, NetxFile],
                        profiles: Sequence[Union[str, Path, Profile]] = DEFAULT_PROFILES) -> dict[str, Any]:
    """:func:`~spikereg.hardware.energy.energy_report` for a graph file: the same rows and counts, every edge
    costed (``counts.edges``), nonzero synapses only (``synapse_accounting``), delays as synaptic delays."""
    chips, procs = split_profiles(profiles)
    network = model_path if isinstance(model_path, NetxFile) else read_network(model_path)
    mappings = {chip.name: map_graph(network, chip) for chip in chips}
    mapping = next(iter(mappings.values()))
    spikes = _checked_spikes(report, mapping)
    input_spikes = check_count(report_field(report, "input_spikes"), "input spikes")
    time_steps = check_count(report_field(report, "time_steps"), "time steps")
    patches = run_patches(report)
    counts, edges = graph_activity(mapping, spikes)

    meta = load_model(network).metadata
    twin = twin_edge_macs(meta)
    missing = [e.edge.name for e in edges if e.edge.name not in twin]
    if missing:
        raise EnergyError(f"{mapping.path}: edge {missing[0]} is not in the metadata's topology")
    macs = sum(twin.values()) * patches
    io_bytes = twin_io_bytes(meta) * patches
    neuromorphic, conventional = priced(report, counts, time_steps, chips,
                                        {name: m.chips for name, m in mappings.items()}, procs, macs, io_bytes)
    names = mapping.names or [str(layer.index) for layer in mapping.layers]
    per_core = mapping.synaptic_memory_bits_per_core
    return {
        "per": "registration",
        "model": SECTION_MODEL,
        "synapse_accounting": NONZERO.to_dict(),
        "delays": delays_section(edges, chips),
        "counts": {
            **run_counts(counts, patches=patches, time_steps=time_steps, input_spikes=input_spikes,
                         layer_spikes=sum(spikes), macs=macs, io_bytes=io_bytes),
            "synops_zero_weights_not_charged": sum(e.zero_weights for e in edges),
            "synops_method": SYNOPS_METHOD,
            "layers": [
                {"index": layer.index, "name": names[layer.index], "type": layer.type, "neurons": layer.neurons,
                 "on_chip": layer.placement == "chip", "cores": layer.cores, "spikes": spikes[layer.index],
                 "synapses": layer.synapses, "nonzero_synapses": layer.nonzero_synapses,
                 "synaptic_memory_bits": layer.synaptic_memory_bits,
                 "events": sum(e.events for e in edges if e.edge.destination == layer.index),
                 "synops_effective": sum(e.nonzero for e in edges if e.edge.destination == layer.index),
                 "synops_zero_weights_not_charged": sum(e.zero_weights for e in edges
                                                        if e.edge.destination == layer.index)}
                for layer in mapping.layers
            ],
            "edges": [
                {"index": e.edge.index, "name": e.edge.name, "source": e.edge.source,
                 "destination": e.edge.destination, "type": e.edge.type, "delay": e.edge.delay,
                 "source_neurons": e.edge.source_neurons, "synapses": e.edge.synapses,
                 "nonzero_synapses": e.edge.nonzero_synapses, "fan_in": e.edge.fan_in,
                 "synaptic_memory_bits": e.edge.synaptic_memory_bits,
                 "synaptic_memory_cores": e.edge.synaptic_memory_bits / per_core if per_core else None,
                 "fanout": e.fanout, "nonzero_fanout": e.nonzero_fanout, "events": e.events,
                 "synops_effective": e.nonzero, "synops_zero_weights_not_charged": e.zero_weights,
                 "synop_j": {chip.name: e.nonzero * float(chip.energy_per_synop_pj.value) * PJ for chip in chips},
                 "ann_macs": twin[e.edge.name] * patches}
                for e in edges
            ],
            # what crosses the host link: the input node's messages in, the readout's out
            "snn_host_spikes_in": spikes[0],
            "snn_host_spikes_out": spikes[-1],
        },
        "neuromorphic": neuromorphic,
        "conventional": conventional,
    }


# -- the streamed schedule --------------------------------------------------------------


def graph_loads(mapping: GraphMappingReport, edges: Sequence[EdgeSynops], spikes: Sequence[int],
                lengths: dict[str, int], window: int, patches: int) -> list[LayerLoad]:
    """Each on-chip node's cores, neurons and mean work per patch at each step of the window.

    A node sends its messages at its path length ``L`` (steps after the
    input's); an edge's synops fall on the destination's cores when its
    source's messages arrive, at ``L(source) + 1`` (a delayed edge's weighted
    input then waits in the dendritic accumulator).
    """
    names = mapping.names
    if max(lengths[name] for name in names) + 1 >= window:
        raise ScheduleError(f"the longest path ({max(lengths.values())} steps) does not end within the window "
                            f"of {window} steps")
    patches = max(1, patches)
    loads = []
    for layer in mapping.layers:
        if layer.placement != "chip" or not layer.neurons:
            continue
        synops, sent = [0.0] * window, [0.0] * window
        for e in edges:
            if e.edge.destination == layer.index:
                synops[lengths[names[e.edge.source]] + 1] += e.nonzero / patches
        sent[lengths[names[layer.index]]] = spikes[layer.index] / patches
        loads.append(LayerLoad(name=names[layer.index], cores=layer.cores, neurons=layer.neurons, synops=synops,
                               spikes=sent))
    return loads


def graph_schedule(report: dict[str, Any], meta: dict[str, Any], mapping: GraphMappingReport,
                   edges: Sequence[EdgeSynops], spikes: Sequence[int], chip: NeuromorphicProfile, *, chips: int = 1,
                   step_seconds: Optional[float] = None) -> Schedule:
    """The registration's schedule on ``chips`` chips (more if one copy spans chips): :data:`FROM_REST`."""
    figures = schedule_figures(chip)
    passes = passes_of(report)
    patches = max(1, sum(passes))
    window = int(meta["window"])
    per_spike = float(figures["host_bytes_per_spike"].value)
    schedule = plan(
        graph_loads(mapping, edges, spikes, meta["path_lengths"], window, patches),
        window=window, patches_per_pass=passes, cores_per_copy=mapping.cores,
        cores_per_chip=int(chip.cores_per_chip.value), times=OpTimes.of(chip), chips=chips,
        input_bytes_per_patch=spikes[0] / patches * per_spike, output_bytes_per_patch=spikes[-1] / patches * per_spike,
        link_bit_s=float(figures["host_link_gbit_s"].value) * 1e9, step_seconds=step_seconds, drain_steps=0,
        span_chips=True)
    return dataclasses.replace(schedule, notes=[FROM_REST, *schedule.notes])


def graph_streamed_rows(report: dict[str, Any], model_path: Union[str, Path, NetxFile], chip: NeuromorphicProfile,
                        chips: int = 1) -> dict[str, dict[str, Any]]:
    """:func:`~spikereg.hardware.streamed.streamed_rows` for a graph file: the streamed row and PilotNet's-step
    sensitivity row, on the graph mapping's cores and the file's window."""
    network = model_path if isinstance(model_path, NetxFile) else read_network(model_path)
    mapping = map_graph(network, chip)
    spikes = _checked_spikes(report, mapping)
    counts, edges = graph_activity(mapping, spikes)
    meta = load_model(network).metadata
    return schedule_rows(counts, chip, lambda step: graph_schedule(report, meta, mapping, edges, spikes, chip,
                                                                   chips=chips, step_seconds=step))
