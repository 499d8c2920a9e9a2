"""Whole-volume speed and memory: torch vs Lava sim vs SimpleITK demons, and training throughput.

One run, the same synthetic real-anatomy pair per resolution (MNI ICBM152 T1
at 2 mm and at 1 mm, warped by a random smooth field of up to 3 voxels, seed 0),
one model (``--model``: a path or a shipped model's name, default ``demo``; a
chain's netx file or a U-Net's graph file):

1. ``--backend torch``: ``run_registration`` exactly as ``spikereg run`` does it
   (the model's own run settings, on its working grid where the pair's voxels
   are far from its training spacing -- a 2 mm U-Net registers the 1 mm brain
   at 2 mm --, outputs and report written), time split into network (SLAYER
   forward passes) and host (normalising, patch cutting, encoding, stitching,
   warping, Jacobian, NIfTI).
2. ``--backend sim``: at the ``--sim-full`` spacings (default 2 mm)
   ``run_registration`` on Lava's simulator, whole, as ``spikereg run --backend
   sim`` does it (Lava's conv on torch, SpikeReg's default, ``spikereg.compat``);
   at other spacings ``--sim-patches`` patches spread evenly over the patch
   list of the grid the run registers on are streamed through the compiled
   network and the registration time is **extrapolated** as the start-up (build,
   compile and a first patch, timed apart) + patches x seconds per patch
   measured on the running network + the host time measured for torch (the host
   code is the same). For a chain the same sample also runs with
   ``SPIKEREG_LAVA_TORCH_CONV=0`` (Lava's own ``conv_scipy``: one
   ``scipy.signal.convolve2d`` per (output feature, input feature) pair of the
   folded layer, every time step), extrapolated, for comparison; both
   convolutions are timed per layer (not for a U-Net: its folded 32^3 layers
   would take scipy hours per patch).
3. SimpleITK diffeomorphic demons (``benchmarks/accuracy.py``'s settings) on
   the same pair.
4. Training throughput of the model's recipe, the config of its checkpoint
   (``--checkpoint``; a shipped model's own by default), patch pairs per
   second, ANN twin and SNN stages, a few steps each.

Every method runs in its own child process; its peak memory is the kernel's
resident high-water mark of that process (``VmHWM``) and, for Lava's several
processes, the sum of their proportional set sizes sampled every 0.2 s.

    .venv/bin/python benchmarks/speed.py [--spacings 2 1] [--sim-patches 12] [--write]
    .venv/bin/python benchmarks/speed.py --model runs/unet/U.net --checkpoint runs/unet/checkpoints/best.pt \
        --section "## Speed and memory: the spiking U-Net" --save runs/unet/speed.json --write

``--write`` puts the tables, the command, the model, the machine and the date
under ``## Speed and memory`` (``--section``: another heading) in
BENCHMARKS.md, leaving other sections as they are.
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
from sections import heading  # noqa: E402
from speed_render import SECTION, render  # noqa: E402  the tables of BENCHMARKS.md from the measurements

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


def model_options(model: str, checkpoint: str | None, skip: list[str]) -> tuple[Path, Path | None]:
    """(file, checkpoint) of ``--model`` and ``--checkpoint``, resolved and checked before any work.

    Only the training row needs the checkpoint (its config is the recipe
    timed): a model file without one is refused unless ``--skip train``.
    """
    from accuracy import model_files

    return model_files(model, checkpoint, None if "train" in skip else
                       "the training row times its recipe; or --skip train")


def child_registration(folder: Path, out: Path, model: Path, backend: str = "torch") -> dict:
    from spikereg.netx_file import read_metadata
    from spikereg.registration.pipeline import run_registration

    tick = time.perf_counter()
    fixed, moving, _ = load_pair(folder)
    load = time.perf_counter() - tick
    tick = time.perf_counter()
    report = run_registration(fixed, moving, model, read_metadata(model), out, backend=backend)
    wall = time.perf_counter() - tick
    grid = report["grids"]["registered_on"]
    return {"wall": wall, "load": load, "network": report["timing"]["network_seconds"],
            "host": wall - report["timing"]["network_seconds"], "register_host": report["timing"]["host_seconds"],
            "patches": report["patches"], "iterations": report["iterations"],
            "ncc_before": report["similarity"]["ncc_before"], "ncc_after": report["similarity"]["ncc_after"],
            "grid_shape": grid["shape"], "grid_spacing": grid["spacing"], "working_grid": grid["working_grid"],
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


def child_sim(folder: Path, out: Path, count: int, model: Path) -> dict:
    """Stream ``count`` of the brain's first-iteration patches through Lava; per-patch cost.

    The patches are cut as the run cuts them: from the grid it registers on
    (the model's working grid where the pair's spacing is far from the
    model's), at the model's patch stride. Lava's conv runs as SpikeReg sets
    it up (torch unless ``SPIKEREG_LAVA_TORCH_CONV=0``).
    """
    from spikereg.data import normalize_intensity
    from spikereg.netx_file import read_metadata
    from spikereg.registration.backends import open_backend
    from spikereg.registration.patches import extract, pad_to, patch_grid
    from spikereg.registration.pipeline import network_input, run_options
    from spikereg.registration.register import pyramid_shapes

    meta = read_metadata(model)
    iterations, stride, _ = run_options(meta, None, None)
    fixed, moving, _ = load_pair(folder)
    inputs = network_input(fixed, moving, meta)
    with open_backend(model, "sim") as lava:
        patch = lava.patch_size
        grid = patch_grid(inputs.fixed.shape, patch, stride)
        pick = np.linspace(0, len(grid) - 1, count).round().astype(int)  # spread over the whole volume
        sub = type(grid)(grid.shape, grid.padded, grid.patch, grid.stride, grid.origins[pick])
        f = extract(pad_to(normalize_intensity(inputs.fixed), grid.padded), sub)
        m = extract(pad_to(normalize_intensity(inputs.moving), grid.padded), sub)
        # A run builds, compiles and starts Lava once, then streams: the first call (one patch) pays that,
        # timed apart, and the sample is timed on the running network (its first call measured twice as slow).
        tick = time.perf_counter()
        lava.predict(f[:1], m[:1])
        startup = time.perf_counter() - tick
        stats = lava.stats
        run_before, steps_before = stats.network_seconds, stats.time_steps
        tick = time.perf_counter()
        controls = lava.predict(f, m)
        wall = time.perf_counter() - tick
        run, steps = stats.network_seconds - run_before, stats.time_steps - steps_before
    with open_backend(model, "torch") as slayer:
        same = bool(np.array_equal(controls, slayer.predict(f, m)))
    return {"same_as_torch": same, "wall": wall, "startup": startup, "compile": stats.compile_seconds, "run": run,
            "patches": count, "iterations": iterations, "grid_shape": list(inputs.fixed.shape),
            "steps": steps, "per_patch": run / count, "per_step_ms": run / steps * 1e3,
            # every level of the run's pyramid (a 1 mm brain: its 2 mm level, then the 1 mm one)
            "patches_per_iteration": sum(len(patch_grid(shape, patch, stride)) for shape in
                                         pyramid_shapes(inputs.fixed.shape, inputs.pyramid, patch))}


def child_train(folder: Path, out: Path, steps: int, checkpoint: Path) -> dict:
    """Patch pairs per second of ``steps`` twin and ``steps`` SNN steps of the checkpoint's own recipe (4 pairs)."""
    from spikereg.config import load_config, save_config
    from spikereg.training.trainer import load_checkpoint, train

    recipe = out.parent / "recipe.yaml"
    save_config(load_checkpoint(checkpoint)[1], recipe)
    config = load_config(recipe, [
        f"train.steps={steps}", f"train.ann_steps={steps}", "data.pairs=4", f"train.checkpoint_every={steps}",
        "train.twin_from=''", "train.twin_init=''"])
    marks: dict[str, list[float]] = {"ann": [], "snn": []}

    def progress(step, total, row):
        marks["ann" if "stage" in row else "snn"].append(time.perf_counter())

    train(config, out, progress=progress)
    batch = config.train.batch_size
    rate = {k: (len(v) - 1) * batch / (v[-1] - v[0]) for k, v in marks.items() if len(v) > 1}
    return {"batch_size": batch, "steps": steps, "patch_size": config.model.patch_size,
            "ann_pairs_per_s": rate.get("ann"), "snn_pairs_per_s": rate.get("snn")}


def child_pyramid(spacing: float, model: Path) -> dict:
    """Large displacements (up to 6 voxels): --pyramid 1 vs 2 on torch with the model's run settings, end-point
    error against the truth."""
    from spikereg.data import load_mni, make_pair
    from spikereg.metrics.displacement import end_point_error
    from spikereg.netx_file import read_metadata
    from spikereg.registration.backends import open_backend
    from spikereg.registration.pipeline import run_options
    from spikereg.registration.register import ncc, register

    iterations, stride, smoothing = run_options(read_metadata(model), None, None)
    template = load_mni("t1", spacing).data
    pair = make_pair(template, np.random.default_rng(1), max_displacement=6.0, control_spacing=16, noise_std=0.02)
    brain = template > 0.1 * template.max()
    rows = {"identity": {"epe": end_point_error(np.zeros_like(pair.ddf), pair.ddf, brain),
                         "ncc": ncc(pair.fixed, pair.moving), "seconds": 0.0}}
    with open_backend(model, "torch") as backend:
        for levels in (1, 2):
            tick = time.perf_counter()
            result = register(pair.fixed, pair.moving, backend, iterations=iterations, patch_stride=stride,
                              pyramid=levels, smoothing=smoothing)
            rows[f"pyramid {levels}"] = {"epe": end_point_error(result.ddf, pair.ddf, brain),
                                         "ncc": ncc(pair.fixed, result.warped),
                                         "seconds": time.perf_counter() - tick, "patches": result.patches}
    return {"spacing": spacing, "rows": rows, "iterations": iterations}


def describe_model(name: str, model: Path, checkpoint: Path | None) -> dict:
    """What the section says about the model timed: its file, checkpoint, kind and run settings."""
    from lava_streaming import _rel

    from spikereg.hardware.graph_mapping import is_graph
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import shipped_name
    from spikereg.registration.pipeline import run_options

    meta = read_metadata(model)
    iterations, stride, smoothing = run_options(meta, None, None)
    return {"name": shipped_name(name), "path": str(model), "file": _rel(model),
            "checkpoint": checkpoint and _rel(checkpoint),
            "graph": is_graph(model), "patch_size": meta["model"]["patch_size"],
            "spacing_mm": meta.get("spacing_mm"), "max_displacement": meta["model"]["max_displacement"],
            "iterations": iterations, "patch_stride": stride, "smoothing": smoothing, "notes": []}


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
    folder, out, model = Path(args.folder), Path(args.out), Path(args.model)
    with TreeMemory() as memory:
        if args.child in ("torch", "sim"):
            result = child_registration(folder, out / "run", model, args.child)
        elif args.child == "demons":
            result = child_demons(folder, out)
        elif args.child == "pyramid":
            result = child_pyramid(float(folder.name.removesuffix("mm")), model)
        elif args.child in ("sim-sampled", "sim-scipy"):
            result = child_sim(folder, out, args.sim_patches, model)
        else:
            result = child_train(folder, out / "train", args.train_steps, Path(args.checkpoint))
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


def profile_lava_conv(model: Path) -> list[dict]:
    """Time Lava's conv_scipy and SpikeReg's torch conv on each layer of a chain's netx file, one step of random
    spikes."""
    import torch

    from spikereg import compat
    from spikereg.netx_file import read_netx

    compat.netx()
    from lava.proc.conv import utils

    torch.set_num_threads(1)  # as inside Lava's process models (compat.torch_conv)
    rows, rng = [], np.random.default_rng(0)
    layers = read_netx(model).layers
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


# Where torch's time goes, per kind of model: (label, function, file it is defined in; "" for any). A CUBA chain
# (or an SDNN file from before from_rest) steps through SLAYER's blocks; an SDNN chain or a U-Net runs each
# patch from rest in one pass.
PROFILE_PARTS = {
    "chain": [("SLAYER's CUBA neuron dynamics (`_li_dynamics_fwd`, a Python loop over time steps on the CPU)",
               "_li_dynamics_fwd", ""),
              ("host-side spike encoding (`PatchCodec.encode`: the input code of every feature channel and voxel "
               "at every step)", "encode", "encoding.py"),
              ("SLAYER's convolutions (`conv3d`)", "conv3d", ""),
              ("per-neuron spike counting for the report (`spikereg.registration.counts`)", "add", "counts.py")],
    "from_rest": [("the host's input levels (`input_features`, `graded_levels`: intensities, differences and forces "
                   "on the graded grid)", "input_features", "encoding.py"),
                  ("convolutions of the 8-bit 3-D kernels (`conv3d`)", "conv3d", ""),
                  ("the sigma-delta neuron on the one step from rest (`neuron_step`)", "neuron_step", "snn.py")],
    "graph": [("the host's input levels (`GraphRegNet.levels`: intensities, differences and forces on the graded "
               "grid)", "levels", "graph_model.py"),
              ("each edge's 8-bit 3-D kernel (`kernel3d`, quantized every call)", "kernel3d", "unet.py"),
              ("convolutions (`conv3d`)", "conv3d", ""),
              ("upsampling (`conv_transpose3d`)", "conv_transpose3d", ""),
              ("SLAYER's sigma-delta neuron on the one step from rest (`neuron_step`)", "neuron_step", "")],
}


def profile_torch(threads: int, model: Path, voxels: int = 64 * 16**3) -> dict:
    """Where the torch backend's time goes: cProfile of one batch of real patches (64 of 16^3, as many voxels for
    larger patches)."""
    import cProfile
    import pstats

    import torch

    from spikereg.data import load_mni, make_pair
    from spikereg.data.sampling import PatchSampler
    from spikereg.hardware.graph_mapping import is_graph
    from spikereg.netx_file import read_metadata
    from spikereg.registration.backends import open_backend

    torch.set_num_threads(threads)
    backend = open_backend(model, "torch")
    count = max(8, voxels // backend.patch_size**3)
    rng = np.random.default_rng(0)  # real-anatomy patch pairs: the MNI T1 vs a randomly warped copy, 2 mm
    pair = make_pair(load_mni("t1", 2.0).data, rng, max_displacement=read_metadata(model)["model"]["max_displacement"],
                     control_spacing=8)
    batch = PatchSampler([pair], backend.patch_size, backend.reduction, rng).sample(count)
    fixed, moving = batch.fixed, batch.moving
    backend.predict(fixed[:8], moving[:8])  # warm-up
    profiler = cProfile.Profile()
    tick = time.perf_counter()
    profiler.runcall(backend.predict, fixed, moving)
    total = time.perf_counter() - tick
    stats = pstats.Stats(profiler).stats

    def cumulative(name: str, where: str = "") -> float:  # exact function name, or a builtin containing it
        return sum(row[3] for (file, _, func), row in stats.items()
                   if (func == name or (func.startswith("<built-in") and name in func)) and where in file)

    kind = "graph" if is_graph(model) else "from_rest" if read_metadata(model).get("from_rest") else "chain"
    return {"ms_per_patch": total / count * 1e3, "total": total, "patches": count, "patch_size": backend.patch_size,
            "parts": [[label, cumulative(name, where)] for label, name, where in PROFILE_PARTS[kind]]}


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
    parser.add_argument("--model", default="demo",
                        help="the model timed: a netx or graph (U-Net) file, or a shipped model's name (default demo)")
    parser.add_argument("--checkpoint", default=None,
                        help="its checkpoint, whose recipe the training row times (default: a shipped model's own; "
                             "a model file needs it unless --skip train)")
    parser.add_argument("--section", type=heading, default=SECTION,
                        help="the BENCHMARKS.md section --write replaces (default: %(default)s)")
    parser.add_argument("--write", action="store_true", help="update --section in BENCHMARKS.md")
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
    try:
        model, checkpoint_file = model_options(args.model, args.checkpoint, args.skip)
    except ValueError as error:
        parser.error(str(error))
    described = describe_model(args.model, model, checkpoint_file)
    skip = set(args.skip)
    if described["graph"] and "sim-scipy" not in skip:
        skip.add("sim-scipy")
        described["notes"].append("`SPIKEREG_LAVA_TORCH_CONV=0` (Lava's own `conv_scipy`) not timed for a graph "
                                  "(U-Net) file: one `convolve2d` per feature pair of its depth-folded 32^3 layers "
                                  "would take hours per patch")
    command = ".venv/bin/python benchmarks/speed.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()[0]
    measured: dict = {"runs": [], "shapes": {}, "model": described}
    if args.resume and args.save and Path(args.save).is_file():  # keep what an interrupted run measured
        saved = json.loads(Path(args.save).read_text())
        if saved["measured"].get("model", {}).get("path") != described["path"]:
            parser.error(f"--resume: {args.save} holds another model's measurements; give another --save")
        measured, command, load_before = saved["measured"], saved["command"], saved["load"][0]
    done = {(spacing, method) for spacing, method, _ in measured["runs"]}

    def checkpoint() -> None:
        if args.save:
            Path(args.save).write_text(json.dumps({"command": command, "measured": measured,
                                                   "load": [load_before, os.getloadavg()[0]],
                                                   "date": datetime.date.today().isoformat()}, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        folders = make_pairs(Path(tmp), args.spacings)
        extra = ["--sim-patches", str(args.sim_patches), "--train-steps", str(args.train_steps),
                 "--model", str(model), *(["--checkpoint", str(checkpoint_file)] if checkpoint_file else [])]
        for spacing, (folder, shape) in folders.items():
            measured["shapes"][str(spacing)] = list(shape)
            sim = "sim" if spacing in args.sim_full else "sim-sampled"
            for method in ("torch", "demons", sim, "sim-scipy"):
                if method.removesuffix("-sampled") in skip or (spacing, method) in done:
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
        measured["conv"] = [] if {"sim", "sim-scipy"} & skip else profile_lava_conv(model)
        measured["torch_profile"] = None if "torch" in skip else profile_torch(args.threads, model)
    load = [load_before, os.getloadavg()[0]]
    date = datetime.date.today().isoformat()
    if args.save:
        Path(args.save).write_text(json.dumps({"command": command, "measured": measured, "load": load,
                                               "date": date}, indent=1))
    return render(args, command, measured, load, date)


if __name__ == "__main__":
    sys.exit(main())
