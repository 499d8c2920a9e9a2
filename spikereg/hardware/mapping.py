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
  delay_bits)``, zeros included (a dense or conv weight matrix is stored whole),
  with ``delay_bits`` the bits of the largest synaptic delay when the layer has
  delays. This is conservative for convolutions -- it assumes no weight sharing
  between output positions, which Loihi 2 may be able to exploit -- and ignores
  synapse index and format overhead, which makes it optimistic for sparse formats.
  ``weight_bits`` is the profile's maximum; netx may pack a layer in fewer bits.
* **Cores** per layer = ``max(ceil(neurons / neurons_per_core),
  ceil(memory / synaptic_memory_per_core))``, at least 1 for a layer with neurons.
  Layers do not share cores. Input axons per core and output axons are not
  modelled beyond the per-neuron fan-in check below.
* **Fan-in** is the largest number of synapses onto one neuron: ``in_channels /
  groups x kh x kw`` for a conv layer (an interior neuron), ``in_features`` for a
  dense layer. It must not exceed the profile's ``max_fan_in``.
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

from spikereg.errors import SpikeRegError
from spikereg.hardware.profiles import NeuromorphicProfile, ProfileError, load_profile
from spikereg.hardware.rules import exponent_problem, layer_problems
from spikereg.netx_file import (
    NETX_LOADABLE_TYPES,
    NETX_UNSUPPORTED_TYPES,
    Group,
    NetxFile,
    NetxOpenError,
    is_dataset,
    is_group,
    is_hdf5,
    netx_text,
    read_netx,
)

#: netx clamps synaptic delays to this many time steps (``hdf5.py``, ``create_dense``).
NETX_MAX_DELAY = 62


class MappingError(SpikeRegError, ValueError):
    """A netx file that cannot be mapped, or a network that exceeds a chip's limits."""


@dataclass
class LayerMap:
    """What one netx layer needs on the chip (see the module docstring for the model)."""

    index: int
    type: str
    neurons: int
    synapses: int
    nonzero_synapses: int
    fan_in: int
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
            header,
            "-" * len(header),
        ]
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


# -- reading the file ---------------------------------------------------------------


class _Layer:
    """Reads one ``layer/<i>`` group; every failure names the file, layer and dataset."""

    def __init__(self, group: Group, path: Path, index: int, kind: str) -> None:
        self.group = group
        self.path = path
        self.index = index
        self.kind = kind

    def error(self, message: str) -> MappingError:
        return MappingError(f"{self.path}: layer {self.index} ({self.kind}): {message}")

    def has(self, name: str) -> bool:
        return name in self.group

    def array(self, name: str) -> np.ndarray:
        if name not in self.group:
            raise self.error(f"missing dataset {name!r}")
        try:
            node = self.group[name]  # a dataset h5py could not read raises its error here
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
            raise self.error(f"cannot read dataset {name!r} (truncated or corrupt file?): {err}") from None
        if not is_dataset(node):
            raise self.error(f"{name!r} is a group, expected a dataset")
        return np.asarray(node[()])

    def numbers(self, name: str) -> np.ndarray:
        data = self.array(name)
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
            raise self.error(f"dataset {name!r} holds {data.dtype}, expected numbers")
        return data

    def ints(self, name: str) -> tuple[int, ...]:
        data = self.numbers(name).reshape(-1)
        if data.size == 0 or not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise self.error(f"dataset {name!r} must hold integers, got {data.tolist()}")
        return tuple(int(v) for v in data)

    def scalar_int(self, name: str) -> int:
        values = self.ints(name)
        if len(values) != 1:
            raise self.error(f"dataset {name!r} must be one integer, got {list(values)}")
        return values[0]

    def pair(self, name: str) -> tuple[int, int]:
        """A conv parameter as (height, width): SLAYER writes a scalar or (h, w)."""
        values = self.ints(name)
        if len(values) == 1:
            return values[0], values[0]
        if len(values) == 2:
            return values[0], values[1]
        raise self.error(f"dataset {name!r} must be one or two integers (h, w), got {list(values)}")

    def shape(self) -> tuple[int, ...]:
        shape = self.ints("shape")
        if any(s <= 0 for s in shape):
            raise self.error(f"dataset 'shape' must hold positive sizes, got {list(shape)}")
        return shape


def read_network(path: Union[str, Path]) -> NetxFile:
    """The netx file at ``path`` read whole (:func:`spikereg.netx_file.read_netx`); a :class:`MappingError`
    for a file that is missing, not HDF5, or cannot be opened or read."""
    path = Path(path)
    if not path.exists():
        raise MappingError(f"{path}: network file not found")
    if path.is_dir():
        raise MappingError(f"{path}: is a directory, expected a netx HDF5 file")
    if not is_hdf5(path):
        raise MappingError(
            f"{path}: not an HDF5 file (no HDF5 signature); expected a lava-dl netx export"
        )
    try:
        return read_netx(path)
    except NetxOpenError as err:
        raise MappingError(f"{path}: cannot open HDF5 file (truncated or corrupt?): {err.detail}") from None
    except (OSError, RuntimeError, KeyError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: BaseException) -> MappingError:
    # h5py reports damaged object headers, B-trees and heaps this way.
    detail = err.args[0] if isinstance(err, KeyError) and err.args else err
    return MappingError(f"{path}: cannot read HDF5 file (corrupt?): {detail}")


def _layer_indices(layers: Group, path: Path) -> list[int]:
    names = list(layers.keys())
    if not names:
        raise MappingError(f"{path}: not a netx network: the 'layer' group is empty")
    if not all(n.isdigit() for n in names):
        bad = [n for n in names if not n.isdigit()]
        raise MappingError(
            f"{path}: not a netx network: 'layer' holds groups named {bad}, expected '0', '1', ..."
        )
    indices = sorted(int(n) for n in names)
    if indices != list(range(len(indices))):
        raise MappingError(
            f"{path}: not a netx network: layer groups must be numbered 0..{len(indices) - 1} "
            f"without gaps (netx reads them in order), found {indices}"
        )
    return indices


# -- per-layer counting -------------------------------------------------------------


def _taps_in_bounds(n_in: int, n_out: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """For each kernel tap along one axis, how many output positions it connects to an input.

    Output ``o`` and tap ``k`` read input ``o*stride - padding + k*dilation``; the tap
    is a real connection only when that index lies in ``[0, n_in)``.
    """
    index = np.arange(n_out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    return ((index >= 0) & (index < n_in)).sum(axis=0)


def _conv_out(n_in: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output length (SLAYER convolves with torch)."""
    return (n_in + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass
class _Counts:
    neurons: int = 0
    synapses: int = 0
    nonzero: int = 0
    fan_in: int = 0
    weight_copies: int = 1  # complex dense layers store a real and an imaginary weight


def _count_conv(layer: _Layer, in_shape: Optional[tuple[int, ...]]) -> tuple[_Counts, tuple[int, ...]]:
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
    expected = (c_out, _conv_out(h_in, kh, sh, ph, dh), _conv_out(w_in, kw, sw, pw, dw))
    shape = layer.shape()
    if shape != expected:
        raise layer.error(
            f"shape {list(shape)} does not match the convolution of a {list(in_shape)} input "
            f"(expected {list(expected)})"
        )
    taps = np.outer(
        _taps_in_bounds(h_in, expected[1], kh, sh, ph, dh),
        _taps_in_bounds(w_in, expected[2], kw, sw, pw, dw),
    )  # (kh, kw): output positions each tap connects, for one (out, in) channel pair
    counts = _Counts(
        neurons=int(np.prod(shape)),
        synapses=int(c_out * c_in_group * taps.sum()),
        nonzero=int(((weight != 0).sum(axis=(0, 1)) * taps).sum()),
        fan_in=c_in_group * kh * kw,
    )
    return counts, shape


def _count_dense(layer: _Layer, in_shape: Optional[tuple[int, ...]]) -> tuple[_Counts, tuple[int, ...]]:
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
    counts = _Counts(
        neurons=n_out,
        synapses=n_out * n_in,
        nonzero=int(mask.sum()),
        fan_in=n_in,
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
    return counts, (n_out,)


def _neuron_checks(layer: _Layer, profile: NeuromorphicProfile, problems: list[str]) -> None:
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


def _is_sigma_delta(layer: _Layer) -> bool:
    """True for a layer whose ``neuron`` group is netx's sigma-delta neuron (``type`` SDNN)."""
    return "neuron/type" in layer.group and netx_text(layer.array("neuron/type")) == "SDNN"


def _delay_bits(layer: _Layer, notes: list[str]) -> int:
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
) -> None:
    """Append one :class:`LayerMap` per netx layer of ``f``, and the problems and notes found."""
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
    for index in _layer_indices(group, path):
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
        layer = _Layer(node, path, index, kind)

        placement = "chip"
        if kind == "input":
            shape = layer.shape()
            has_neurons = "neuron" in node  # netx builds an Input block only then
            counts = _Counts(neurons=int(np.prod(shape)) if has_neurons else 0)
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
            counts, out_shape = _Counts(), shape
        elif kind == "conv":
            counts, out_shape = _count_conv(layer, in_shape)
            shape = out_shape
        else:  # dense, dense_rec, dense_comp
            counts, out_shape = _count_dense(layer, in_shape)
            shape = layer.shape()

        tag = f"layer {index} ({kind})"
        delay_bits = _delay_bits(layer, notes) if counts.synapses else 0
        bits_per_synapse = weight_bits * counts.weight_copies + delay_bits
        memory = counts.synapses * bits_per_synapse
        if counts.neurons and placement == "chip":
            _neuron_checks(layer, chip, problems)
            cores = max(math.ceil(counts.neurons / npc), math.ceil(memory / mem_per_core), 1)
        else:
            cores = 0
        # Every layer, host I/O included: the same registers export's check_precision refuses.
        problems.extend(f"{tag}: {p}" for p in layer_problems(node, chip))
        if counts.fan_in > max_fan_in:
            problems.append(f"{tag}: fan-in {counts.fan_in} exceeds {chip.name} max_fan_in {max_fan_in}")
        if counts.fan_in * bits_per_synapse > mem_per_core:
            problems.append(
                f"{tag}: one neuron's {counts.fan_in} synapses need {counts.fan_in * bits_per_synapse} "
                f"bits, more than {chip.name}'s {mem_per_core} bits of synaptic memory per core"
            )
        layers.append(
            LayerMap(
                index=index,
                type=kind,
                neurons=counts.neurons,
                synapses=counts.synapses,
                nonzero_synapses=counts.nonzero,
                fan_in=counts.fan_in,
                synaptic_memory_bits=memory,
                cores=cores,
                shape=tuple(int(s) for s in shape),
                placement=placement,
            )
        )
        in_shape = out_shape


def map_network(path: Union[str, Path, NetxFile], profile: Union[NeuromorphicProfile, str, Path]) -> MappingReport:
    """Size the netx HDF5 network at ``path`` (or that file already read) against ``profile`` (a profile or its name).

    Raises :class:`MappingError` when the file is missing, not HDF5, not a netx
    network, holds a layer type netx cannot load, or is internally inconsistent.
    Limits the network exceeds do not raise here: they go to ``report.problems``
    (see :func:`check_fits`).
    """
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
        _map_layers(model.root, path, chip, layers, problems, notes)
    except (OSError, RuntimeError, KeyError) as err:
        raise _unreadable(path, err) from None

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
    )

