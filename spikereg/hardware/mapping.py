"""Size a lava-dl netx HDF5 network against a neuromorphic chip profile.

:func:`map_network` reads the network file (:mod:`spikereg.netx_file`, no Lava import) and counts,
layer by layer, what a chip would have to hold: neurons, synapses (connections,
zeros included), nonzero synapses, fan-in, synaptic memory and cores. It records
every limit the network exceeds in ``MappingReport.problems``; :func:`check_fits`
raises one :class:`MappingError` listing them.

The file format is described in :mod:`spikereg.netx_file`.

The mapping model (deliberately simple and stated so its numbers can be checked):

* **Neurons** per layer are the product of its ``shape``. An ``input`` layer holds
  neurons only when it has a ``neuron`` group (netx then builds an ``Input``
  block whose neurons are driven through their bias); otherwise it only
  declares the input shape. ``flatten`` layers hold nothing.
* **Host I/O.** A sigma-delta (SDNN) ``input`` layer does not run on neurocores:
  on Loihi 2 its work -- sending each input's change once it passes the
  layer's threshold -- is done on the host by Lava's ``DeltaEncoder`` and the
  result enters the chip through the embedded I/O adapter
  (``PyToN3ConvAdapter``), as lava-dl's SDNN tutorials and SpikeReg's loihi2
  backend (``lava_export.runner``) run it; netx is told to skip the layer.
  Its row keeps its neurons (the encoder's values) with placement ``host``, no
  cores and no chip checks; the totals of neurons, cores and chips count chip
  layers only.
* **Synapses** are connections, zero weights included. Conv layers count exactly
  the in-bounds connections given stride, padding and dilation: output position
  ``o`` and kernel tap ``k`` connect to input ``o*stride - padding + k*dilation``
  along each axis when that index lies inside the input. Taps that fall on padding
  connect to nothing and are not counted. Dense layers count ``out x in`` (plus
  ``out x out`` recurrent weights for ``dense_rec``).
* **Nonzero synapses** are the connections whose quantized weight is nonzero;
  structural zeros, such as the zero depth blocks of a depth-folded 3-D
  convolution (:mod:`spikereg.networks.folding`), appear as zeros here.
* **Synaptic memory** is stored per connection: ``synapses x (weight_bits +
  delay_bits)``, zeros included (a dense or conv weight matrix is stored whole,
  as stock netx builds it: ``synapses="conv"``,
  :data:`~spikereg.hardware.rules.DENSE`), with ``delay_bits`` the bits of the
  largest synaptic delay when the layer has delays. Built with
  ``synapses="sparse"`` (every layer a Lava ``Sparse`` of its nonzero weights,
  :data:`~spikereg.hardware.rules.NONZERO`) only the nonzero synapses are
  stored: ``nonzero x (weight_bits + delay_bits)``, so the cores follow the
  nonzero synapses. This is conservative for convolutions -- it assumes no weight sharing
  between output positions, which Loihi 2 may be able to exploit -- and ignores
  synapse index and format overhead, which makes it optimistic for sparse formats.
  ``weight_bits`` is the profile's maximum; netx may pack a layer in fewer bits.
* **Cores** per layer = ``max(ceil(neurons / neurons_per_core),
  ceil(memory / synaptic_memory_per_core))``, at least 1 for a layer with neurons.
  Layers do not share cores. Input axons per core and output axons are not
  modelled beyond the per-neuron fan-in check below.
* **Fan-in** is the largest number of synapses onto one neuron that the chip
  holds, by the same accounting as synaptic memory
  (:meth:`~spikereg.hardware.rules.SynapseAccounting.fan_in`). Dense accounting
  (``synapses="conv"``): ``in_channels / groups x kh x kw`` for a conv layer (an
  interior neuron), zero weights included, ``in_features`` for a dense layer
  (plus ``out`` for ``dense_rec``). Nonzero accounting (``synapses="sparse"``):
  the most nonzero weights onto one neuron (a conv layer: the output channel
  with the most nonzero weights, an interior neuron; a dense layer: the weight
  row with the most), so the zero depth blocks of depth folding do not count.
  It must not exceed the profile's ``max_fan_in``, and one neuron's synapses
  must fit one core's synaptic memory.
* **Chips** = ``ceil(cores / cores_per_chip)``; the network fits one chip when its
  cores do not exceed ``cores_per_chip``.
* **Registers.** Every weight, ``vThMant``, ``iDecay`` and ``vDecay`` the chip
  cannot hold exactly is a problem, by the table in :mod:`spikereg.hardware.rules`
  that export's precision check also reads, in the same words.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from spikereg.hardware.netx_layers import MappingError, NetxLayer, layer_indices, read_network, unreadable
from spikereg.hardware.profiles import NeuromorphicProfile, ProfileError, load_profile
from spikereg.hardware.rules import DENSE, SynapseAccounting, exponent_problem, layer_problems, synapse_accounting
from spikereg.hardware.synapses import Counts, count_conv, count_dense, synapse_delay_bits
from spikereg.netx_file import (
    NETX_LOADABLE_TYPES,
    NETX_UNSUPPORTED_TYPES,
    Group,
    NetxFile,
    is_group,
    netx_text,
)


@dataclass
class LayerMap:
    """What one netx layer needs on the chip (see the module docstring for the model)."""

    index: int
    type: str
    neurons: int
    synapses: int
    nonzero_synapses: int
    fan_in: int  # the fan-in the chip holds: dense or nonzero, as synaptic memory (rules.SynapseAccounting.fan_in)
    synaptic_memory_bits: int
    cores: int
    shape: tuple[int, ...] = ()
    placement: str = "chip"  # "chip": neurocores; "host": the host's delta encoder + embedded I/O (SDNN input)


@dataclass
class MappingReport:
    """A network sized against one neuromorphic profile; ``problems`` lists exceeded limits."""

    layers: list[LayerMap]
    total_neurons: int  # on neurocores; host_neurons apart
    total_synapses: int
    total_nonzero: int
    cores: int
    chips: int
    fits_one_chip: bool
    profile_name: str
    problems: list[str]
    total_synaptic_memory_bits: int = 0
    notes: list[str] = field(default_factory=list)
    path: str = ""
    neurons_per_core: int = 0
    synaptic_memory_bits_per_core: int = 0
    cores_per_chip: int = 0
    host_neurons: int = 0  # layers run on the host and its embedded I/O (an SDNN input), not on neurocores
    synapse_accounting: str = DENSE.name  # which synapses synaptic memory holds: "dense" or "nonzero" (rules)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (layers as a list of dicts)."""
        data = asdict(self)
        for layer in data["layers"]:
            layer["shape"] = list(layer["shape"])
        return data

    def to_text(self) -> str:
        """A readable table: one row per layer, totals, the chip verdict, problems, notes."""
        header = (
            f"{'idx':>3}  {'type':<10} {'shape':<14} {'neurons':>9} {'synapses':>11} "
            f"{'nonzero':>11} {'fan-in':>7} {'memory KiB':>11} {'cores':>6}"
        )
        lines = [
            f"Mapping of {self.path or 'network'} onto {self.profile_name} "
            f"({self.neurons_per_core} neurons/core, "
            f"{self.synaptic_memory_bits_per_core / 8192:.1f} KiB synaptic memory/core, "
            f"{self.cores_per_chip} cores/chip)",
        ]
        if self.synapse_accounting != DENSE.name:  # the default (every synapse stored) keeps its table as it was
            lines.append(f"synapse accounting: {self.synapse_accounting} (synaptic memory holds the nonzero synapses "
                         "only, as Lava Sparse lists of the nonzero weights hold them: see the notes)")
        lines += [header, "-" * len(header)]
        for lm in self.layers:
            shape = "x".join(str(s) for s in lm.shape) or "-"
            cores = "host" if lm.placement == "host" else lm.cores
            lines.append(
                f"{lm.index:>3}  {lm.type:<10} {shape:<14} {lm.neurons:>9} {lm.synapses:>11} "
                f"{lm.nonzero_synapses:>11} {lm.fan_in:>7} "
                f"{lm.synaptic_memory_bits / 8192:>11.1f} {cores:>6}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"{'':>3}  {'total':<10} {'':<14} {self.total_neurons:>9} {self.total_synapses:>11} "
            f"{self.total_nonzero:>11} {'':>7} "
            f"{self.total_synaptic_memory_bits / 8192:>11.1f} {self.cores:>6}"
        )
        if self.host_neurons:
            lines.append(f"host I/O: {self.host_neurons} neurons run on the host, not on neurocores "
                         "(not in the total)")
        density = self.total_nonzero / self.total_synapses if self.total_synapses else 0.0
        verdict = "fits on one chip" if self.fits_one_chip else "does NOT fit on one chip"
        lines.append(
            f"nonzero fraction {density:.3f}; {self.cores} cores of {self.cores_per_chip} per chip "
            f"-> {self.chips} chip(s): {verdict}"
        )
        lines.append("problems: " + ("none" if not self.problems else ""))
        lines.extend(f"  - {p}" for p in self.problems)
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  - {n}" for n in self.notes)
        return "\n".join(lines)


def check_fits(report: MappingReport) -> None:
    """Raise :class:`MappingError` naming every exceeded limit; return quietly if none."""
    if report.problems:
        where = f"{report.path}: " if report.path else ""
        raise MappingError(
            f"{where}network does not fit {report.profile_name}: " + "; ".join(report.problems)
        )


def _neuron_checks(layer: NetxLayer, profile: NeuromorphicProfile, problems: list[str]) -> None:
    """Graded spikes of the layer's ``neuron`` group against the chip (registers: :mod:`.rules`)."""
    if "neuron" not in layer.group or not is_group(layer.group["neuron"]):
        return
    neuron = layer.group["neuron"]
    tag = f"layer {layer.index} ({layer.kind})"
    name = profile.name

    def value(key: str) -> Optional[np.ndarray]:
        return layer.array(f"neuron/{key}") if key in neuron else None

    neuron_type = netx_text(value("type")) if "type" in neuron else ""
    graded = value("gradedSpike")
    message_bits = value("messageBits")
    uses_graded = neuron_type == "SDNN" or (graded is not None and bool(np.any(graded)))
    bits = int(np.max(message_bits)) if message_bits is not None and message_bits.size else 0
    uses_graded = uses_graded or bits > 0
    payload = int(profile.graded_spike_payload_bits.value)
    if uses_graded and payload == 0:
        problems.append(f"{tag}: uses graded spikes, {name} has none (graded_spike_payload_bits 0)")
    elif bits > payload:
        problems.append(f"{tag}: messageBits {bits} exceeds {name} graded_spike_payload_bits {payload}")


def _is_sigma_delta(layer: NetxLayer) -> bool:
    """True for a layer whose ``neuron`` group is netx's sigma-delta neuron (``type`` SDNN)."""
    return "neuron/type" in layer.group and netx_text(layer.array("neuron/type")) == "SDNN"


# -- the report ---------------------------------------------------------------------


def _as_profile(profile: Union[NeuromorphicProfile, str, Path]) -> NeuromorphicProfile:
    if isinstance(profile, (str, Path)):
        profile = load_profile(profile)
    if not isinstance(profile, NeuromorphicProfile):
        name = getattr(profile, "name", repr(profile))
        raise ProfileError(
            f"profile {name!r} is {getattr(profile, 'category', type(profile).__name__)}; "
            "mapping needs a neuromorphic profile (e.g. loihi1, loihi2)"
        )
    return profile


def _map_layers(
    f: Group,
    path: Path,
    chip: NeuromorphicProfile,
    layers: list[LayerMap],
    problems: list[str],
    notes: list[str],
    accounting: SynapseAccounting = DENSE,
) -> None:
    """Append one :class:`LayerMap` per netx layer of ``f``, and the problems and notes found;
    synaptic memory holds the synapses ``accounting`` stores."""
    npc = int(chip.neurons_per_core.value)
    mem_per_core = int(chip.synaptic_memory_bits_per_core.value)
    max_fan_in = int(chip.max_fan_in.value)
    weight_bits = int(chip.weight_bits.value)
    if "layer" not in f or not is_group(f["layer"]):
        found = ", ".join(sorted(f.keys())) or "nothing"
        raise MappingError(
            f"{path}: not a netx network: no 'layer' group at the root (found: {found})"
        )
    group = f["layer"]
    in_shape: Optional[tuple[int, ...]] = None
    for index in layer_indices(group, path):
        node = group[str(index)]
        if not is_group(node):
            raise MappingError(f"{path}: layer {index}: expected a group, found a dataset")
        if "type" not in node:
            raise MappingError(f"{path}: layer {index}: missing dataset 'type'")
        try:
            kind = netx_text(node["type"][()])
        except (OSError, ValueError, TypeError) as err:
            raise MappingError(f"{path}: layer {index}: cannot read 'type': {err}") from None
        if kind in NETX_UNSUPPORTED_TYPES:
            raise MappingError(
                f"{path}: layer {index} has type {kind!r}, which lava-dl netx cannot load "
                f"(hdf5.Network raises NotImplementedError for {', '.join(NETX_UNSUPPORTED_TYPES)})"
            )
        if kind not in NETX_LOADABLE_TYPES:
            raise MappingError(
                f"{path}: layer {index} has unknown type {kind!r}; netx loads "
                f"{', '.join(NETX_LOADABLE_TYPES)}"
            )
        layer = NetxLayer(node, path, index, kind)

        placement = "chip"
        if kind == "input":
            shape = layer.shape()
            has_neurons = "neuron" in node  # netx builds an Input block only then
            counts = Counts(neurons=int(np.prod(shape)) if has_neurons else 0)
            out_shape = shape
            if has_neurons and _is_sigma_delta(layer):
                placement = "host"
                notes.append(
                    f"layer {index} (input): sigma-delta input, delta-encoded on the host (Lava's DeltaEncoder) "
                    "and sent to the chip through the embedded I/O adapter (PyToN3ConvAdapter), as SpikeReg's "
                    "loihi2 backend and lava-dl's SDNN tutorials run it: counted as host I/O, not neurocores"
                )
        elif kind == "flatten":
            shape = (int(np.prod(in_shape)),) if in_shape is not None else layer.shape()
            counts, out_shape = Counts(), shape
        elif kind == "conv":
            counts, out_shape = count_conv(layer, in_shape)
            shape = out_shape
        else:  # dense, dense_rec, dense_comp
            counts, out_shape = count_dense(layer, in_shape)
            shape = layer.shape()

        tag = f"layer {index} ({kind})"
        delay_bits = synapse_delay_bits(layer, notes) if counts.synapses else 0
        bits_per_synapse = weight_bits * counts.weight_copies + delay_bits
        memory = accounting.stored(counts.synapses, counts.nonzero) * bits_per_synapse
        fan_in = accounting.fan_in(counts.fan_in, counts.nonzero_fan_in)
        if counts.synapses and not accounting.zero_weights and kind != "conv":
            notes.append(f"{tag}: synapses counted as a Lava Sparse of its nonzero weights; LavaGraph builds a "
                         "chain's conv layers that way, not a dense layer: not verified on Lava")
        if counts.neurons and placement == "chip":
            _neuron_checks(layer, chip, problems)
            cores = max(math.ceil(counts.neurons / npc), math.ceil(memory / mem_per_core), 1)
        else:
            cores = 0
        # Every layer, host I/O included: the same registers export's check_precision refuses.
        problems.extend(f"{tag}: {p}" for p in layer_problems(node, chip))
        if fan_in > max_fan_in:
            problems.append(f"{tag}: fan-in {fan_in} exceeds {chip.name} max_fan_in {max_fan_in}")
        if fan_in * bits_per_synapse > mem_per_core:
            problems.append(
                f"{tag}: one neuron's {fan_in} synapses need {fan_in * bits_per_synapse} "
                f"bits, more than {chip.name}'s {mem_per_core} bits of synaptic memory per core"
            )
        layers.append(
            LayerMap(
                index=index,
                type=kind,
                neurons=counts.neurons,
                synapses=counts.synapses,
                nonzero_synapses=counts.nonzero,
                fan_in=fan_in,
                synaptic_memory_bits=memory,
                cores=cores,
                shape=tuple(int(s) for s in shape),
                placement=placement,
            )
        )
        in_shape = out_shape


def map_network(path: Union[str, Path, NetxFile], profile: Union[NeuromorphicProfile, str, Path],
                synapses: str = "conv") -> MappingReport:
    """Size the netx HDF5 network at ``path`` (or that file already read) against ``profile`` (a profile or its name).

    ``synapses`` says how the layers' synapses are built (:data:`~spikereg.hardware.rules.SYNAPSE_BUILDS`):
    ``"conv"`` (stock netx: Lava's Conv holds each folded weight whole, zeros stored,
    :data:`~spikereg.hardware.rules.DENSE`) or ``"sparse"`` (Lava's Sparse of the nonzero weights only,
    :data:`~spikereg.hardware.rules.NONZERO`): synaptic memory, and so the cores, follow it.
    Any other value raises :class:`MappingError`.

    Raises :class:`MappingError` when the file is missing, not HDF5, not a netx
    network, holds a layer type netx cannot load, or is internally inconsistent.
    Limits the network exceeds do not raise here: they go to ``report.problems``
    (see :func:`check_fits`).
    """
    accounting = synapse_accounting(False, synapses)
    chip = _as_profile(profile)
    model = path if isinstance(path, NetxFile) else None
    path = model.path if model is not None else Path(path)
    npc = int(chip.neurons_per_core.value)
    mem_per_core = int(chip.synaptic_memory_bits_per_core.value)
    cores_per_chip = int(chip.cores_per_chip.value)

    layers: list[LayerMap] = []
    problems: list[str] = []
    notes: list[str] = []
    exponent = exponent_problem(chip)
    if exponent is not None:
        problems.append(exponent)
    model = model if model is not None else read_network(path)
    try:
        _map_layers(model.root, path, chip, layers, problems, notes, accounting)
    except (OSError, RuntimeError, KeyError) as err:
        raise unreadable(path, err) from None

    if not accounting.zero_weights:
        notes.append(f"synapses stored: {accounting.name} only ({accounting.rule})")
    total_cores = sum(lm.cores for lm in layers)
    if total_cores > cores_per_chip:
        problems.append(f"network needs {total_cores} cores, {chip.name} has {cores_per_chip} per chip")
    return MappingReport(
        layers=layers,
        total_neurons=sum(lm.neurons for lm in layers if lm.placement == "chip"),
        total_synapses=sum(lm.synapses for lm in layers),
        total_nonzero=sum(lm.nonzero_synapses for lm in layers),
        cores=total_cores,
        chips=math.ceil(total_cores / cores_per_chip),
        fits_one_chip=total_cores <= cores_per_chip,
        profile_name=chip.name,
        problems=problems,
        total_synaptic_memory_bits=sum(lm.synaptic_memory_bits for lm in layers),
        notes=notes,
        path=str(path),
        neurons_per_core=npc,
        synaptic_memory_bits_per_core=mem_per_core,
        cores_per_chip=cores_per_chip,
        host_neurons=sum(lm.neurons for lm in layers if lm.placement == "host"),
        synapse_accounting=accounting.name,
    )

