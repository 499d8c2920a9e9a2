"""report.json's ``energy`` section: every row of the comparison, in one place.

:func:`spikereg.hardware.energy.energy_report` costs the run on each chip one
patch after another and the ANN twin at 45 nm; this adds

* for a chip whose profile has per-operation times (Loihi 2), the run we would
  do there (:mod:`spikereg.hardware.streamed`): the chip's own row becomes the
  streamed schedule, ``<chip>_pilotnet_step`` the same schedule at the
  profile's measured step, and the old figure stays as ``<chip>_sequential``
  (not for a run measured on the chip itself, whose own time stands);
* whole conventional devices (:mod:`spikereg.hardware.device_energy`): a GPU
  measured with its energy counter, a data sheet's module, first in
  ``energy.conventional`` (a measured one at the very front, named in
  ``energy.conventional_preferred``), with every chip row's ratio to them.

A graph file (``spikereg-graph/1``) takes the same rows from
:mod:`spikereg.hardware.graph_energy`: every edge costed, nonzero synapses only,
every patch from rest. A chain built with sparse synapses (``synapses="sparse"``)
is costed the same way in every row, the streamed ones included: nonzero
synapses stored and charged, on the cores of that mapping.

Kept apart from ``energy_report`` so that the streamed and device models, which
build on its terms, are not imported by it.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Sequence, Union

from spikereg.hardware import DeviceProfile, NeuromorphicProfile, Profile, load_profile, map_network
from spikereg.hardware.activity import activity, charged, costs_from_mapping, exact_activity
from spikereg.hardware.device_energy import device_rows
from spikereg.hardware.energy import DEFAULT_PROFILES, energy_report, weakest_kind
from spikereg.hardware.graph_energy import graph_energy_report, graph_streamed_rows
from spikereg.hardware.graph_mapping import is_graph
from spikereg.hardware.rules import synapse_accounting
from spikereg.hardware.streamed import ScheduleError, has_schedule, streamed_rows
from spikereg.netx_file import NetxFile


def _ratios(entry: dict[str, Any], conventional: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"total": entry["total_j"] / ann["total_j"] if ann["total_j"] else None,
                   "dynamic": entry["dynamic_j"] / ann["total_j"] if ann["total_j"] else None,
                   "kind": weakest_kind([entry["kind"], ann["kind"]])}
            for name, ann in conventional.items()}


def chain_streamed_rows(report: dict[str, Any], model_path, chip: NeuromorphicProfile,
                        chips: int = 1, synapses: str = "conv") -> dict[str, dict[str, Any]]:
    """The streamed rows of a sequential netx file's run on ``chips`` chips
    (:func:`~spikereg.hardware.streamed.streamed_rows`), its synapses built as ``synapses`` says
    (``"sparse"``: nonzero synapses only, in the cores and in each core's step time)."""
    accounting = synapse_accounting(False, synapses)
    mapping = map_network(model_path, chip, synapses)
    costs = costs_from_mapping(mapping)
    spikes = [int(row["spikes"]) for row in report["layers"]]
    counts = activity(spikes, int(report["input_spikes"]), costs)
    if report.get("counts"):  # counted per neuron: exact fan-out, as energy_report charges it
        counts = exact_activity(counts, report["counts"], costs)
    return streamed_rows(report, costs, charged(counts, accounting), chip, mapping, spikes,
                         int(report["input_spikes"]), chips=chips, accounting=accounting)


def energy_section(report: dict[str, Any], model_path: Union[str, Path, NetxFile],
                   profiles: Sequence[Union[str, Path, Profile]] = DEFAULT_PROFILES,
                   synapses: str = "conv") -> dict[str, Any]:
    """:func:`~spikereg.hardware.energy.energy_report` (a graph file's: :func:`graph_energy_report`) with the
    streamed chip rows and the device rows.

    ``synapses``: how a chain's synapses are built, ``"conv"`` (stock netx, zero weights charged) or
    ``"sparse"`` (nonzero synapses only, every row); a graph file is costed with nonzero synapses either way.
    """
    graph = is_graph(model_path)
    synapse_accounting(graph, synapses)  # an unknown value fails before any profile is read
    loaded = [p if not isinstance(p, (str, Path)) else load_profile(p) for p in profiles]
    devices = [p for p in loaded if isinstance(p, DeviceProfile)]
    estimate, streamed_for = ((graph_energy_report, graph_streamed_rows) if graph
                              else (partial(energy_report, synapses=synapses),
                                    partial(chain_streamed_rows, synapses=synapses)))
    energy = estimate(report, model_path, [p for p in loaded if not isinstance(p, DeviceProfile)])

    rows = {name: b.to_dict() for name, b in device_rows(devices, int(energy["counts"]["ann_macs"])).items()}
    conventional = {**rows, **energy["conventional"]}
    energy["conventional"] = conventional
    energy["conventional_preferred"] = next((name for name, row in rows.items() if row["kind"] == "measured"), None)

    neuromorphic: dict[str, Any] = {}
    for chip in (p for p in loaded if isinstance(p, NeuromorphicProfile)):
        sequential = energy["neuromorphic"][chip.name]
        if not has_schedule(chip) or report.get("backend") == chip.name:
            neuromorphic[chip.name] = sequential
            continue
        try:
            streamed = streamed_for(report, model_path, chip)
        except ScheduleError as error:
            sequential.setdefault("notes", []).append(f"no streamed schedule: {error}")
            neuromorphic[chip.name] = sequential
            continue
        for suffix, entry in streamed.items():
            neuromorphic[chip.name + suffix] = entry
        sequential.update(model="sequential", label="one copy, patches one after another, PilotNet's time per step")
        neuromorphic[chip.name + "_sequential"] = sequential
    for entry in neuromorphic.values():
        entry["snn_over_ann"] = _ratios(entry, conventional)
    energy["neuromorphic"] = neuromorphic
    return energy
