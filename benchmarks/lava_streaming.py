"""Streaming patches through one compiled Lava network vs rebuilding it per patch, vs SLAYER.

One run, one network, the same P real-anatomy patches (MNI T1 vs a randomly
warped copy) for every method:

1. **Lava, streaming**: one ``LavaNetwork`` built and compiled once, all P patches
   streamed through it (what ``spikereg run`` does); build+compile is reported
   apart from the per-step run time.
2. **Lava, rebuild per patch**: a fresh ``LavaNetwork`` for every patch (build,
   compile, run, stop), i.e. what one pays without netx's ``reset_interval``.
3. **SLAYER**: the PyTorch forward pass, one patch at a time and all P batched.

Both Lava methods must give readouts identical to SLAYER's, element by element,
and the same per-layer spike counts; otherwise the script exits with status 1.

    .venv/bin/python benchmarks/lava_streaming.py [--patches 8] [--write]

The network is the shipped demo model (spikereg/pretrained/demo.pt and its
export demo.net) when present, else an untrained SpikingRegNet of
configs/demo.yaml (seed 0) exported to a temporary file. ``--write`` puts the
table, the command, the machine and the date under ``## Lava streaming`` in
BENCHMARKS.md, leaving other sections as they are.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sections import BENCHMARKS, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Lava streaming"


def load_network(args, workdir: Path):
    """(net, netx path, spacing, description): the shipped demo model, or an untrained one."""
    from lava_export.netx import export_netx
    from spikereg.config import load_config
    from spikereg.networks.snn import SpikingRegNet
    from spikereg.pretrained import DEMO_CHECKPOINT, DEMO_MODEL
    from spikereg.training.trainer import load_checkpoint

    checkpoint = args.checkpoint or (DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None)
    model = args.model or (DEMO_MODEL if checkpoint == DEMO_CHECKPOINT else None)
    if checkpoint is not None and model is not None and Path(model).is_file():
        net, config = load_checkpoint(checkpoint)
        digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:12]
        return net, Path(model), config.data.spacing, f"`{_rel(model)}` (sha256 {digest}…) with `{_rel(checkpoint)}`"
    config = load_config(args.config)
    torch.manual_seed(0)
    net = SpikingRegNet(config.model).eval()
    path = workdir / "untrained.net"
    # No verification here: the benchmark itself compares Lava with SLAYER below.
    export_netx(net, path, spacing=config.data.spacing, verify_patches=0)
    return net, path, config.data.spacing, f"untrained SpikingRegNet of `{_rel(args.config)}` (seed 0)"


def _rel(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal"))
        ram = f"{mem_kib / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        ram = "RAM unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores (nproc), {cpu}, {ram}"


def versions() -> str:
    found = []
    for name in ("torch", "lava-nc", "lava-dl"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} ?")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def layer_counts(outputs) -> np.ndarray:
    return np.stack([o.sum(dim=(1, 2, 3, 4)).numpy() for o in outputs]).astype(np.int64)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=int, default=8, help="P, patches per method (default 8)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: spikereg/pretrained/demo.pt)")
    parser.add_argument("--model", type=Path, help="its netx export (default: spikereg/pretrained/demo.net)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml",
                        help="config of the untrained fallback network")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch sample")
    parser.add_argument("--write", action="store_true", help=f"update '{SECTION}' in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.patches < 1:
        parser.error("--patches must be at least 1")
    if (args.checkpoint is None) != (args.model is None):
        parser.error("give --checkpoint and --model together (the export of that checkpoint)")

    from lava_export.runner import LavaNetwork
    from lava_export.verify import sample_patches

    command = ".venv/bin/python benchmarks/lava_streaming.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        net, path, spacing, described = load_network(args, Path(tmp))
        count, window = args.patches, net.window
        fixed, moving = sample_patches(net, spacing, count, seed=args.seed)
        with torch.no_grad():
            spikes = net.encode(fixed, moving)
            expected = net.readout_window(net(spikes)).numpy()
            expected_layers = layer_counts(net.layer_outputs(spikes))
        lava_input = spikes[..., :window].numpy()
        print(f"network: {described}; {count} patches, {window} steps each", file=sys.stderr)

        # (iii) SLAYER, after one untimed warm-up call (first-call allocation is not the model's cost).
        with torch.no_grad():
            net(spikes[:1])
            tick = time.perf_counter()
            single = [net.readout_window(net(spikes[k:k + 1])).numpy() for k in range(count)]
            slayer_single = time.perf_counter() - tick
            tick = time.perf_counter()
            batched = net.readout_window(net(spikes)).numpy()
            slayer_batched = time.perf_counter() - tick
        if not (np.array_equal(np.concatenate(single), expected) and np.array_equal(batched, expected)):
            raise SystemExit("error: SLAYER's readout depends on the batch size; no reference to compare with")

        # (i) Lava streaming: build and compile once, stream all P patches.
        print("Lava streaming ...", file=sys.stderr)
        tick = time.perf_counter()
        with LavaNetwork(path, window=window) as lava:
            stream = lava.run(lava_input)
            first_call = time.perf_counter() - tick
            neurons = lava.layer_sizes
        stream_wall = time.perf_counter() - tick  # + stopping the runtime
        build_compile = first_call - stream.run_seconds
        stream_same = np.array_equal(stream.readout, expected) and np.array_equal(stream.layer_spikes,
                                                                                  expected_layers)

        # (ii) Lava rebuilt per patch: build + compile + run + stop, every patch.
        rebuild_seconds, rebuild_run, rebuild_steps, rebuild_same = [], 0.0, 0, True
        for k in range(count):
            print(f"Lava rebuild, patch {k + 1}/{count} ...", file=sys.stderr)
            tick = time.perf_counter()
            with LavaNetwork(path, window=window) as lava:
                alone = lava.run(lava_input[k:k + 1])
            rebuild_seconds.append(time.perf_counter() - tick)
            rebuild_run += alone.run_seconds
            rebuild_steps += alone.time_steps
            rebuild_same &= bool(np.array_equal(alone.readout, expected[k:k + 1])
                                 and np.array_equal(alone.layer_spikes, expected_layers[:, k:k + 1]))
    load_after = os.getloadavg()[0]

    rebuild_total = sum(rebuild_seconds)
    yes = {True: "yes", False: "**NO**"}
    rows = [
        ("Lava sim, streaming: build + compile (once)", f"{build_compile:.2f}", "", "", ""),
        (f"Lava sim, streaming: run, {count} patches, {stream.time_steps} steps",
         f"{stream.run_seconds:.2f}", f"{stream.run_seconds / count:.3f}",
         f"{stream.run_seconds / stream.time_steps * 1e3:.1f}", yes[stream_same]),
        ("Lava sim, streaming: total incl. build, compile, stop", f"{stream_wall:.2f}",
         f"{stream_wall / count:.3f}", "", ""),
        (f"Lava sim, rebuilt per patch (build + compile + run + stop) x {count}, {rebuild_steps} steps",
         f"{rebuild_total:.2f}", f"{rebuild_total / count:.3f}",
         f"{rebuild_run / rebuild_steps * 1e3:.1f} (run only)", yes[rebuild_same]),
        ("SLAYER (PyTorch CPU), one patch per call", f"{slayer_single:.3f}", f"{slayer_single / count:.4f}",
         "", "(reference)"),
        (f"SLAYER (PyTorch CPU), {count} patches in one batch", f"{slayer_batched:.3f}",
         f"{slayer_batched / count:.4f}", "", "(reference)"),
    ]
    header = ("| method | seconds | s / patch | ms / time step | readout == SLAYER |\n"
              "|---|---:|---:|---:|---|")
    table = header + "\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)
    speedup = rebuild_total / stream_wall
    today = datetime.date.today().isoformat()
    details = "\n".join([
        f"- network: {described}; layers {len(neurons)} ({' / '.join(f'{n:,}' for n in neurons)} neurons), "
        f"{window} time steps per patch (reset interval), patches of {net.config.patch_size}^3 voxels",
        f"- patches: {count} real-anatomy pairs from `lava_export.verify.sample_patches` (seed {args.seed}); "
        "the same spikes go to every method",
        f"- streaming over rebuilding, whole run: {speedup:.2f}x "
        f"({rebuild_total:.1f} s vs {stream_wall:.1f} s for {count} patches); a rebuild costs "
        f"{(rebuild_total - rebuild_run) / count:.2f} s per patch beyond running it (build, compile, stop), "
        f"against {stream.run_seconds / count:.2f} s of simulation per patch",
        "- readouts compared element by element and per-layer spike counts patch by patch; "
        f"streaming {'identical' if stream_same else 'DIFFERENT'}, "
        f"rebuild {'identical' if rebuild_same else 'DIFFERENT'}",
        f"- machine: {machine()}; {versions()}",
        f"- load average (1 min) {load_before:.2f} before, {load_after:.2f} after "
        "(other jobs on the machine inflate the times)",
        f"- date: {today}",
    ])
    section = (f"{SECTION}\n\n"
               "Streaming patches through one compiled Lava network (netx `reset_interval`) vs building a "
               "fresh network per patch, vs SLAYER, on the same network and patches "
               "(`benchmarks/lava_streaming.py`).\n\n"
               f"```bash\n{command.strip()}\n```\n\n{table}\n\n{details}\n")
    print(section)
    if args.write:
        write_section(SECTION, section)
        print(f"updated {BENCHMARKS}", file=sys.stderr)
    return 0 if stream_same and rebuild_same else 1


if __name__ == "__main__":
    sys.exit(main())
