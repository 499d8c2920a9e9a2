"""``report.json`` as ``spikereg run`` writes it: its name and format, the layer table, the chip profile.

:mod:`spikereg.report.summary` reads it back and checks it (``spikereg report``).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from spikereg.data.io import write_text_atomic
from spikereg.hardware import NeuromorphicProfile

REPORT_NAME = "report.json"
REPORT_FORMAT = "spikereg-report/1"


#: The chip a run stands for: Lava's backends run Loihi 2's fixed-point arithmetic (``Loihi2SimCfg``
#: on the simulator, ``Loihi2HwCfg`` on the chip), and the torch backend the same network's integers.
CHIP_PROFILE = "loihi2"
#: The profile figures that turn a run's counts into time and energy on that chip, and its size.
CHIP_FIGURES = ("time_per_step_us", "static_power_mw", "energy_per_synop_pj", "energy_per_neuron_update_pj",
                "energy_per_spike_pj", "neurons_per_core", "cores_per_chip")
#: Where the run happened, by backend: only ``chip`` has measurements of its own.
RAN_ON = {"loihi2": "chip", "sim": "simulator", "torch": "torch"}


def chip_profile_section(backend: str, profile: NeuromorphicProfile, measured: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
    """report.json's ``chip_profile``: the hardware profile the run is costed on, and the chip's own probes.

    ``name``, ``description`` and ``figures`` (value, unit, source, kind each)
    come from ``hardware_profiles/<name>.yaml``; ``ran_on`` says whether the
    chip ran (``chip``) or was modelled (``simulator``, ``torch``);
    ``measured`` is lava-loihi's power and time per step on the chip
    (``lava_export.runner.LavaRun.chip_profile``), None where no chip ran.
    """
    return {
        "name": profile.name,
        "description": profile.description,
        "ran_on": RAN_ON.get(backend, backend),
        "figures": {key: asdict(getattr(profile, key)) for key in CHIP_FIGURES},
        "measured": dict(measured) if measured else None,
    }


def layer_table(spikes: np.ndarray, neurons: list[int], time_steps: int) -> list[dict[str, Any]]:
    """Per-layer spikes and mean spike rate (spikes per neuron per time step)."""
    rows = []
    for index, (count, size) in enumerate(zip(spikes, neurons), start=1):
        rate = float(count) / (size * time_steps) if size and time_steps else 0.0
        rows.append({"layer": index, "neurons": int(size), "spikes": int(count), "spike_rate": rate})
    return rows


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    """Write ``folder/report.json`` atomically."""
    return write_text_atomic(Path(folder) / REPORT_NAME, json.dumps(dict(report, format=REPORT_FORMAT), indent=2))
