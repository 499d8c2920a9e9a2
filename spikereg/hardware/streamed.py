"""Energy of the run we would do on Loihi 2: copies in parallel, patches streamed, time from the workload.

The schedule (how long the chips are busy, how many steps every copy runs, what
crosses the host link) is :mod:`spikereg.hardware.loihi2_schedule`'s; this
module charges it:

* dynamic: the run's synops (effective, and on zero weights where they are
  stored: :data:`~spikereg.hardware.rules.DENSE`, not with sparse synapses) and
  spike messages at the profile's per-event energies, as the sequential estimate charges them
  (:func:`spikereg.hardware.energy.neuromorphic_energy`); neuron updates =
  copies x on-chip neurons of one copy x the steps the chips run (idle copies
  of a pass's last round and drain steps included); the host link's bits
  (the spikes the host sends in -- the encoded input, or the delta encoder's
  spikes where the input layer runs on the host -- and the readout's spikes
  out, ``host_bytes_per_spike`` each) at ``energy_per_host_bit_pj``;
* static: static power x chips x the seconds the chips are busy (the host's
  work between passes is not charged: a chip that is power-gated or given other
  work meanwhile);
* beside the energy: the latency of the registration on the chips (its busy
  time; the host's own time is apart) and the energy-delay product.

:func:`streamed_rows` gives the rows report.json's ``energy.neuromorphic``
carries for a chip with a schedule (:mod:`spikereg.hardware.energy_section`): the streamed estimate (the main row), the
same schedule with PilotNet's measured step (a sensitivity row) and the old
sequential figure (one copy, patch after patch, PilotNet's step).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from spikereg.hardware import Figure, MappingReport, NeuromorphicProfile
from spikereg.hardware.activity import Activity, LayerCost
from spikereg.hardware.energy import MW, PJ, US, EnergyBreakdown, EnergyTerm
from spikereg.hardware.loihi2_schedule import (
    LayerLoad,
    OpTimes,
    Schedule,
    ScheduleError,
    has_schedule,
    plan,
    schedule_figures,
)
from spikereg.hardware.rules import DENSE, SynapseAccounting

__all__ = ["ScheduleError", "has_schedule", "layer_loads", "link_spikes_in", "passes_of", "schedule_of",
           "schedule_rows", "streamed_energy", "streamed_rows"]


def passes_of(report: dict[str, Any]) -> list[int]:
    """Patches of each refinement pass, in order (from the counts when the run has them)."""
    iterations = (report.get("counts") or {}).get("iterations")
    if iterations:
        return [int(it["patches"]) for it in iterations]
    passes = int(report.get("iterations", 1)) * int(report.get("pyramid", 1) or 1)
    total = int(report.get("patches") or int(report["iterations"]) * int(report["patches_per_iteration"]))
    base, extra = divmod(total, max(1, passes))
    return [base + (1 if i < extra else 0) for i in range(passes)]


def window_of(report: dict[str, Any]) -> int:
    """Time steps per patch."""
    per_step = (report.get("counts") or {}).get("per_step")
    if per_step and per_step.get("window"):
        return int(per_step["window"])
    if report.get("time_steps_per_patch"):
        return int(report["time_steps_per_patch"])
    patches = sum(passes_of(report))
    return max(1, int(report["time_steps"]) // max(1, patches))


def layer_loads(report: dict[str, Any], costs: Sequence[LayerCost], counts: Activity, mapping: MappingReport,
                spikes_per_layer: Sequence[int], accounting: SynapseAccounting = DENSE) -> list[LayerLoad]:
    """Each on-chip layer's cores, neurons and mean work per step of a patch's window.

    The run's per-step counts (report.json's ``counts.per_step``) give the work
    at each step; without them, a layer's synops (``counts``: those charged) and
    spikes are spread evenly over the window. The synops on zero weights are a
    core's work only where ``accounting`` stores them.
    """
    patches = max(1, sum(passes_of(report)))
    window = window_of(report)
    cores = {layer.index: layer.cores for layer in mapping.layers}
    per_step = (report.get("counts") or {}).get("per_step")
    loads = []
    for i, (cost, synops, sent) in enumerate(zip(costs, counts.synops, spikes_per_layer)):
        if not cost.on_chip:
            continue
        if per_step:
            zeros = per_step["synops_structural_zeros"][i] if accounting.zero_weights else [0] * window
            arriving = [(a + b) / patches for a, b in zip(per_step["synops_effective"][i], zeros)]
            spikes = [s / patches for s in per_step["spikes"][i]]
        else:
            arriving = [synops.total / patches / window] * window
            spikes = [sent / patches / window] * window
        loads.append(LayerLoad(name=f"{cost.index}", cores=int(cores.get(cost.index, 1)), neurons=cost.neurons,
                               synops=arriving, spikes=spikes))
    return loads


def schedule_of(report: dict[str, Any], costs: Sequence[LayerCost], counts: Activity, chip: NeuromorphicProfile,
                mapping: MappingReport, spikes_per_layer: Sequence[int], input_spikes: int, *, chips: int = 1,
                step_seconds: Optional[float] = None, accounting: SynapseAccounting = DENSE) -> Schedule:
    """The registration's schedule on ``chips`` chips of ``chip`` (see :mod:`spikereg.hardware.loihi2_schedule`);
    ``mapping`` sets the cores of a copy, ``accounting`` which synops its cores work through."""
    figures = schedule_figures(chip)
    passes = passes_of(report)
    patches = max(1, sum(passes))
    per_spike = float(figures["host_bytes_per_spike"].value)
    return plan(
        layer_loads(report, costs, counts, mapping, spikes_per_layer, accounting),
        window=window_of(report), patches_per_pass=passes, cores_per_copy=mapping.cores,
        cores_per_chip=int(chip.cores_per_chip.value), times=OpTimes.of(chip), chips=chips,
        input_bytes_per_patch=link_spikes_in(costs, spikes_per_layer, input_spikes) / patches * per_spike,
        output_bytes_per_patch=spikes_per_layer[-1] / patches * per_spike,
        link_bit_s=float(figures["host_link_gbit_s"].value) * 1e9, step_seconds=step_seconds)


def link_spikes_in(costs: Sequence[LayerCost], spikes_per_layer: Sequence[int], input_spikes: int) -> int:
    """Spikes the host sends the chip: the encoded input, or, where the first layers run on the host
    (an SDNN input delta-encoded there), the spikes of the last of them."""
    sent = input_spikes
    for cost, spikes in zip(costs, spikes_per_layer):
        if cost.on_chip:
            break
        sent = spikes
    return int(sent)


def streamed_energy(counts: Activity, chip: NeuromorphicProfile, schedule: Schedule,
                    timing: dict[str, Figure]) -> EnergyBreakdown:
    """Energy of ``schedule``: events at the profile's energies, static power for the busy time."""
    def term(count: float, unit: str, name: str, extra: Optional[dict[str, Figure]] = None) -> EnergyTerm:
        figure: Figure = getattr(chip, name)
        return EnergyTerm(count, unit, count * float(figure.value) * PJ, {name: figure, **(extra or {})})

    bits = (schedule.input_bytes + schedule.output_bytes) * 8
    copy_neurons = counts.neurons
    dynamic = {
        "synops_effective": term(counts.effective_synops, "synops", "energy_per_synop_pj"),
        "synops_structural_zeros": term(counts.structural_zero_synops, "synops", "energy_per_synop_pj"),
        "neuron_updates": term(schedule.copies * copy_neurons * schedule.steps, "neuron updates",
                               "energy_per_neuron_update_pj"),
        "spikes": term(counts.spikes, "spikes", "energy_per_spike_pj"),
        "host_io": term(bits, "bits", "energy_per_host_bit_pj", {"host_bytes_per_spike": chip.host_bytes_per_spike}),
    }
    power = chip.static_power_mw
    static = {"static": EnergyTerm(schedule.busy_seconds, "s",
                                   float(power.value) * MW * schedule.chips * schedule.busy_seconds,
                                   {"static_power_mw": power, **timing})}
    layout = (f"{schedule.chips_per_copy} chips each" if schedule.chips_per_copy > 1
              else f"{schedule.copies_per_chip} per chip")
    notes = [f"{schedule.copies} copies ({layout}, {schedule.chips} chip(s), "
             f"{schedule.cores_per_copy} cores each), patches streamed a window of {schedule.window} steps apart; "
             f"static power charged for the {schedule.busy_seconds:.4g} s the chips are busy; "
             f"pace set by the {schedule.bottleneck}", *schedule.notes]
    return EnergyBreakdown(profile=chip.name, category=chip.category, dynamic=dynamic, static=static, notes=notes)


def _copies(schedule: Schedule) -> str:
    """``4 copies in parallel`` or, for a copy that spans chips, ``1 copy on 2 chips``."""
    if schedule.chips_per_copy == 1:
        return f"{schedule.copies} copies in parallel"
    if schedule.copies == 1:
        return f"1 copy on {schedule.chips_per_copy} chips"
    return f"{schedule.copies} copies in parallel, on {schedule.chips_per_copy} chips each"


def _entry(energy: EnergyBreakdown, schedule: Schedule, model: str, label: str) -> dict[str, Any]:
    entry = energy.to_dict()
    latency = schedule.busy_seconds
    entry.update({"model": model, "label": label, "chips": schedule.chips, "latency_s": latency,
                  "edp_js": energy.total_j * latency, "schedule": schedule.to_dict()})
    return entry


def streamed_rows(report: dict[str, Any], costs: Sequence[LayerCost], counts: Activity, chip: NeuromorphicProfile,
                  mapping: MappingReport, spikes_per_layer: Sequence[int], input_spikes: int,
                  chips: int = 1, accounting: SynapseAccounting = DENSE) -> dict[str, dict[str, Any]]:
    """``{"": streamed, "_pilotnet_step": sensitivity}``: suffixes of the chip's row names, entries as report.json's.

    ``counts`` are the synops charged (:func:`~spikereg.hardware.activity.charged` by ``accounting``), ``mapping``
    the one built the same way (its cores set the copies per chip).

    Raises :class:`ScheduleError` when the profile has no schedule figures or the
    network does not fit a chip.
    """
    args = (report, costs, counts, chip, mapping, spikes_per_layer, input_spikes)
    return schedule_rows(counts, chip, lambda step: schedule_of(*args, chips=chips, step_seconds=step,
                                                                accounting=accounting))


def schedule_rows(counts: Activity, chip: NeuromorphicProfile,
                  schedule_for: Callable[[Optional[float]], Schedule]) -> dict[str, dict[str, Any]]:
    """:func:`streamed_rows` for any workload: ``schedule_for(step_seconds)`` builds its schedule (None: the
    time per step from the workload), ``counts`` its events."""
    figures = schedule_figures(chip)
    timing = {name: figures[name] for name in ("time_per_synop_ns", "time_per_neuron_update_ns",
                                               "time_per_spike_ns", "step_sync_us", "host_link_gbit_s")}
    derived = schedule_for(None)
    step = chip.time_per_step_us
    fixed = schedule_for(float(step.value) * US)
    return {
        "": _entry(streamed_energy(counts, chip, derived, timing), derived, "streamed",
                   f"{_copies(derived)}, patches streamed, time per step from the workload "
                   f"(mean {derived.mean_step_us:.3g} us)"),
        "_pilotnet_step": _entry(
            streamed_energy(counts, chip, fixed, {"time_per_step_us": step,
                                                  "host_link_gbit_s": figures["host_link_gbit_s"]}),
            fixed, "streamed, PilotNet step",
            f"sensitivity: the same schedule at PilotNet's measured {step.value} us per step"),
    }

