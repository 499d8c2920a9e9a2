"""Energy of one registration: the spiking network on a neuromorphic chip vs its ANN twin.

A plain functional core: counts in, joules out, every joule with the profile
figures (value, unit, source, kind) it was computed from. The counts come from
``report.json`` (spikes measured per layer on Lava, the host-encoded input
spikes, the time steps run) and from the netx file (synapses per layer, read by
:func:`spikereg.hardware.map_network`); the per-event energies come from the
cited profiles in ``hardware_profiles/``.

The model (deliberately simple, and stated so that every number can be checked
by hand):

* **Activity** (:mod:`spikereg.hardware.activity`): synaptic operations (exact
  per-neuron fan-out where the run counted it, else each layer's mean fan-out),
  split into effective ones and structural zeros, neuron updates and spike
  messages; every one of them is charged.
* **Static** = chip static power x chips the mapping needs x run time, the run
  time being time steps x the profile's ``time_per_step_us`` (a workload-specific
  figure), or the network time measured on the chip itself when the run was on
  that chip.
* **ANN twin** (:mod:`spikereg.networks.ann`): the same 3-D convolutions with
  rate units, run as real 3-D convolutions (no folding zeros) on the same
  patches. MACs = sum over layers of output voxels x c_out x c_in x k^3 per
  patch; data movement = the host's input patches in (fixed and moving, fp32)
  and control grids out (3 x g^3, fp32), each 32-bit word at the profile's DRAM
  energy. Weights and intermediate activations are assumed to stay on chip and
  the conventional profiles have no static power, so ANN energies are lower
  bounds.

The ``kind`` of a derived value is the weakest kind of the figures it uses:
specified < measured < pre-silicon < estimated < lower-bound.

report.json's energy section is :func:`spikereg.hardware.energy_section.energy_section`:
this module's rows, plus a Loihi 2 chip whose profile has per-operation times
costed on the run we would do there (copies in parallel, patches streamed:
:mod:`spikereg.hardware.streamed`; the sequential figure here stays beside it
as ``<chip>_sequential``), and whole conventional devices (measured with their
own energy counter, or from a data sheet: :mod:`spikereg.hardware.device_energy`)
beside the 45 nm rows, a measured one first and named in ``conventional_preferred``.

All of this is a sequential netx file's: by default its synapses are charged as
netx's Conv holds them, zero weights included (``synapses="conv"``,
:data:`~spikereg.hardware.rules.DENSE`); built with sparse synapses
(``synapses="sparse"``: Lava's Sparse of the nonzero weights only,
:data:`~spikereg.hardware.rules.NONZERO`), the mapping stores nonzero synapses
only and the synops on zero weights are reported apart
(``synops_zero_weights_not_charged``), not charged, in every row. A graph
file's run (a U-Net) is costed edge by edge, nonzero synapses only, by
:mod:`spikereg.hardware.graph_energy` with the same rows (:func:`priced`,
:func:`run_counts`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from spikereg.config import ModelConfig, config_from_dict
from spikereg.hardware.activity import (
    Activity,
    EnergyError,
    activity,
    charged,
    check_count,
    costs_from_mapping,
    exact_activity,
)
from spikereg.hardware.device import device_profile_names
from spikereg.hardware.mapping import map_network
from spikereg.hardware.netx_layers import read_network
from spikereg.hardware.profiles import (
    ConventionalProfile,
    Figure,
    NeuromorphicProfile,
    Profile,
    ProfileError,
    load_profile,
)
from spikereg.hardware.rules import synapse_accounting
from spikereg.networks.encoding import READOUT_CHANNELS
from spikereg.netx_file import NetxFile, load_model

#: The profiles ``spikereg run`` costs a registration on: the chips, the 45 nm bounds, and every
#: shipped device profile (a measured one, hardware_profiles/gpu_measured.yaml, when it exists).
DEFAULT_PROFILES: tuple[str, ...] = ("loihi2", "loihi1", "gpu", "cpu") + device_profile_names()

#: Kinds from strongest to weakest; a value derived from several figures takes the weakest.
KIND_ORDER: tuple[str, ...] = ("specified", "measured", "pre-silicon", "estimated", "lower-bound")

PJ = 1e-12  # J per pJ
MW = 1e-3  # W per mW
US = 1e-6  # s per us
WORD_BYTES = 4  # the profiles' memory energies are per 32-bit word
FLOAT_BYTES = 4  # the host and the ANN twin use float32

#: Which conventional figure holds the MAC energy of each precision.
MAC_FIGURE = {"fp32": "energy_per_mac_pj", "fp16": "energy_per_mac_fp16_pj", "int8": "energy_per_mac_int8_pj"}


def weakest_kind(kinds: Iterable[str]) -> str:
    """The weakest of ``kinds`` (``estimated`` beats ``pre-silicon`` beats ``measured``)."""
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in KIND_ORDER]
    if unknown:
        raise EnergyError(f"unknown figure kind {unknown[0]!r}; expected one of {', '.join(KIND_ORDER)}")
    if not kinds:
        raise EnergyError("no figures to take a kind from")
    return max(kinds, key=KIND_ORDER.index)


def _figure_dict(figure: Figure) -> dict[str, Any]:
    return {"value": figure.value, "unit": figure.unit, "source": figure.source, "kind": figure.kind}


# -- energy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyTerm:
    """``count`` events x the energy per event in ``figures``, in joules, with the weakest kind."""

    count: float
    count_unit: str
    joules: float
    figures: dict[str, Figure]

    @property
    def kind(self) -> str:
        return weakest_kind(f.kind for f in self.figures.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "count_unit": self.count_unit,
            "joules": self.joules,
            "kind": self.kind,
            "figures": {name: _figure_dict(f) for name, f in self.figures.items()},
        }


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one registration on one profile: dynamic and static terms in joules."""

    profile: str
    category: str
    dynamic: dict[str, EnergyTerm]
    static: dict[str, EnergyTerm] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def dynamic_j(self) -> float:
        return sum(t.joules for t in self.dynamic.values())

    @property
    def static_j(self) -> float:
        return sum(t.joules for t in self.static.values())

    @property
    def total_j(self) -> float:
        return self.dynamic_j + self.static_j

    @property
    def dynamic_kind(self) -> str:
        return weakest_kind(t.kind for t in self.dynamic.values())

    @property
    def kind(self) -> str:
        return weakest_kind(t.kind for t in (*self.dynamic.values(), *self.static.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "category": self.category,
            "dynamic_j": self.dynamic_j,
            "dynamic_kind": self.dynamic_kind,
            # None, not 0: conventional profiles do not model static power at all
            "static_j": self.static_j if self.static else None,
            "total_j": self.total_j,
            "kind": self.kind,
            "terms": {name: t.to_dict() for name, t in {**self.dynamic, **self.static}.items()},
            "notes": list(self.notes),
        }


def _neuromorphic(profile: Profile) -> NeuromorphicProfile:
    if not isinstance(profile, NeuromorphicProfile):
        raise ProfileError(f"profile {profile.name!r} is {profile.category}; a neuromorphic profile is needed here")
    return profile


def _conventional(profile: Profile) -> ConventionalProfile:
    if not isinstance(profile, ConventionalProfile):
        raise ProfileError(f"profile {profile.name!r} is {profile.category}; a conventional profile is needed here")
    return profile


def neuromorphic_energy(
    counts: Activity,
    profile: NeuromorphicProfile,
    time_steps: int,
    seconds: Optional[float] = None,
    chips: int = 1,
) -> EnergyBreakdown:
    """Energy of ``counts`` on a neuromorphic chip over ``time_steps`` steps.

    dynamic = synops x E_synop + neurons x time_steps x E_update + spikes x E_spike;
    static = static power x ``chips`` x run time, the run time being ``seconds``
    when given (measured on that chip) else ``time_steps`` x the profile's time per step.
    """
    chip = _neuromorphic(profile)
    time_steps = check_count(time_steps, "time steps")
    chips = check_count(chips, "chips")
    def term(count: float, unit: str, name: str) -> EnergyTerm:
        figure: Figure = getattr(chip, name)
        return EnergyTerm(count, unit, count * float(figure.value) * PJ, {name: figure})

    dynamic = {
        "synops_effective": term(counts.effective_synops, "synops", "energy_per_synop_pj"),
        "synops_structural_zeros": term(counts.structural_zero_synops, "synops", "energy_per_synop_pj"),
        "neuron_updates": term(counts.neurons * time_steps, "neuron updates", "energy_per_neuron_update_pj"),
        "spikes": term(counts.spikes, "spikes", "energy_per_spike_pj"),
    }
    power = chip.static_power_mw
    if seconds is None:
        step = chip.time_per_step_us
        duration = time_steps * float(step.value) * US
        timing = {"time_per_step_us": step}
    else:
        if not seconds >= 0:
            raise EnergyError(f"measured run time must be a non-negative number of seconds, got {seconds!r}")
        duration = float(seconds)
        timing = {"run_seconds": Figure(duration, "s", f"network time of this run measured on {chip.name}", "measured")}
    static = {
        "static": EnergyTerm(duration, "s", float(power.value) * MW * chips * duration,
                             {"static_power_mw": power, **timing}),
    }
    notes = [f"static power x {chips} chip(s) the mapping needs"] if chips != 1 else []
    return EnergyBreakdown(profile=chip.name, category=chip.category, dynamic=dynamic, static=static, notes=notes)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    """Output side of the twin's ``conv3d`` (padding ``kernel // 2``, as in :class:`AnnTwin`)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _twin_layers(config: ModelConfig) -> list[tuple[int, int, int]]:
    """(output side, c_out, c_in) of each 3-D conv of the ANN twin, readout included."""
    layers, side, c_in = [], config.patch_size, config.in_channels
    for c_out, stride in list(zip(config.channels, config.strides)) + [(READOUT_CHANNELS, 1)]:
        side = _conv_out(side, config.kernel_size, stride)
        layers.append((side, c_out, c_in))
        c_in = c_out
    return layers


def ann_macs(model_config: ModelConfig, patch_count: int) -> int:
    """MACs of the ANN twin on ``patch_count`` patches: sum of out_voxels x c_out x c_in x k^3."""
    k3 = model_config.kernel_size ** 3
    per_patch = sum(side ** 3 * c_out * c_in * k3 for side, c_out, c_in in _twin_layers(model_config))
    return per_patch * check_count(patch_count, "patch count")


def ann_io_bytes(model_config: ModelConfig, patch_count: int) -> int:
    """Host bytes per registration: fixed + moving patches in, 3 x g^3 control grids out, float32."""
    grid = _twin_layers(model_config)[-1][0]
    per_patch = (2 * model_config.patch_size ** 3 + 3 * grid ** 3) * FLOAT_BYTES
    return per_patch * check_count(patch_count, "patch count")


def conventional_energy(
    macs: int, profile: ConventionalProfile, io_bytes: int = 0, precision: Optional[str] = None
) -> EnergyBreakdown:
    """MACs x E_mac (the profile's default precision unless ``precision``) + io words x E_dram."""
    proc = _conventional(profile)
    precision = precision or str(proc.default_precision.value)
    if precision not in MAC_FIGURE:
        raise EnergyError(f"precision {precision!r}: expected one of {', '.join(MAC_FIGURE)}")
    mac = getattr(proc, MAC_FIGURE[precision])
    figures = {MAC_FIGURE[precision]: mac}
    if precision == proc.default_precision.value:
        figures["default_precision"] = proc.default_precision  # why this MAC figure was chosen
    dram = proc.energy_per_dram_word_pj
    words = check_count(io_bytes, "I/O bytes") / WORD_BYTES
    macs = check_count(macs, "MACs")
    dynamic = {
        "macs": EnergyTerm(macs, f"{precision} MACs", macs * float(mac.value) * PJ, figures),
        "dram": EnergyTerm(words, "32-bit words", words * float(dram.value) * PJ, {"energy_per_dram_word_pj": dram}),
    }
    notes = ["static power not modelled (the profile has none); arithmetic and host I/O only: a lower bound"]
    return EnergyBreakdown(profile=proc.name, category=proc.category, dynamic=dynamic, notes=notes)


# -- the report section ---------------------------------------------------------------


def _model_config(network: NetxFile) -> ModelConfig:
    model_path = network.path
    model = load_model(network).metadata.get("model")
    if not isinstance(model, dict):
        raise EnergyError(f"model {model_path}: metadata has no 'model' section, cannot size the ANN twin")
    # config_from_dict validates a whole Config; a run.patch_stride of one patch is
    # valid for every model, so the default (8) cannot reject a smaller patch size.
    return config_from_dict({"model": model, "run": {"patch_stride": model.get("patch_size")}},
                            source=f"model {model_path} metadata").model


def _load(profile: Union[str, Path, Profile]) -> Profile:
    return profile if isinstance(profile, (NeuromorphicProfile, ConventionalProfile)) else load_profile(profile)


def report_field(report: dict[str, Any], key: str) -> Any:
    """``report[key]``; a report without it cannot be costed, and the error says which field it lacks."""
    if key not in report:
        raise EnergyError(f"report has no {key!r}, needed for the energy estimate")
    return report[key]


def split_profiles(profiles: Sequence[Union[str, Path, Profile]]
                   ) -> tuple[list[NeuromorphicProfile], list[ConventionalProfile]]:
    """The chips and the 45 nm profiles among ``profiles`` (names, paths or loaded); at least one chip."""
    loaded = [_load(p) for p in profiles]
    chips = [p for p in loaded if isinstance(p, NeuromorphicProfile)]
    if not chips:
        raise EnergyError("energy report: no neuromorphic profile among " + ", ".join(p.name for p in loaded))
    return chips, [p for p in loaded if isinstance(p, ConventionalProfile)]


def run_patches(report: dict[str, Any]) -> int:
    """Every patch the network ran, over all pyramid levels and iterations."""
    if "patches" in report:
        return check_count(report["patches"], "patches")
    # reports written before pyramids: one level, the same patches every iteration
    return check_count(report_field(report, "iterations"), "iterations") * check_count(
        report_field(report, "patches_per_iteration"), "patches per iteration")


def priced(report: dict[str, Any], counts: Activity, time_steps: int, chips: Sequence[NeuromorphicProfile],
           chips_needed: dict[str, int], procs: Sequence[ConventionalProfile], macs: int, io_bytes: int
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(neuromorphic, conventional)`` rows of the section: ``counts`` on each chip one patch after another
    (``chips_needed[chip]`` chips of static power), the ANN twin's MACs and host bytes on each 45 nm profile."""
    conventional = {p.name: conventional_energy(macs, p, io_bytes) for p in procs}
    # Only the chip the run itself was on has a measured run time; any other chip's
    # run time comes from its profile's time per step.
    measured = report.get("timing", {}).get("network_seconds")
    neuromorphic = {}
    for chip in chips:
        seconds = measured if report.get("backend") == chip.name else None
        energy = neuromorphic_energy(counts, chip, time_steps, seconds=seconds, chips=chips_needed[chip.name])
        entry = energy.to_dict()
        entry["chips"] = chips_needed[chip.name]
        entry["snn_over_ann"] = {
            name: {
                "total": energy.total_j / ann.total_j if ann.total_j else None,
                "dynamic": energy.dynamic_j / ann.total_j if ann.total_j else None,
                "kind": weakest_kind([energy.kind, ann.kind]),
            }
            for name, ann in conventional.items()
        }
        neuromorphic[chip.name] = entry
    return neuromorphic, {name: e.to_dict() for name, e in conventional.items()}


def run_counts(counts: Activity, *, patches: int, time_steps: int, input_spikes: int, layer_spikes: int,
               macs: int, io_bytes: int) -> dict[str, Any]:
    """The section's ``counts`` every model has (a chain's and a graph's add their own rows)."""
    return {
        "patches": patches,
        "time_steps": time_steps,
        "input_spikes": input_spikes,
        "layer_spikes": layer_spikes,
        "spike_messages": counts.spikes,
        "neurons": counts.neurons,
        "neuron_updates": counts.neurons * time_steps,
        "mean_spike_rate": layer_spikes / (counts.layer_neurons * time_steps) if time_steps else 0.0,
        "synops_effective": counts.effective_synops,
        "synops_structural_zeros": counts.structural_zero_synops,
        "synops": counts.effective_synops + counts.structural_zero_synops,
        "ann_macs": macs,
        "ann_io_bytes": io_bytes,
    }


#: The section's one-line account of itself.
SECTION_MODEL = ("counts measured on the backend x per-event energies from hardware profiles "
                 "(see spikereg/hardware/energy.py); an estimate, not a power measurement")


def energy_report(
    report: dict[str, Any],
    model_path: Union[str, Path, NetxFile],
    profiles: Sequence[Union[str, Path, Profile]] = DEFAULT_PROFILES,
    synapses: str = "conv",
) -> dict[str, Any]:
    """The ``energy`` section of ``report.json`` for the run in ``report`` with the model at ``model_path``
    (or that file already read: a run shares the one its backend read).

    ``report`` needs ``layers`` (spikes per layer), ``input_spikes``, ``time_steps``,
    ``patches`` (or, in older reports, ``iterations`` x ``patches_per_iteration``) and ``backend``. Profiles are
    names or paths (a profile that cannot load raises :class:`ProfileError`) or loaded profiles;
    at least one must be neuromorphic. Every joule is per registration. A sequential netx file:
    graph files are :func:`spikereg.hardware.graph_energy.graph_energy_report`'s.

    ``synapses`` says how the chain's synapses are built (:func:`~spikereg.hardware.rules.synapse_accounting`):
    ``"conv"`` charges the synops on zero weights (as structural zeros), ``"sparse"`` stores and charges nonzero
    synapses only, reports the rest as ``synops_zero_weights_not_charged``, and takes the chips from the
    mapping of nonzero synapses.
    """
    accounting = synapse_accounting(False, synapses)
    chips, procs = split_profiles(profiles)
    network = model_path if isinstance(model_path, NetxFile) else read_network(model_path)
    model_path = network.path
    mappings = {chip.name: map_network(network, chip, synapses) for chip in chips}
    costs = costs_from_mapping(next(iter(mappings.values())))
    rows = report_field(report, "layers")
    spikes = [check_count(row["spikes"], f"spikes of layer {row.get('layer')}") for row in rows]
    if len(rows) != len(costs) or any(row["neurons"] != c.neurons for row, c in zip(rows, costs)):
        raise EnergyError(
            f"report layers (neurons {[row['neurons'] for row in rows]}) do not match the spiking layers of "
            f"{model_path} (neurons {[c.neurons for c in costs]})"
        )
    input_spikes = check_count(report_field(report, "input_spikes"), "input spikes")
    time_steps = check_count(report_field(report, "time_steps"), "time steps")
    patches = run_patches(report)
    counts = activity(spikes, input_spikes, costs)
    counted = report.get("counts")
    if counted:  # counted neuron by neuron during the run: exact fan-out instead of the mean
        counts = exact_activity(counts, counted, costs)
    measured, counts = counts, charged(counts, accounting)  # sparse synapses: zero weights not charged

    config = _model_config(network)
    macs = ann_macs(config, patches)
    io_bytes = ann_io_bytes(config, patches)
    neuromorphic, conventional = priced(report, counts, time_steps, chips,
                                        {name: m.chips for name, m in mappings.items()}, procs, macs, io_bytes)
    # with sparse synapses (NONZERO) the zero weights' synops are listed apart, as a graph file's are
    apart = {} if accounting.zero_weights else {"synops_zero_weights_not_charged": measured.structural_zero_synops}
    return {
        "per": "registration",
        "model": SECTION_MODEL,
        "synapse_accounting": accounting.to_dict(),
        "counts": {
            **run_counts(counts, patches=patches, time_steps=time_steps, input_spikes=input_spikes,
                         layer_spikes=sum(spikes), macs=macs, io_bytes=io_bytes),
            **apart,
            "synops_method": (counted.get("method", "counted per neuron") if counted
                              else "layer spikes x mean fan-out of the layer's synapses"),
            "layers": [
                {"index": c.index, "type": c.type, "neurons": c.neurons, "on_chip": c.on_chip,
                 "source_neurons": c.source_neurons,
                 "synapses": c.synapses, "nonzero_synapses": c.nonzero_synapses, "fanout": c.fanout,
                 "effective_fanout": c.effective_fanout, "events": s.events, "synops_effective": s.effective,
                 "synops_structural_zeros": s.structural_zeros,
                 **({} if accounting.zero_weights else {"synops_zero_weights_not_charged": m.structural_zeros})}
                for c, s, m in zip(costs, counts.synops, measured.synops)
            ],
            # what crosses the host link for the SNN (its energy is not modelled): encoded input
            # spikes in, readout spikes out
            "snn_host_spikes_in": input_spikes,
            "snn_host_spikes_out": spikes[-1],
        },
        "neuromorphic": neuromorphic,
        "conventional": conventional,
    }
