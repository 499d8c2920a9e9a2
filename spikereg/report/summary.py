"""``report.json``: what a registration run did, and its readable summary.

The JSON is written by ``spikereg run`` and read back by ``spikereg report``;
its layer table is measured on the backend itself (spikes read from every
layer of the Lava network, or from SLAYER's layer outputs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spikereg.errors import SpikeRegError
from spikereg.registration.run_report import REPORT_FORMAT, REPORT_NAME

REQUIRED = ("format", "backend", "iterations", "patches_per_iteration", "time_steps", "layers",
            "similarity", "timing")


class ReportError(SpikeRegError, ValueError):
    """A run folder without a readable report.json."""


def chip_profile_line(chip: dict[str, Any]) -> str:
    """One readable line of a report's ``chip_profile``."""
    step = chip.get("figures", {}).get("time_per_step_us", {})
    line = f"{chip['name']}, {'run on the chip' if chip.get('ran_on') == 'chip' else 'modelled'} " \
           f"({chip.get('ran_on', '-')})"
    if step:
        line += f"; profile time per step {step.get('value')} {step.get('unit', '')} [{step.get('kind', '-')}]"
    measured = chip.get("measured")
    if measured:
        line += (f"; chip probes: {measured.get('time_per_step_us', float('nan')):.1f} us per step, "
                 f"{measured.get('total_power_w', float('nan')):.3f} W total, "
                 f"{measured.get('static_power_w', float('nan')):.3f} W static")
    return line


def read_report(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/report.json``; one clear :class:`ReportError` otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"run folder {folder}: not a directory")
    path = folder / REPORT_NAME
    if not path.is_file():
        raise ReportError(f"run folder {folder}: no {REPORT_NAME} (is this the --out folder of 'spikereg run'?)")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path}: expected a JSON object")
    missing = [key for key in REQUIRED if key not in report]
    if missing:
        raise ReportError(f"{path}: missing field(s) {', '.join(missing)}")
    if report["format"] != REPORT_FORMAT:
        raise ReportError(f"{path}: unknown format {report['format']!r} (expected {REPORT_FORMAT})")
    problem = _check(report, REPORT_SCHEMA, "")
    if problem is not None:
        raise ReportError(f"{path}: {problem}")
    return report


# -- what `spikereg report` reads, and of which kind ----------------------------------------
# Every field that render() and the pages (report.html, figures.py) read is here, so a report that
# passes cannot fail half-way through the pages; fields they do not read are not checked.
# A spec is a leaf (test, "what is expected"), or one of the containers below.

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


NUMBER = (_number, "a number")
INTEGER = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
TEXT = (lambda v: isinstance(v, str), "a string")
ANY = (lambda v: True, "any value")


@dataclass(frozen=True)
class Obj:
    """A JSON object with these fields (others are allowed and not checked)."""

    required: dict
    optional: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose keys are names (profiles, terms) and whose values are all ``value``."""

    value: Any


@dataclass(frozen=True)
class Rule:
    """``spec``, and then ``check(value, where)``: a rule across its parts (the problem, or None)."""

    spec: Any
    check: Callable[[Any, str], str | None]


@dataclass(frozen=True)
class Maybe:
    """``spec`` or null."""

    spec: Any


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object", int: "a number", float: "a number"}
    shown = f" ({value!r})" if isinstance(value, (bool, int, float, str)) and len(repr(value)) <= 40 else ""
    return names.get(type(value), type(value).__name__) + shown


def _describe(spec: Any) -> str:
    if isinstance(spec, Obj):
        return "an object"
    if isinstance(spec, ListOf):
        return f"a list of {_describe(spec.item).removeprefix('a ').removeprefix('an ')}s"
    if isinstance(spec, MapOf):
        return "an object of names to " + _describe(spec.value).removeprefix("a ").removeprefix("an ") + "s"
    if isinstance(spec, (Maybe, Rule)):
        return _describe(spec.spec) + (" or null" if isinstance(spec, Maybe) else "")
    return spec[1]


def _check(value: Any, spec: Any, where: str) -> str | None:
    """The first problem of ``value`` against ``spec`` as ``where is X, expected Y``; None if it fits."""
    if isinstance(spec, Maybe):
        return None if value is None else _check(value, spec.spec, where)
    if isinstance(spec, Rule):
        return _check(value, spec.spec, where) or spec.check(value, where)
    if isinstance(spec, tuple):
        return None if spec[0](value) else f"{where or 'report'} is {_kind(value)}, expected {spec[1]}"
    container = dict if isinstance(spec, (Obj, MapOf)) else list
    if not isinstance(value, container):
        return f"{where or 'report'} is {_kind(value)}, expected {_describe(spec)}"
    if isinstance(spec, ListOf):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(value))
        return next((p for w, item in items if (p := _check(item, spec.item, w)) is not None), None)
    if isinstance(spec, MapOf):
        items = ((f"{where}.{key}", item) for key, item in value.items())
        return next((p for w, item in items if (p := _check(item, spec.value, w)) is not None), None)
    for key, sub in {**spec.required, **spec.optional}.items():
        name = f"{where}.{key}" if where else key
        if key not in value:
            if key in spec.required:
                return f"{name} is missing (expected {_describe(sub)})"
            continue
        problem = _check(value[key], sub, name)
        if problem is not None:
            return problem
    return None


def _steps_fit(spikes_per_step: list, where: str) -> str | None:
    """Each backend call's ``spikes_per_step`` is layers x steps, with the same layers in every call."""
    layers = None
    for i, call in enumerate(spikes_per_step):
        if not call:
            continue
        if len({len(row) for row in call}) > 1:
            return f"{where}[{i}] has layers of different lengths, expected layers x steps"
        if layers is not None and len(call) != layers:
            return f"{where}[{i}] has {len(call)} layers, expected {layers} as in the calls before it"
        layers = len(call)
    return None


def _windows_fit(per_step: dict, where: str) -> str | None:
    """Every series of ``counts.per_step`` has one value per step of its window."""
    window = per_step["window"]
    series = [("input_spikes", per_step["input_spikes"])] + [
        (f"{key}[{i}]", row) for key in ("spikes", "synops_effective", "synops_structural_zeros")
        for i, row in enumerate(per_step[key])]
    for name, row in series:
        if len(row) != window:
            return f"{where}.{name} has {len(row)} values, expected window = {window}"
    if len(per_step["synops_effective"]) != len(per_step["synops_structural_zeros"]):
        return f"{where}.synops_structural_zeros has another number of layers than {where}.synops_effective"
    return None


def _ratio_fits(ratio: dict, where: str) -> str | None:
    """A ratio with a total is printed with its dynamic-only part beside it."""
    if ratio.get("total") is not None and not _number(ratio.get("dynamic")):
        return f"{where}.dynamic is {_kind(ratio.get('dynamic')) if 'dynamic' in ratio else 'missing'}, " \
               "expected a number (the total is given)"
    return None


_FIGURE = Obj({"value": ANY, "unit": TEXT, "kind": TEXT, "source": TEXT})
_PROFILE_ROW = Obj({}, {
    "dynamic_j": Maybe(NUMBER), "static_j": Maybe(NUMBER), "total_j": Maybe(NUMBER),
    "kind": TEXT, "dynamic_kind": TEXT,
    "snn_over_ann": MapOf(Maybe(Rule(Obj({}, {"total": Maybe(NUMBER), "dynamic": Maybe(NUMBER)}), _ratio_fits))),
    "terms": MapOf(Obj({}, {"joules": Maybe(NUMBER), "figures": MapOf(_FIGURE)})),
})
_ENERGY_COUNTS = ("synops", "synops_effective", "synops_structural_zeros", "input_spikes", "mean_spike_rate",
                  "ann_macs", "patches", "time_steps", "layer_spikes", "neuron_updates", "ann_io_bytes",
                  "snn_host_spikes_in", "snn_host_spikes_out")
_ITERATION_COUNTS = ("patches", "time_steps", "input_spikes", "layer_spikes", "synops", "synops_structural_zeros")
REPORT_SCHEMA = Obj(
    required={
        "format": TEXT,
        "backend": TEXT,
        "iterations": INTEGER,
        "patches_per_iteration": INTEGER,
        "time_steps": INTEGER,
        "layers": ListOf(Obj({"layer": INTEGER, "neurons": INTEGER, "spikes": INTEGER, "spike_rate": NUMBER})),
        "similarity": Obj({key: NUMBER for key in ("ncc_before", "ncc_after", "mse_before", "mse_after")}),
        "timing": Obj({key: NUMBER for key in ("total_seconds", "network_seconds", "host_seconds")},
                      {"compile_seconds": NUMBER}),
    },
    optional={
        "precision": TEXT,
        "shape": ListOf(NUMBER),
        "spacing": ListOf(NUMBER),
        "inputs": Obj({}, {"fixed": TEXT, "moving": TEXT, "model": TEXT}),
        "outputs": MapOf(TEXT),
        "jacobian": Obj({"min": NUMBER, "fraction_nonpositive": NUMBER}),
        "spikes_per_step": Maybe(Rule(ListOf(ListOf(ListOf(NUMBER))), _steps_fit)),
        "time_steps_per_patch": Maybe(INTEGER),
        "chip_profile": Maybe(Obj({"name": TEXT}, {
            "ran_on": TEXT,
            "figures": MapOf(Obj({}, {"value": ANY, "unit": ANY, "kind": ANY})),
            "measured": Maybe(Obj({}, {key: NUMBER for key in ("time_per_step_us", "total_power_w",
                                                               "static_power_w")})),
        })),
        "counts": Obj({}, {
            "layers": ListOf(Obj({"layer": INTEGER})),
            "iterations": ListOf(Obj({"iteration": ANY, "mean_spike_rate": NUMBER,
                                      **{key: ANY for key in _ITERATION_COUNTS}}, {"label": ANY})),
            "per_step": Maybe(Rule(Obj({"window": INTEGER, "input_spikes": ListOf(NUMBER),
                                        **{key: ListOf(ListOf(NUMBER))
                                           for key in ("spikes", "synops_effective", "synops_structural_zeros")}}),
                                   _windows_fit)),
        }),
        "energy": Maybe(Obj({}, {
            "per": TEXT, "model": TEXT,
            "counts": Obj({}, {**{key: NUMBER for key in _ENERGY_COUNTS}, "synops_method": TEXT}),
            "neuromorphic": MapOf(_PROFILE_ROW),
            "conventional": MapOf(_PROFILE_ROW),
        })),
    },
)


def render(report: dict[str, Any]) -> str:
    """Plain-text summary (the CLI prints it with rich)."""
    sim = report["similarity"]
    timing = report["timing"]
    lines = [
        f"backend        {report['backend']} ({report.get('precision', '-')} precision)",
        f"volume         {report.get('shape')}  spacing {report.get('spacing')}",
        f"iterations     {report['iterations']} x {report['patches_per_iteration']} patches, "
        f"{report['time_steps']} time steps",
        f"NCC            {sim['ncc_before']:.4f} -> {sim['ncc_after']:.4f} (moving vs fixed -> warped vs fixed)",
        f"MSE            {sim['mse_before']:.5f} -> {sim['mse_after']:.5f}",
    ]
    if "jacobian" in report:
        jac = report["jacobian"]
        lines.append(f"Jacobian       min {jac['min']:.3f}, {100 * jac['fraction_nonpositive']:.3f} % voxels <= 0")
    lines.append(
        f"time           {timing['total_seconds']:.1f} s total: network {timing['network_seconds']:.1f} s, "
        f"compile {timing.get('compile_seconds', 0.0):.1f} s, host {timing['host_seconds']:.1f} s"
    )
    if report.get("chip_profile"):  # reports written before it have none
        lines.append(f"chip profile   {chip_profile_line(report['chip_profile'])}")
    lines.append("")
    lines.append(f"{'layer':>5} {'neurons':>9} {'spikes':>12} {'rate':>8}")
    for row in report["layers"]:
        lines.append(f"{row['layer']:>5} {row['neurons']:>9} {row['spikes']:>12} {row['spike_rate']:>8.4f}")
    total = sum(row["spikes"] for row in report["layers"])
    lines.append(f"{'all':>5} {'':>9} {total:>12}")
    if "energy" in report:  # reports written before the energy estimate have no section
        lines += [""] + energy_lines(report["energy"])
    return "\n".join(lines)


def _joules(value: Any) -> str:
    return f"{value:.3e}" if isinstance(value, (int, float)) else "-"


def accounting_line(accounting: dict[str, Any]) -> str:
    """``nonzero only`` or ``every connection, zero weights included``: which synapses the chip rows charge."""
    what = "every connection, zero weights included" if accounting.get("zero_weights_charged") else "nonzero only"
    return f"{what} ({accounting.get('name', '-')})"


def energy_lines(energy: dict[str, Any]) -> list[str]:
    """The energy table: per profile dynamic / static / total joules per registration, SNN/ANN ratios.

    Every row carries the kind of its weakest figure (estimated, pre-silicon,
    measured), so no estimate reads as a measurement.
    """
    counts = energy.get("counts", {})
    chips = energy.get("neuromorphic", {})
    procs = energy.get("conventional", {})
    lines = [
        f"energy per {energy.get('per', 'registration')} (estimate: counts x per-event energies of "
        "hardware_profiles/; SNN/ANN = SNN total | dynamic-only over ANN twin total)",
        f"synops {counts.get('synops', 0):.4g} (effective {counts.get('synops_effective', 0):.4g}, "
        f"structural zeros {counts.get('synops_structural_zeros', 0):.4g}"
        + (f"; on zero weights, not charged: {counts['synops_zero_weights_not_charged']:.4g}"
           if "synops_zero_weights_not_charged" in counts else "") + "), "
        f"input spikes {counts.get('input_spikes', 0)}, mean spike rate {counts.get('mean_spike_rate', 0.0):.4f}, "
        f"ANN twin {counts.get('ann_macs', 0):.4g} MACs",
    ]
    if energy.get("synapse_accounting"):  # reports written before it: dense
        lines.append(f"synapses stored and charged: {accounting_line(energy['synapse_accounting'])}")
    width = max([8] + [len(name) for name in {**chips, **procs}])  # loihi2_pilotnet_step, jetson_orin_nano
    header = f"{'profile':<{width}} {'dynamic J':>10} {'static J':>10} {'total J':>10}"
    header += "".join(f" {'SNN/ANN ' + name:>19}" for name in procs)
    lines.append(header + "  kind")
    for name, row in {**chips, **procs}.items():
        line = (f"{name:<{width}} {_joules(row.get('dynamic_j')):>10} {_joules(row.get('static_j')):>10} "
                f"{_joules(row.get('total_j')):>10}")
        for proc in procs:
            ratio = row.get("snn_over_ann", {}).get(proc)
            if ratio and ratio.get("total") is not None:
                line += f" {ratio['total']:>9.3g} | {ratio['dynamic']:<7.3g}"
            else:
                line += f" {'-':>19}"
        kind = row.get("kind", "-")
        if row.get("dynamic_kind", kind) != kind:
            kind += f" (dynamic {row['dynamic_kind']})"
        lines.append(f"{line}  {kind}")
    return lines
