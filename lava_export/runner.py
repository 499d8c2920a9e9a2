"""Run an exported netx network on Lava: the CPU simulator or a Loihi 2 chip.

The network is built and compiled once; patches stream through it, each
occupying ``window`` time steps (a power of two). netx's ``reset_interval``
resets every layer's neurons at the start of each window -- staggered by one
step per layer, the propagation delay -- so each patch starts from rest
exactly as it does in SLAYER, and no rebuild is needed between patches.

Spikes of every layer are read by a sink on that layer's output, so the run
reports per-layer spike counts measured on Lava itself.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spikereg import compat

BACKENDS = ("sim", "loihi2")
STREAM_BUFFER = 64  # frames queued between the host and the runtime
PRECISIONS = {"fixed": "fixed_pt", "float": "floating_pt"}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says what is missing."""


def _io_modules():
    return compat.import_lava("lava.proc.io.injector"), compat.import_lava("lava.proc.io.extractor")


def loihi2_available() -> bool:
    """True where Intel's lava-loihi (the Loihi 2 compiler and runtime) is installed."""
    loihi = compat.import_lava("lava.utils.loihi")
    return loihi.is_installed()


def run_config(backend: str, precision: str = "fixed"):
    """The Lava run configuration for ``backend`` ('sim' or 'loihi2')."""
    configs = compat.import_lava("lava.magma.core.run_configs")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend == "loihi2" and not loihi2_available():
        raise BackendUnavailable(
            "--backend loihi2 needs Intel's lava-loihi package and a Loihi 2 system "
            "(INRC access); lava-loihi is not installed here. Use --backend sim to run "
            "on Lava's CPU simulator."
        )
    injector, extractor = _io_modules()
    # The host-side injector/extractor models carry no fixed/float tag; name them.
    host_models = {
        injector.Injector: injector.PyLoihiInjectorModel,
        extractor.Extractor: extractor.PyLoihiExtractorModel,
    }
    if backend == "loihi2":
        return configs.Loihi2HwCfg(exception_proc_model_map=host_models)
    return configs.Loihi2SimCfg(select_tag=PRECISIONS[precision], exception_proc_model_map=host_models)


@dataclass
class LavaRun:
    """Outputs of streaming patches through the network."""

    readout: np.ndarray  # (P, f, h, w, window) each patch's last-layer spikes, SLAYER layout
    layer_spikes: np.ndarray  # (layers, P) spike count of each layer per patch
    step_spikes: np.ndarray  # (layers, steps) spikes of each layer at each time step
    time_steps: int
    compile_seconds: float
    run_seconds: float
    layer_names: list[str] = field(default_factory=list)


def to_lava(spikes: np.ndarray) -> np.ndarray:
    """SLAYER ``(f, H, W, T)`` -> netx ``(x=W, y=H, f, T)``."""
    return np.ascontiguousarray(np.transpose(spikes, (2, 1, 0, 3)))


def from_lava(spikes: np.ndarray) -> np.ndarray:
    """netx ``(x, y, f, T)`` -> SLAYER ``(f, H, W, T)``."""
    return np.ascontiguousarray(np.transpose(spikes, (2, 1, 0, 3)))


class LavaNetwork:
    """A compiled netx network that patches stream through. Always use as a context manager.

    ``with LavaNetwork(path, window=16) as net: run = net.run(patches)``; the
    Lava runtime is stopped on leaving the block, also on errors and Ctrl-C.
    """

    def __init__(
        self,
        path: str | Path,
        window: int,
        backend: str = "sim",
        precision: str = "fixed",
        patches_per_chunk: int = 8,
    ) -> None:
        self.path = Path(path)
        self.window = window
        self.backend = backend
        self.precision = precision
        self.patches_per_chunk = patches_per_chunk
        self._run_cfg = run_config(backend, precision)  # fails early if the backend is missing
        self._net = None
        self._injector = None
        self._extractors: list = []
        self._started = False
        self._compiled = False
        self._steps_done = 0

    def __enter__(self) -> "LavaNetwork":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the Lava runtime (idempotent)."""
        if self._net is not None and self._started:
            self._started = False
            self._net.stop()

    def _build(self) -> None:
        netx = compat.netx()
        injector_mod, extractor_mod = _io_modules()
        net = netx.hdf5.Network(net_config=str(self.path), reset_interval=self.window)
        # The host streams one frame per step into the injector and reads every
        # layer's spikes from an extractor: no per-patch rebuild, no Var get/set
        # (which copies element by element and costs seconds per megabyte).
        injector = injector_mod.Injector(shape=net.inp.shape, buffer_size=STREAM_BUFFER)
        extractors = [extractor_mod.Extractor(shape=layer.out.shape, buffer_size=STREAM_BUFFER)
                      for layer in net.layers]
        if self.backend == "loihi2":
            self._attach_chip_io(net, injector, extractors)
        else:
            injector.out_port.connect(net.inp)
            for layer, extractor in zip(net.layers, extractors):
                layer.out.connect(extractor.in_port)
        self._net, self._injector, self._extractors = net, injector, extractors

    def _attach_chip_io(self, net, injector, extractors) -> None:
        """Loihi 2: spikes cross between host and chip through embedded I/O adapters.

        As in lava-dl's netx tutorials; only reached where lava-loihi is installed.
        """
        eio = compat.import_lava("lava.proc.embedded_io")
        in_adapter = eio.spike.PyToNxAdapter(shape=net.inp.shape)
        injector.out_port.connect(in_adapter.inp)
        in_adapter.out.connect(net.inp)
        for layer, extractor in zip(net.layers, extractors):
            out_adapter = eio.spike.NxToPyAdapter(shape=layer.out.shape)
            layer.out.connect(out_adapter.inp)
            out_adapter.out.connect(extractor.in_port)

    def _drain(self, unsent: int, unreceived: int, silence: np.ndarray) -> None:
        try:
            for _ in range(unsent):
                self._injector.send(silence)
            for _ in range(unreceived):
                for extractor in self._extractors:
                    extractor.receive()
            self._net.wait()
        except Exception:  # best effort: stop() follows regardless
            pass

    @property
    def layer_sizes(self) -> list[int]:
        return [int(np.prod(layer.out.shape)) for layer in self._net.layers]

    @property
    def layer_names(self) -> list[str]:
        return [f"{i + 1}:{type(layer).__name__}" for i, layer in enumerate(self._net.layers)]

    def run(
        self,
        patches: np.ndarray,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> LavaRun:
        """Stream ``(P, f, H, W, window)`` input spikes (SLAYER layout) through the network.

        The first call builds and compiles; later calls reuse the compiled
        network. Layer ``l`` (1-based) answers patch ``k`` in steps
        ``[k*window + l - 1, (k+1)*window + l - 1)`` -- its reset comes
        ``l - 1`` steps after the patch starts -- so the stream runs ``layers - 1``
        silent steps after the last patch to drain the pipeline.
        ``progress(patches_done, steps_done, spikes_so_far)`` is called after each chunk.
        """
        conditions = compat.import_lava("lava.magma.core.run_conditions")
        count, window = patches.shape[0], self.window
        if patches.shape[-1] != window:
            raise ValueError(f"patches have {patches.shape[-1]} time steps, the network window is {window}")
        compile_seconds = 0.0
        if self._net is None:
            self._build()
        layers = len(self._net.layers)
        # Patches must start on a reset boundary; a previous stream's drain left us past one.
        lead = (-self._steps_done) % window
        total = lead + count * window + layers - 1
        silence = np.zeros(self._net.inp.shape, dtype=np.float32)
        series = np.zeros((layers, total), dtype=np.int64)
        readout_all = np.zeros(self._net.out.shape + (total,), dtype=np.float32)
        chunk_steps = self.patches_per_chunk * window
        run_seconds = 0.0
        step = 0
        expected = tuple(self._net.inp.shape)
        if to_lava(patches[0]).shape[:-1] != expected:
            raise ValueError(
                f"model {self.path}: patches encode to {to_lava(patches[0]).shape[:-1]} (x, y, features), "
                f"the network's input is {expected}"
            )
        sent = received = steps = 0  # progress inside the chunk now running on Lava
        try:
            while step < total:
                steps = min(chunk_steps, total - step)
                tick = time.perf_counter()
                self._started = True  # from here on the runtime must be stopped
                self._net.run(
                    condition=conditions.RunSteps(num_steps=steps, blocking=False),
                    run_cfg=self._run_cfg,
                )
                if not self._compiled:
                    compile_seconds = time.perf_counter() - tick
                    self._compiled = True
                    tick = time.perf_counter()
                sent = received = 0
                for t in range(step, step + steps):
                    p = t - lead
                    if 0 <= p < count * window:
                        frame = np.ascontiguousarray(patches[p // window, ..., p % window].transpose(2, 1, 0))
                    else:
                        frame = silence
                    self._injector.send(frame)
                    sent += 1
                    outputs = [extractor.receive() for extractor in self._extractors]
                    received += 1
                    series[:, t] = [int(out.sum()) for out in outputs]
                    readout_all[..., t] = outputs[-1]
                self._net.wait()
                run_seconds += time.perf_counter() - tick
                step += steps
                self._steps_done += steps
                sent = received = steps = 0  # the chunk is complete: nothing to drain
                if progress is not None:
                    patches_done = min(count, max(0, (step - lead - layers + 1) // window))
                    progress(patches_done, step, int(series.sum()))
        except BaseException:
            # A half-run stream cannot be resumed; never leave Lava running. The
            # runtime is blocked on the injector mid-chunk and would not hear a
            # stop: finish the chunk with silence first.
            self._drain(steps - sent, steps - received, silence)
            self.stop()
            raise
        series, readout_all = series[:, lead:], readout_all[..., lead:]
        layer_spikes = np.stack([
            series[layer, layer:layer + count * window].reshape(count, window).sum(axis=1)
            for layer in range(layers)
        ])
        readout = np.stack([
            from_lava(readout_all[..., k * window + layers - 1:(k + 1) * window + layers - 1])
            for k in range(count)
        ])
        return LavaRun(
            readout=readout,
            layer_spikes=layer_spikes,
            step_spikes=series,
            time_steps=total,
            compile_seconds=compile_seconds,
            run_seconds=run_seconds,
            layer_names=self.layer_names,
        )
