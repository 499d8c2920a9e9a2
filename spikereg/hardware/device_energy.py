"""Conventional devices as report.json rows: the ANN twin's energy on a whole device.

A device profile (:mod:`spikereg.hardware.device`) gives power and throughput;
the twin's MACs of the run give the time it would take there and so the
energy: ``time = MACs / macs_per_s``, ``total = power_w x time``, of which
``idle_power_w x time`` is static (the device at rest) and the rest dynamic.
A device without an idle figure (a data sheet's power mode) has its whole
energy under dynamic and no static term.

:func:`device_rows` orders the rows as report.json's ``energy.conventional``
carries them: measured devices first, so the first row is the preferred one
(report.json names it in ``energy.conventional_preferred``;
:mod:`spikereg.hardware.energy_section`).
"""
from __future__ import annotations

from typing import Sequence

from spikereg.hardware import DeviceProfile
from spikereg.hardware.device import energy_j
from spikereg.hardware.energy import EnergyBreakdown, EnergyTerm


def device_energy(profile: DeviceProfile, macs: int) -> EnergyBreakdown:
    """The twin's ``macs`` on the device of ``profile`` (module docstring)."""
    total, idle, seconds = energy_j(profile, macs)
    run = {"power_w": profile.power_w, "macs_per_s": profile.macs_per_s}
    if profile.idle_power_w is None:
        dynamic = {"device": EnergyTerm(seconds, "s", total, run)}
        static: dict[str, EnergyTerm] = {}
        notes = ["the device's whole power while it runs, for the time its throughput gives; no idle figure, "
                 "so no static term"]
    else:
        dynamic = {"device_active": EnergyTerm(seconds, "s", total - idle,
                                               {**run, "idle_power_w": profile.idle_power_w})}
        static = {"device_idle": EnergyTerm(seconds, "s", idle, {"idle_power_w": profile.idle_power_w,
                                                                 "macs_per_s": profile.macs_per_s})}
        notes = ["device energy counter: total = power x time (idle included); static = idle power x time"]
    if profile.workload is not None:
        notes.append(f"throughput measured on: {profile.workload.value}")
    return EnergyBreakdown(profile=profile.name, category="device", dynamic=dynamic, static=static, notes=notes)


def device_rows(profiles: Sequence[DeviceProfile], macs: int) -> dict[str, EnergyBreakdown]:
    """One row per device profile, measured ones first (the first is the preferred baseline)."""
    ordered = sorted(profiles, key=lambda p: not p.measured)
    return {p.name: device_energy(p, macs) for p in ordered}

