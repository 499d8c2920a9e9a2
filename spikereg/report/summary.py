"""``report.json``: what a registration run did, and its readable summary.

The JSON is written by ``spikereg run`` and read back by ``spikereg report``;
its layer table is measured on the backend itself (spikes read from every
layer of the Lava network, or from SLAYER's layer outputs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REPORT_NAME = "report.json"
REPORT_FORMAT = "spikereg-report/1"
REQUIRED = ("format", "backend", "iterations", "patches_per_iteration", "time_steps", "layers",
            "similarity", "timing")


class ReportError(ValueError):
    """A run folder without a readable report.json."""


def layer_table(spikes: np.ndarray, neurons: list[int], time_steps: int) -> list[dict[str, Any]]:
    """Per-layer spikes and mean spike rate (spikes per neuron per time step)."""
    rows = []
    for index, (count, size) in enumerate(zip(spikes, neurons), start=1):
        rate = float(count) / (size * time_steps) if size and time_steps else 0.0
        rows.append({"layer": index, "neurons": int(size), "spikes": int(count), "spike_rate": rate})
    return rows


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    """Write ``folder/report.json`` atomically."""
    path = Path(folder) / REPORT_NAME
    tmp = path.with_name(f".{REPORT_NAME}.tmp")
    tmp.write_text(json.dumps(dict(report, format=REPORT_FORMAT), indent=2))
    tmp.replace(path)
    return path


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
    return report


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
    lines.append("")
    lines.append(f"{'layer':>5} {'neurons':>9} {'spikes':>12} {'rate':>8}")
    for row in report["layers"]:
        lines.append(f"{row['layer']:>5} {row['neurons']:>9} {row['spikes']:>12} {row['spike_rate']:>8.4f}")
    total = sum(row["spikes"] for row in report["layers"])
    lines.append(f"{'all':>5} {'':>9} {total:>12}")
    return "\n".join(lines)
