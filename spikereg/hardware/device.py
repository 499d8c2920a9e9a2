"""Whole-device baselines: a conventional device's energy on the ANN twin, from its own counter or a data sheet.

A ``device`` profile (:class:`spikereg.hardware.profiles.DeviceProfile`) holds
the device's mean power while it runs the twin and the twin's MACs per second
on it, so that the energy of ``n`` MACs is ``power_w x n / macs_per_s``; when
``idle_power_w`` is given that much of it is the device at rest (static), the
rest the work (dynamic).

``benchmarks/gpu_energy.py`` measures one on an NVIDIA GPU: the NVML energy
counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ) read before and after the
work, idle power sampled apart with nothing running. The arithmetic of those
readings (:class:`Reading`) and the profile it writes (:func:`measured_profile`,
:func:`write_profile`) live here, so they are tested without a GPU.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml

from spikereg.errors import SpikeRegError
from spikereg.hardware.profiles import PROFILE_DIR, DeviceProfile, load_profile

#: The file name benchmarks/gpu_energy.py writes its measured profile to, in hardware_profiles/.
MEASURED_NAME = "gpu_measured"


class DeviceError(SpikeRegError, ValueError):
    """Readings that cannot be turned into energy (a counter that ran backwards, no time)."""


@dataclass(frozen=True)
class Reading:
    """One measured window of work: the energy counter before and after, the seconds, the MACs done.

    ``idle_w`` is the device's power at rest, measured apart on the same device.
    """

    start_mj: float
    end_mj: float
    seconds: float
    idle_w: float
    macs: int = 0
    patches: int = 0

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise DeviceError(f"a measured window must last more than 0 s, got {self.seconds!r}")
        if self.end_mj < self.start_mj:
            raise DeviceError(f"the energy counter ran backwards ({self.start_mj} -> {self.end_mj} mJ): "
                              "the device was reset or the counter wrapped; measure again")
        if not self.idle_w >= 0:
            raise DeviceError(f"idle power must be >= 0 W, got {self.idle_w!r}")

    @property
    def total_j(self) -> float:
        """Everything the device drew in the window, idle included."""
        return (self.end_mj - self.start_mj) / 1000.0

    @property
    def idle_j(self) -> float:
        """What the device at rest would have drawn in the same time."""
        return self.idle_w * self.seconds

    @property
    def dynamic_j(self) -> float:
        """The work's share: total - idle (never below 0: a noisy counter over a short window)."""
        return max(0.0, self.total_j - self.idle_j)

    @property
    def power_w(self) -> float:
        return self.total_j / self.seconds

    @property
    def macs_per_s(self) -> float:
        return self.macs / self.seconds

    @property
    def patches_per_s(self) -> float:
        return self.patches / self.seconds


def idle_power_w(samples_mw: Sequence[float]) -> float:
    """Mean of power samples (NVML's ``nvmlDeviceGetPowerUsage`` is in mW), in W."""
    samples = [float(s) for s in samples_mw]
    if not samples:
        raise DeviceError("no idle power samples")
    if any(s < 0 for s in samples):
        raise DeviceError("a negative power sample")
    return sum(samples) / len(samples) / 1000.0


def best_batch(readings: Mapping[int, Reading]) -> int:
    """The batch size whose reading spent the least energy per MAC (ties: the smaller batch)."""
    if not readings:
        raise DeviceError("no readings to choose a batch from")
    return min(sorted(readings), key=lambda b: readings[b].total_j / max(1, readings[b].macs))


def energy_j(profile: DeviceProfile, macs: float, batch1: bool = False) -> tuple[float, float, float]:
    """``(total J, idle J, seconds)`` of ``macs`` MACs on the device (``batch1``: its one-patch figures)."""
    power = profile.power_batch1_w if batch1 else profile.power_w
    rate = profile.macs_per_s_batch1 if batch1 else profile.macs_per_s
    if power is None or rate is None:
        raise DeviceError(f"device profile {profile.name!r} has no batch-1 figures")
    seconds = float(macs) / float(rate.value)
    idle = float(profile.idle_power_w.value) * seconds if profile.idle_power_w is not None else 0.0
    return float(power.value) * seconds, idle, seconds


def _figure(value: Any, unit: str, source: str, kind: str = "measured") -> dict[str, Any]:
    return {"value": value, "unit": unit, "source": source, "kind": kind}


def measured_profile(*, name: str, device: str, driver: str, date: str, command: str, workload: str,
                     readings: Mapping[int, Reading], idle_w: float, idle_seconds: float,
                     snn: Union[Reading, None] = None) -> dict[str, Any]:
    """The YAML mapping of a measured device profile: every figure ``measured``, its source the measurement.

    ``readings`` holds one :class:`Reading` per batch size (1 among them); the
    best batch is the one with the least energy per MAC.
    """
    if 1 not in readings:
        raise DeviceError("the readings must include batch size 1")
    best = best_batch(readings)
    at = readings[best]
    one = readings[1]
    where = f"`{command}` on {device} (driver {driver}), {date}"
    counter = "NVML nvmlDeviceGetTotalEnergyConsumption before and after, CUDA synchronised"

    def power_source(batch: int, r: Reading) -> str:
        return (f"{where}: {r.total_j:.6g} J over {r.seconds:.6g} s for {r.patches} patches at batch {batch} "
                f"({counter}; idle included)")

    data = {
        "name": name,
        "category": "device",
        "description": (f"{device}, measured: the ANN twin of {workload} on the GPU, the device's own energy "
                        f"counter read around the work, idle power sampled apart ({idle_seconds:g} s at rest). "
                        f"Best batch {best} patches. The network's work only: the host's patch cutting, "
                        f"stitching and warping run on the CPU, outside this counter (as outside the chip's)."),
        "device": _figure(device, "name", f"{where}: NVML nvmlDeviceGetName"),
        "power_w": _figure(at.power_w, "W", power_source(best, at)),
        "macs_per_s": _figure(at.macs_per_s, "MAC/s", f"{where}: {at.macs} twin MACs in {at.seconds:.6g} s "
                                                      f"at batch {best}"),
        "idle_power_w": _figure(idle_w, "W", f"{where}: mean of NVML nvmlDeviceGetPowerUsage over "
                                             f"{idle_seconds:g} s with nothing running"),
        "power_batch1_w": _figure(one.power_w, "W", power_source(1, one)),
        "macs_per_s_batch1": _figure(one.macs_per_s, "MAC/s", f"{where}: {one.macs} twin MACs in "
                                                              f"{one.seconds:.6g} s at batch 1"),
        "best_batch": _figure(best, "patches", f"{where}: least energy per MAC among batches "
                                               f"{', '.join(str(b) for b in sorted(readings))}"),
        "workload": _figure(workload, "text", f"{where}"),
    }
    if snn is not None:
        data["snn_power_w"] = _figure(snn.power_w, "W", f"{where}: the SNN in SLAYER, {snn.total_j:.6g} J "
                                                        f"over {snn.seconds:.6g} s ({counter})")
        data["snn_patches_per_s"] = _figure(snn.patches_per_s, "patches/s",
                                            f"{where}: the SNN in SLAYER, {snn.patches} patches in "
                                            f"{snn.seconds:.6g} s")
    return data


def write_profile(path: Union[str, Path], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as a profile YAML, then load it back: a profile that would not load is not left behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    header = ("# Written by benchmarks/gpu_energy.py: every figure measured on the device named below.\n"
              "# Do not edit by hand; rerun the benchmark instead.\n")
    try:
        tmp.write_text(header + yaml.safe_dump(dict(data), sort_keys=False, width=120), encoding="utf-8")
        load_profile(tmp)  # a Path is always read as a file
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_CATEGORY = re.compile(r"^category:\s*device\s*$", re.MULTILINE)


def device_profile_names(folder: Union[str, Path, None] = None) -> tuple[str, ...]:
    """Names of the device profiles in ``folder`` (the shipped ones by default), measured ones first."""
    folder = Path(folder) if folder is not None else PROFILE_DIR
    if not folder.is_dir():
        return ()
    names = sorted(p.stem for p in folder.glob("*.yaml") if _CATEGORY.search(p.read_text(encoding="utf-8")))
    return tuple(sorted(names, key=lambda n: (not n.startswith(MEASURED_NAME), n)))
