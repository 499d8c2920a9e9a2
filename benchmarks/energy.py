"""Energy per registration of a 2 mm brain: the default model on Loihi 2 (every row) against conventional devices.

One run:

1. A synthetic pair from the MNI ICBM152 T1 at 2 mm (``spikereg.data.make_pair``,
   seed 0, up to 3 voxels) is registered by the shipped default model
   (``sdnn-2mm-mixed``, or ``--model``: a path or a shipped model's name, a chain's
   netx file or a U-Net's graph file) with its own run settings (iterations,
   patch stride, residual smoothing), on the ``torch`` backend: SLAYER on the
   file's integers, as ``spikereg run --backend torch`` registers (a U-Net:
   every patch from rest in one pass). Spikes are counted per layer (per neuron
   too where the file allows: not for an SDNN input delta-encoded on the host,
   whose synops are then layer spikes x mean fan-out; a U-Net's per node, its
   synops per edge).
2. As a cross-check in the same run, the first ``--lava-patches`` patches with
   brain go through Lava's fixed-point simulator (``--backend sim``: for a
   U-Net the graph on Lava, every patch from rest) and through SLAYER, each as
   one fresh stream: their input and per-layer (per-node) messages must be
   equal, or the script exits with status 1. With ``--synapses sparse`` the
   chain is built on Lava with sparse synapses instead (``spikereg run --backend
   sim --synapses sparse``: every conv layer a Lava ``Sparse`` of its nonzero
   weights, :class:`spikereg.registration.lava_backends.SparseChainBackend`).
3. ``spikereg.hardware.energy_section.energy_section`` turns the counts into every row of
   the comparison: Loihi 2 with copies in parallel and patches streamed, time per
   step from the workload (the main estimate, ``spikereg.hardware.streamed``); the
   same at PilotNet's measured step (sensitivity); the old sequential estimate;
   Loihi 1; the ANN twin on a measured GPU (``hardware_profiles/gpu_measured.yaml``,
   written by ``benchmarks/gpu_energy.py`` on a GPU; "pending" until then), on a
   Jetson Orin Nano from its data sheet, and the 45 nm lower bounds.
   ``--synapses`` says how a chain's synapses are built, and so costed
   (``spikereg.hardware.rules.synapse_accounting``): ``conv`` (default), as stock
   netx builds it, synapses on zero weights stored and charged; ``sparse``,
   nonzero synapses only, the zero-weight synops reported apart and not charged,
   the cores (so copies per chip) from that mapping. A graph file is costed with
   nonzero synapses only either way.

    .venv/bin/python benchmarks/energy.py [--lava-patches 4] [--save RUN.json | --load RUN.json] [--write]
    .venv/bin/python benchmarks/energy.py --synapses sparse --save runs/energy_sparse.json --write
    .venv/bin/python benchmarks/energy.py --model runs/unet/U.net --save runs/unet/energy_run.json \
        --section "## Energy per registration: the spiking U-Net on Loihi 2 and conventional devices" \
        --accuracy-section "## Registration accuracy: the spiking U-Net" --write

``--save`` keeps the run's counts, ``--load`` rebuilds the section from them
without registering again (after a GPU profile appears, say; the model is the
saved run's unless ``--model`` is given; the Lava check stays the saved run's,
built as it was). ``--write`` replaces this benchmark's section of BENCHMARKS.md
(``--section``: another heading; with ``--synapses sparse`` the default is
:data:`SPARSE_SECTION`, so the conv section stays). The
section cites the model's accuracy from the table ``benchmarks/accuracy.py``
wrote under ``--accuracy-section``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from accuracy import SECTION as ACCURACY_SECTION
from accuracy import written_means
from accuracy_csv import TORCH
from lava_streaming import _rel, machine, versions  # same machine and version lines as the other benchmarks
from sections import BENCHMARKS, heading, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Energy per registration: the default model on Loihi 2 and conventional devices"
#: Where ``--synapses sparse`` writes by default: beside SECTION, not over it.
SPARSE_SECTION = ("## Energy per registration: the default model on Loihi 2 with sparse synapses, and "
                  "conventional devices")
TARGET_RATIO = 0.1  # issue 18: Loihi 2's estimated total <= 0.1x the ANN twin's measured GPU energy
TARGET_RATE = 0.05  # ... at no more than 5 % mean spike rate


def count_patches_on(model: Path, backend: str, fixed_p: torch.Tensor, moving_p: torch.Tensor,
                     synapses: str = "conv") -> dict:
    """Input spikes and per-layer (a graph's: per-node) messages of ``backend`` on these patches (one fresh
    stream, no registration; a graph runs every patch from rest on either backend); ``synapses``: sim's build."""
    from spikereg.registration.backends import open_backend

    with open_backend(model, backend, synapses=synapses) as engine:
        engine.reset()
        engine.predict(fixed_p, moving_p)
        return {"input_spikes": int(engine.stats.input_spikes),
                "layer_spikes": [int(s) for s in engine.stats.layer_spikes]}


def measure_run(model: Path, args) -> dict:
    """Register the pair on SLAYER counting every neuron, and cross-check the first patches on Lava."""
    from spikereg.data import load_mni, make_pair, normalize_intensity
    from spikereg.netx_file import read_metadata
    from spikereg.registration.backends import open_backend
    from spikereg.registration.patches import extract, pad_to, patch_grid
    from spikereg.registration.pipeline import run_options
    from spikereg.registration.register import ncc, register
    from spikereg.registration.run_report import layer_table

    meta = read_metadata(model)
    iterations, stride, smoothing = run_options(meta, None, None)
    base = load_mni("t1", args.spacing)
    pair = make_pair(base.data, np.random.default_rng(args.seed), max_displacement=args.max_displacement,
                     control_spacing=8)
    fixed, moving = pair.fixed, pair.moving

    # 1. the whole brain on SLAYER, counted neuron by neuron (what `spikereg run --backend torch` does)
    tick = time.perf_counter()
    with open_backend(model, "torch") as engine:
        result = register(fixed, moving, engine, iterations=iterations, patch_stride=stride, smoothing=smoothing)
        stats = engine.stats
        # per neuron where the file allows it (not for an SDNN input delta-encoded on the host)
        counts = stats.counter.section(stats.layer_neurons) if stats.counter is not None else None
    torch_seconds = time.perf_counter() - tick
    report = {
        "backend": "torch", "iterations": iterations, "patches_per_iteration": result.patches_per_iteration,
        "patches": result.patches, "time_steps_per_patch": meta.get("window"),
        "time_steps": stats.time_steps, "input_spikes": int(stats.input_spikes),
        "layers": layer_table(stats.layer_spikes, stats.layer_neurons, stats.time_steps),
        "timing": {"network_seconds": stats.network_seconds, "host_seconds": result.host_seconds},
        "spikes_per_step": [s.tolist() for s in stats.step_spikes],
    }
    if counts is not None:
        report["counts"] = counts

    # 2. the same first patches with brain (iteration 1: moving not yet warped) on Lava
    grid = patch_grid(fixed.shape, meta["model"]["patch_size"], stride)
    fixed_all = extract(pad_to(normalize_intensity(fixed), grid.padded), grid)
    brain = np.flatnonzero(fixed_all.reshape(len(grid), -1).max(dim=1).values.numpy() > 0.1)[: args.lava_patches]
    moving_all = extract(pad_to(normalize_intensity(moving), grid.padded), grid)
    tick = time.perf_counter()
    lava = count_patches_on(model, "sim", fixed_all[brain], moving_all[brain], synapses=args.synapses)
    lava_seconds = time.perf_counter() - tick
    torch_rows = count_patches_on(model, "torch", fixed_all[brain], moving_all[brain])
    return {
        "report": report, "iterations": iterations, "stride": stride, "smoothing": smoothing,
        "shape": list(fixed.shape), "network_seconds": stats.network_seconds, "torch_seconds": torch_seconds,
        "lava_seconds": lava_seconds, "lava_patches": len(brain), "lava_equal": lava == torch_rows,
        "lava_counts": lava, "torch_counts": torch_rows, "lava_synapses": args.synapses,
        "ncc_before": float(ncc(fixed, moving)), "ncc_after": float(ncc(fixed, result.warped)),
        "machine": machine(), "versions": versions(), "load_average": os.getloadavg()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.command,
        "model": str(model), "pair": {"spacing": args.spacing, "seed": args.seed,
                                      "max_displacement": args.max_displacement},
    }


def main(argv=None) -> int:
    from spikereg.hardware.rules import SYNAPSE_BUILDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size of the brain, mm (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-displacement", type=float, default=3.0, help="voxels (default 3)")
    parser.add_argument("--lava-patches", type=int, default=4, help="patches cross-checked on Lava (default 4)")
    parser.add_argument("--model", help="netx or graph (U-Net) file, or a shipped model's name (default: the saved "
                                        "run's with --load, else the shipped default, sdnn-2mm-mixed)")
    parser.add_argument("--synapses", choices=SYNAPSE_BUILDS, default="conv",
                        help="how a chain's synapses are built, and so costed: 'conv' (default) as stock netx "
                             "builds it, Lava's Conv holding each folded weight whole, synapses on zero weights "
                             "stored and charged; 'sparse', Lava's Sparse of the nonzero weights only (the Lava "
                             "check builds the chain so: lava_export's LavaGraph), zero-weight synops reported "
                             "apart, not charged. A graph file is costed with nonzero synapses either way")
    parser.add_argument("--section", type=heading, default=None,
                        help=f"the BENCHMARKS.md section --write replaces (default: '{SECTION}'; with --synapses "
                             f"sparse: '{SPARSE_SECTION}')")
    parser.add_argument("--accuracy-section", type=heading, default=None,
                        help="the BENCHMARKS.md section whose table (benchmarks/accuracy.py --write) gives the "
                             f"model's accuracy beside its energy (default: '{ACCURACY_SECTION}' for the shipped "
                             "default model, none for another)")
    parser.add_argument("--save", type=Path, help="also write the run's counts to this JSON file")
    parser.add_argument("--load", type=Path, help="skip the run: take its counts from a --save file")
    parser.add_argument("--chips", type=int, nargs="*", default=[2],
                        help="also cost the streamed schedule on this many chips (default: 2)")
    parser.add_argument("--write", action="store_true", help="update --section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.section is None:
        args.section = SPARSE_SECTION if args.synapses == "sparse" else SECTION
    args.command = ".venv/bin/python benchmarks/energy.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    from spikereg.hardware.energy import DEFAULT_PROFILES
    from spikereg.hardware.energy_section import energy_section
    from spikereg.hardware.graph_mapping import is_graph
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import DEFAULT_MODEL, resolve_model

    run = json.loads(Path(args.load).read_text()) if args.load else None
    try:
        model = resolve_model(args.model or (run or {}).get("model") or DEFAULT_MODEL)
    except ValueError as error:
        parser.error(str(error))
    meta = read_metadata(model)
    if args.synapses == "sparse":
        problem = sparse_check_problem(model, meta, run)
        if problem:
            parser.error(problem)
    if run is None:
        run = measure_run(model, args)
        if args.save:
            Path(args.save).write_text(json.dumps(run))
            print(f"saved the run's counts to {args.save}", file=sys.stderr)
    checked = run.get("lava_synapses", "conv")  # runs saved before --synapses: checked as stock netx builds them
    if args.load and checked != args.synapses and not is_graph(model):
        print(f"note: costed with --synapses {args.synapses}; the saved run's Lava check built the chain with "
              f"{checked} synapses (the section says so)", file=sys.stderr)
    report = run["report"]
    energy = energy_section(report, model, DEFAULT_PROFILES, synapses=args.synapses)
    section = render_section(args, model, meta, run, energy)
    print(section)
    print(f"NCC before/after: {run['ncc_before']:.4f} -> {run['ncc_after']:.4f}", file=sys.stderr)
    if args.write:
        write_section(args.section, section)
        print(f"updated {BENCHMARKS}", file=sys.stderr)
    return 0 if run["lava_equal"] else 1


def sparse_check_problem(model: Path, meta: dict, run: dict | None) -> str | None:
    """Why ``--synapses sparse`` cannot be costed and checked on this model, or None."""
    from spikereg.hardware.graph_mapping import is_graph
    from spikereg.networks.encoding import PatchCodec

    if is_graph(model):
        return (f"--synapses sparse: {_rel(model)} is a graph file, costed with nonzero synapses only already; "
                "--synapses chooses how a chain's synapses are built")
    if run is None and not PatchCodec.from_metadata(meta).graded:
        return (f"--synapses sparse: the Lava check builds a chain with sparse synapses for a graded (SDNN) file "
                f"only (lava_export.graph_builder.LavaGraph); {_rel(model)} is not one")
    return None


def _j(value) -> str:
    return "-" if value is None else f"{value:.3e}"


def _ratio(value: float) -> str:
    return f"{value:.3g}x" if value >= 0.01 else f"{value:.2e}x"


def more_chips(counts: Sequence[int], report: dict, model: Path, synapses: str = "conv") -> dict:
    """The streamed Loihi 2 row on each chip count of ``counts`` (more copies, more static power), a chain's
    synapses built as ``synapses`` says."""
    from spikereg.hardware import load_profile
    from spikereg.hardware.energy_section import chain_streamed_rows
    from spikereg.hardware.graph_energy import graph_streamed_rows
    from spikereg.hardware.graph_mapping import is_graph

    chip = load_profile("loihi2")
    if is_graph(model):
        return {n: graph_streamed_rows(report, model, chip, chips=n)[""] for n in counts if n > 1}
    return {n: chain_streamed_rows(report, model, chip, chips=n, synapses=synapses)[""] for n in counts if n > 1}


def layer_names(meta: dict, count: int) -> list[str]:
    """What the section calls each layer: a graph's node names, a chain's ``layer i`` as report.json numbers them."""
    return list(meta["nodes"])[:count] if meta.get("nodes") else [f"layer {i}" for i in range(1, count + 1)]


def lava_check_line(run: dict, names: list[str], graph: bool) -> str:
    """Each layer's (node's) messages on the Lava check's patches, torch against Lava."""
    torch_counts, lava_counts = run["torch_counts"]["layer_spikes"], run["lava_counts"]["layer_spikes"]
    pairs = ", ".join(f"{name} {t:,}" + ("" if t == v else f" vs **{v:,}**")
                      for name, t, v in zip(names, torch_counts, lava_counts))
    patches = run["lava_patches"]
    built = ""
    if not graph:  # runs saved before --synapses: stock netx
        built = (" (the chain built with sparse synapses, `--backend sim --synapses sparse`: every conv layer a Lava "
                 "`Sparse` of its nonzero weights, every patch from rest)" if run.get("lava_synapses") == "sparse"
                 else " (the chain as stock netx builds it: Lava's `Conv` per layer)")
    return (f"- Lava check, {patches} patch{'es' if patches != 1 else ''} with brain (iteration 1){built}, messages "
            f"per {'node' if graph else 'layer'}, torch"
            + (" = Lava" if run["lava_equal"] else " vs Lava where they differ") + f": {pairs}; encoded input "
            f"{run['torch_counts']['input_spikes']:,}" + ("" if run["lava_equal"] else
                                                          f" vs {run['lava_counts']['input_spikes']:,}"))


def accuracy_line(section: str | None) -> str:
    """The model's accuracy beside its energy, as benchmarks/accuracy.py wrote it in BENCHMARKS.md's ``section``."""
    if section is None:
        return ("- accuracy beside it: not cited (`--accuracy-section` names the BENCHMARKS.md section "
                "`benchmarks/accuracy.py --section ... --write` wrote for this model)")
    means = written_means(section)
    snn, twin = means.get(TORCH), means.get("ANN twin")
    if not snn or not twin:
        return (f"- accuracy beside it: no table under `{section}` in BENCHMARKS.md yet (`benchmarks/accuracy.py "
                f"--section '{section}' --write` writes one)")
    behind = twin["dice"] - snn["dice"]
    return (f"- accuracy beside it (BENCHMARKS.md, \"{section.removeprefix('## ')}\"): the SNN in SLAYER has EPE "
            f"{snn['epe_vox']:.3f} / tissue Dice {snn['dice']:.4f} against its twin's {twin['epe_vox']:.3f} / "
            f"{twin['dice']:.4f}: the energy target asks for equal or better accuracy, and the SNN is "
            + (f"{behind:.4f} Dice behind its twin" if behind > 0 else f"{-behind:.4f} Dice ahead of its twin"
               if behind < 0 else "level with its twin"))


def render_section(args, model: Path, meta: dict, run: dict, energy: dict) -> str:
    """The BENCHMARKS.md section: every row of one run, the targets, what holds them.

    A chain's and a graph's (U-Net's) runs share every row and target; the
    notes differ where the two are costed differently: a graph's synapses are
    nonzero ones only (no zero-weight synops to drop), its patches run from
    rest (no drain steps), its skip edges wait as synaptic delays.
    """
    from spikereg.hardware.energy import DEFAULT_PROFILES
    from spikereg.hardware.energy_section import energy_section
    from spikereg.hardware.graph_mapping import is_graph
    from spikereg.pretrained import DEFAULT_MODEL

    graph = is_graph(model)
    c = energy["counts"]
    chips, procs = energy["neuromorphic"], energy["conventional"]
    main, seq, fixed = chips["loihi2"], chips["loihi2_sequential"], chips["loihi2_pilotnet_step"]
    sched = main["schedule"]
    measured = energy.get("conventional_preferred")
    bound = procs["gpu"]
    labels = {
        "loihi2": "Loihi 2: copies in parallel, patches streamed, step time from the workload (**main estimate**)",
        "loihi2_pilotnet_step": "Loihi 2: same schedule, PilotNet's measured 152.8 us per step (sensitivity)",
        "loihi2_sequential": "Loihi 2: one copy, patches one after another, 152.8 us per step (the old estimate)",
        "loihi1": "Loihi 1: sequential, 306 us per step (dynamic pre-silicon)",
        "gpu": "ANN twin, 45 nm arithmetic + host I/O (Horowitz; no device, no idle): **lower bound**",
        "cpu": "ANN twin, 45 nm arithmetic (CPU profile, same figures): lower bound",
    }
    rows = []
    order = ["loihi2", "loihi2_pilotnet_step", "loihi2_sequential", "loihi1"]
    for name in order:
        row = chips[name]
        kind = row["kind"] + (f" (dynamic {row['dynamic_kind']})" if row["dynamic_kind"] != row["kind"] else "")
        latency = row.get("latency_s")
        if latency is None:  # the sequential rows: every step of every patch one after another
            latency = row["terms"]["static"]["count"]
        rows.append(f"| {labels[name]} | {_j(row['total_j'])} | {_j(row['dynamic_j'])} | {_j(row['static_j'])} | "
                    f"{latency:.4g} | {row['total_j'] * latency:.3e} | {kind} |")
    for count, row in more_chips(args.chips, run["report"], model, args.synapses).items():
        rows.append(f"| Loihi 2: the same streamed schedule on {count} chips ({row['schedule']['copies']} copies) | "
                    f"{_j(row['total_j'])} | {_j(row['dynamic_j'])} | {_j(row['static_j'])} | "
                    f"{row['latency_s']:.4g} | {row['edp_js']:.3e} | {row['kind']} |")
    if measured is None:
        rows.append("| ANN twin on a GPU, **measured** with NVML (idle included, best batch) | pending | pending | "
                    "pending | pending | pending | measured (no GPU run yet: `benchmarks/gpu_energy.py`) |")
    for name, row in procs.items():
        if row.get("category") == "device":
            seconds = next(iter(row["terms"].values()))["count"]
            label = f"ANN twin on `{name}`" + (" (measured, NVML, idle included, best batch)"
                                               if row["kind"] == "measured"
                                               else " (data sheet: module power x time at peak fp32 rate; optimistic)")
            rows.append(f"| {label} | {_j(row['total_j'])} | {_j(row['dynamic_j'])} | {_j(row['static_j'])} | "
                        f"{seconds:.4g} | {row['total_j'] * seconds:.3e} | {row['kind']} |")
    for name in ("gpu", "cpu"):
        row = procs[name]
        rows.append(f"| {labels[name]} | {_j(row['total_j'])} | {_j(row['dynamic_j'])} | not modelled | - | - | "
                    f"{row['kind']} |")

    terms = {k: v["joules"] for k, v in main["terms"].items()}
    total = main["total_j"]
    shares = sorted(terms.items(), key=lambda kv: -kv[1])
    names = {"static": "static power x busy time", "synops_structural_zeros": "synops on zero weights",
             "synops_effective": "synops on nonzero weights", "neuron_updates": "neuron updates",
             "spikes": "spike messages", "host_io": "host link bits"}
    share_text = ", ".join(f"{names.get(k, k)} {v / total:.1%}" for k, v in shares if v)
    rate = c["mean_spike_rate"]
    dyn_ratio = main["dynamic_j"] / bound["total_j"]
    node_names = layer_names(meta, len(run["report"]["layers"]))
    layer_rates = ", ".join((f"{name} " if graph else "") + f"{row['spike_rate']:.4f}"
                            for name, row in zip(node_names, run["report"]["layers"]))
    window = sched["window"]
    per_pass = sched["patches_per_pass"]
    jetson = procs.get("jetson_orin_nano")
    target_lines = []
    if measured is None:
        target_lines.append(
            "- **Loihi 2 total <= 0.1x the ANN twin's measured GPU energy (idle included, best batch): pending** "
            "-- no GPU run yet. On a machine with an NVIDIA GPU: `pip install nvidia-ml-py && python "
            "benchmarks/gpu_energy.py --json gpu_energy.json` (writes `hardware_profiles/gpu_measured.yaml`), then "
            f"`python benchmarks/energy.py --load {args.load or args.save or 'RUN.json'}"
            + (" --synapses sparse" if args.synapses == "sparse" else "") + " --write` rebuilds this "
            "section with the measured row and this target (no new CPU registration needed). "
            f"For scale only (not the target): Loihi 2's {_j(total)} J is {_ratio(total / jetson['total_j'])} "
            f"the Jetson Orin Nano data-sheet estimate ({_j(jetson['total_j'])} J, optimistic for the Jetson) and "
            f"{_ratio(total / bound['total_j'])} the 45 nm lower bound"
            if jetson else "- **Loihi 2 total <= 0.1x the measured GPU energy: pending** (no GPU run yet)")
    else:
        ann = procs[measured]
        ratio = total / ann["total_j"]
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        target_lines.append(f"- **Loihi 2 total <= 0.1x the ANN twin's measured GPU energy: {verdict}** "
                            f"({_j(total)} J vs {_j(ann['total_j'])} J on `{measured}`: {_ratio(ratio)}"
                            + ("" if verdict == "met" else f", {ratio / TARGET_RATIO:.3g}x over the target") + ")")
    target_lines.append(
        f"- **Loihi 2 dynamic <= the ANN's 45 nm lower bound: {'met' if dyn_ratio <= 1 else 'missed'}** "
        f"({_j(main['dynamic_j'])} J vs {_j(bound['total_j'])} J: {_ratio(dyn_ratio)}"
        + ("" if dyn_ratio <= 1 else ", held by " + ", ".join(
            f"{names.get(k, k)} {v:.3e} J" for k, v in sorted(
                ((k, v) for k, v in terms.items() if k != "static"), key=lambda kv: -kv[1])[:2])) + ")")
    target_lines.append(f"- **mean spike rate <= 5 %: {'met' if rate <= TARGET_RATE else 'missed'}** "
                        f"({rate:.2%}; {'nodes' if graph else 'layers'} {layer_rates}, the host-encoded input "
                        f"{'node' if graph else 'layer'} first)")
    no_zeros = main["dynamic_j"] - terms["synops_structural_zeros"]
    if sched.get("chips_per_copy", 1) > 1:
        placement = (f"more than a 128-core chip: a copy spans {sched['chips_per_copy']} chips, "
                     f"{sched['chips']} chips in all")
    else:
        placement = (f"so {sched['copies_per_chip']} copies fit on a 128-core chip ({sched['chips']} chip"
                     f"{'s' if sched['chips'] != 1 else ''})")
    pipelined = ("every patch from rest, no drain steps" if graph else
                 f"layers pipelined, {sched['drain_steps']} drain steps per 64-patch stream")
    if graph:
        synapse_lines = [
            f"- counts: input messages {c['input_spikes']:,} (the host's delta encoder: what crosses the link), node "
            f"messages {c['layer_spikes']:,}, synops {c['synops']:.4g}, every one on a nonzero weight "
            f"({c['synops_method']}); neuron updates (sequential count) {c['neuron_updates']:.4g}; ANN twin "
            f"(GraphTwin) {c['ann_macs']:.4g} MACs",
            f"- nonzero synapses only, as a graph file is stored on the chip (sparse synapse lists): the zero depth "
            f"blocks of depth folding and weights that quantize to zero would add "
            f"{c['synops_zero_weights_not_charged']:.4g} synops, neither stored nor charged",
        ]
        delays = energy.get("delays")
        if delays:
            synapse_lines.append(
                f"- skip edges ({', '.join(delays['edges'])}) wait up to {delays['longest']} steps as synaptic delays "
                "(delay bits stored with each synapse, charged nothing else; Loihi 2's limit "
                f"{delays['limits'].get('loihi2', {}).get('value', '?')} steps)")
    elif "synops_zero_weights_not_charged" in c:  # a chain built with sparse synapses (--synapses sparse)
        whole = energy_section(run["report"], model, DEFAULT_PROFILES, synapses="conv")
        conv_main = whole["neuromorphic"]["loihi2"]
        zeros = c["synops_zero_weights_not_charged"]
        synapse_lines = [
            f"- counts: input spikes {c['input_spikes']:,} (the encoded input; where the input layer runs on the "
            f"host, its delta encoder's {sched['input_bytes'] / 8:,.0f} spikes are what crosses the link), layer "
            f"spikes {c['layer_spikes']:,}, synops {c['synops']:.4g}, every one on a nonzero weight "
            f"({c['synops_method']}); neuron updates (sequential count) {c['neuron_updates']:.4g}; ANN twin "
            f"{c['ann_macs']:.4g} MACs",
            f"- sparse synapses: the zero depth blocks of depth folding and weights that quantize to zero would add "
            f"{zeros:.4g} synops ({zeros / (zeros + c['synops']):.1%} of all), neither stored nor charged in any "
            f"row; with the chain built as stock netx builds it (`--synapses conv`: Lava's Conv, every synapse "
            f"stored and read) the main estimate is {_j(conv_main['total_j'])} J (dynamic "
            f"{_j(conv_main['dynamic_j'])} J) on {conv_main['schedule']['cores_per_copy']} cores per copy, against "
            f"{_j(total)} J (dynamic {_j(main['dynamic_j'])} J) on {sched['cores_per_copy']} here",
        ]
    else:
        synapse_lines = [
            f"- counts: input spikes {c['input_spikes']:,} (the encoded input; where the input layer runs on the "
            f"host, its delta encoder's {sched['input_bytes'] / 8:,.0f} spikes are what crosses the link), layer "
            f"spikes {c['layer_spikes']:,}, synops {c['synops']:.4g} of which "
            f"{c['synops_structural_zeros'] / c['synops']:.1%} on zero weights (depth folding; {c['synops_method']}); "
            f"neuron updates (sequential count) {c['neuron_updates']:.4g}; ANN twin {c['ann_macs']:.4g} MACs",
            f"- not the estimate: dropping the zero-weight synops (a chip that stores only nonzero synapses) would "
            f"take the dynamic part from {_j(main['dynamic_j'])} to {_j(no_zeros)} J "
            f"({_ratio(no_zeros / bound['total_j'])} the 45 nm bound; `--synapses sparse` costs every row so, on "
            "the cores of the nonzero synapses)",
        ]
    accounting = energy["synapse_accounting"]
    synapse_lines.insert(0, f"- synapse accounting: **{accounting['name']}**"
                         + ("" if graph else f" (`--synapses {args.synapses}`)") + f": {accounting['rule']}")
    default = Path(model).resolve() == Path(DEFAULT_MODEL).resolve()
    which = "the shipped default model" if default else "the model"
    # the pair the run registered (saved runs from before it was recorded: the command line's)
    pair = run.get("pair", {"spacing": args.spacing, "seed": args.seed, "max_displacement": args.max_displacement})
    kind = " (a spiking U-Net, graph file: every patch from rest)" if graph else ""
    command = args.command
    if args.load:  # the section was rebuilt from a saved run: show the run's own command first
        command = run.get("command", ".venv/bin/python benchmarks/energy.py --save RUN.json") + "\n" + command
    lines = [
        args.section, "",
        f"Energy per registration of a {pair['spacing']:g} mm brain (MNI ICBM152 T1, "
        f"{'x'.join(map(str, run['shape']))} voxels, a synthetic pair warped by a random smooth field of up to "
        f"{pair['max_displacement']:g} voxels, seed "
        f"{pair['seed']}) with {which} `{_rel(model)}`{kind} as `spikereg run` registers: "
        f"{run['iterations']} passes x {c['patches'] // max(1, run['iterations'])} patches (stride {run['stride']}, "
        f"residual smoothing {run['smoothing']:g} voxels), {c['patches']:,} patches, {c['time_steps']:,} time steps. "
        "Counts from SLAYER (`--backend torch`, the file's own integers); "
        f"{run['lava_patches']} patches with brain also on Lava's simulator"
        + (" (the chain built with sparse synapses)" if run.get("lava_synapses") == "sparse" else "") + ": input and "
        f"{'per-node messages' if graph else 'layer spikes'} "
        f"{'**equal**' if run['lava_equal'] else '**DIFFER**'}. Every Loihi joule is an **estimate** (counts x "
        "cited per-event energies and times of `hardware_profiles/loihi2.yaml`: energies scaled from Loihi 1's "
        "pre-silicon Table 2, per-operation times carried over from it, the barrier, the host link's rate, its "
        "energy per bit and bytes per spike assumed -- every one labelled `estimated` there); the GPU/CPU 45 nm "
        "rows are **lower bounds**; the device rows say their kind. Issue 18's targets below.",
        "",
        "```bash", command, "```", "",
        "| row | total J | dynamic J | static J | latency s | EDP J s | kind |",
        "|---|---:|---:|---:|---:|---:|---|",
        *rows, "",
        "Targets (issue 18, one run):", "",
        *target_lines, "",
        f"- what dominates the main Loihi 2 estimate: {share_text}",
        f"- the schedule: one copy maps to {sched['cores_per_copy']} cores (`spikereg map`), {placement}; each "
        f"pass's patches ({', '.join(map(str, sorted(set(per_pass))))} per pass) are dealt over the copies and "
        f"streamed a window of {window} steps apart ({pipelined}): "
        f"{sched['steps']:,} steps in all; compute {sched['compute_window_s'] / window * 1e6:.3g} us per step "
        f"from the workload (busiest core + 1 us barrier; per-op times 3.5 ns per synop, 8.4 ns per neuron "
        f"update, Loihi 1's Table 2 carried over) against PilotNet's 152.8 us, {sched['mean_step_us']:.3g} us "
        f"per step at the pace the run keeps; one window {sched['compute_window_s'] * 1e6:.4g} us "
        f"of compute vs {sched['link_window_s'] * 1e6:.4g} us of host link (10 Gbit/s assumed): the "
        f"{sched['bottleneck']} sets the pace; chips busy {sched['busy_seconds']:.4g} s",
        f"- host link: {sched['input_bytes']:.4g} bytes in, {sched['output_bytes']:.4g} out "
        f"(8 bytes per graded spike, 10 pJ/bit, both assumed): {terms['host_io']:.3e} J",
        f"- the sequential estimate (one copy, {c['time_steps']:,} steps x 152.8 us): {_j(seq['total_j'])} J, "
        f"{seq['terms']['static']['joules'] / seq['total_j']:.1%} static; streaming on "
        f"{sched['copies']} cop{'ies' if sched['copies'] != 1 else 'y'} at PilotNet's step: {_j(fixed['total_j'])} J; "
        "at the workload's "
        f"step: {_j(total)} J",
        *synapse_lines,
        lava_check_line(run, node_names, graph),
        accuracy_line(args.accuracy_section or (ACCURACY_SECTION if default else None)),
        f"- run: torch registration {run['torch_seconds']:.1f} s (network {run['network_seconds']:.1f} s), Lava "
        f"check {run['lava_seconds']:.1f} s, NCC {run['ncc_before']:.4f} -> {run['ncc_after']:.4f}; "
        f"{run['machine']}, load average (1 min) {run['load_average']:.2f} at the end (the machine is shared); "
        f"{run['versions']}",
        f"- date: {run['date']}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
