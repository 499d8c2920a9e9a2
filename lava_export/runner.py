"""Run an exported netx network on Lava: the CPU simulator or a Loihi 2 chip.

The network is built and compiled once; patches stream through it, each
occupying ``window`` time steps (a power of two). Layer ``l`` (1-based, in
netx's layer list) answers ``l - 1`` steps after its input: one step per
layer, the propagation delay.

* **CUBA** (binary spikes): netx's ``reset_interval`` resets every layer's
  neurons at the start of each window -- staggered by that delay -- so each
  patch starts from rest exactly as it does in SLAYER.
* **SDNN** (graded spikes; netx ignores ``reset_interval`` for sigma-delta
  neurons): the stream simply goes on. Each patch's levels are held for its
  window. As in lava-dl's PilotNet SDNN tutorial, the file's input layer is
  skipped (``skip_layers=1``) and Lava's host-side ``io.encoder.DeltaEncoder``
  does its work with its threshold (``vThMant``): it sends only what changed,
  exactly as SLAYER's ``sigma_delta.Input`` block computes it, one step later
  (so every SDNN layer answers one step after its SLAYER twin). The readout's
  value is the sum of its graded spikes since the stream began; each patch's
  readout window is handed back *re-based*, its first step carrying the sum
  before the window, so that summing it gives the value at the window's end
  -- what SLAYER gives for that patch.
* **SDNN, each patch from rest** (``from_rest=True``, the simulator): every
  process returns to rest on the first step of each window
  (:func:`lava_export.rest.rest_every`), so patch ``k`` runs in steps
  ``[k*window, (k+1)*window)`` exactly as on a fresh network: its step ``t + 1``
  is SLAYER's step ``t`` on that patch alone (the host's delta encoder adds
  one step). No drain, no re-basing: the readout window is what the readout
  sent in the patch's own window, and it sums to the readout's value.
* **Copies** (``copies=k``, from rest): ``k`` copies of a conv chain stacked
  on the feature axis (:mod:`lava_export.copies`) take ``k`` patches per
  window; what comes back is laid out as if the patches had run one after
  another through one network, so callers see no difference but the time.

Spikes of every layer are read by a sink on that layer's output, so the run
reports per-layer spike counts (graded: messages, i.e. nonzero values)
measured on Lava itself.

``--backend loihi2`` builds the run as lava-dl's Loihi 2 tutorials do
(``Loihi2HwCfg``, embedded I/O adapters between host and chip, SDNN input
delta-encoded on the host with sparse compression, ``lava.utils.loihi2_profiler`` power and
execution-time probes attached through ``callback_fxs``); it needs Intel's
lava-loihi, and without it stops before any work with one clear message.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lava_export import copies as stacked
from lava_export import rest
from lava_export.chip import ChipProfile, attach_chip_io, io_modules, run_config, use_loihi2_host
from spikereg import compat
from spikereg.interrupts import note
from spikereg.networks.snn import graded_spike_scale
from spikereg.netx_file import NetxFile, is_graded, read_netx, spike_exp_of

STREAM_BUFFER = 64  # frames queued between the host and the runtime
STOPPED_NOTE = "Lava stopped"  # what an interrupted run reports (spikereg.interrupts)


def stop_runtime(runtime, error: BaseException | None) -> None:
    """Leaving a ``with`` block around a Lava runtime (anything with ``stop() -> bool``, True if it was running):
    stop it; an interrupt that stopped it says so in its message."""
    if runtime.stop() and isinstance(error, KeyboardInterrupt):
        note(error, STOPPED_NOTE)


# Graded (SDNN) values between SLAYER's units and Lava's integers. SLAYER's sigma-delta
# neuron has w_scale 2**6: an input level x enters the delta encoder as the integer x * 2**6
# (SLAYER's 8-bit grid: even integers). The encoder and netx's sigma-delta neurons (with the
# file's spike_exp, netx's default 6; state_exp 6) send a graded spike of value v as the
# integer v * 2**(6 + spike_exp) (spikereg.networks.snn.graded_spike_scale).
GRADED_INPUT_SCALE = 1 << 6


@dataclass
class LavaRun:
    """Outputs of streaming patches through the network."""

    readout: np.ndarray  # (P, *readout shape, window) each patch's last-layer spikes, SLAYER layout
    layer_spikes: np.ndarray  # (layers, P) spike count (graded: messages) of each layer per patch
    step_spikes: np.ndarray  # (layers, steps) spikes of each layer at each time step
    time_steps: int  # the patches' steps one after another (with copies: as if run without)
    compile_seconds: float
    run_seconds: float
    layer_names: list[str] = field(default_factory=list)
    # graded networks: every layer's values at every step, SLAYER units (only with keep_layers)
    layer_values: list[np.ndarray] | None = None
    chip_profile: dict | None = None  # loihi2 only: lava-loihi's power and time measurements


def to_lava(spikes: np.ndarray) -> np.ndarray:
    """SLAYER ``(f, H, W, T)`` -> netx ``(x=W, y=H, f, T)``; a dense ``(n, T)`` stays as it is."""
    if spikes.ndim != 4:
        return np.ascontiguousarray(spikes)
    return np.ascontiguousarray(np.transpose(spikes, (2, 1, 0, 3)))


def frames_of(patches: np.ndarray) -> np.ndarray:
    """``(P, *input shape, T)`` patches (SLAYER layout) -> ``(P, T, ...)`` frames in netx's layout: a new array."""
    steps_first = np.moveaxis(patches, -1, 1)
    if steps_first.ndim == 5:  # (P, T, f, H, W) -> (P, T, x=W, y=H, f)
        steps_first = steps_first.transpose(0, 1, 4, 3, 2)
    return steps_first.copy(order="C")


def from_lava(spikes: np.ndarray) -> np.ndarray:
    """netx ``(x, y, f, T)`` -> SLAYER ``(f, H, W, T)``; a dense ``(n, T)`` stays as it is."""
    return to_lava(spikes)  # the transposition is its own inverse


class LavaNetwork:
    """A compiled netx network that patches stream through. Always use as a context manager.

    ``with LavaNetwork(path, window=16) as net: run = net.run(patches)``; the
    Lava runtime is stopped on leaving the block, also on errors and Ctrl-C.
    ``from_rest`` (SDNN, simulator): every patch runs from rest (module docstring).
    ``copies`` (from rest only): patches per window, side by side (module docstring).
    """

    def __init__(
        self,
        model: str | Path | NetxFile,
        window: int,
        backend: str = "sim",
        precision: str = "fixed",
        patches_per_chunk: int = 8,
        profile_chip: bool = True,
        from_rest: bool = False,
        copies: int = 1,
    ) -> None:
        self.model = model if isinstance(model, NetxFile) else read_netx(model)  # the file, read once
        self.path = self.model.path
        self.window = window
        self.backend = backend
        self.precision = precision
        self.patches_per_chunk = patches_per_chunk
        self.graded = is_graded(self.model)
        self.spike_exp = spike_exp_of(self.model)
        self.spike_scale = graded_spike_scale(self.spike_exp)
        if self.graded:
            if "layer/0/neuron/vThMant" not in self.model.root:
                raise ValueError(f"model {self.path}: a sigma-delta (SDNN) network needs a sigma-delta input "
                                 "layer (layer 0 with a neuron, as slayer.block.sigma_delta.Input exports)")
            if precision == "float":
                raise ValueError(f"--precision float: model {self.path} is a sigma-delta (SDNN) network, whose "
                                 "graded spikes Lava's floating-point models scale differently; use --precision fixed")
        self.from_rest = from_rest
        if from_rest and not self.graded:
            raise ValueError(f"model {self.path}: a CUBA network starts every window from rest already "
                             "(netx's reset_interval); from_rest is for sigma-delta (SDNN) networks")
        if from_rest and backend != "sim":
            raise ValueError(f"--backend {backend}: patches from rest run on the simulator (sim) only")
        if copies < 1 or (copies > 1 and not from_rest):
            raise ValueError(f"copies {copies}: stacked copies (more than 1) run patches from rest only")
        if copies > 1 and (reason := stacked.copy_blocker(self.model)) is not None:
            raise ValueError(f"model {self.path}: cannot run {copies} copies side by side: {reason}")
        self.copies = copies
        self._profile: ChipProfile | None = None
        run_config(backend, precision)  # fails early if the backend is missing
        if backend == "loihi2":
            self.host = use_loihi2_host()
            self._profile_chip = profile_chip
        self._run_cfg = None
        self._net = None
        self._injector = None
        self._encoder = None  # SDNN: the host-side delta encoder (the file's input layer)
        self._extractors: list = []
        self._started = False
        self._compiled = False
        self._steps_done = 0
        self._readout_level = None  # graded: sum of the readout's spikes so far in the stream

    def __enter__(self) -> "LavaNetwork":
        return self

    def __exit__(self, exc_type, error, traceback) -> None:
        stop_runtime(self, error)

    def stop(self, drain: Callable[[], None] | None = None) -> bool:
        """Stop the Lava runtime (idempotent); True if it was running.

        Lava's own stop runs first (after ``drain``, which finishes a half-run
        chunk), for a few seconds at most; where it hangs or fails, the
        workers are killed and their shared memory freed
        (:func:`spikereg.compat.stop_lava`). Lava's own error, if any, is raised.
        """
        if self._net is None or not self._started:
            return False
        self._started = False
        net = self._net

        def stop() -> None:
            if drain is not None:
                drain()
            net.stop()

        compat.stop_lava(net.runtime, stop)
        return True

    @property
    def has_run(self) -> bool:
        """Whether patches have streamed through (a sigma-delta network then holds their residues, unless from rest)."""
        return not self.from_rest and (self._steps_done > 0 or self._started)

    @property
    def run_window(self) -> int:
        """Steps each patch takes on this network: ``window``, or from rest the readout's lag + 1.

        From rest the rest of a window is provably silent: the levels are held,
        so after layer ``l`` answers at step ``l`` its input never changes again,
        its delta is the residue it did not send (below threshold), and it sends
        nothing more (lava-nc's sigma-delta model without ``cum_error``, as netx
        builds it). The runner skips those steps and hands back zeros for them.
        """
        if not self.from_rest:
            return self.window
        # the readout's lag (first_lag + layers - 1, the file's layers: encoder + netx layers) + 1
        return self.first_lag + len(self.model.layers)

    @property
    def first_lag(self) -> int:
        """Steps from a frame entering to the first layer answering it (the delta encoder's one step)."""
        return 1 if self.graded else 0

    @property
    def layers(self) -> list:
        """The layers read: (SDNN: the host-side delta encoder, then) netx's layers."""
        return ([self._encoder] if self._encoder is not None else []) + list(self._net.layers)

    @staticmethod
    def _out(layer):
        return layer.s_out if hasattr(layer, "s_out") else layer.out

    def _build(self, num_steps: int) -> None:
        netx = compat.netx()
        compat.lava_workers_follow_parent()  # before compiling: the runtime forks its workers then
        injector_mod, extractor_mod = io_modules()
        # SDNN: the file's input layer (a sigma-delta neuron with no synapse) is done on the
        # host by Lava's DeltaEncoder with that layer's threshold, as the PilotNet SDNN tutorial does.
        with tempfile.TemporaryDirectory(prefix="spikereg-copies-") as folder:
            # netx reads the weights into the processes here; the copies' file is not needed after
            path = self.path if self.copies == 1 else stacked.write_copies(self.model, self.copies,
                                                                           Path(folder) / self.path.name)
            net = netx.hdf5.Network(net_config=str(path), skip_layers=1 if self.graded else 0,
                                    reset_interval=None if self.graded else self.window, spike_exp=self.spike_exp)
        self._net = net
        if self.precision == "float":
            self._float_parameters(net)
        if self.backend == "sim":
            self._choose_conv(net)
        if self.graded:
            encoder_mod = compat.import_lava("lava.proc.io.encoder")
            vth = int(np.asarray(self.model.root["layer/0/neuron/vThMant"][()]))
            compression = (encoder_mod.Compression.DELTA_SPARSE_8 if self.backend == "loihi2"
                           else encoder_mod.Compression.DENSE)
            self._encoder = encoder_mod.DeltaEncoder(shape=net.inp.shape, vth=vth, spike_exp=self.spike_exp,
                                                     compression=compression)
        # The host streams one frame per step into the injector and reads every
        # layer's spikes from an extractor: no per-patch rebuild, no Var get/set
        # (which copies element by element and costs seconds per megabyte).
        injector = injector_mod.Injector(shape=net.inp.shape, buffer_size=STREAM_BUFFER)
        extractors = [extractor_mod.Extractor(shape=self._out(layer).shape, buffer_size=STREAM_BUFFER)
                      for layer in self.layers]
        self._injector, self._extractors = injector, extractors
        if self._encoder is not None:
            injector.out_port.connect(self._encoder.a_in)
            self._encoder.s_out.connect(extractors[0].in_port)  # host side on both backends
        source = self._encoder.s_out if self._encoder is not None else injector.out_port
        chip = extractors[1:] if self._encoder is not None else extractors
        if self.backend == "loihi2":
            self._attach_chip_io(net, source, chip, num_steps)
        else:
            source.connect(net.inp)
            for layer, extractor in zip(net.layers, chip):
                layer.out.connect(extractor.in_port)
        self._run_cfg = run_config(self.backend, self.precision,
                                   self._profile.callbacks if self._profile is not None else None)
        if self.from_rest:
            rest.rest_every(rest.leaf_processes(net), self.run_window, self._run_cfg)

    def _choose_conv(self, net) -> None:
        """Lava's conv steps on torch where float32 sums are exact (``compat.use_lava_torch_conv``).

        Set before compiling: Lava's forked process models inherit it. Binary
        spikes bound every partial sum by a kernel's sum of ``|weight|``; a
        network that could pass 2**24 runs on Lava's ``conv_scipy`` instead.
        (Graded inputs are checked step by step inside ``compat.torch_conv``.)
        """
        if self.precision != "fixed":
            compat.use_lava_torch_conv(False)
            return
        conv_process = compat.import_lava("lava.proc.conv.process").Conv
        for index, layer in enumerate(net.layers):
            synapse = getattr(layer, "synapse", None)
            if not isinstance(synapse, conv_process) or self.graded:
                continue
            weight = np.asarray(synapse.weight.init)
            if not compat.torch_conv_is_exact(weight, max_input=1):
                compat.use_lava_torch_conv(False, reason=(
                    f"model {self.path}: layer {index + 1}'s partial sums could reach "
                    f"{compat.conv_sum_bound(weight):.0f} >= 2**24, beyond float32's exact integers"))
                return
        compat.use_lava_torch_conv(True)

    def _float_parameters(self, net) -> None:
        """Loihi's integer decays as the fractions Lava's floating-point LIF models expect.

        netx hands every LIF ``du = iDecay - 1`` and ``dv = vDecay`` in 12-bit
        fixed point, which the fixed-point model applies as ``(du + 1) / 4096``
        and ``dv / 4096``; the floating-point model reads ``du`` and ``dv`` as the
        fractions themselves. (Thresholds and weights need no change: the
        fixed-point model shifts both the threshold and the synaptic input by 6
        bits.) Sigma-delta neurons have no float counterpart of netx's scaling,
        so ``float`` is refused for them.
        """
        for layer in net.layers:
            neuron = layer.neuron
            neuron.du.init = (np.asarray(neuron.du.init, dtype=np.float64) + 1) / 4096
            neuron.dv.init = np.asarray(neuron.dv.init, dtype=np.float64) / 4096

    def _attach_chip_io(self, net, source, extractors, num_steps: int) -> None:
        """Loihi 2: the embedded I/O adapters (:func:`lava_export.chip.attach_chip_io`), and the chip's probes."""
        attach_chip_io(net, source, extractors, self.graded, self.spike_exp)
        if self._profile_chip:
            self._profile = ChipProfile.attach(num_steps)

    def _drain(self, unsent: int, unreceived: list[int], silence: np.ndarray) -> None:
        """Finish a half-run chunk: send its missing frames, read what each extractor still owes for it.

        Step by step, as the stream itself goes: each extractor buffers only
        ``STREAM_BUFFER`` frames and Lava's layers step in lock-step, so
        reading one extractor to the end before the next stalls the runtime.
        """
        try:
            owed = list(unreceived)
            for step in range(max([unsent, *owed])):
                if step < unsent:
                    self._injector.send(silence)
                for index, extractor in enumerate(self._extractors):
                    if owed[index] > 0:
                        extractor.receive()
                        owed[index] -= 1
            self._net.wait()
        except Exception:  # best effort: stop() follows regardless
            pass

    @property
    def layer_sizes(self) -> list[int]:
        """Neurons per layer of one network (with copies: of one copy)."""
        return [int(np.prod(self._out(layer).shape)) // self.copies for layer in self.layers]

    @property
    def layer_names(self) -> list[str]:
        return [f"{i + 1}:{type(layer).__name__}" for i, layer in enumerate(self.layers)]

    def _to_lava_units(self, frame: np.ndarray) -> np.ndarray:
        if self.graded:
            frame *= GRADED_INPUT_SCALE  # (frames_of made a copy)
        return frame

    def run(
        self,
        patches: np.ndarray,
        progress: Callable[[int, int, int], None] | None = None,
        keep_layers: bool = False,
    ) -> LavaRun:
        """Stream ``(P, *input shape, window)`` input spikes (SLAYER layout) through the network.

        From rest, ``(P, *input shape, 1)`` are levels held for each patch's window
        (what the SDNN codec sends), sent without making ``window`` copies of them.

        Graded (SDNN) networks take levels in SLAYER's units. The first call
        builds and compiles; later calls reuse the compiled network. Layer
        ``l`` (1-based) answers patch ``k`` in steps
        ``[k*window + l - 1, (k+1)*window + l - 1)`` -- its reset comes
        ``l - 1`` steps after the patch starts -- so the stream runs ``layers - 1``
        silent steps after the last patch to drain the pipeline.
        With ``from_rest`` every layer answers patch ``k`` within its own steps
        ``[k*window, (k+1)*window)``: no drain, and the window must exceed the
        readout's lag (``layers``: the encoder's step and one per netx layer).
        ``progress(patches_done, steps_done, spikes_so_far)`` is called after each chunk.
        ``keep_layers`` keeps every layer's values at every step (``LavaRun.layer_values``).
        """
        conditions = compat.import_lava("lava.magma.core.run_conditions")
        window, patch_count, copies = self.window, patches.shape[0], self.copies
        held = self.from_rest and patches.shape[-1] == 1  # each patch's levels, held for its window
        if patches.shape[-1] != window and not held:
            raise ValueError(f"patches have {patches.shape[-1]} time steps, the network window is {window}"
                             + (" (or 1: levels held from rest)" if self.from_rest else ""))
        if self.from_rest and not held:  # only the steps run are sent (run_window)
            patches = patches[..., :self.run_window]
        if copies > 1:  # copies side by side: from here on a 'patch' is a frame of `copies` patches
            patches = stacked.stack(patches, copies)
        count = patches.shape[0]
        compile_seconds = 0.0
        if self._net is None:
            self._build(count * window + 64)
        layers = len(self.layers)
        lag = self.first_lag + layers - 1  # the readout's
        if self.from_rest and window <= lag:
            raise ValueError(f"model {self.path}: the readout answers {lag} steps into a patch; a window of "
                             f"{window} from rest ends before it")
        window = self.run_window  # from rest: the steps after the readout's answer are skipped (run_window)
        # CUBA patches must start on a reset boundary; a previous stream's drain left us past one.
        # (SDNN has no reset: its stream simply continues; from rest, every window is its own.)
        lead = 0 if self.graded else (-self._steps_done) % window
        total = lead + count * window + (0 if self.from_rest else lag)
        silence = np.zeros(self._injector.out_port.shape, dtype=np.float32)
        series = np.zeros((layers, copies, total), dtype=np.int64)  # each copy's spikes per step
        values = [np.zeros(tuple(self._out(layer).shape) + (total,), dtype=np.float32)
                  for layer in self.layers] if keep_layers else None
        readout_all = np.zeros(tuple(self._net.out.shape) + (total,), dtype=np.float32)
        chunk_steps = self.patches_per_chunk * window
        run_seconds = 0.0
        step = 0
        expected = tuple(self._injector.out_port.shape)
        if to_lava(patches[0]).shape[:-1] != expected:
            raise ValueError(
                f"model {self.path}: patches encode to {to_lava(patches[0]).shape[:-1]} (x, y, features), "
                f"the network's input is {expected}"
            )
        # progress inside the chunk now running on Lava; frames read counted per extractor, as an
        # interrupt can land between two extractors of one step
        sent = steps = 0
        received = [0] * len(self._extractors)
        try:
            while step < total:
                steps = min(chunk_steps, total - step)
                # the chunk's frames in netx's layout, (patch, step, x, y, f), in one pass
                first_patch = max(0, step - lead) // window
                last_patch = min(count, -(-(step + steps - lead) // window))
                block = self._to_lava_units(frames_of(patches[first_patch:last_patch]))
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
                sent, received = 0, [0] * len(self._extractors)
                for t in range(step, step + steps):
                    p = t - lead
                    if 0 <= p < count * window:
                        frame = block[p // window - first_patch, 0 if held else p % window]
                    else:
                        frame = silence
                    self._injector.send(frame)
                    sent += 1
                    outputs = []
                    for index, extractor in enumerate(self._extractors):
                        outputs.append(extractor.receive())
                        received[index] += 1
                    series[:, :, t] = [self._count_copies(out) for out in outputs]
                    readout_all[..., t] = outputs[-1]
                    if values is not None:
                        for store, out in zip(values, outputs):
                            store[..., t] = out
                self._net.wait()
                run_seconds += time.perf_counter() - tick
                step += steps
                self._steps_done += steps
                sent = steps = 0  # the chunk is complete: nothing to drain
                received = [0] * len(self._extractors)
                if progress is not None:
                    patches_done = min(count, max(0, (step - lead - (0 if self.from_rest else lag)) // window))
                    done = min(patch_count, patches_done * copies)
                    progress(done, step if not self.from_rest else done * self.window, int(series.sum()))
        except BaseException as error:
            # A half-run stream cannot be resumed; never leave Lava running. The
            # runtime is blocked on the injector mid-chunk and would not hear a
            # stop: finish the chunk with silence first.
            unsent, unreceived = steps - sent, [steps - got for got in received]
            try:
                self.stop(drain=lambda: self._drain(unsent, unreceived, silence))
            except Exception:  # Lava's stop failed, yet its processes are ended: the first error matters
                pass
            if isinstance(error, KeyboardInterrupt):
                note(error, STOPPED_NOTE)
            raise
        series, readout_all = series[..., lead:], readout_all[..., lead:]
        if self.graded:
            readout_all = readout_all / self.spike_scale
            values = [v / self.spike_scale for v in values] if values is not None else None
        if self.from_rest:  # the patches one after another in windows of `window`, as without copies
            series, readout_all, values = stacked.one_after_another(series, readout_all, values, copies, window,
                                                                    self.window, patch_count)
            count, window, total = patch_count, self.window, patch_count * self.window
        else:
            series = series[:, 0]
        # the step at which layer i's answers to the patches start: from rest, each patch's own window
        starts = [0 if self.from_rest else i + self.first_lag for i in range(layers)]
        layer_spikes = np.stack([series[i, s:s + count * window].reshape(count, window).sum(axis=1)
                                 for i, s in enumerate(starts)])
        first = starts[-1]  # the readout's (lag)
        readout = np.stack([
            from_lava(readout_all[..., k * window + first:(k + 1) * window + first]) for k in range(count)
        ])
        if self.graded and not self.from_rest:
            readout = self._rebase(readout_all, readout, lag)
        return LavaRun(
            readout=readout,
            layer_spikes=layer_spikes,
            step_spikes=series,
            time_steps=total,
            compile_seconds=compile_seconds,
            run_seconds=run_seconds,
            layer_names=self.layer_names,
            layer_values=values,
            chip_profile=self._profile.summary(window) if self._profile is not None else None,
        )

    def _count_copies(self, out: np.ndarray) -> np.ndarray | list[int]:
        """Messages of one layer's step, per copy (features last: copy c holds block c)."""
        if self.copies == 1:
            return [np.count_nonzero(out)]
        if not out.any():  # most steps from rest: a held input changes once per window
            return np.zeros(self.copies, dtype=np.int64)
        return np.count_nonzero(out.reshape(-1, self.copies, out.shape[-1] // self.copies), axis=(0, 2))

    def _rebase(self, stream: np.ndarray, readout: np.ndarray, lag: int) -> np.ndarray:
        """Graded readout windows that each sum to the readout's value at the window's end.

        The readout's value is the sum of its graded spikes since the stream
        began; a window holds only the changes within it, so its first step gets
        the value the window starts from.
        """
        level = np.zeros(stream.shape[:-1], dtype=np.float64) if self._readout_level is None else self._readout_level
        running = level[..., None] + np.cumsum(stream, axis=-1, dtype=np.float64)
        rebased = readout.copy()
        for k in range(len(readout)):
            start = k * self.window + lag
            before = running[..., start - 1] if start > 0 else level
            rebased[k, ..., 0] += from_lava(before[..., None])[..., 0].astype(np.float32)
        self._readout_level = running[..., -1]
        return rebased
