"""Energy per registration of a 2 mm brain: the SNN on Loihi 2 / Loihi 1 vs its ANN twin on GPU / CPU.

One run:

1. A synthetic pair from the MNI ICBM152 T1 at 2 mm (``spikereg.data.make_pair``)
   is registered by the shipped model (``spikereg/pretrained/demo.net``) with its
   own run defaults (iterations, patch stride), on the ``torch`` backend: SLAYER on
   the netx file's quantized weights. Every spike of every neuron is counted
   (``spikereg.registration.counts``), and synaptic operations are charged each neuron's
   exact fan-out. Lava's simulator would take about 23 minutes per iteration here;
   its spikes equal SLAYER's on every export (verified at export time), and
2. as a cross-check in the same run, the first ``--lava-patches`` patches with
   brain go through Lava's fixed-point simulator (``--backend sim``): their
   per-patch counts must equal the torch counts of the same patches in the full
   run, or the script exits with status 1.
3. ``spikereg.hardware.energy.energy_report`` turns the counts into joules on the
   shipped hardware profiles (every figure cited, with its kind), and the ANN
   twin's MACs on the same patches into joules on the GPU and CPU profiles.

Also printed: what-if lines that are *not* the estimate (no static power; zero
weights not stored), so the reader can see what the gap is made of.

    .venv/bin/python benchmarks/energy.py [--lava-patches 4] [--write]

``--write`` replaces the ``## Energy per registration`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lava_streaming import _rel, machine, versions  # same machine and version lines as the other benchmarks
from sections import BENCHMARKS, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Energy per registration"
TARGET_RATIO = 0.01  # the project's target: at least 100x less estimated energy than the ANN twin on a GPU
TARGET_RATE = 0.05  # ... at no more than 5 % mean spike rate


def count_patches_on(model: Path, backend: str, fixed_p: torch.Tensor, moving_p: torch.Tensor) -> dict:
    """Per-patch counts of ``backend`` on these patches (one call, no registration)."""
    from spikereg.registration.backends import open_backend

    with open_backend(model, backend) as engine:
        engine.predict(fixed_p, moving_p)
        return engine.stats.counter.section(engine.stats.layer_neurons)


def what_if(counts, chip, time_steps: int, chips: int, ann_j: float, *, zeros: bool, static: bool) -> float:
    """SNN/ANN ratio with structural-zero synops dropped and/or no static power (not the estimate)."""
    from spikereg.hardware.activity import Activity
    from spikereg.hardware.energy import neuromorphic_energy

    if not zeros:
        counts = Activity([dataclasses.replace(s, structural_zeros=0.0) for s in counts.synops],
                          counts.neurons, counts.spikes)
    energy = neuromorphic_energy(counts, chip, time_steps, chips=chips)
    return (energy.total_j if static else energy.dynamic_j) / ann_j


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size of the brain, mm (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-displacement", type=float, default=3.0, help="voxels (default 3)")
    parser.add_argument("--lava-patches", type=int, default=4, help="patches cross-checked on Lava (default 4)")
    parser.add_argument("--model", type=Path, help="netx file (default: spikereg/pretrained/demo.net)")
    parser.add_argument("--write", action="store_true", help=f"update '{SECTION}' in BENCHMARKS.md")
    args = parser.parse_args(argv)

    from spikereg.data import load_mni, make_pair, normalize_intensity
    from spikereg.hardware import load_profile, map_network
    from spikereg.hardware.activity import activity, exact_activity, layer_fanout
    from spikereg.hardware.energy import DEFAULT_PROFILES, energy_report
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.backends import open_backend
    from spikereg.registration.patches import extract, pad_to, patch_grid
    from spikereg.registration.pipeline import run_options
    from spikereg.registration.register import ncc, register
    from spikereg.registration.run_report import layer_table

    model = args.model or DEMO_MODEL
    meta = read_metadata(model)
    iterations, stride = run_options(meta, None, None)
    base = load_mni("t1", args.spacing)
    pair = make_pair(base.data, np.random.default_rng(args.seed), max_displacement=args.max_displacement,
                     control_spacing=8)
    fixed, moving = pair.fixed, pair.moving

    # 1. the whole brain on SLAYER, counted neuron by neuron
    tick = time.perf_counter()
    with open_backend(model, "torch") as engine:
        result = register(fixed, moving, engine, iterations=iterations, patch_stride=stride)
        stats = engine.stats
        counts = stats.counter.section(stats.layer_neurons)
    torch_seconds = time.perf_counter() - tick
    report = {
        "backend": "torch", "iterations": iterations, "patches_per_iteration": result.patches_per_iteration,
        "time_steps": stats.time_steps, "input_spikes": int(stats.input_spikes),
        "layers": layer_table(stats.layer_spikes, stats.layer_neurons, stats.time_steps),
        "timing": {"network_seconds": stats.network_seconds}, "counts": counts,
    }
    energy = energy_report(report, model, DEFAULT_PROFILES)

    # 2. the same first patches with brain (iteration 1: moving not yet warped) on Lava
    grid = patch_grid(fixed.shape, meta["model"]["patch_size"], stride)
    fixed_all = extract(pad_to(normalize_intensity(fixed), grid.padded), grid)
    brain = np.flatnonzero(fixed_all.reshape(len(grid), -1).max(dim=1).values.numpy() > 0.1)[: args.lava_patches]
    moving_all = extract(pad_to(normalize_intensity(moving), grid.padded), grid)
    tick = time.perf_counter()
    lava = count_patches_on(model, "sim", fixed_all[brain], moving_all[brain])
    lava_seconds = time.perf_counter() - tick
    full_rows = [counts["per_patch"]["iterations"][0][i] for i in brain]
    lava_rows = lava["per_patch"]["iterations"][0]
    same = full_rows == lava_rows

    # 3. the estimate, and what it is made of
    chips = {name: load_profile(name) for name in ("loihi2", "loihi1")}
    mapping = map_network(model, "loihi2")
    costs = layer_fanout(model)
    spikes = [row["spikes"] for row in report["layers"]]
    exact = exact_activity(activity(spikes, report["input_spikes"], costs), counts, costs)
    mean = activity(spikes, report["input_spikes"], costs)
    mean_synops = mean.effective_synops + mean.structural_zero_synops
    exact_synops = exact.effective_synops + exact.structural_zero_synops
    gpu_j = energy["conventional"]["gpu"]["total_j"]
    c = energy["counts"]
    l2 = energy["neuromorphic"]["loihi2"]
    terms = {k: v["joules"] for k, v in l2["terms"].items()}
    rows = []
    for name, row in {**energy["neuromorphic"], **energy["conventional"]}.items():
        ratio = row.get("snn_over_ann", {})
        rows.append(f"| {name} | {row['total_j']:.3e} | {row['dynamic_j']:.3e} | "
                    + (f"{row['static_j']:.3e}" if row.get("static_j") is not None else "not modelled") + " | "
                    + (f"{ratio['gpu']['total']:.3g} ({ratio['gpu']['dynamic']:.3g})" if "gpu" in ratio else "-")
                    + " | "
                    + (f"{ratio['cpu']['total']:.3g} ({ratio['cpu']['dynamic']:.3g})" if "cpu" in ratio else "-")
                    + f" | {row['kind']}" + (f" (dynamic {row['dynamic_kind']})"
                                             if row['dynamic_kind'] != row['kind'] else "") + " |")
    ratio_l2 = l2["snn_over_ann"]["gpu"]["total"]
    rate = c["mean_spike_rate"]
    layer_rates = ", ".join(f"{row['spike_rate']:.4f}" for row in report["layers"])
    input_neurons = int(np.prod(mapping.layers[0].shape)) if mapping.layers[0].shape else 0
    input_rate = c["input_spikes"] / (input_neurons * stats.time_steps) if input_neurons else float("nan")
    layer1_synops = counts["layers"][0]["synops"]
    scenarios = {
        "as estimated (Loihi 2)": ratio_l2,
        "dynamic energy only (no static power on either side)": l2["snn_over_ann"]["gpu"]["dynamic"],
        "zero weights not stored (sparse synapses), static included": what_if(
            exact, chips["loihi2"], c["time_steps"], l2["chips"], gpu_j, zeros=False, static=True),
        "zero weights not stored and dynamic only": what_if(
            exact, chips["loihi2"], c["time_steps"], l2["chips"], gpu_j, zeros=False, static=False),
    }
    # The SNN runs 8-bit weights; the ANN twin is costed in fp32 (the profile's default). In int8
    # the ANN would be cheaper still, and the ratio worse for the SNN.
    from spikereg.hardware.energy import conventional_energy

    gpu_int8 = conventional_energy(int(c["ann_macs"]), load_profile("gpu"), int(c["ann_io_bytes"]), precision="int8")
    scenarios["ANN twin in int8 instead of fp32 (the SNN's weights are 8-bit), static included"] = (
        l2["total_j"] / gpu_int8.total_j)
    # The network needs mapping.cores of the chip's cores: copies on the idle cores could take
    # patches in parallel, dividing the run time (and so the static energy) by the copies.
    copies = max(1, int(chips["loihi2"].cores_per_chip.value) // mapping.cores)
    parallel = (l2["dynamic_j"] + terms["static"] / copies) / gpu_j
    scenarios[f"{copies} copies of the network on one chip's {int(chips['loihi2'].cores_per_chip.value)} cores "
              f"(it maps to {mapping.cores}), patches in parallel"] = parallel
    command = ".venv/bin/python benchmarks/energy.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        SECTION, "",
        f"Energy per registration of a {args.spacing:g} mm brain (MNI ICBM152 T1, {'x'.join(map(str, fixed.shape))} "
        f"voxels, a synthetic pair warped by a random smooth field of up to {args.max_displacement:g} voxels, seed "
        f"{args.seed}) with the shipped model `{_rel(model)}`: {iterations} iterations x "
        f"{result.patches_per_iteration} patches (stride {stride}), {c['time_steps']:,} time steps. "
        "**Every joule is an estimate**: counts measured on the run x per-event energies of the cited profiles in "
        "`hardware_profiles/` (Loihi 2 per-event energies are Loihi 1's pre-silicon figures scaled by die area; "
        "Loihi 2 static power and time per step are measured on a board, for another network; the GPU/CPU rows "
        "are 45 nm per-MAC and DRAM energies, arithmetic and host I/O only, no static power: lower bounds). "
        "Nothing here is a power measurement.",
        "",
        "The counts come from SLAYER (`--backend torch`, the netx file's own 8-bit weights), not from Lava: "
        "Lava's simulator needs about 23 minutes per iteration for this brain, and its spikes equal SLAYER's on "
        f"every export (checked at export time). In the same run, {len(brain)} patches with brain were also run "
        f"on Lava's fixed-point simulator (`--backend sim`, {lava_seconds:.0f} s): per-patch input spikes, layer "
        f"spikes and synops {'**equal**' if same else '**DIFFER** from'} the torch counts of the same patches.",
        "",
        "```bash", command, "```", "",
        "| profile | total J | dynamic J | static J | SNN/ANN gpu: total (dynamic) "
        "| SNN/ANN cpu: total (dynamic) | kind |",
        "|---|---:|---:|---:|---:|---:|---|",
        *rows, "",
        f"- counts: {c['patches']:,} patches; input spikes {c['input_spikes']:,} (input rate {input_rate:.4f} per "
        f"neuron per step); layer spikes {c['layer_spikes']:,}; **mean spike rate {rate:.4f}** (layers: "
        f"{layer_rates}); synops {c['synops']:.4g}, of which {c['synops_structural_zeros'] / c['synops']:.1%} on "
        f"structural zeros (zero depth blocks of the folded 3-D kernels); "
        f"{layer1_synops / c['synops']:.1%} of all synops are driven by the encoded input; "
        f"neuron updates {c['neuron_updates']:.4g}; ANN twin {c['ann_macs']:.4g} MACs, "
        f"{c['ann_io_bytes']:.4g} host bytes",
        f"- Loihi 2 energy is {terms['static'] / l2['total_j']:.1%} static power x time "
        f"({c['time_steps']:,} steps x 152.8 us x 232 mW x {l2['chips']} chip(s)); of the dynamic part, synops on "
        f"nonzero weights {terms['synops_effective'] / l2['dynamic_j']:.1%}, on zero weights "
        f"{terms['synops_structural_zeros'] / l2['dynamic_j']:.1%}, neuron updates "
        f"{terms['neuron_updates'] / l2['dynamic_j']:.1%}, spike messages {terms['spikes'] / l2['dynamic_j']:.1%}",
        f"- accounting: each spike is charged the exact fan-out of the neuron that sent it (new in this section); "
        f"the layer-mean fan-out used before would give {mean.effective_synops + mean.structural_zero_synops:.4g} "
        f"synops instead of {exact.effective_synops + exact.structural_zero_synops:.4g} "
        f"({mean_synops / exact_synops - 1:+.1%})",
        f"- **where we stand**: target <= {TARGET_RATIO:g}x the GPU ANN's energy (100x less) at <= "
        f"{TARGET_RATE:.0%} mean spike rate. The spike rate target is {'met' if rate <= TARGET_RATE else 'missed'} "
        f"({rate:.2%}); the energy target is {'met' if ratio_l2 <= TARGET_RATIO else 'missed'}: Loihi 2 is "
        f"estimated at {ratio_l2:.3g}x the GPU ANN twin's energy "
        f"({'%.3g' % (1 / ratio_l2) + 'x less' if ratio_l2 < 1 else '%.3g' % ratio_l2 + 'x more'}), "
        f"{ratio_l2 / TARGET_RATIO:.3g}x away from the target",
        "- what the gap is made of (SNN/ANN-GPU ratios under assumptions that are *not* the estimate):",
        *[f"  - {name}: {value:.3g}" for name, value in scenarios.items()],
        f"- why: (1) static power dominates: the chip is charged 232 mW for every step of {c['patches']:,} "
        f"patches run one after another ({meta['window']} steps each, at PilotNet's measured 152.8 us per step), "
        "while the ANN profiles charge no static power at all (a GPU idles at tens of watts; not modelled, so the "
        "comparison favours the ANN); (2) the encoded input sends "
        f"{c['input_spikes'] / max(1, c['layer_spikes']):.0f}x more spikes than all layers together (rate-coded "
        f"intensities, differences and demons forces: {meta['model']['encoding']}), each fanning out to "
        f"{layer1_synops / max(1, c['input_spikes']):.0f} synapses on average in the depth-folded first layer; "
        "(3) most of those synapses are the zero depth blocks of depth folding, which a chip that stores conv "
        "weights whole still reads. Even with static power and the zero blocks gone the SNN is at "
        f"{scenarios['zero weights not stored and dynamic only']:.2g}x the GPU ANN: per event, a Loihi synop "
        "(12.2 pJ estimated) costs more than an fp32 MAC (4.6 pJ), so the SNN needs far fewer events than the "
        "ANN's MACs to win",
        f"- times: torch registration {torch_seconds:.1f} s (network {stats.network_seconds:.1f} s) on "
        f"{machine()}, load average (1 min) {os.getloadavg()[0]:.2f} at the end (other jobs share the machine); "
        f"{versions()}",
        f"- date: {datetime.date.today().isoformat()}",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    print(f"NCC before/after: {ncc(fixed, moving):.4f} -> {ncc(fixed, result.warped):.4f}", file=sys.stderr)
    if args.write:
        write_section(SECTION, section)
        print(f"updated {BENCHMARKS}", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
