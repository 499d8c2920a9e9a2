"""Hardware profiles: the numbers SpikeReg uses to size and cost a network on a chip.

A profile is a YAML file in the repository's ``hardware_profiles/`` folder (carried
inside the wheel as ``spikereg/hardware_profiles/``). Every
number in it is a *figure*: a mapping ``{value, unit, source, kind}`` so that no
value travels without the citation it came from and an honest label of how it was
obtained. ``kind`` is one of

* ``specified`` -- a design parameter published by the manufacturer or enforced by
  the toolchain (e.g. 128 cores per chip); not a measurement of anything;
* ``measured`` -- measured on fabricated silicon;
* ``pre-silicon`` -- from circuit simulation before the chip existed (Loihi 1's
  per-operation energies in Davies et al. 2018, Table 2, are of this kind);
* ``estimated`` -- derived by us (scaled, assumed or carried over); the ``source``
  says exactly how;
* ``lower-bound`` -- a figure that can only under-state what a real device does
  (45 nm per-operation arithmetic energies with no device, idle power or memory
  system); a row computed from one is a lower bound.

Three categories of profile exist: ``neuromorphic`` (Loihi 1, Loihi 2), which the
mapping report (:mod:`spikereg.hardware.mapping`) sizes a netx network against,
``conventional`` (CPU, GPU), which hold per-operation energies for a
multiply-accumulate baseline, and ``device`` (:mod:`spikereg.hardware.device`):
a whole conventional device's power and throughput on the ANN twin, measured
(``benchmarks/gpu_energy.py``, NVML) or from a data sheet. Some fields are
optional (``_OPTIONAL``): a profile may leave them out, but a figure that is
given is checked like any other.

Loading validates everything and fails on the first problem with a one-line
:class:`ProfileError` that names the file and the field: a missing or unknown
field (typos are never ignored), a value of the wrong type or sign, a unit that is
not the one the field is defined in, an empty source or an unknown kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from spikereg.errors import SpikeRegError
from spikereg.resources import shipped_dir

#: Where the shipped profiles live: ``<repo>/hardware_profiles`` in a checkout (or an
#: editable install), ``spikereg/hardware_profiles`` inside an installed wheel
#: (:mod:`spikereg.resources`).
PROFILE_DIR: Path = shipped_dir("hardware_profiles")

#: The allowed values of a figure's ``kind`` (see the module docstring).
KINDS: tuple[str, ...] = ("specified", "measured", "pre-silicon", "estimated", "lower-bound")

#: The allowed values of ``reset_interval_rule``.
RESET_INTERVAL_RULES: tuple[str, ...] = ("power_of_two", "any_positive")

#: The allowed values of a conventional profile's ``default_precision``.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

_FIGURE_KEYS: tuple[str, ...] = ("value", "unit", "source", "kind")


class ProfileError(SpikeRegError, ValueError):
    """A bad hardware profile; the one-line message names the file and the field."""


@dataclass(frozen=True)
class Figure:
    """One number (or enumerated setting) with its unit, citation and provenance."""

    value: Union[float, int, str]
    unit: str
    source: str
    kind: str


@dataclass(frozen=True)
class NeuromorphicProfile:
    """Capacity, precision and energy of one neuromorphic chip (see ``hardware_profiles/``).

    Capacity fields are per core unless their name says otherwise. ``max_fan_in``
    is the number of distinct input axons one core can receive, which bounds the
    fan-in of every neuron on it; ``max_fan_out`` is the number of output axons one
    core can send. Energies are per event: one synaptic operation, one neuron
    (compartment) update of an active or idle neuron, one spike delivered within a
    tile, one extra mesh hop. ``static_power_mw`` is per chip.
    """

    name: str
    description: str
    neurons_per_core: Figure
    cores_per_chip: Figure
    synaptic_memory_bits_per_core: Figure
    max_fan_in: Figure
    max_fan_out: Figure
    weight_bits: Figure
    weight_exponent_min: Figure
    weight_exponent_max: Figure
    threshold_bits: Figure
    decay_bits: Figure
    state_bits: Figure
    graded_spike_payload_bits: Figure
    reset_interval_rule: Figure
    energy_per_synop_pj: Figure
    energy_per_neuron_update_pj: Figure
    energy_per_idle_neuron_update_pj: Figure
    energy_per_spike_pj: Figure
    energy_per_tile_hop_pj: Figure
    static_power_mw: Figure
    time_per_step_us: Figure
    # optional: the per-operation times and host link of the streamed schedule
    # (spikereg.hardware.loihi2_schedule); a profile without them gets no schedule
    time_per_synop_ns: Optional[Figure] = None
    time_per_neuron_update_ns: Optional[Figure] = None
    time_per_spike_ns: Optional[Figure] = None
    step_sync_us: Optional[Figure] = None
    host_link_gbit_s: Optional[Figure] = None
    energy_per_host_bit_pj: Optional[Figure] = None
    host_bytes_per_spike: Optional[Figure] = None
    # optional: the longest synaptic delay a synapse holds (graph files' delayed edges)
    max_synaptic_delay_steps: Optional[Figure] = None

    @property
    def category(self) -> str:
        """Always ``"neuromorphic"``."""
        return "neuromorphic"

    def figures(self) -> dict[str, Figure]:
        """Every figure of the profile, by field name, in file order."""
        return _figures_of(self)


@dataclass(frozen=True)
class ConventionalProfile:
    """Per-operation energies of a conventional processor (CPU or GPU) for a MAC baseline.

    The energies are for the arithmetic and the memory access alone, at the process
    node in ``process_node_nm``; instruction fetch, control and clocking overhead
    are not included, so energies computed from them are lower bounds.
    """

    name: str
    description: str
    process_node_nm: Figure
    default_precision: Figure
    energy_per_mac_pj: Figure
    energy_per_mac_fp16_pj: Figure
    energy_per_mac_int8_pj: Figure
    energy_per_sram_word_pj: Figure
    energy_per_dram_word_pj: Figure

    @property
    def category(self) -> str:
        """Always ``"conventional"``."""
        return "conventional"

    def figures(self) -> dict[str, Figure]:
        """Every figure of the profile, by field name, in file order."""
        return _figures_of(self)


@dataclass(frozen=True)
class DeviceProfile:
    """A whole conventional device running the ANN twin: its power and throughput.

    ``power_w`` is the device's mean power while it runs the twin (measured: the
    energy counter's joules over the run's seconds, idle included; published: the
    data sheet's power mode), ``macs_per_s`` the twin's MACs per second on it
    (measured on the workload, or a data-sheet peak), both at the best batch;
    ``*_batch1`` the same at one patch per call. Energy of ``n`` MACs =
    ``power_w x n / macs_per_s`` (:mod:`spikereg.hardware.device`).
    """

    name: str
    description: str
    device: Figure
    power_w: Figure
    macs_per_s: Figure
    idle_power_w: Optional[Figure] = None
    power_batch1_w: Optional[Figure] = None
    macs_per_s_batch1: Optional[Figure] = None
    best_batch: Optional[Figure] = None
    snn_power_w: Optional[Figure] = None
    snn_patches_per_s: Optional[Figure] = None
    workload: Optional[Figure] = None

    @property
    def category(self) -> str:
        """Always ``"device"``."""
        return "device"

    @property
    def measured(self) -> bool:
        """True when the energy it gives (power and throughput) was measured on the device."""
        return self.power_w.kind == "measured" and self.macs_per_s.kind == "measured"

    def figures(self) -> dict[str, Figure]:
        """Every figure of the profile, by field name, in file order."""
        return _figures_of(self)


Profile = Union[NeuromorphicProfile, ConventionalProfile, DeviceProfile]


def _figures_of(profile: Profile) -> dict[str, Figure]:
    return {f.name: getattr(profile, f.name) for f in fields(profile)
            if isinstance(getattr(profile, f.name), Figure)}


# -- value checks -------------------------------------------------------------------
# Each check returns None when the value is acceptable, or the expectation it failed
# ("a positive integer") for the error message.

Check = Callable[[Any], Union[str, None]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML true/false are not counts


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _positive_int(v: Any) -> Union[str, None]:
    return None if _is_int(v) and v > 0 else "a positive integer"


def _nonneg_int(v: Any) -> Union[str, None]:
    return None if _is_int(v) and v >= 0 else "a non-negative integer"


def _any_int(v: Any) -> Union[str, None]:
    return None if _is_int(v) else "an integer"


def _nonneg_number(v: Any) -> Union[str, None]:
    return None if _is_number(v) and v >= 0 else "a non-negative number"


def _positive_number(v: Any) -> Union[str, None]:
    return None if _is_number(v) and v > 0 else "a positive number"


def _text(v: Any) -> Union[str, None]:
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def _choice(options: tuple[str, ...]) -> Check:
    def check(v: Any) -> Union[str, None]:
        return None if v in options else "one of " + ", ".join(repr(o) for o in options)

    return check


@dataclass(frozen=True)
class _Spec:
    unit: str
    check: Check


_NEUROMORPHIC: dict[str, _Spec] = {
    "neurons_per_core": _Spec("neurons", _positive_int),
    "cores_per_chip": _Spec("cores", _positive_int),
    "synaptic_memory_bits_per_core": _Spec("bits", _positive_int),
    "max_fan_in": _Spec("axons", _positive_int),
    "max_fan_out": _Spec("axons", _positive_int),
    "weight_bits": _Spec("bits", _positive_int),
    "weight_exponent_min": _Spec("log2", _any_int),
    "weight_exponent_max": _Spec("log2", _any_int),
    "threshold_bits": _Spec("bits", _positive_int),
    "decay_bits": _Spec("bits", _positive_int),
    "state_bits": _Spec("bits", _positive_int),
    "graded_spike_payload_bits": _Spec("bits", _nonneg_int),
    "reset_interval_rule": _Spec("rule", _choice(RESET_INTERVAL_RULES)),
    "energy_per_synop_pj": _Spec("pJ", _nonneg_number),
    "energy_per_neuron_update_pj": _Spec("pJ", _nonneg_number),
    "energy_per_idle_neuron_update_pj": _Spec("pJ", _nonneg_number),
    "energy_per_spike_pj": _Spec("pJ", _nonneg_number),
    "energy_per_tile_hop_pj": _Spec("pJ", _nonneg_number),
    "static_power_mw": _Spec("mW", _nonneg_number),
    "time_per_step_us": _Spec("us", _positive_number),
}

_CONVENTIONAL: dict[str, _Spec] = {
    "process_node_nm": _Spec("nm", _positive_number),
    "default_precision": _Spec("format", _choice(PRECISIONS)),
    "energy_per_mac_pj": _Spec("pJ", _nonneg_number),
    "energy_per_mac_fp16_pj": _Spec("pJ", _nonneg_number),
    "energy_per_mac_int8_pj": _Spec("pJ", _nonneg_number),
    "energy_per_sram_word_pj": _Spec("pJ", _nonneg_number),
    "energy_per_dram_word_pj": _Spec("pJ", _nonneg_number),
}

_DEVICE: dict[str, _Spec] = {
    "device": _Spec("name", _text),
    "power_w": _Spec("W", _positive_number),
    "macs_per_s": _Spec("MAC/s", _positive_number),
}

_SCHEMAS: dict[str, tuple[type, dict[str, _Spec]]] = {
    "neuromorphic": (NeuromorphicProfile, _NEUROMORPHIC),
    "conventional": (ConventionalProfile, _CONVENTIONAL),
    "device": (DeviceProfile, _DEVICE),
}

#: Fields a profile of the category may leave out (None on the loaded profile).
_OPTIONAL: dict[str, dict[str, _Spec]] = {
    "neuromorphic": {
        "time_per_synop_ns": _Spec("ns", _positive_number),
        "time_per_neuron_update_ns": _Spec("ns", _positive_number),
        "time_per_spike_ns": _Spec("ns", _nonneg_number),
        "step_sync_us": _Spec("us", _nonneg_number),
        "host_link_gbit_s": _Spec("Gbit/s", _positive_number),
        "energy_per_host_bit_pj": _Spec("pJ", _nonneg_number),
        "host_bytes_per_spike": _Spec("bytes", _positive_number),
        "max_synaptic_delay_steps": _Spec("steps", _nonneg_int),
    },
    "conventional": {},
    "device": {
        "idle_power_w": _Spec("W", _nonneg_number),
        "power_batch1_w": _Spec("W", _positive_number),
        "macs_per_s_batch1": _Spec("MAC/s", _positive_number),
        "best_batch": _Spec("patches", _positive_int),
        "snn_power_w": _Spec("W", _positive_number),
        "snn_patches_per_s": _Spec("patches/s", _positive_number),
        "workload": _Spec("text", _text),
    },
}

_TOP_LEVEL = ("name", "description", "category")


# -- loading ------------------------------------------------------------------------


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``hardware_profiles/`` (empty if the folder is absent)."""
    if not PROFILE_DIR.is_dir():
        return []
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _resolve(name_or_path: Union[str, Path]) -> Path:
    """A bare name (``"loihi2"``) means a shipped profile; anything path-like is a file."""
    text = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path)
        or "/" in text
        or "\\" in text
        or text.endswith((".yaml", ".yml"))
    )
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileError(f"{path}: hardware profile file not found")
        return path
    if not PROFILE_DIR.is_dir():
        raise ProfileError(
            f"unknown hardware profile {text!r}: the profile folder {PROFILE_DIR} does not exist "
            "(this SpikeReg is installed without its shipped profiles); pass the path of a "
            "profile YAML file instead"
        )
    path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        available = ", ".join(available_profiles()) or "none"
        raise ProfileError(
            f"unknown hardware profile {text!r}; available: {available} (in {PROFILE_DIR})"
        )
    return path


def load_profile(name_or_path: Union[str, Path]) -> Profile:
    """Load and validate a hardware profile by shipped name (``"loihi2"``) or file path.

    Raises :class:`ProfileError` (one line naming the file and field) on any problem.
    """
    path = _resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise ProfileError(f"{path}: not valid YAML: {detail}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: cannot read: {err}") from None
    return parse_profile(data, path)


def parse_profile(data: Any, origin: Union[str, Path] = "<profile>") -> Profile:
    """Validate an already-parsed profile mapping; ``origin`` names it in error messages."""
    where = str(origin)
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a YAML mapping, got {_describe(data)}")

    for key in _TOP_LEVEL:
        if key not in data:
            raise ProfileError(f"{where}: missing field {key!r}")
    for key in ("name", "description"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise ProfileError(
                f"{where}: field {key!r}: expected a non-empty string, got {_describe(data[key])}"
            )
    category = data["category"]
    if category not in _SCHEMAS:
        raise ProfileError(
            f"{where}: field 'category': expected one of {', '.join(map(repr, _SCHEMAS))}, "
            f"got {_describe(category)}"
        )
    cls, schema = _SCHEMAS[category]
    optional = _OPTIONAL.get(category, {})

    # Unknown fields are errors so that a typo ("neurons_per_cor") cannot silently
    # leave the real field missing or be ignored.
    allowed = set(_TOP_LEVEL) | set(schema) | set(optional)
    for key in data:
        if key not in allowed:
            raise ProfileError(
                f"{where}: unknown field {key!r} for a {category} profile; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
    for key in schema:
        if key not in data:
            raise ProfileError(f"{where}: missing field {key!r}")

    values: dict[str, Any] = {"name": data["name"], "description": data["description"]}
    for key, spec in schema.items():
        values[key] = _parse_figure(data[key], key, spec, where)
    for key, spec in optional.items():
        if key in data:
            values[key] = _parse_figure(data[key], key, spec, where)

    if category == "neuromorphic":
        lo, hi = values["weight_exponent_min"].value, values["weight_exponent_max"].value
        if lo > hi:
            raise ProfileError(
                f"{where}: field 'weight_exponent_min.value': {lo} is greater than "
                f"weight_exponent_max {hi}"
            )
    return cls(**values)


def _parse_figure(raw: Any, key: str, spec: _Spec, where: str) -> Figure:
    if not isinstance(raw, dict):
        raise ProfileError(
            f"{where}: field {key!r}: expected a mapping with keys value, unit, source, kind; "
            f"got {_describe(raw)}"
        )
    for sub in _FIGURE_KEYS:
        if sub not in raw:
            what = " (every figure must cite its source)" if sub == "source" else ""
            raise ProfileError(f"{where}: missing field '{key}.{sub}'{what}")
    for sub in raw:
        if sub not in _FIGURE_KEYS:
            raise ProfileError(
                f"{where}: unknown field '{key}.{sub}'; a figure has only value, unit, source, kind"
            )

    value = raw["value"]
    expected = spec.check(value)
    if expected is not None:
        hint = ""
        if isinstance(value, str) and _looks_numeric(value):
            # PyYAML reads "1e-3" (no decimal point) as a string; say how to write it.
            hint = " (YAML reads this as text; write a plain number such as 1.0e-3)"
        raise ProfileError(
            f"{where}: field '{key}.value': expected {expected}, got {_describe(value)}{hint}"
        )

    unit = raw["unit"]
    if unit != spec.unit:
        raise ProfileError(
            f"{where}: field '{key}.unit': expected {spec.unit!r}, got {_describe(unit)}"
        )
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise ProfileError(
            f"{where}: field '{key}.source': expected a non-empty citation string, "
            f"got {_describe(source)}"
        )
    kind = raw["kind"]
    if kind not in KINDS:
        raise ProfileError(
            f"{where}: field '{key}.kind': expected one of {', '.join(KINDS)}, got {_describe(kind)}"
        )
    return Figure(value=value, unit=unit, source=" ".join(source.split()), kind=kind)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(value: Any) -> str:
    """``str 'many'`` / ``int -3`` / ``NoneType None``: the type and a short repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
