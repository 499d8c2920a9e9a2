"""``spikereg report DIR``: report.md and a self-contained report.html beside report.json.

The pages show what the run did and cost (summary, per-layer spikes and spike
rates, counts per refinement iteration, the energy estimate on every profile
with the kind and source of each figure) and the registration itself, as PNG
figures written into ``DIR/figures/``. ``report.md`` links those files by
relative path; ``report.html`` embeds the same PNGs as ``data:`` URIs, so the
one file can be mailed or archived alone: it loads nothing from anywhere (no
scripts, fonts or style sheets from the web).

Every file is written whole or not at all: the figures go into a staging
folder that replaces ``figures/`` only when complete, the pages through
:func:`spikereg.data.io.write_text_atomic`.
"""
from __future__ import annotations

import base64
import html
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from spikereg.data import VolumeError
from spikereg.data.io import write_text_atomic
from spikereg.registration.counts import RASTER_NAME, load_raster
from spikereg.report import figures
from spikereg.report.summary import accounting_line, chip_profile_line, read_report
from spikereg.report.vis import load_inputs, registration_figures

FIGURES_DIR = "figures"
MD_NAME = "report.md"
HTML_NAME = "report.html"


@dataclass(frozen=True)
class Plot:
    """One figure of the report: file name under figures/, section, title, PNG bytes."""

    name: str
    section: str
    title: str
    png: bytes


@dataclass
class Pages:
    """What :func:`write_pages` wrote."""

    markdown: Path
    html: Path
    figures: list[Path]
    notes: list[str] = field(default_factory=list)  # pictures that could not be made, and why


# -- collecting the figures ------------------------------------------------------------


def _spike_plots(folder: Path, report: dict[str, Any], notes: list[str]) -> list[Plot]:
    plots = [Plot("spike_rate", "Spikes", "Mean spike rate per layer",
                  figures.png_bytes(figures.spike_rates(report["layers"])))]
    if report.get("spikes_per_step"):
        plots.append(Plot("spikes_over_time", "Spikes", "Spikes over time",
                          figures.png_bytes(figures.spikes_over_time(report["spikes_per_step"],
                                                                     report.get("time_steps_per_patch")))))
    else:
        notes.append("spikes over time: report.json has no 'spikes_per_step'")
    per_step = report.get("counts", {}).get("per_step")
    if per_step:
        plots.append(Plot("per_step", "Spikes", "Spikes and synaptic operations per step of a patch",
                          figures.png_bytes(figures.per_step_counts(per_step))))
    raster_path = folder / RASTER_NAME
    if raster_path.is_file():
        raster = load_raster(raster_path)
        title = f"Spike raster of patch {raster.patch} (iteration 1)"
        plots.append(Plot("raster", "Spikes", title,
                          figures.png_bytes(figures.spike_raster(raster.layers, title=title.lower()))))
    else:
        notes.append(f"spike raster: no {RASTER_NAME} in {folder} (recorded by 'spikereg run')")
    return plots


def _energy_plots(report: dict[str, Any]) -> list[Plot]:
    energy = report.get("energy")
    if not energy:
        return []
    return [
        Plot("energy_breakdown", "Energy", "Energy per registration, term by term",
             figures.png_bytes(figures.energy_breakdown(energy))),
        Plot("snn_vs_ann", "Energy", "SNN on neuromorphic chips vs the ANN twin",
             figures.png_bytes(figures.snn_vs_ann(energy))),
    ]


def _registration_plots(folder: Path, report: dict[str, Any], notes: list[str]) -> list[Plot]:
    inputs, outputs = report.get("inputs", {}), report.get("outputs", {})
    fixed, moving = inputs.get("fixed"), inputs.get("moving")
    warped = folder / outputs["warped"] if "warped" in outputs else None
    ddf = folder / outputs["ddf"] if "ddf" in outputs else None
    missing = [f"{what} {path}" if path is not None else f"{what} (report.json names none)"
               for what, path in (("fixed image", fixed), ("moving image", moving),
                                  ("warped image", warped), ("displacement field", ddf))
               if path is None or not Path(path).is_file()]
    if missing:
        notes.append("registration pictures: not found: " + ", ".join(missing))
        return []
    try:
        volumes = load_inputs(Path(fixed), Path(moving), warped, ddf)
    except VolumeError as error:
        notes.append(f"registration pictures: {error}")
        return []
    return [Plot(p.name, "Registration", p.title, figures.png_bytes(p.figure))
            for p in registration_figures(*volumes)]


def collect_plots(folder: Path, report: dict[str, Any], notes: list[str],
                  progress: Optional[Callable[[str], None]] = None) -> list[Plot]:
    """Every figure of the report; what cannot be drawn is skipped with a line in ``notes``."""
    plots = []
    for name, make in (("spikes", lambda: _spike_plots(folder, report, notes)),
                       ("energy", lambda: _energy_plots(report)),
                       ("registration", lambda: _registration_plots(folder, report, notes))):
        if progress is not None:
            progress(name)
        plots += make()
    return plots


# -- tables ----------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return format(float(value), spec)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    sim, timing = report["similarity"], report["timing"]
    rows = [
        ("backend", f"{report['backend']} ({report.get('precision', '-')} precision)"),
        ("fixed / moving",
         f"{report.get('inputs', {}).get('fixed', '-')} / {report.get('inputs', {}).get('moving', '-')}"),
        ("model", str(report.get("inputs", {}).get("model", "-"))),
        ("volume", f"{report.get('shape')} voxels, spacing {report.get('spacing')} mm"),
        ("work", f"{report['iterations']} iteration(s) x {report['patches_per_iteration']} patches, "
                 f"{_fmt(report['time_steps'])} time steps"),
        ("NCC", f"{sim['ncc_before']:.4f} -> {sim['ncc_after']:.4f} (moving vs fixed -> warped vs fixed)"),
        ("MSE", f"{sim['mse_before']:.5f} -> {sim['mse_after']:.5f}"),
    ]
    if "jacobian" in report:
        jac = report["jacobian"]
        rows.append(("Jacobian", f"min {jac['min']:.3f}, {100 * jac['fraction_nonpositive']:.3f} % voxels <= 0"))
    rows.append(("time", f"{timing['total_seconds']:.1f} s total: network {timing['network_seconds']:.1f} s, "
                         f"compile {timing.get('compile_seconds', 0.0):.1f} s, host {timing['host_seconds']:.1f} s"))
    if report.get("chip_profile"):
        rows.append(("chip profile", chip_profile_line(report["chip_profile"])))
    return rows


def layer_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per-layer table: spikes and rate from the run; synops and updates when the run counted them."""
    counted = {row["layer"]: row for row in report.get("counts", {}).get("layers", [])}
    head = ["layer", "neurons", "spikes", "spike rate"]
    if counted:
        head += ["events in", "synops (nonzero w)", "synops (zero w)", "neuron updates"]
    # a graph file's nodes by name (report layer k is the file's layer k - 1)
    nodes = (report.get("energy") or {}).get("counts", {}).get("layers", [])
    names = {node["index"] + 1: node["name"] for node in nodes if "name" in node}
    rows = []
    for row in report["layers"]:
        label = f"{row['layer']} {names[row['layer']]}" if row["layer"] in names else str(row["layer"])
        line = [label, _fmt(row["neurons"]), _fmt(row["spikes"]), f"{row['spike_rate']:.4f}"]
        if counted:
            c = counted.get(row["layer"], {})
            line += [_fmt(c.get("events")), _fmt(c.get("synops_effective")),
                     _fmt(c.get("synops_structural_zeros")), _fmt(c.get("neuron_updates"))]
        rows.append(line)
    return head, rows


def iteration_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["iteration", "patches", "time steps", "input spikes", "layer spikes", "synops", "of which zero w",
            "mean spike rate"]
    rows = [[str(it.get("label", it["iteration"])), _fmt(it["patches"]), _fmt(it["time_steps"]),
             _fmt(it["input_spikes"]), _fmt(it["layer_spikes"]), _fmt(it["synops"]),
             _fmt(it["synops_structural_zeros"]), f"{it['mean_spike_rate']:.4f}"]
            for it in report.get("counts", {}).get("iterations", [])]
    return head, rows


def energy_rows(energy: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    conventional = list(energy.get("conventional", {}))
    head = (["profile", "dynamic J", "static J", "total J", "latency s", "EDP J s"]
            + [f"SNN/ANN {p}" for p in conventional] + ["kind"])
    rows = []
    for name, row in {**energy.get("neuromorphic", {}), **energy.get("conventional", {})}.items():
        label = f"{name}: {row['label']}" if row.get("label") else name  # the schedule rows say what they are
        latency = row.get("latency_s")
        line = [label, _fmt(row.get("dynamic_j"), ".3e"), _fmt(row.get("static_j"), ".3e"),
                _fmt(row.get("total_j"), ".3e"), _fmt(latency, ".4g"),
                _fmt(row["total_j"] * latency if latency is not None and row.get("total_j") is not None else None,
                     ".3e")]
        for proc in conventional:
            ratio = row.get("snn_over_ann", {}).get(proc)
            line.append(f"{ratio['total']:.3g} (dynamic {ratio['dynamic']:.3g})"
                        if ratio and ratio.get("total") is not None else "-")
        kind = row.get("kind", "-")
        if row.get("dynamic_kind", kind) != kind:
            kind += f" (dynamic {row['dynamic_kind']})"
        rows.append(line + [kind])
    return head, rows


def figure_sources(energy: dict[str, Any]) -> list[str]:
    """One line per profile figure used: profile, figure, value unit, kind, source."""
    lines = []
    for name, row in {**energy.get("neuromorphic", {}), **energy.get("conventional", {})}.items():
        seen = set()
        for term in row.get("terms", {}).values():
            for key, fig in term.get("figures", {}).items():
                if key in seen:
                    continue
                seen.add(key)
                lines.append(f"{name} {key} = {fig['value']} {fig['unit']} ({fig['kind']}): {fig['source']}")
    return lines


def edge_rows(energy: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A graph file's edges (skip and upsampling edges included): synapses, memory, messages, synops, twin MACs."""
    head = ["edge", "type", "delay", "synapses", "nonzero", "memory KiB", "messages in", "nonzero fan-out",
            "synops (charged)", "synops on zero w (not charged)", "ANN twin MACs"]
    rows = [[f"{e['index']} {e['name']}", e["type"], str(e["delay"]), _fmt(e["synapses"]),
             _fmt(e["nonzero_synapses"]), _fmt(e["synaptic_memory_bits"] / 8192, ".1f"), _fmt(e["events"]),
             _fmt(e["nonzero_fanout"], ".1f"), _fmt(e["synops_effective"], ".4g"),
             _fmt(e["synops_zero_weights_not_charged"], ".4g"), _fmt(e.get("ann_macs"))]
            for e in energy.get("counts", {}).get("edges", [])]
    return head, rows


def accounting_lines(energy: dict[str, Any]) -> list[str]:
    """Which synapses the chip rows store and charge, and how delays are charged (graph files)."""
    lines = []
    if energy.get("synapse_accounting"):
        accounting = energy["synapse_accounting"]
        lines.append(f"Synapses stored and charged: {accounting_line(accounting)}: {accounting.get('rule', '')}")
    if energy.get("delays"):
        delays = energy["delays"]
        limits = "; ".join(f"{chip}: at most {fig['value']} {fig['unit']} ({fig['kind']}: {fig['source']})"
                           for chip, fig in delays.get("limits", {}).items())
        lines.append(f"Delays (up to {delays.get('longest')} steps): {delays.get('rule', '')}"
                     + (f". Limits: {limits}" if limits else ""))
    return lines


def energy_counts_line(energy: dict[str, Any]) -> str:
    c = energy.get("counts", {})
    zeros = (f"{_fmt(c.get('synops_structural_zeros'))} on zero weights"
             if "synops_zero_weights_not_charged" not in c else
             f"none on zero weights ({_fmt(c['synops_zero_weights_not_charged'], '.4g')} would be: not stored, "
             "not charged)")
    return (f"per {energy.get('per', 'registration')}: {_fmt(c.get('patches'))} patches, "
            f"{_fmt(c.get('time_steps'))} time steps, {_fmt(c.get('input_spikes'))} input spikes, "
            f"{_fmt(c.get('layer_spikes'))} layer spikes (mean rate {c.get('mean_spike_rate', 0.0):.4f}), "
            f"{_fmt(c.get('synops'))} synops of which {zeros}, "
            f"{_fmt(c.get('neuron_updates'))} neuron updates; ANN twin {_fmt(c.get('ann_macs'))} MACs, "
            f"{_fmt(c.get('ann_io_bytes'))} host bytes; the SNN's host link carries "
            f"{_fmt(c.get('snn_host_spikes_in'))} "
            f"spikes in and {_fmt(c.get('snn_host_spikes_out'))} out (not costed). "
            f"Synops from {c.get('synops_method', 'mean fan-out')}.")


# -- markdown ---------------------------------------------------------------------------


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in head) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any], plots: list[Plot], notes: list[str]) -> str:
    lines = ["# SpikeReg registration report", ""]
    lines += _md_table(["", ""], [list(r) for r in summary_rows(report)])
    lines += ["", "## Spikes", ""] + _md_table(*layer_rows(report))
    head, rows = iteration_rows(report)
    if rows:
        lines += ["", "Per refinement iteration:", ""] + _md_table(head, rows)
    lines += [""] + [f"![{p.title}]({FIGURES_DIR}/{p.name}.png)" for p in plots if p.section == "Spikes"]
    energy = report.get("energy")
    if energy:
        lines += ["", "## Energy (estimate)", "", energy.get("model", ""), "", energy_counts_line(energy), ""]
        lines += [line for text in accounting_lines(energy) for line in (text, "")]
        lines += _md_table(*energy_rows(energy))
        head, rows = edge_rows(energy)
        if rows:
            lines += ["", "Edge by edge (chip rows charge the nonzero synops):", ""] + _md_table(head, rows)
        lines += [""] + [f"![{p.title}]({FIGURES_DIR}/{p.name}.png)" for p in plots if p.section == "Energy"]
        lines += ["", "Figures used:", ""] + [f"- {s}" for s in figure_sources(energy)]
    registration = [p for p in plots if p.section == "Registration"]
    if registration:
        lines += ["", "## Registration", ""]
        lines += [f"![{p.title}]({FIGURES_DIR}/{p.name}.png)" for p in registration]
    if notes:
        lines += ["", "## Not shown", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# -- html --------------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { font-weight: bold; margin-bottom: 0.3em; }
.note { color: #555; font-size: 0.9em; } li.source { font-size: 0.8em; color: #444; }
"""


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = [f"<td>{html.escape(str(row[0]))}</td>"]
        cells += [f'<td class="num">{html.escape(str(c))}</td>' for c in row[1:]]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _html_figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f"<figure><figcaption>{html.escape(plot.title)}</figcaption>"
            f'<img alt="{html.escape(plot.title)}" src="data:image/png;base64,{data}"></figure>')


def render_html(report: dict[str, Any], plots: list[Plot], notes: list[str]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>SpikeReg registration report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>SpikeReg registration report</h1>"]
    parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                     for k, v in summary_rows(report)) + "</table>")
    parts += ["<h2>Spikes</h2>", _html_table(*layer_rows(report))]
    head, rows = iteration_rows(report)
    if rows:
        parts += ["<p>Per refinement iteration:</p>", _html_table(head, rows)]
    parts += [_html_figure(p) for p in plots if p.section == "Spikes"]
    energy = report.get("energy")
    if energy:
        parts += ["<h2>Energy (estimate)</h2>", f"<p>{html.escape(energy.get('model', ''))}</p>",
                  f"<p>{html.escape(energy_counts_line(energy))}</p>"]
        parts += [f'<p class="note">{html.escape(text)}</p>' for text in accounting_lines(energy)]
        parts.append(_html_table(*energy_rows(energy)))
        head, rows = edge_rows(energy)
        if rows:
            parts += ["<p>Edge by edge (chip rows charge the nonzero synops):</p>", _html_table(head, rows)]
        parts += [_html_figure(p) for p in plots if p.section == "Energy"]
        parts += ["<p>Figures used:</p><ul>"]
        parts += [f'<li class="source">{html.escape(s)}</li>' for s in figure_sources(energy)] + ["</ul>"]
    registration = [p for p in plots if p.section == "Registration"]
    if registration:
        parts += ["<h2>Registration</h2>"] + [_html_figure(p) for p in registration]
    if notes:
        parts += ["<h2>Not shown</h2><ul>"] + [f'<li class="note">{html.escape(n)}</li>' for n in notes]
        parts += ["</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- writing ----------------------------------------------------------------------------


def _replace_folder(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target`` (a rename each; the old folder goes last)."""
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_pages(folder: str | Path, report: Optional[dict[str, Any]] = None,
                progress: Optional[Callable[[str], None]] = None) -> Pages:
    """Write ``figures/``, ``report.md`` and ``report.html`` into the run folder ``folder``.

    ``report`` defaults to the folder's report.json (a missing or malformed one
    raises :class:`~spikereg.report.summary.ReportError`).
    """
    folder = Path(folder)
    report = read_report(folder) if report is None else report
    notes: list[str] = []
    plots = collect_plots(folder, report, notes, progress)
    staging = folder / f".{FIGURES_DIR}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for plot in plots:
            (staging / f"{plot.name}.png").write_bytes(plot.png)
        _replace_folder(staging, folder / FIGURES_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress is not None:
        progress("pages")
    markdown = write_text_atomic(folder / MD_NAME, render_markdown(report, plots, notes))
    page = write_text_atomic(folder / HTML_NAME, render_html(report, plots, notes))
    return Pages(markdown, page, [folder / FIGURES_DIR / f"{p.name}.png" for p in plots], notes)
