"""How long a registration would keep Loihi 2 busy: copies of the network in parallel, patches streamed.

The run SpikeReg would do on a chip, not one patch after another on one copy:

* **Copies.** The mapping (``spikereg map``) says how many cores one copy of the
  network needs; ``copies = floor(cores_per_chip / cores_per_copy) x chips``
  copies run side by side, each on patches of its own. A copy larger than a
  chip is refused, unless the caller lets it span chips (``span_chips``: a
  graph file's U-Net): then it takes ``ceil(cores_per_copy / cores_per_chip)``
  chips, and its spikes between chips are charged as any other message (the
  extra inter-chip hops' energy and time are not modelled).
* **Streaming.** Each copy takes its patches back to back, a new patch every
  ``window`` time steps, as netx streams a sigma-delta network: layer ``l``
  answers patch ``k`` in steps ``[k*window + l, (k+1)*window + l)``, so the
  layers overlap (pipelined) and a stream of ``n`` patches takes
  ``n*window + layers - 1`` steps (``layers - 1`` drain steps at its end).
  SpikeReg restarts a stream every ``stream_patches`` (64) patches. A model
  whose every patch runs from rest and ends within its own window (a graph
  file) has no drain steps (``drain_steps=0``): the caller states its reset.
* **Passes.** A registration's refinement passes run one after another (each
  needs the field of the one before); within a pass the patches are dealt
  round robin over the copies, so a pass takes
  ``ceil(patches / copies)`` patches' worth of steps.
* **Time per step**, from the workload rather than a measured step of another
  network: cores run in parallel within a step, so a step lasts as long as
  its busiest core, plus a barrier: ``max over cores (synops x t_synop +
  neurons x t_update + spikes sent x t_spike) + t_sync``. A layer's work is
  spread evenly over its cores; the work at each step of the window is the
  run's own per-step count averaged over patches (every copy does the same
  mean work, in lockstep). Drain steps carry neuron updates only.
* **Host link.** A chip receives its copies' input spikes over one link: a
  window of ``copies_per_chip`` patches needs ``bytes x 8 / rate`` seconds of
  link time; when that is longer than the window's compute, the link sets
  the pace (it held back lava-dl's PilotNet SDNN on Loihi 2).

Only time comes out of here (:class:`Schedule`); the energy of the schedule
(dynamic events, static power x busy time, the host link's bits) is
:mod:`spikereg.hardware.streamed`'s. Every per-operation time is a cited
figure of the profile (``time_per_synop_ns``, ``time_per_neuron_update_ns``,
``time_per_spike_ns``, ``step_sync_us``, ``host_link_gbit_s``,
``host_bytes_per_spike``); a profile without them has no schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from spikereg.errors import SpikeRegError
from spikereg.hardware.profiles import Figure, NeuromorphicProfile

#: The profile figures the schedule needs.
SCHEDULE_FIGURES: tuple[str, ...] = ("time_per_synop_ns", "time_per_neuron_update_ns", "time_per_spike_ns",
                                     "step_sync_us", "host_link_gbit_s", "host_bytes_per_spike")
#: Patches per stream before SpikeReg restarts it (spikereg.registration.pipeline.LAVA_CHUNK).
STREAM_PATCHES = 64

NS = 1e-9
US = 1e-6


class ScheduleError(SpikeRegError, ValueError):
    """A schedule that cannot be built (a profile without its times, counts that do not fit)."""


@dataclass(frozen=True)
class LayerLoad:
    """One on-chip layer of one copy: its cores and neurons, and its work per step of a patch's window.

    ``synops`` and ``spikes`` hold, for each step of the window, the mean
    synaptic operations arriving at the layer and spikes it sends, per patch.
    """

    name: str
    cores: int
    neurons: int
    synops: Sequence[float]
    spikes: Sequence[float]

    def core_seconds(self, step: int, times: "OpTimes") -> float:
        """Seconds the busiest core of this layer works at ``step`` of the window (-1: a drain step)."""
        cores = max(1, self.cores)
        work = self.neurons / cores * times.update_s
        if step >= 0:
            work += self.synops[step] / cores * times.synop_s + self.spikes[step] / cores * times.spike_s
        return work


@dataclass(frozen=True)
class OpTimes:
    """Per-operation times in seconds (from the profile's figures)."""

    synop_s: float
    update_s: float
    spike_s: float
    sync_s: float

    @classmethod
    def of(cls, profile: NeuromorphicProfile) -> "OpTimes":
        figures = schedule_figures(profile)
        return cls(synop_s=float(figures["time_per_synop_ns"].value) * NS,
                   update_s=float(figures["time_per_neuron_update_ns"].value) * NS,
                   spike_s=float(figures["time_per_spike_ns"].value) * NS,
                   sync_s=float(figures["step_sync_us"].value) * US)


def schedule_figures(profile: NeuromorphicProfile) -> dict[str, Figure]:
    """The profile's schedule figures; :class:`ScheduleError` names the first one missing."""
    missing = [name for name in SCHEDULE_FIGURES if getattr(profile, name, None) is None]
    if missing:
        raise ScheduleError(f"profile {profile.name!r} has no {missing[0]!r}: no streamed schedule on it "
                            f"(needs {', '.join(SCHEDULE_FIGURES)})")
    return {name: getattr(profile, name) for name in SCHEDULE_FIGURES}


def has_schedule(profile: NeuromorphicProfile) -> bool:
    """True when the profile carries every figure the schedule needs."""
    return all(getattr(profile, name, None) is not None for name in SCHEDULE_FIGURES)


def window_seconds(layers: Sequence[LayerLoad], window: int, times: OpTimes) -> list[float]:
    """Seconds of each step of one window: the busiest core of any layer, plus the barrier."""
    for layer in layers:
        if len(layer.synops) != window or len(layer.spikes) != window:
            raise ScheduleError(f"layer {layer.name}: {len(layer.synops)} per-step synops and "
                                f"{len(layer.spikes)} spikes for a window of {window} steps")
    return [max((layer.core_seconds(j, times) for layer in layers), default=0.0) + times.sync_s
            for j in range(window)]


def drain_seconds(layers: Sequence[LayerLoad], times: OpTimes) -> float:
    """Seconds of one drain step: neuron updates only, plus the barrier."""
    return max((layer.core_seconds(-1, times) for layer in layers), default=0.0) + times.sync_s


@dataclass(frozen=True)
class Schedule:
    """Time of one registration on the chips, pass by pass (see the module docstring)."""

    copies_per_chip: int
    chips: int
    cores_per_copy: int
    window: int
    drain_steps: int
    patches_per_pass: list[int]
    compute_window_s: float  # one window of compute (every copy busy)
    link_window_s: float  # one window's input for every copy of a chip over the host link
    drain_step_s: float
    pass_seconds: list[float]
    pass_steps: list[int]  # steps the chips run in each pass, drains included
    input_bytes: float  # over the registration, host -> chip
    output_bytes: float  # chip -> host
    notes: list[str] = field(default_factory=list)
    chips_per_copy: int = 1  # > 1: one copy spans chips (copies_per_chip is then 0)

    @property
    def copies(self) -> int:
        if self.chips_per_copy > 1:
            return self.chips // self.chips_per_copy
        return self.copies_per_chip * self.chips

    @property
    def window_s(self) -> float:
        """Seconds between two patches of one copy: compute or host link, whichever is slower."""
        return max(self.compute_window_s, self.link_window_s)

    @property
    def bottleneck(self) -> str:
        return "host link" if self.link_window_s > self.compute_window_s else "compute"

    @property
    def busy_seconds(self) -> float:
        """Seconds the chips run: every pass's streams (the host's work between passes not included)."""
        return sum(self.pass_seconds)

    @property
    def steps(self) -> int:
        """Time steps the chips run (each copy runs every one of them)."""
        return sum(self.pass_steps)

    @property
    def mean_step_us(self) -> float:
        return self.busy_seconds / self.steps / US if self.steps else 0.0

    def to_dict(self) -> dict:
        return {
            "copies_per_chip": self.copies_per_chip, "chips": self.chips, "copies": self.copies,
            "chips_per_copy": self.chips_per_copy,
            "cores_per_copy": self.cores_per_copy, "window": self.window, "drain_steps": self.drain_steps,
            "patches_per_pass": list(self.patches_per_pass), "steps": self.steps,
            "compute_window_s": self.compute_window_s, "link_window_s": self.link_window_s,
            "drain_step_s": self.drain_step_s, "bottleneck": self.bottleneck,
            "busy_seconds": self.busy_seconds, "mean_step_us": self.mean_step_us,
            "pass_seconds": list(self.pass_seconds), "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes, "notes": list(self.notes),
        }


def copies_per_chip(cores_per_copy: int, cores_per_chip: int) -> int:
    """Whole copies of a network of ``cores_per_copy`` cores on one chip (0 when it does not fit)."""
    if cores_per_copy <= 0 or cores_per_chip <= 0:
        raise ScheduleError(f"cores per copy ({cores_per_copy}) and per chip ({cores_per_chip}) must be positive")
    return cores_per_chip // cores_per_copy


def stream_steps(patches: int, window: int, drain: int, stream: int = STREAM_PATCHES) -> int:
    """Steps one copy runs for ``patches`` patches: streams of at most ``stream``, each drained."""
    if patches <= 0:
        return 0
    return patches * window + math.ceil(patches / stream) * drain


def plan(
    layers: Sequence[LayerLoad],
    *,
    window: int,
    patches_per_pass: Sequence[int],
    cores_per_copy: int,
    cores_per_chip: int,
    times: OpTimes,
    chips: int = 1,
    input_bytes_per_patch: float = 0.0,
    output_bytes_per_patch: float = 0.0,
    link_bit_s: Optional[float] = None,
    stream: int = STREAM_PATCHES,
    step_seconds: Optional[float] = None,
    drain_steps: Optional[int] = None,
    span_chips: bool = False,
) -> Schedule:
    """The schedule of a registration (module docstring).

    ``step_seconds`` replaces the workload's time per step by one fixed figure
    (a sensitivity row: PilotNet's measured step); ``link_bit_s`` None means the
    host link is not a limit; ``drain_steps`` None means ``layers - 1`` per
    stream; ``span_chips`` lets one copy take several chips.
    """
    if chips < 1:
        raise ScheduleError(f"chips must be at least 1, got {chips}")
    if window < 1:
        raise ScheduleError(f"window must be at least 1 step, got {window}")
    per_chip = copies_per_chip(cores_per_copy, cores_per_chip)
    notes = []
    chips_per_copy = 1
    if per_chip == 0:
        if not span_chips:
            raise ScheduleError(f"one copy needs {cores_per_copy} cores, more than a chip's {cores_per_chip}: "
                                "a copy spanning chips is not modelled")
        chips_per_copy = math.ceil(cores_per_copy / cores_per_chip)
        chips = max(chips, chips_per_copy) // chips_per_copy * chips_per_copy
        notes.append(f"one copy needs {cores_per_copy} cores: it spans {chips_per_copy} chips; spikes between "
                     "chips are charged as messages within a tile (inter-chip hops' energy and time not modelled)")
    drain = max(0, len(layers) - 1) if drain_steps is None else int(drain_steps)
    if step_seconds is None:
        steps_s = window_seconds(layers, window, times)
        drain_s = drain_seconds(layers, times)
    else:
        steps_s = [float(step_seconds)] * window
        drain_s = float(step_seconds)
        notes.append(f"time per step fixed at {step_seconds / US:.4g} us, not derived from the workload")
    compute_window = sum(steps_s)
    link_window = 0.0
    if link_bit_s:  # one link per chip; a copy spanning chips has one chip's link
        link_window = max(per_chip, 1) * (input_bytes_per_patch + output_bytes_per_patch) * 8 / link_bit_s
    window_s = max(compute_window, link_window)
    copies = per_chip * chips if per_chip else chips // chips_per_copy
    pass_seconds, pass_steps = [], []
    for patches in patches_per_pass:
        if patches < 0:
            raise ScheduleError(f"a pass of {patches} patches")
        rounds = math.ceil(patches / copies)  # patches of the busiest copy
        streams = math.ceil(rounds / stream) if rounds else 0
        pass_seconds.append(rounds * window_s + streams * drain * drain_s)
        pass_steps.append(stream_steps(rounds, window, drain, stream))
    total = sum(patches_per_pass)
    return Schedule(
        copies_per_chip=per_chip, chips=chips, cores_per_copy=cores_per_copy, window=window, drain_steps=drain,
        patches_per_pass=list(patches_per_pass), compute_window_s=compute_window, link_window_s=link_window,
        drain_step_s=drain_s, pass_seconds=pass_seconds, pass_steps=pass_steps,
        input_bytes=total * input_bytes_per_patch, output_bytes=total * output_bytes_per_patch, notes=notes,
        chips_per_copy=chips_per_copy)

