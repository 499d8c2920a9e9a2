"""What the spiking network did in one registration, in the units its energy is charged in.

The activity half of the energy model (:mod:`spikereg.hardware.energy` turns it
into joules); every count can be checked by hand:

* **Fan-out.** A spike of a presynaptic neuron is delivered over its outgoing
  synapses. Runs that counted spikes neuron by neuron (report.json's ``counts``
  section, :mod:`spikereg.registration.counts`) charge each spike the exact fan-out of
  the neuron that sent it, split into nonzero and zero weights. Otherwise only
  per-layer totals are known, and each presynaptic neuron is given the *mean*
  fan-out of its population: the synapses of layer ``l`` divided by the neurons
  of layer ``l-1`` (for layer 1, by the input size). That is exact for the total
  when spikes are spread evenly over a population; border neurons of a padded
  convolution have fewer synapses, and in a depth-folded convolution the
  neurons of the border depth slices have fewer nonzero blocks, so spikes that
  crowd there are miscounted.
* **Synaptic operations** of layer ``l`` = spikes arriving at it (the host's
  input spikes for layer 1, layer ``l-1``'s spikes otherwise) x that mean
  fan-out. They are split with the mapping's counts into *effective* synops
  (nonzero weights) and *structural zeros* (zero weights: the zero depth blocks
  of depth folding, plus any weight that quantised to zero). As stock netx
  builds a chain (``synapses="conv"``, :data:`~spikereg.hardware.rules.DENSE`)
  both are charged: the mapping stores a conv or dense weight matrix whole,
  zeros included, so the chip reads every stored synapse. The structural-zero
  share is reported apart so the cost of folding a 3-D convolution into Lava's
  2-D one is visible. Built with sparse synapses (``synapses="sparse"``,
  :data:`~spikereg.hardware.rules.NONZERO`) the zero weights are not stored:
  :func:`charged` takes their synops out of what is charged, and the report
  lists them apart as not charged.
* **Neuron updates** = neurons on chip x time steps run: Loihi updates every
  compartment of a core on every step. All are charged at the profile's
  *active* update energy, an upper bound for this term (idle neurons cost
  ``energy_per_idle_neuron_update_pj``; per-step activity per neuron is not
  recorded). Input neurons count only when the netx file puts them on chip; a
  sigma-delta input layer runs on the host (the mapping's ``host`` placement:
  a delta encoder feeding the chip through embedded I/O), so its neurons are
  not charged, while its spikes, the messages into the chip, are.
* **Spikes** = input spikes + every layer's spikes, one within-tile spike
  message each (``energy_per_spike_pj``); extra mesh hops and the host link are
  not modelled.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from spikereg.errors import SpikeRegError
from spikereg.hardware.mapping import MappingReport, map_network
from spikereg.hardware.profiles import NeuromorphicProfile
from spikereg.hardware.rules import SynapseAccounting
from spikereg.netx_file import NetxFile


class EnergyError(SpikeRegError, ValueError):
    """Counts that do not fit the network or the profile; the message is one line."""


# -- fan-out and synaptic operations ---------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """One spiking layer of a netx network and the synapses that feed it.

    ``index`` is the netx layer index (layer 0 is the input). ``source_neurons``
    is the size of the population whose spikes arrive here (the previous layer,
    or the network input for the first layer).
    """

    index: int
    type: str
    neurons: int
    source_neurons: int
    synapses: int
    nonzero_synapses: int
    on_chip: bool = True  # False: run on the host (an SDNN input's delta encoder), no neuron updates charged

    @property
    def fanout(self) -> float:
        """Mean synapses per presynaptic neuron, zero weights included."""
        return self.synapses / self.source_neurons

    @property
    def effective_fanout(self) -> float:
        """Mean nonzero-weight synapses per presynaptic neuron."""
        return self.nonzero_synapses / self.source_neurons


def costs_from_mapping(mapping: MappingReport) -> list[LayerCost]:
    """One :class:`LayerCost` per layer with neurons on chip, in order.

    These are exactly the layers netx builds as blocks (and so the rows of the
    report's layer table): ``flatten`` and an input without a ``neuron`` group
    hold no neurons and only pass their size on.
    """
    costs: list[LayerCost] = []
    source: Optional[int] = None
    for layer in mapping.layers:
        size = 1
        for s in layer.shape:
            size *= int(s)
        if layer.neurons:
            costs.append(LayerCost(
                index=layer.index,
                type=layer.type,
                neurons=layer.neurons,
                # an on-chip input block is driven by bias, not synapses: its own size is its source
                source_neurons=source if source is not None else size,
                synapses=layer.synapses,
                nonzero_synapses=layer.nonzero_synapses,
                on_chip=layer.placement == "chip",
            ))
        source = size
    if not costs:
        raise EnergyError(f"{mapping.path or 'network'}: no layer holds neurons, nothing to cost")
    return costs


def layer_fanout(path: Union[str, Path, NetxFile],
                 profile: Union[str, Path, NeuromorphicProfile] = "loihi2") -> list[LayerCost]:
    """Per-layer synapse counts and mean fan-out of the netx network at ``path``.

    The counts do not depend on the profile; ``map_network`` needs one only to
    size memory and cores, so any neuromorphic profile gives the same answer.
    """
    return costs_from_mapping(map_network(path, profile))


@dataclass(frozen=True)
class LayerSynops:
    """Synaptic operations into one layer: arriving spikes x mean fan-out."""

    index: int
    events: int
    effective: float
    structural_zeros: float

    @property
    def total(self) -> float:
        return self.effective + self.structural_zeros


def check_count(value: Any, what: str) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EnergyError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def synaptic_ops(spikes_per_layer: Sequence[int], input_spikes: int, costs: Sequence[LayerCost]) -> list[LayerSynops]:
    """Synops per layer: the input spikes drive layer 1, layer ``l``'s spikes drive layer ``l+1``.

    The last layer's spikes leave the chip (the readout) and drive no synapses.
    """
    if len(spikes_per_layer) != len(costs):
        raise EnergyError(
            f"{len(spikes_per_layer)} layer spike counts for a network of {len(costs)} spiking layers"
        )
    events = [check_count(input_spikes, "input spikes")]
    events += [check_count(s, f"spikes of layer {i}") for i, s in enumerate(spikes_per_layer[:-1], start=1)]
    return [
        LayerSynops(
            index=cost.index,
            events=n,
            effective=n * cost.effective_fanout,
            structural_zeros=n * (cost.fanout - cost.effective_fanout),
        )
        for n, cost in zip(events, costs)
    ]


@dataclass(frozen=True)
class Activity:
    """What the spiking network did in one registration, in the units energies are charged in."""

    synops: list[LayerSynops]
    neurons: int  # on chip, all layers
    spikes: int  # spike messages: input spikes + every layer's spikes
    layer_neurons: int = 0  # every layer's neurons, on chip or host (the spike rate's denominator)

    @property
    def effective_synops(self) -> float:
        return sum(s.effective for s in self.synops)

    @property
    def structural_zero_synops(self) -> float:
        return sum(s.structural_zeros for s in self.synops)


def activity(spikes_per_layer: Sequence[int], input_spikes: int, costs: Sequence[LayerCost]) -> Activity:
    """Synops, neurons and spike messages of a run (see the module docstring)."""
    synops = synaptic_ops(spikes_per_layer, input_spikes, costs)
    spikes = int(input_spikes) + sum(int(s) for s in spikes_per_layer)
    return Activity(synops=synops, neurons=sum(c.neurons for c in costs if c.on_chip), spikes=spikes,
                    layer_neurons=sum(c.neurons for c in costs))


def exact_activity(mean: Activity, measured: dict[str, Any], costs: Sequence[LayerCost]) -> Activity:
    """``mean`` with its synops replaced by those counted per neuron during the run.

    ``measured`` is report.json's ``counts`` section (:mod:`spikereg.registration.counts`):
    every spike times the exact fan-out of the neuron that sent it, rather than
    the layer's mean fan-out. Its events must be the ones the energy is charged
    for, so a section that disagrees with the report's spike totals is refused.
    """
    rows = measured.get("layers", [])
    if len(rows) != len(costs):
        raise EnergyError(f"report counts have {len(rows)} layers, the network {len(costs)} spiking layers")
    synops = []
    for row, cost, approx in zip(rows, costs, mean.synops):
        if check_count(row.get("events"), f"counted events of layer {row.get('layer')}") != approx.events:
            raise EnergyError(f"report counts: layer {row.get('layer')} received {row.get('events')} events, "
                              f"the report's spike totals say {approx.events}")
        synops.append(LayerSynops(index=cost.index, events=approx.events,
                                  effective=float(check_count(row.get("synops_effective"), "effective synops")),
                                  structural_zeros=float(check_count(row.get("synops_structural_zeros"),
                                                                "structural-zero synops"))))
    return Activity(synops=synops, neurons=mean.neurons, spikes=mean.spikes, layer_neurons=mean.layer_neurons)


def charged(counts: Activity, accounting: SynapseAccounting) -> Activity:
    """``counts`` as ``accounting`` charges them: unchanged where synapses on zero weights are stored
    (:data:`~spikereg.hardware.rules.DENSE`); otherwise every layer's zero-weight synops are dropped from
    the charged synops (the caller reports ``counts``' own as not charged)."""
    if accounting.zero_weights:
        return counts
    return replace(counts, synops=[replace(s, structural_zeros=0.0) for s in counts.synops])
