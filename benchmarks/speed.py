"""Whole-volume speed and memory: torch vs Lava sim vs SimpleITK demons, and training throughput.

One run, the same synthetic real-anatomy pair per resolution (MNI ICBM152 T1
at 2 mm and at 1 mm, warped by a random smooth field of up to 3 voxels, seed 0):

1. ``--backend torch``: ``run_registration`` exactly as ``spikereg run`` does it
   (shipped model, its default 2 iterations at patch stride 12, outputs and
   report written), time split into network (SLAYER forward passes) and host
   (normalising, patch cutting, encoding, stitching, warping, Jacobian, NIfTI).
2. ``--backend sim``: at the ``--sim-full`` spacings (default 2 mm)
   ``run_registration`` on Lava's simulator, whole, as ``spikereg run --backend
   sim`` does it (Lava's conv on torch, SpikeReg's default, ``spikereg.compat``);
   at other spacings ``--sim-patches`` patches spread evenly over the brain's
   patch list are streamed through the compiled network and the registration
   time is **extrapolated** as compile + patches x measured seconds per patch
   + the host time measured for torch (the host code is the same). The same
   sample also runs with ``SPIKEREG_LAVA_TORCH_CONV=0`` (Lava's own
   ``conv_scipy``: one ``scipy.signal.convolve2d`` per (output feature, input
   feature) pair of the folded layer, every time step), extrapolated, for
   comparison; both convolutions are timed per layer.
3. SimpleITK diffeomorphic demons (``benchmarks/accuracy.py``'s settings) on
   the same pair.
4. Training throughput of ``configs/demo.yaml`` (patch pairs per second, ANN
   twin and SNN stages, a few steps each).

Every method runs in its own child process; its peak memory is the kernel's
resident high-water mark of that process (``VmHWM``) and, for Lava's several
processes, the sum of their proportional set sizes sampled every 0.2 s.

    .venv/bin/python benchmarks/speed.py [--spacings 2 1] [--sim-patches 12] [--write]

``--write`` puts the tables, the command, the machine and the date under
``## Speed and memory`` in BENCHMARKS.md, leaving other sections as they are.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lava_streaming import machine, versions  # noqa: E402  same machine and version lines as the other benchmarks
from sections import BENCHMARKS, write_section  # noqa: E402

SECTION = "## Speed and memory"
TARGETS = {"torch_2mm_s": 10.0, "sim_2mm_s": 600.0, "peak_1mm_gb": 4.0}


# -- measuring a child -------------------------------------------------------------


class TreeMemory:
    """Peak of the summed PSS of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        for proc in [self.process] + self.process.children(recursive=True):
            try:
                total += proc.memory_full_info().pss
            except (psutil.Error, AttributeError):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def peak_rss_bytes() -> int:
    """This process's resident high-water mark (VmHWM). Not ``ru_maxrss``: that keeps the
    parent's peak from before ``exec`` (the benchmark's parent holds the 1 mm pair)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_pair(folder: Path):
    from spikereg.registration.pipeline import load_inputs

    return load_inputs(folder / "fixed.nii.gz", folder / "moving.nii.gz")


def child_registration(folder: Path, out: Path, backend: str = "torch") -> dict:
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.pipeline import run_registration

    tick = time.perf_counter()
    fixed, moving, _ = load_pair(folder)
    load = time.perf_counter() - tick
    tick = time.perf_counter()
    report = run_registration(fixed, moving, DEMO_MODEL, read_metadata(DEMO_MODEL), out, backend=backend)
    wall = time.perf_counter() - tick
    return {"wall": wall, "load": load, "network": report["timing"]["network_seconds"],
            "host": wall - report["timing"]["network_seconds"], "register_host": report["timing"]["host_seconds"],
            "patches": report["patches"], "ncc_before": report["similarity"]["ncc_before"],
            "ncc_after": report["similarity"]["ncc_after"],
            "estimate": report["memory"]["estimated_peak_bytes"], "threads": __import__("torch").get_num_threads()}


def child_demons(folder: Path, out: Path) -> dict:
    import SimpleITK as sitk
    from accuracy import demons

    from spikereg.data import warp
    from spikereg.registration.register import ncc

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(os.environ["OMP_NUM_THREADS"]))
    fixed, moving, _ = load_pair(folder)
    tick = time.perf_counter()
    ddf = demons(fixed.data, moving.data)
    warped = warp(moving.data, ddf)
    wall = time.perf_counter() - tick
    return {"wall": wall, "host": wall, "network": 0.0, "ncc_before": ncc(fixed.data, moving.data),
            "ncc_after": ncc(fixed.data, warped)}


def child_sim(folder: Path, out: Path, count: int) -> dict:
    """Stream ``count`` of the brain's first-iteration patches through Lava; per-patch cost.

    Lava's conv runs as SpikeReg sets it up (torch unless ``SPIKEREG_LAVA_TORCH_CONV=0``).
    """
    from spikereg.data import normalize_intensity
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.backends import open_backend
    from spikereg.registration.patches import extract, pad_to, patch_grid

    fixed, moving, _ = load_pair(folder)
    with open_backend(DEMO_MODEL, "sim") as lava:
        grid = patch_grid(fixed.shape, lava.patch_size, 12)
        pick = np.linspace(0, len(grid) - 1, count).round().astype(int)  # spread over the whole volume
        sub = type(grid)(grid.shape, grid.padded, grid.patch, grid.stride, grid.origins[pick])
        f = extract(pad_to(normalize_intensity(fixed.data), grid.padded), sub)
        m = extract(pad_to(normalize_intensity(moving.data), grid.padded), sub)
        tick = time.perf_counter()
        controls = lava.predict(f, m)
        wall = time.perf_counter() - tick
        stats = lava.stats
    with open_backend(DEMO_MODEL, "torch") as slayer:
        same = bool(np.array_equal(controls, slayer.predict(f, m)))
    return {"same_as_torch": same, "wall": wall, "compile": stats.compile_seconds, "run": stats.network_seconds,
            "patches": count,
            "steps": stats.time_steps, "per_patch": stats.network_seconds / count,
            "per_step_ms": stats.network_seconds / stats.time_steps * 1e3, "patches_per_iteration": len(grid)}


def child_train(folder: Path, out: Path, steps: int) -> dict:
    from spikereg.config import load_config
    from spikereg.training.trainer import train

    config = load_config(ROOT / "configs" / "demo.yaml", [
        f"train.steps={steps}", f"train.ann_steps={steps}", "data.pairs=4", f"train.checkpoint_every={steps}"])
    marks: dict[str, list[float]] = {"ann": [], "snn": []}

    def progress(step, total, row):
        marks["ann" if "stage" in row else "snn"].append(time.perf_counter())

    train(config, out, progress=progress)
    batch = config.train.batch_size
    rate = {k: (len(v) - 1) * batch / (v[-1] - v[0]) for k, v in marks.items() if len(v) > 1}
    return {"batch_size": batch, "steps": steps, "ann_pairs_per_s": rate.get("ann"), "snn_pairs_per_s": rate.get("snn")}


def child_pyramid(spacing: float) -> dict:
    """Large displacements (up to 6 voxels): --pyramid 1 vs 2 on torch, end-point error against the truth."""
    from spikereg.data import load_mni, make_pair
    from spikereg.metrics.displacement import end_point_error
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.backends import open_backend
    from spikereg.registration.register import ncc, register

    template = load_mni("t1", spacing).data
    pair = make_pair(template, np.random.default_rng(1), max_displacement=6.0, control_spacing=16, noise_std=0.02)
    brain = template > 0.1 * template.max()
    rows = {"identity": {"epe": end_point_error(np.zeros_like(pair.ddf), pair.ddf, brain),
                         "ncc": ncc(pair.fixed, pair.moving), "seconds": 0.0}}
    with open_backend(DEMO_MODEL, "torch") as backend:
        for levels in (1, 2):
            tick = time.perf_counter()
            result = register(pair.fixed, pair.moving, backend, iterations=2, patch_stride=12, pyramid=levels)
            rows[f"pyramid {levels}"] = {"epe": end_point_error(result.ddf, pair.ddf, brain),
                                         "ncc": ncc(pair.fixed, result.warped),
                                         "seconds": time.perf_counter() - tick, "patches": result.patches}
    return {"spacing": spacing, "rows": rows}


def run_child(method: str, folder: Path, extra: list[str], threads: int) -> dict:
    """Run one method in a fresh interpreter; its JSON result plus peak memory."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, "--child", method, "--folder", str(folder), "--out", out, *extra]
        tick = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
        if method == "sim-scipy":
            env["SPIKEREG_LAVA_TORCH_CONV"] = "0"  # Lava's own conv_scipy (spikereg.compat)
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - tick
        if done.returncode:
            raise SystemExit(f"error: {method} on {folder} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = elapsed
    return result


def child_main(args) -> int:
    folder, out = Path(args.folder), Path(args.out)
    with TreeMemory() as memory:
        if args.child in ("torch", "sim"):
            result = child_registration(folder, out / "run", args.child)
        elif args.child == "demons":
            result = child_demons(folder, out)
        elif args.child == "pyramid":
            result = child_pyramid(float(folder.name.removesuffix("mm")))
        elif args.child in ("sim-sampled", "sim-scipy"):
            result = child_sim(folder, out, args.sim_patches)
        else:
            result = child_train(folder, out / "train", args.train_steps)
    result["maxrss_bytes"] = peak_rss_bytes()
    result["tree_pss_bytes"] = memory.peak
    print(json.dumps(result))
    return 0


# -- the parent ----------------------------------------------------------------------


def make_pairs(workdir: Path, spacings: list[float]) -> dict[float, tuple[Path, tuple[int, ...]]]:
    import nibabel as nib

    from spikereg.data import load_mni, make_pair

    folders = {}
    for spacing in spacings:
        template = load_mni("t1", spacing)
        pair = make_pair(template.data, np.random.default_rng(0), max_displacement=3.0, control_spacing=8,
                         noise_std=0.02)
        folder = workdir / f"{spacing:g}mm"
        folder.mkdir()
        for name in ("fixed", "moving"):
            nib.save(nib.Nifti1Image(getattr(pair, name).astype(np.float32), template.affine),
                     folder / f"{name}.nii.gz")
        folders[spacing] = (folder, template.data.shape)
    return folders


def profile_lava_conv() -> list[dict]:
    """Time Lava's conv_scipy and SpikeReg's torch conv on each layer of the shipped network, one step of random
    spikes."""
    import torch

    from spikereg import compat
    from spikereg.netx_file import read_netx
    from spikereg.pretrained import DEMO_MODEL

    compat.netx()
    from lava.proc.conv import utils

    torch.set_num_threads(1)  # as inside Lava's process models (compat.torch_conv)
    rows, rng = [], np.random.default_rng(0)
    layers = read_netx(DEMO_MODEL).layers
    shape = tuple(int(v) for v in layers["0"]["shape"][()])  # (f, H, W) of the input
    shape = (shape[2], shape[1], shape[0])  # netx (x, y, f)
    for index in range(1, len(layers)):
        layer = layers[str(index)]
        weight = np.asarray(layer["weight"][()]).transpose(0, 3, 2, 1)  # SLAYER (o, i, h, w) -> Lava (o, x, y, i)
        kernel = tuple(int(v) for v in layer["kernelSize"][()])[::-1]
        stride = tuple(int(v) for v in layer["stride"][()])[::-1]
        padding = tuple(int(v) for v in layer["padding"][()])[::-1]
        spikes = rng.random(shape) < 0.1  # binary, as the fixed-point model receives them
        weight = weight.astype(np.int32)  # the fixed-point model's weights
        utils.conv_scipy(spikes, weight, kernel, stride, padding, (1, 1), 1)  # warm-up
        tick = time.perf_counter()
        reps = 3
        for _ in range(reps):
            output = utils.conv_scipy(spikes, weight, kernel, stride, padding, (1, 1), 1)
        scipy_ms = (time.perf_counter() - tick) / reps * 1e3
        on_torch = compat.torch_conv(spikes, weight, kernel, stride, padding, (1, 1), 1)  # warm-up
        assert np.array_equal(on_torch, output.astype(np.int32)), f"layer {index}: torch conv differs"
        tick = time.perf_counter()
        for _ in range(reps * 10):
            compat.torch_conv(spikes, weight, kernel, stride, padding, (1, 1), 1)
        rows.append({"layer": index, "input": shape, "output": output.shape,
                     "calls": weight.shape[0] * weight.shape[-1], "ms": scipy_ms,
                     "torch_ms": (time.perf_counter() - tick) / (reps * 10) * 1e3})
        shape = output.shape
    return rows


def profile_torch(threads: int, count: int = 64) -> dict:
    """Where the torch backend's time goes: cProfile of one batch of real patches."""
    import cProfile
    import pstats

    import torch

    from lava_export.verify import sample_patches
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.backends import open_backend

    torch.set_num_threads(threads)
    backend = open_backend(DEMO_MODEL, "torch")
    fixed, moving = sample_patches(backend.net, 2.0, count)
    backend.predict(fixed[:8], moving[:8])  # warm-up
    profiler = cProfile.Profile()
    tick = time.perf_counter()
    profiler.runcall(backend.predict, fixed, moving)
    total = time.perf_counter() - tick
    stats = pstats.Stats(profiler).stats

    def cumulative(name: str, where: str = "") -> float:  # exact function name, or a builtin containing it
        return sum(row[3] for (file, _, func), row in stats.items()
                   if (func == name or (func.startswith("<built-in") and name in func)) and where in file)

    return {"ms_per_patch": total / count * 1e3, "total": total,
            "dynamics": cumulative("_li_dynamics_fwd"), "encode": cumulative("encode", "encoding.py"),
            "conv": cumulative("conv3d"), "counting": cumulative("add", "counts.py")}


def fmt_gb(value: float | None) -> str:
    return "" if value is None else f"{value / 1e9:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spacings", type=float, nargs="+", default=[2.0, 1.0], help="mm (default 2 1)")
    parser.add_argument("--sim-patches", type=int, default=12, help="patches streamed through Lava per brain")
    parser.add_argument("--train-steps", type=int, default=6, help="training steps timed per stage")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and SimpleITK threads per method (default 1: see BENCHMARKS.md)")
    parser.add_argument("--sim-full", type=float, nargs="*", default=[2.0],
                        help="spacings (mm) at which sim registers the whole brain (default 2); elsewhere extrapolated")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["torch", "sim", "sim-scipy", "demons", "pyramid", "train"])
    parser.add_argument("--write", action="store_true", help=f"update '{SECTION}' in BENCHMARKS.md")
    parser.add_argument("--save", help="also write the raw measurements to this JSON file")
    parser.add_argument("--resume", action="store_true", help="with --save: skip what that file already holds")
    parser.add_argument("--render", help="only render the section from a --save file (no measuring)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    if args.sim_patches < 2:
        parser.error("--sim-patches must be at least 2")

    if args.render:  # tables from a saved run (e.g. after refitting the memory model)
        saved = json.loads(Path(args.render).read_text())
        return render(args, saved["command"], saved["measured"], saved["load"], saved["date"])
    command = ".venv/bin/python benchmarks/speed.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()[0]
    measured: dict = {"runs": [], "shapes": {}}
    if args.resume and args.save and Path(args.save).is_file():  # keep what an interrupted run measured
        saved = json.loads(Path(args.save).read_text())
        measured, command, load_before = saved["measured"], saved["command"], saved["load"][0]
    done = {(spacing, method) for spacing, method, _ in measured["runs"]}

    def checkpoint() -> None:
        if args.save:
            Path(args.save).write_text(json.dumps({"command": command, "measured": measured,
                                                   "load": [load_before, os.getloadavg()[0]],
                                                   "date": datetime.date.today().isoformat()}, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        folders = make_pairs(Path(tmp), args.spacings)
        extra = ["--sim-patches", str(args.sim_patches), "--train-steps", str(args.train_steps)]
        for spacing, (folder, shape) in folders.items():
            measured["shapes"][str(spacing)] = list(shape)
            sim = "sim" if spacing in args.sim_full else "sim-sampled"
            for method in ("torch", "demons", sim, "sim-scipy"):
                if method.removesuffix("-sampled") in args.skip or (spacing, method) in done:
                    continue
                print(f"{spacing:g} mm {method} ...", file=sys.stderr, flush=True)
                measured["runs"].append([spacing, method, run_child(method, folder, extra, args.threads)])
                checkpoint()
        if measured.get("pyramid") is None and "pyramid" not in args.skip:
            print("pyramid ...", file=sys.stderr, flush=True)
            measured["pyramid"] = run_child("pyramid", folders[args.spacings[0]][0], extra, args.threads)
            checkpoint()
        if measured.get("train") is None and "train" not in args.skip:
            measured["train"] = run_child("train", folders[args.spacings[0]][0], extra, args.threads)
            checkpoint()
        measured["conv"] = [] if "sim" in args.skip else profile_lava_conv()
        measured["torch_profile"] = None if "torch" in args.skip else profile_torch(args.threads)
    load = [load_before, os.getloadavg()[0]]
    date = datetime.date.today().isoformat()
    if args.save:
        Path(args.save).write_text(json.dumps({"command": command, "measured": measured, "load": load,
                                               "date": date}, indent=1))
    return render(args, command, measured, load, date)


def render(args, command: str, measured: dict, load: list[float], date: str) -> int:
    """The BENCHMARKS.md section from the measurements; written with --write."""
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.pipeline import estimate_peak_bytes

    meta = read_metadata(DEMO_MODEL)
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
                        "; field as torch's (same NCC)" if torch_run and run["ncc_after"] == torch_run["ncc_after"]
                        else ""))
            rows.append((f"{spacing:g} mm ({size})", label, f"{run['wall']:.1f}",
                         f"{run['host']:.1f}", f"{run['network']:.1f}",
                         fmt_gb(run["maxrss_bytes"]), fmt_gb(run["tree_pss_bytes"]),
                         f"{run['ncc_before']:.4f} -> {run['ncc_after']:.4f}",
                         f"{run['patches']} patches (2 iterations x {run['patches'] // 2}), {note}; "
                         f"`--memory-budget` estimate {fmt_gb(estimate_peak_bytes(tuple(shape), meta, method))} GB"))
        for method, label in (("sim-sampled", "`--backend sim` (**extrapolated**)"),
                              ("sim-scipy", "`--backend sim` with `SPIKEREG_LAVA_TORCH_CONV=0`, Lava's "
                                            "`conv_scipy` (**extrapolated**)")):
            sim = results.get((spacing, method))
            if not sim:
                continue
            total_patches = 2 * sim["patches_per_iteration"]
            host = torch_run["host"] if torch_run else 0.0
            network = sim["compile"] + total_patches * sim["per_patch"]
            results[spacing, method + "_extrapolated"] = network + host
            same = {True: "field = torch's (checked on the sample)", False: "**differs from torch**",
                    None: "= torch (same spikes)"}[sim.get("same_as_torch")]
            rows.append((f"{spacing:g} mm ({size})", label, f"{network + host:.0f}", f"{host:.1f}", f"{network:.0f}",
                         fmt_gb(sim["maxrss_bytes"]), fmt_gb(sim["tree_pss_bytes"]), same,
                         f"measured: {sim['patches']} patches spread over the brain, {sim['run']:.1f} s "
                         f"({sim['per_patch']:.2f} s/patch, {sim['per_step_ms']:.0f} ms/step) + "
                         f"compile {sim['compile']:.1f} s; x {total_patches} patches + torch's host time; "
                         "memory is the sample run's; `--memory-budget` estimate "
                         f"{fmt_gb(estimate_peak_bytes(tuple(shape), meta, 'sim'))} GB"))
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
                "profile below splits it into spike encoding, the report's per-neuron counting and SLAYER itself, "
                f"on a machine whose load average was {load_before:.1f} on 2 cores at the start. Fewer patches "
                "(`--patch-stride 16`, `--iterations 1`) or a GPU (`--device cuda`) are the levers")
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
            "sim, spike encoding and the report's per-neuron counting (numpy, from every layer's values at every "
            "step) are host work, while on torch they are counted as network time; the network part is "
            f"{results[2.0, 'sim']['network'] / results[2.0, 'sim']['patches'] * 1e3:.0f} ms per patch")
    if (2.0, "sim-sampled_extrapolated") in results:
        verdicts.append(_verdict("2 mm brain on sim (extrapolated)", results[2.0, "sim-sampled_extrapolated"],
                                 TARGETS["sim_2mm_s"], "s"))
    if (2.0, "sim-scipy_extrapolated") in results:
        verdicts.append(_verdict("2 mm brain on sim with Lava's own conv_scipy (`SPIKEREG_LAVA_TORCH_CONV=0`, "
                                 "extrapolated)", results[2.0, "sim-scipy_extrapolated"], TARGETS["sim_2mm_s"], "s"))
    if one:
        peak = max(one["maxrss_bytes"], one["tree_pss_bytes"]) / 1e9
        verdicts.append(_verdict("1 mm brain peak memory on torch", peak, TARGETS["peak_1mm_gb"], "GB"))
    train_lines = []
    if train:
        train_lines = [f"- training throughput, `configs/demo.yaml` (batch {train['batch_size']} patch pairs of "
                       f"16^3, {train['steps']} steps per stage timed): ANN twin "
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
                         else "") + ". Depth folding multiplies the feature pairs (layer 1 has 16 x 10 = 160 "
                      "input features); with the convolutions on torch the rest of each step is Lava's own "
                      "message passing between its processes and the host's per-step injector/extractor traffic",
                      "- Lava's torch conv path: `spikereg.compat.use_lava_torch_conv`, set by the runner for "
                      "`--backend sim` before Lava forks its process models; torch single-threaded inside them "
                      "(lava-nc disabled the path because torch hung there), float32 sums checked against 2**24 "
                      "per network; every export's verification and this run's fields are compared with SLAYER's"]
    pyramid_lines = []
    if measured.get("pyramid"):
        found = measured["pyramid"]
        pyramid_lines = [
            f"- coarse to fine (`--pyramid`, torch, 2 iterations per level) on a {found['spacing']:g} mm pair with "
            "displacements up to 6 voxels (control spacing 16, seed 1), end-point error over the brain: " + "; ".join(
                f"{name} {row['epe']:.2f} vox, NCC {row['ncc']:.4f}"
                + (f", {row['seconds']:.0f} s, {row['patches']} patches" if row.get("patches") else "")
                for name, row in found["rows"].items())
            + " (the model's readout spans at most 3 voxels per iteration; the half-resolution level sees twice "
            "that)"]
    torch_lines = []
    if torch_profile:
        t = torch_profile
        torch_lines = [f"- where torch's time goes (cProfile, 64 real patches, {args.threads} thread(s), "
                       f"{t['ms_per_patch']:.1f} ms per patch): SLAYER's CUBA neuron dynamics "
                       f"(`_li_dynamics_fwd`, a Python loop over time steps on the CPU) "
                       f"{100 * t['dynamics'] / t['total']:.0f} %, host-side spike encoding "
                       f"(`PatchCodec.encode`: rate code of 10 feature channels x 16^3 voxels x 18 steps per patch) "
                       f"{100 * t['encode'] / t['total']:.0f} %, "
                       f"SLAYER's convolutions (`conv3d`) {100 * t['conv'] / t['total']:.0f} %, per-neuron spike "
                       f"counting for the report (`spikereg.registration.counts`) "
                       f"{100 * t.get('counting', 0) / t['total']:.0f} %; "
                       "the rest is SLAYER's other tensor work (reshapes, copies, quantization)"]
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
        "(max 3 voxels, control spacing 8, noise 0.02, seed 0); shipped model `spikereg/pretrained/demo.net`, "
        "2 iterations, patch stride 12",
        f"- machine: {machine()}; {versions()}",
        f"- load average (1 min) {load_before:.2f} before, {load_after:.2f} after "
        "(the machine is shared: other jobs inflate the times)",
        f"- date: {date}",
    ])
    section = (f"{SECTION}\n\n"
               "Wall time and peak memory to register whole brains, each method in its own process "
               "(`benchmarks/speed.py`).\n\n"
               f"```bash\n{command.strip()}\n```\n\n{table}\n\n{details}\n")
    print(section)
    if args.write:
        write_section(SECTION, section)
        print(f"updated {BENCHMARKS}", file=sys.stderr)
    return 0


def _verdict(what: str, value: float, target: float, unit: str) -> str:
    if value <= target:
        return f"- {what}: **met** ({value:.1f} {unit}, target <= {target:g} {unit})"
    return (f"- {what}: **missed** by {value - target:.1f} {unit} ({value / target:.1f}x; "
            f"{value:.1f} {unit} against <= {target:g} {unit})")


if __name__ == "__main__":
    sys.exit(main())
