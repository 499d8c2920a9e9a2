"""The ``## Speed and memory`` section of BENCHMARKS.md from ``benchmarks/speed.py``'s measurements.

The rendering half of the speed benchmark (``speed.py`` measures; ``speed.py
--render saved.json`` renders a saved run again without measuring). The model
and its run settings come with the measurements (saves from before ``--model``
measured the shipped demo model), so the section says which model it timed.
"""
from __future__ import annotations

import sys

from lava_streaming import machine, versions  # same machine and version lines as the other benchmarks
from sections import BENCHMARKS, write_section

SECTION = "## Speed and memory"
TARGETS = {"torch_2mm_s": 10.0, "sim_2mm_s": 60.0, "peak_1mm_gb": 4.0}  # issue 17's


def fmt_gb(value: float | None) -> str:
    return "" if value is None else f"{value / 1e9:.2f}"


# Saves written before --model timed the shipped demo model at its run settings.
DEMO = {"name": "demo", "file": "spikereg/pretrained/demo.net", "checkpoint": None,  # trained configs/demo.yaml
        "graph": False, "patch_size": 16, "spacing_mm": 4.0, "max_displacement": 3.0, "iterations": 2,
        "patch_stride": 12, "smoothing": 0.0, "notes": []}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _grid(run: dict) -> str:
    """Where the run registered, where that is not the brain's own grid (a model's working grid)."""
    if not run.get("working_grid"):
        return ""
    return (f"registered on the model's {run['grid_spacing'][0]:g} mm working grid "
            f"({'x'.join(map(str, run['grid_shape']))}), field brought back to the brain's grid; ")


def _profile_parts(profile: dict) -> list[list]:
    """(label, seconds) of each part of torch's time; saves from before --model kept the demo's four."""
    if "parts" in profile:
        return profile["parts"]
    return [["SLAYER's CUBA neuron dynamics (`_li_dynamics_fwd`, a Python loop over time steps on the CPU)",
             profile["dynamics"]],
            ["host-side spike encoding (`PatchCodec.encode`: rate code of 10 feature channels x 16^3 voxels x 18 "
             "steps per patch)", profile["encode"]],
            ["SLAYER's convolutions (`conv3d`)", profile["conv"]],
            ["per-neuron spike counting for the report (`spikereg.registration.counts`)",
             profile.get("counting", 0.0)]]


def render(args, command: str, measured: dict, load: list[float], date: str) -> int:
    """The BENCHMARKS.md section (``args.section``) from the measurements; written with --write."""
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.lava_backends import SIM_COPIES
    from spikereg.registration.pipeline import estimate_peak_bytes

    model = measured.get("model", DEMO)
    meta = read_metadata(model.get("path", DEMO_MODEL))

    def iterations(run: dict) -> int:
        return run.get("iterations", model["iterations"])

    results = {(spacing, method): result for spacing, method, result in measured["runs"]}
    train, conv, torch_profile = measured.get("train"), measured.get("conv"), measured.get("torch_profile")
    load_before, load_after = load
    rows = []
    for spacing_key, shape in measured["shapes"].items():
        spacing = float(spacing_key)
        size = "x".join(map(str, shape))
        torch_run = results.get((spacing, "torch"))
        for method, label in (("torch", "`--backend torch`"),
                              ("sim", "`--backend sim` (whole brain, run)")):
            run = results.get((spacing, method))
            if not run:
                continue
            note = (f"{run['threads']} torch thread(s)" if method == "torch" else
                    "Lava's conv on torch (SpikeReg's default)" + (
                        f"; from rest, {SIM_COPIES} patches side by side per window (`lava_export.copies`), "
                        "each run until its readout answers" if meta.get("from_rest") else "") + (
                        "; field as torch's (same NCC)" if torch_run and run["ncc_after"] == torch_run["ncc_after"]
                        else ""))
            rows.append((f"{spacing:g} mm ({size})", label, f"{run['wall']:.1f}",
                         f"{run['host']:.1f}", f"{run['network']:.1f}",
                         fmt_gb(run["maxrss_bytes"]), fmt_gb(run["tree_pss_bytes"]),
                         f"{run['ncc_before']:.4f} -> {run['ncc_after']:.4f}",
                         f"{run['patches']} patches ({_count(iterations(run), 'iteration')} x "
                         f"{run['patches'] // iterations(run)}), {_grid(run)}{note}; `--memory-budget` estimate "
                         f"{fmt_gb(run.get('estimate') or estimate_peak_bytes(tuple(shape), meta, method))} GB"))
        for method, label in (("sim-sampled", "`--backend sim` (**extrapolated**)"),
                              ("sim-scipy", "`--backend sim` with `SPIKEREG_LAVA_TORCH_CONV=0`, Lava's "
                                            "`conv_scipy` (**extrapolated**)")):
            sim = results.get((spacing, method))
            if not sim:
                continue
            total_patches = iterations(sim) * sim["patches_per_iteration"]
            host = torch_run["host"] if torch_run else 0.0
            # the start-up (build, compile, a first patch) once, from a --save file of before it: the compile
            startup = sim.get("startup", sim["compile"])
            network = startup + total_patches * sim["per_patch"]
            results[spacing, method + "_extrapolated"] = network + host
            same = {True: "field = torch's (checked on the sample)", False: "**differs from torch**",
                    None: "= torch (same spikes)"}[sim.get("same_as_torch")]
            rows.append((f"{spacing:g} mm ({size})", label, f"{network + host:.0f}", f"{host:.1f}", f"{network:.0f}",
                         fmt_gb(sim["maxrss_bytes"]), fmt_gb(sim["tree_pss_bytes"]), same,
                         f"measured: {sim['patches']} patches spread over the "
                         f"{'x'.join(map(str, sim.get('grid_shape', shape)))} grid the run registers on, "
                         f"{sim['run']:.1f} s "
                         f"({sim['per_patch']:.2f} s/patch, {sim['per_step_ms']:.0f} ms/step) x {total_patches} "
                         + (f"patches + start-up {startup:.1f} s (build, compile {sim['compile']:.1f} s, a first "
                            "patch; timed apart)" if "startup" in sim else
                            f"patches + compile {sim['compile']:.1f} s") + " + torch's host time; "
                         "memory is the sample run's; `--memory-budget` estimate "
                         f"{fmt_gb(estimate_peak_bytes(tuple(sim.get('grid_shape', shape)), meta, 'sim'))} GB"))
        demons_run = results.get((spacing, "demons"))
        if demons_run:
            rows.append((f"{spacing:g} mm ({size})", "SimpleITK diffeomorphic demons",
                         f"{demons_run['wall']:.1f}", f"{demons_run['wall']:.1f}", "",
                         fmt_gb(demons_run["maxrss_bytes"]), fmt_gb(demons_run["tree_pss_bytes"]),
                         f"{demons_run['ncc_before']:.4f} -> {demons_run['ncc_after']:.4f}",
                         "50 iterations, field smoothing 1.5 voxels (benchmarks/accuracy.py)"))

    header = ("| brain | method | wall s | host s | network s | peak RSS GB (main process) | "
              "peak PSS GB (process tree) | NCC before -> after | notes |\n|---|---|---:|---:|---:|---:|---:|---|---|")
    table = header + "\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)
    verdicts = []
    two, one = results.get((2.0, "torch")), results.get((1.0, "torch"))
    if two:
        verdicts.append(_verdict("2 mm brain on torch", two["wall"], TARGETS["torch_2mm_s"], "s"))
        if two["wall"] > TARGETS["torch_2mm_s"]:
            verdicts.append(
                f"  - why: the network part is {two['network']:.0f} s = {two['patches']} patches x "
                f"{two['network'] / two['patches'] * 1e3:.0f} ms, the host part {two['host']:.1f} s; per patch the "
                "profile below splits the network part, "
                f"on a machine whose load average was {load_before:.1f} on 2 cores at the start. Fewer patches "
                "(a larger `--patch-stride`, fewer `--iterations`) or a GPU (`--device cuda`) are the levers")
        if (2.0, "demons") in results:
            demons_wall = results[2.0, "demons"]["wall"]
            verdicts.append(f"- torch faster than demons on the 2 mm pair: "
                            f"{'**met**' if two['wall'] < demons_wall else '**missed**'} "
                            f"({two['wall']:.1f} s vs {demons_wall:.1f} s)")
    if (2.0, "sim") in results:
        verdicts.append(_verdict("2 mm brain on sim (run whole)", results[2.0, "sim"]["wall"],
                                 TARGETS["sim_2mm_s"], "s"))
    if (2.0, "sim") in results and two:
        verdicts.append(
            f"  - sim's host part ({results[2.0, 'sim']['host']:.0f} s) exceeds torch's ({two['host']:.1f} s): on "
            "sim, spike encoding" + ("" if model["graph"] else " and the report's per-neuron counting (numpy, from "
                                     "every layer's values at every step)") + " are host work, while on torch "
            "they are counted as network time; the network part is "
            f"{results[2.0, 'sim']['network'] / results[2.0, 'sim']['patches'] * 1e3:.0f} ms per patch")
    if (2.0, "sim-sampled_extrapolated") in results:
        verdicts.append(_verdict("2 mm brain on sim (extrapolated)", results[2.0, "sim-sampled_extrapolated"],
                                 TARGETS["sim_2mm_s"], "s"))
    if (2.0, "sim-scipy_extrapolated") in results:
        verdicts.append(_verdict("2 mm brain on sim with Lava's own conv_scipy (`SPIKEREG_LAVA_TORCH_CONV=0`, "
                                 "extrapolated)", results[2.0, "sim-scipy_extrapolated"], TARGETS["sim_2mm_s"], "s"))
    if one:
        peak = max(one["maxrss_bytes"], one["tree_pss_bytes"]) / 1e9
        where = (f" (registered on its {one['grid_spacing'][0]:g} mm working grid)" if one.get("working_grid")
                 else "")
        verdicts.append(_verdict(f"1 mm brain peak memory on torch{where}", peak, TARGETS["peak_1mm_gb"], "GB"))
    train_lines = []
    if train:
        recipe = f"the recipe of `{model['checkpoint']}`" if model["checkpoint"] else "`configs/demo.yaml`"
        train_lines = [f"- training throughput, {recipe} (batch {train['batch_size']} patch pairs of "
                       f"{train.get('patch_size', 16)}^3, {train['steps']} steps per stage timed): ANN twin "
                       f"{train['ann_pairs_per_s']:.1f} pairs/s, SNN (SLAYER, surrogate gradients) "
                       f"{train['snn_pairs_per_s']:.1f} pairs/s; peak RSS {fmt_gb(train['maxrss_bytes'])} GB"]
    conv_lines = []
    if conv:
        scipy_total, torch_total = sum(r["ms"] for r in conv), sum(r.get("torch_ms", 0.0) for r in conv)
        sampled = results.get((2.0, "sim-sampled")) or results.get((1.0, "sim-sampled"))
        scipy = results.get((2.0, "sim-scipy"))
        conv_lines = ["- where sim's time goes: Lava's conv process model, every step. As lava-nc 0.10 ships it "
                      "(`TORCH_IS_AVAILABLE = False` in `lava/proc/conv/utils.py`), `conv_scipy` runs one "
                      "`scipy.signal.convolve2d` per (output, input) feature pair of each folded layer; SpikeReg "
                      "runs the same sums with torch's `conv2d` (`spikereg.compat.torch_conv`). One step of "
                      "random spikes (10 %), per layer, scipy vs torch: " + "; ".join(
                          f"layer {r['layer']} {r['input']} -> {r['output']}: {r['calls']:,} convolve2d calls "
                          f"{r['ms']:.1f} ms vs {r.get('torch_ms', float('nan')):.2f} ms"
                          for r in conv) + f"; {scipy_total:.0f} ms vs {torch_total:.1f} ms per step in all"
                      + (f", against {scipy['per_step_ms']:.0f} ms (scipy) and "
                         f"{sampled['per_step_ms']:.0f} ms (torch) per step of the whole Lava run" if scipy and sampled
                         else "") + f". Depth folding multiplies the feature pairs (layer 1 has {conv[0]['input'][-1]} "
                      "input features, depth x channels); with the convolutions on torch the rest of each step is "
                      "Lava's own "
                      "message passing between its processes and the host's per-step injector/extractor traffic",
                      "- Lava's torch conv path: `spikereg.compat.use_lava_torch_conv`, set by the runner for "
                      "`--backend sim` before Lava forks its process models; torch single-threaded inside them "
                      "(lava-nc disabled the path because torch hung there), float32 sums checked against 2**24 "
                      "per network; every export's verification and this run's fields are compared with SLAYER's"]
    pyramid_lines = []
    if measured.get("pyramid"):
        found = measured["pyramid"]
        pyramid_lines = [
            f"- coarse to fine (`--pyramid`, torch, {_count(iterations(found), 'iteration')} per level) on a "
            f"{found['spacing']:g} mm pair with "
            "displacements up to 6 voxels (control spacing 16, seed 1), end-point error over the brain: " + "; ".join(
                f"{name} {row['epe']:.2f} vox, NCC {row['ncc']:.4f}"
                + (f", {row['seconds']:.0f} s, {row['patches']} patches" if row.get("patches") else "")
                for name, row in found["rows"].items())
            + f" (the model's readout spans at most {model['max_displacement']:g} voxels per iteration; the "
            "half-resolution level sees twice that)"]
    torch_lines = []
    if torch_profile:
        t = torch_profile
        torch_lines = [f"- where torch's time goes (cProfile, {t.get('patches', 64)} real patches of "
                       f"{t.get('patch_size', 16)}^3, {args.threads} thread(s), {t['ms_per_patch']:.1f} ms per "
                       "patch): " + ", ".join(f"{label} {100 * seconds / t['total']:.0f} %"
                                              for label, seconds in _profile_parts(t))
                       + "; the rest is SLAYER's other tensor work (reshapes, copies, quantization"
                       + (", the per-node message counts" if model["graph"] else "") + ")"]
    details = "\n".join(verdicts + pyramid_lines + train_lines + torch_lines + conv_lines + [
        f"- threads: torch and SimpleITK ran with {args.threads} thread(s) each (`--threads`): on this shared "
        "machine (5 jobs on 2 cores) two torch threads measured 2.8x slower per patch than one (86 vs 31 ms), "
        "as each waits for the other at every barrier",
        "- host = wall - network: loading is excluded; normalising, patch cutting, spike encoding, "
        "stitching, warping, composing, Jacobian, NCC and writing the NIfTI outputs are included "
        "(SLAYER's own encode is counted as network on torch)",
        "- peak RSS: the kernel's high-water mark (`VmHWM`) of the registering process; "
        "peak PSS: the process and its children "
        "(Lava's runtime processes) summed, sampled every 0.2 s",
        "- pair: MNI ICBM152 T1 resampled to the spacing, warped by a random cubic B-spline field "
        "(max 3 voxels, control spacing 8, noise 0.02, seed 0)",
        *(f"- {note}" for note in model["notes"]),
        f"- machine: {machine()}; {versions()}",
        f"- load average (1 min) {load_before:.2f} before, {load_after:.2f} after "
        "(the machine is shared: other jobs inflate the times)",
        f"- date: {date}",
    ])
    kind = ("a spiking U-Net, graph file: every patch from rest, a displacement per voxel" if model["graph"]
            else "a chain, netx file")
    spacing = f", trained at {model['spacing_mm']:g} mm" if model.get("spacing_mm") else ""
    section = (f"{args.section}\n\n"
               f"Wall time and peak memory to register whole brains with the model "
               + (f"`{model['name']}` (`{model['file']}`, " if model["name"] else f"`{model['file']}` (")
               + f"{kind}; "
               f"patch {model['patch_size']}^3{spacing}; {_count(model['iterations'], 'iteration')} at patch stride "
               f"{model['patch_stride']}, residual smoothing {model['smoothing']:g} voxels: its own run settings), "
               "each method in its own process (`benchmarks/speed.py`).\n\n"
               f"```bash\n{command.strip()}\n```\n\n{table}\n\n{details}\n")
    print(section)
    if args.write:
        write_section(args.section, section)
        print(f"updated {BENCHMARKS}", file=sys.stderr)
    return 0


def _verdict(what: str, value: float, target: float, unit: str) -> str:
    if value <= target:
        return f"- {what}: **met** ({value:.1f} {unit}, target <= {target:g} {unit})"
    return (f"- {what}: **missed** by {value - target:.1f} {unit} ({value / target:.1f}x; "
            f"{value:.1f} {unit} against <= {target:g} {unit})")
