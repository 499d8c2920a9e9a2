"""Measured energy of a whole 2 mm registration on an NVIDIA GPU: the ANN twin (and the SNN in SLAYER).

On a machine with an NVIDIA GPU and ``nvidia-ml-py`` (``pip install nvidia-ml-py``):

1. A synthetic 2 mm MNI pair (as ``benchmarks/energy.py`` makes it: seed 0, up to 3
   voxels) is registered by the shipped model's ANN twin (the one stored in its
   checkpoint, as ``benchmarks/accuracy.py`` builds it) with the model's own run
   settings (iterations, patch stride, residual smoothing), as ``spikereg run``
   registers; every patch pair of every pass is kept.
2. Idle power: after a rest, ``nvmlDeviceGetPowerUsage`` is sampled every 0.1 s for
   ``--idle-seconds`` with nothing running (the CUDA context open, as during the work).
3. For each batch size of ``--batches`` (1 among them): a warm-up pass, then
   ``--repeats`` timed passes over all the kept patches (the whole registration's
   network work), each between two reads of ``nvmlDeviceGetTotalEnergyConsumption``
   (mJ) with ``torch.cuda.synchronize`` before each read; a pass is repeated until
   it lasts at least ``--min-seconds`` (the counter's resolution).
   Only the network's work is in the counter: the host's patch cutting, stitching
   and warping run on the CPU (as they do beside a Loihi 2 chip), so the figures
   compare network with network.
4. The SNN in SLAYER (the netx file's own arithmetic, ``--backend torch --device
   cuda``) on the same patches, as the torch backend streams them (chunks of 64).
5. The readings become a ``device`` hardware profile (``--out``, default
   ``hardware_profiles/gpu_measured.yaml``) whose figures are all ``measured``,
   each with this command, the device, the driver and the date as its source;
   report.json's ``energy.conventional`` then carries it first, and
   ``benchmarks/energy.py`` compares Loihi 2 with it.

    .venv/bin/python benchmarks/gpu_energy.py [--batches 1 8 32 128 512] [--out PATH] [--json PATH]

Without a GPU it stops with exit status 2 and writes nothing. NVML is touched only
by :class:`Nvml` (and the arithmetic is :mod:`spikereg.hardware.device`'s), so the
rest is tested on CPU with readings fed in (tests/benchmarks/test_gpu_energy.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BATCHES = (1, 8, 32, 128, 512)


class Meter(Protocol):
    """What the measurement reads from the device: its energy counter (mJ) and its power (mW)."""

    def energy_mj(self) -> float: ...

    def power_mw(self) -> float: ...


class NoGpuError(RuntimeError):
    """No NVIDIA GPU (or no NVML) here: nothing can be measured."""


class Nvml:
    """The device's own counters through NVML (``nvidia-ml-py``); the only code here that touches NVML."""

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.name = _text(pynvml.nvmlDeviceGetName(self.handle))
            self.driver = _text(pynvml.nvmlSystemGetDriverVersion())
        except Exception as error:  # ImportError, NVMLError (no driver, no device)
            raise NoGpuError(f"no NVIDIA GPU to measure ({type(error).__name__}: {error})") from None

    def energy_mj(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_mw(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self.handle))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def batches(count: int, size: int) -> Iterator[slice]:
    """Slices of ``count`` items, ``size`` at a time (the last one shorter)."""
    if size < 1:
        raise ValueError(f"batch size {size}: must be at least 1")
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def sample_idle(meter: Meter, seconds: float, interval: float = 0.1,
                sleep: Callable[[float], None] = time.sleep) -> list[float]:
    """Power samples (mW) every ``interval`` s for ``seconds`` s with nothing running."""
    samples = []
    for _ in range(max(1, int(round(seconds / interval)))):
        samples.append(meter.power_mw())
        sleep(interval)
    return samples


def measure(work: Callable[[], None], meter: Meter, *, idle_w: float, macs: int, patches: int,
            sync: Callable[[], None] = lambda: None, repeats: int = 3, min_seconds: float = 5.0,
            clock: Callable[[], float] = time.perf_counter, warmup: Callable[[], None] | None = None):
    """The mean :class:`~spikereg.hardware.device.Reading` of one ``work()`` over ``repeats`` timed windows.

    Each window runs ``work`` as often as it takes to last ``min_seconds``
    (the warm-up ``work()`` decides how often), synchronised before each counter
    read; energy, time, MACs and patches are per single ``work()``. A long
    ``work`` may bring a short ``warmup`` of its own instead: then each window
    runs ``work`` once.
    """
    from spikereg.hardware.device import Reading

    sync()
    tick = clock()
    (warmup or work)()  # warm-up (kernels chosen, memory allocated), and how long one work takes
    sync()
    once = max(clock() - tick, 1e-9)
    times = 1 if warmup is not None else max(1, int(np.ceil(min_seconds / once)))
    energy = seconds = 0.0
    for _ in range(repeats):
        sync()
        start, tick = meter.energy_mj(), clock()
        for _ in range(times):
            work()
        sync()
        seconds += clock() - tick
        energy += meter.energy_mj() - start
    runs = repeats * times
    return Reading(start_mj=0.0, end_mj=energy / runs, seconds=seconds / runs, idle_w=idle_w, macs=macs,
                   patches=patches)


class Recorder:
    """The ANN twin behind the patch interface register() drives, keeping every patch pair it is given."""

    name = "ann"

    def __init__(self, twin, patch_size: int, reduction: int, device: str) -> None:
        from spikereg.registration.register import BackendStats

        self.twin, self.patch_size, self.reduction, self.device = twin.to(device).eval(), patch_size, reduction, device
        self.stats, self.chunk_size = BackendStats(), 64
        self.fixed: list[torch.Tensor] = []
        self.moving: list[torch.Tensor] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def predict(self, fixed, moving, progress=None):
        self.fixed.append(fixed.clone())
        self.moving.append(moving.clone())
        return self.twin.predict(fixed.to(self.device), moving.to(self.device)).cpu().numpy()


def twin_work(twin, fixed: torch.Tensor, moving: torch.Tensor, batch: int) -> Callable[[], None]:
    """One pass of the twin over every patch pair (already on the device), ``batch`` at a time."""
    @torch.no_grad()
    def work() -> None:
        for part in batches(len(fixed), batch):
            twin.predict(fixed[part], moving[part])
    return work


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from spikereg.pretrained import DEFAULT_NAME

    parser.add_argument("--checkpoint", default=DEFAULT_NAME, help=f"checkpoint with the twin (default {DEFAULT_NAME})")
    parser.add_argument("--model", default=None, help="netx file of the SNN (default: the checkpoint's shipped one)")
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-displacement", type=float, default=3.0)
    parser.add_argument("--batches", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=5.0, help="shortest timed window (default 5 s)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--rest-seconds", type=float, default=5.0, help="rest before sampling idle power")
    parser.add_argument("--gpu", type=int, default=0, help="device index (NVML and CUDA)")
    parser.add_argument("--skip-snn", action="store_true", help="do not measure the SNN in SLAYER")
    parser.add_argument("--snn-repeats", type=int, default=1, help="timed passes of the SNN (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "hardware_profiles" / "gpu_measured.yaml")
    parser.add_argument("--json", type=Path, help="also write every reading here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if 1 not in args.batches:
        parser.error("--batches must include 1 (the batch-1 figures)")

    try:
        meter = Nvml(args.gpu)
    except NoGpuError as error:
        print(f"gpu_energy: {error}; nothing measured, nothing written", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_energy: NVML sees a GPU but torch has no CUDA; nothing measured, nothing written", file=sys.stderr)
        return 2
    device = f"cuda:{args.gpu}"
    torch.cuda.set_device(device)
    return run(args, argv, meter, device, torch.cuda.synchronize)


def run(args, argv, meter, device: str, sync: Callable[[], None]) -> int:
    """Everything after the device is found: register, measure idle and each batch, write the profile.

    ``meter`` is :class:`Nvml` on a GPU; the CPU tests hand in a meter of their own and ``device="cpu"``
    to run the same steps, writing to a temporary folder.
    """
    from spikereg.data import load_mni, make_pair
    from spikereg.hardware.device import idle_power_w, measured_profile, write_profile
    from spikereg.hardware.energy import ann_macs
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import resolve_checkpoint, resolve_model
    from spikereg.registration.backends import open_backend
    from spikereg.registration.pipeline import run_options
    from spikereg.registration.register import register
    from spikereg.training.trainer import load_twin

    checkpoint = resolve_checkpoint(args.checkpoint)
    model = resolve_model(args.model or args.checkpoint)
    twin = load_twin(checkpoint)
    if twin is None:
        raise SystemExit(f"gpu_energy: {checkpoint} stores no ANN twin")
    meta = read_metadata(model)
    iterations, stride, smoothing = run_options(meta, None, None)
    base = load_mni("t1", args.spacing)
    pair = make_pair(base.data, np.random.default_rng(args.seed), max_displacement=args.max_displacement,
                     control_spacing=8)

    # 1. the registration, keeping every patch pair of every pass
    recorder = Recorder(twin, meta["model"]["patch_size"], meta["reduction"], device)
    tick = time.perf_counter()
    result = register(pair.fixed, pair.moving, recorder, iterations=iterations, patch_stride=stride,
                      smoothing=smoothing)
    sync()
    registration_seconds = time.perf_counter() - tick
    fixed = torch.cat(recorder.fixed).to(device)
    moving = torch.cat(recorder.moving).to(device)
    patches = len(fixed)
    macs = ann_macs(twin.config, patches)

    # 2. idle power, after a rest
    if args.rest_seconds > 0:
        time.sleep(args.rest_seconds)
    idle_seconds = args.idle_seconds
    idle_start, idle_tick = meter.energy_mj(), time.perf_counter()
    samples = sample_idle(meter, idle_seconds)
    idle_counter_w = (meter.energy_mj() - idle_start) / 1000 / (time.perf_counter() - idle_tick)
    idle_w = idle_power_w(samples)

    # 3. the twin at each batch size
    readings = {}
    for batch in sorted(set(args.batches)):
        readings[batch] = measure(twin_work(recorder.twin, fixed, moving, batch), meter, idle_w=idle_w, macs=macs,
                                  patches=patches, sync=sync, repeats=args.repeats, min_seconds=args.min_seconds)
        r = readings[batch]
        print(f"batch {batch:>4}: {r.total_j:.4g} J per registration ({r.dynamic_j:.4g} J above idle), "
              f"{r.seconds:.4g} s, {r.power_w:.1f} W", file=sys.stderr, flush=True)

    # 4. the SNN in SLAYER on the same patches, as the torch backend streams them (one stream per 64);
    # warmed up on one chunk, timed once per window (a whole pass takes minutes). Its failure (no lava-dl,
    # say) leaves the twin's figures to be written without it.
    snn = None
    if not args.skip_snn:
        try:
            with open_backend(model, "torch", device=device) as engine:
                def snn_work(count: int = patches) -> None:
                    engine.reset()
                    for part in batches(count, engine.chunk_size):
                        engine.predict(fixed[part], moving[part])
                snn = measure(snn_work, meter, idle_w=idle_w, macs=0, patches=patches, sync=sync,
                              repeats=args.snn_repeats, warmup=lambda: snn_work(engine.chunk_size))
            print(f"SNN (SLAYER): {snn.total_j:.4g} J per registration, {snn.seconds:.4g} s", file=sys.stderr)
        except Exception as error:  # the twin's measurement stands without it
            print(f"gpu_energy: the SNN was not measured ({type(error).__name__}: {error})", file=sys.stderr)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/gpu_energy.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    workload = (f"{Path(checkpoint).stem} ANN twin, a {args.spacing:g} mm MNI pair (seed {args.seed}): {iterations} "
                f"passes, {patches} patches of {meta['model']['patch_size']}^3, {macs} MACs, fp32")
    data = measured_profile(name=args.out.stem, device=meter.name, driver=meter.driver, date=date, command=command,
                            workload=workload, readings=readings, idle_w=idle_w, idle_seconds=idle_seconds, snn=snn)
    write_profile(args.out, data)
    print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "device": meter.name, "driver": meter.driver, "date": date, "command": command, "workload": workload,
            "patches": patches, "macs": macs, "registration_seconds": registration_seconds,
            "passes": iterations, "patches_per_iteration": result.patches_per_iteration,
            "idle_w": idle_w, "idle_counter_w": idle_counter_w, "idle_samples": len(samples),
            "readings": {b: {"total_j": r.total_j, "idle_j": r.idle_j, "dynamic_j": r.dynamic_j,
                             "seconds": r.seconds, "power_w": r.power_w} for b, r in readings.items()},
            "snn": None if snn is None else {"total_j": snn.total_j, "idle_j": snn.idle_j, "seconds": snn.seconds},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
