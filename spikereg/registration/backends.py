"""Patch backends: one exported netx network, run by SLAYER (PyTorch) or by Lava.

``open_backend(model_path, backend)`` is the one way in:

* ``torch``: SLAYER's forward pass on the file's own 8-bit weights
  (:meth:`SpikingRegNet.from_netx`), batched, on CPU or CUDA -- fast
  evaluation of exactly the network the chip runs;
* ``sim``: the file loaded by stock netx on Lava's CPU simulator, compiled
  once, patches streamed through it;
* ``loihi2``: the same on a Loihi 2 chip (needs Intel's lava-loihi).

Every backend encodes with the same :class:`~spikereg.networks.encoding.PatchCodec`,
so they see identical input spikes, and Lava's fixed-point models reproduce
SLAYER's spikes exactly (every export is verified on that): ``torch`` and
``sim`` give the same control displacements, bit for bit. Past the chip's
24-bit range too: the torch backend wraps each step's synaptic input as Lava
does (:meth:`SpikingRegNet.mirror_chip`), and every backend stops a run in
which a layer reaches that range (:mod:`spikereg.registration.range_guard`).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lava_export.chip import run_config
from lava_export.copies import copy_blocker, stack, unstack_patches, write_copies
from lava_export.graph_builder import LavaGraph
from lava_export.runner import STOPPED_NOTE, LavaNetwork, from_lava
from spikereg.hardware.rules import SYNAPSE_BUILDS
from spikereg.interrupts import note
from spikereg.networks.encoding import READOUT_CHANNELS, PatchCodec
from spikereg.networks.folding import fold_volume, unfold_volume
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.snn import SpikingRegNet, stream_patches
from spikereg.netx_file import NetxFile, is_graph_file, load_model
from spikereg.registration.counts import CountError, SpikeCounter
from spikereg.registration.range_guard import RangeGuard, RangeOverflowError, lava_series
from spikereg.registration.register import BackendStats

BACKENDS = ("torch", "sim", "loihi2")
GRAPH_BATCH_MAX = 4  # patches per pass of a graph (U-Net) model on torch (see GraphTorchBackend)
LAVA_CHUNK = 64  # patches per Lava stream (LavaBackend.chunk_size)
# Patches side by side per window on the simulator, from rest (lava_export.copies): Lava's time goes
# to messages between its processes per step, so 8 copies share one step's messages (BENCHMARKS.md,
# "Speed and memory"). A divisor of LAVA_CHUNK, so that no chunk runs silent padding copies.
SIM_COPIES = 8
# Per-chunk streams: SDNN patches stream back to back, but each predict() call (one chunk of
# LAVA_CHUNK patches) is a stream of its own, from rest, on every backend. Why: Lava's sigma-delta neurons truncate
# every graded spike to its grid and the residue does not keep what was cut, so the loss grows
# with the stream (BENCHMARKS.md, "The chip's range": 0.007 voxel after 640 patches at
# spike_exp 5, 2.9 at spike_exp 0; a whole 2 mm registration is 5,120); a rebuild on Lava
# compiles in under a second.


def torch_device(device: str) -> torch.device:
    """``device`` as a torch device, or a ValueError saying why it cannot be used here."""
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device}: not a torch device (use cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: only cpu and cuda are supported")
    return chosen


class TorchBackend:
    """SLAYER forward pass in PyTorch, batched. A context manager like the Lava backends."""

    name = "torch"
    model: NetxFile | None = None  # the file the network came from, read once (open_backend sets it)

    def __init__(self, net: SpikingRegNet, batch_size: int = 32, device: str = "cpu", range_stop: bool = True,
                 from_rest: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size {batch_size}: must be at least 1")
        self.device = torch_device(device)
        self.net = net.eval().to(self.device)
        self.guard = open_guard(net, range_stop)
        self.from_rest = from_rest and net.input_block is not None
        if net.input_block is not None and not self.from_rest:  # wrap as Lava wraps, and watch every layer's range
            net.mirror_chip(True)
        self.codec = net.codec
        self.patch_size = net.config.patch_size
        self.reduction = net.reduction
        self.batch_size = batch_size
        self.streaming = self.codec.graded and not self.from_rest
        if self.from_rest:  # SDNN, every patch from rest: one batched pass (SpikingRegNet.from_rest)
            self.chunk_size = max(256, batch_size)
        elif self.streaming:  # SDNN: patches back to back in one stream, cut where Lava's streams are cut
            self.net.set_streaming(True)
            self.chunk_size = LAVA_CHUNK
        else:
            self.chunk_size = max(256, batch_size)  # patches register() cuts per call (then batched)
        self.stats = BackendStats()

    def __enter__(self) -> "TorchBackend":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def reset(self) -> None:
        """Start a new registration: a fresh range record, and the network at rest."""
        self.guard.restart()
        self._restart_stream()

    def _restart_stream(self) -> None:
        """SDNN: the next patch finds every neuron at rest (CUBA always does)."""
        if self.streaming:
            self.net.reset_state()

    @torch.no_grad()
    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        if self.from_rest:
            return self._predict_from_rest(fixed, moving, progress)
        if self.streaming:
            self._restart_stream()  # one stream per chunk, as on Lava (see 'Per-chunk streams' above)
            return self._predict_stream(fixed, moving, progress)
        tick = time.perf_counter()
        controls, spikes = [], np.zeros(len(self.net.chip_layers), dtype=np.int64)
        layers, window = len(self.net.chip_layers), self.net.window
        # The per-step spike series Lava would record streaming these patches: layer l
        # answers patch k in steps [k*window + l, (k+1)*window + l) (see LavaNetwork.run).
        series = np.zeros((layers, len(fixed) * window + layers - 1), dtype=np.int64)
        input_spikes = 0
        for first in range(0, len(fixed), self.batch_size):
            cut = slice(first, first + self.batch_size)
            encoded = self.net.encode(fixed[cut].to(self.device), moving[cut].to(self.device))
            input_spikes += int(encoded[..., :window].sum())
            outputs = self.net.layer_outputs(encoded)
            self._count(fixed[cut], encoded[..., :window], outputs)
            for layer, out in enumerate(outputs):  # nonzero values: spikes, or a graded layer's messages
                steps = (out != 0).sum(dim=tuple(range(1, out.ndim - 1))).reshape(-1).cpu().numpy().astype(np.int64)
                spikes[layer] += steps.sum()
                begin = first * window + layer
                series[layer, begin:begin + steps.size] += steps
            controls.append(self.net.decode(outputs[-1]).cpu().numpy())
            if progress is not None:
                done = min(first + self.batch_size, len(fixed))
                progress(done, done * window, int(spikes.sum()))
        self._record(spikes, series, input_spikes, len(fixed), tick)
        return np.concatenate(controls)

    def _predict_from_rest(self, fixed: torch.Tensor, moving: torch.Tensor,
                           progress: Callable[[int, int, int], None] | None) -> np.ndarray:
        """SDNN patches each from rest, batched: one graded spike per unit at most, at its layer's delay.

        A file not proven in range is watched as on Lava: each block's summed
        input is its one step's synaptic input here.
        """
        tick = time.perf_counter()
        count, window = len(fixed), self.net.window
        layers = len(self.net.chip_layers)
        spikes = np.zeros(layers, dtype=np.int64)
        series = np.zeros((layers, count * window + layers), dtype=np.int64)
        controls = []
        for first in range(0, count, self.batch_size):
            cut = slice(first, first + self.batch_size)
            summed = [] if not self.guard.proven else None
            levels = self.codec.levels(fixed[cut].to(self.device), moving[cut].to(self.device))
            values = self.net.from_rest(levels, keep=True, summed=summed, wrap=summed is not None)
            if summed is not None:
                peaks = [z.abs().flatten(1).amax(dim=1, keepdim=True) for z in summed]  # (batch, 1 step)
                self.guard.observe([[p, p] for p in peaks], window, self.stats.patches + first, len(peaks[0]))
            if not self.stats.layer_neurons:  # (SLAYER's neurons learn their shapes only in a forward call)
                self.stats.layer_neurons = [int(np.prod(value.shape[1:])) for value in values]
            for layer, value in enumerate(values):
                per_patch = (value != 0).flatten(1).sum(dim=1).cpu().numpy().astype(np.int64)
                spikes[layer] += per_patch.sum()
                series[layer, np.arange(first, first + len(per_patch)) * window + layer] += per_patch
            controls.append(self.net.codec.decode_values(values[-1]).cpu().numpy())
            if progress is not None:
                done = min(first + self.batch_size, count)
                progress(done, done * window, int(spikes.sum()))
        self._record(spikes, series, int(spikes[0]), count, tick)
        return np.concatenate(controls)

    def _record(self, spikes: np.ndarray, series: np.ndarray, input_spikes: int, count: int, tick: float) -> None:
        """One predict call's spikes per layer, per-step series, input spikes and time, into ``stats``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if not self.stats.layer_neurons:  # SLAYER blocks know their shapes after a forward pass
            self.stats.layer_neurons = [int(np.prod(b.neuron.shape)) for b in self.net.chip_layers]
        self.stats.input_spikes += input_spikes
        self.stats.step_spikes.append(series)
        self.stats.add(spikes, count * self.net.window, count, time.perf_counter() - tick)

    def _predict_stream(self, fixed: torch.Tensor, moving: torch.Tensor,
                        progress: Callable[[int, int, int], None] | None) -> np.ndarray:
        """SDNN: the patches as Lava streams them (:meth:`LavaNetwork.run`): back to back, then
        ``layers - 1`` silent steps to drain, every neuron carrying its state on from the last call.

        Layer ``l`` (0-based, the input layer first) answers patch ``k`` in
        steps ``[k*window + l, (k+1)*window + l)``; the readout's graded spikes
        summed since the stream began, read at the end of patch ``k``'s window,
        are its value for that patch.
        """
        tick = time.perf_counter()
        window, count = self.net.window, len(fixed)
        frames = self.net.encode(fixed.to(self.device), moving.to(self.device))[..., :window]
        outputs, ends = stream_patches(self.net.chip_layers, frames)
        self.guard.observe(self.net.range_series, window, self.stats.patches, count)
        # float64 running sum from rest (each chunk is a stream of its own), as Lava's host sums the
        # readout (values are multiples of the graded quantum: exact)
        running = torch.cumsum(outputs[-1].double(), dim=-1)
        values = running[..., ends].movedim(-1, 0).float()  # (P, channels, g, g): the readout's value per patch
        answers = [out[..., lag:lag + count * window].reshape(*out.shape[:-1], count, window).movedim(-2, 0)
                   for lag, out in enumerate(outputs)]  # each layer's window per patch, (P, ..., window)
        self._count(fixed, frames, answers)
        spikes = np.array([int((a != 0).sum()) for a in answers], dtype=np.int64)
        series = np.stack([(out != 0).sum(dim=tuple(range(out.ndim - 1))).cpu().numpy().astype(np.int64)
                           for out in outputs])
        self._record(spikes, series, int(spikes[0]), count, tick)  # the input block's messages, as Lava counts
        if progress is not None:
            progress(count, count * window, int(spikes.sum()))
        return self.net.decode(values[..., None]).cpu().numpy()

    def _count(self, fixed: torch.Tensor, inputs: torch.Tensor, outputs: list[torch.Tensor]) -> None:
        """Per-neuron counts of one batch (and one patch's raster) for the report's counter."""
        counter = self.stats.counter
        if counter is None:
            return
        counter.add(inputs, outputs,
                    len(inputs) * self.net.window, self.net.window, binary=not self.codec.graded)
        counter.record_raster(fixed, inputs, outputs, self.name)


class GraphTorchBackend:
    """A U-Net graph file in PyTorch: every patch from rest in one batched pass (:meth:`SpikingGraph.from_rest`).

    The same graded spikes as SLAYER's blocks and Lava's processes, bit for
    bit (tested), at the cost of one ANN forward pass: each edge one 3-D
    convolution of its 8-bit kernel, each node SLAYER's own sigma-delta neuron
    on the step its inputs arrive.
    """

    name = "torch"

    def __init__(self, model: NetxFile, batch_size: int = 8, device: str = "cpu", range_stop: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size {batch_size}: must be at least 1")
        # a 32^3 U-Net's nodes hold tens of MB per patch: beyond a few patches per pass, memory only churns
        batch_size = min(batch_size, GRAPH_BATCH_MAX)
        self.model = model
        self.device = torch_device(device)
        self.net = GraphRegNet.from_file(model).to(self.device)
        self.guard = open_graph_guard(self.net, model, range_stop)
        self.codec = self.net.codec
        self.patch_size = self.net.patch_size
        self.reduction = self.net.reduction
        self.batch_size = batch_size
        self.chunk_size = max(batch_size, 4 * batch_size)  # patches register() hands over per call
        self.lengths = [self.net.path_lengths[node.name] for node in self.net.nodes]
        self.stats = BackendStats()

    def __enter__(self) -> "GraphTorchBackend":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def reset(self) -> None:
        self.guard.restart()  # every patch starts from rest anyway

    @torch.no_grad()
    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        tick = time.perf_counter()
        count, window = len(fixed), self.codec.window
        layers = len(self.net.nodes)
        spikes = np.zeros(layers, dtype=np.int64)
        # Each node sends its one graded spike per unit at its path length within the patch's window
        # (the host's delta encoder first): the per-step series Lava records for these patches.
        series = np.zeros((layers, count * window + max(self.lengths) + 1), dtype=np.int64)
        controls = []
        for first in range(0, count, self.batch_size):
            cut = slice(first, first + self.batch_size)
            levels = self.net.levels(fixed[cut].to(self.device), moving[cut].to(self.device))
            messages = []
            readout = self.net.from_rest(levels, messages=messages)  # each node dropped once read
            for layer, sent in enumerate(messages):
                per_patch = sent.cpu().numpy().astype(np.int64)
                spikes[layer] += per_patch.sum()
                steps = (np.arange(first, first + len(per_patch)) * window + self.lengths[layer])
                series[layer, steps] += per_patch
            controls.append(self.net.decode(readout).cpu().numpy())
            del readout
            if progress is not None:
                done = min(first + self.batch_size, count)
                progress(done, done * window, int(spikes.sum()))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if not self.stats.layer_neurons:
            self.stats.layer_neurons = [node.populations * node.size**3 for node in self.net.nodes]
        self.stats.input_spikes += int(spikes[0])
        self.stats.step_spikes.append(series)
        self.stats.add(spikes, count * window, count, time.perf_counter() - tick)
        return np.concatenate(controls)


class GraphLavaBackend:
    """A U-Net graph file on Lava's simulator, built once; every patch from rest (:mod:`lava_export.rest`).

    The processes return to rest on the first step of every window, so the
    patches of a whole registration stream through one compiled network. Only
    the readout's values come back whole; the other nodes give their graded
    spikes per step. Use as a context manager: Lava is stopped on leaving.
    """

    def __init__(self, model: NetxFile, backend: str = "sim", precision: str = "fixed",
                 range_stop: bool = True, synapses: str = "conv") -> None:
        if backend != "sim":
            raise ValueError(f"--backend {backend}: a graph (U-Net) model runs on Lava's simulator (sim) or torch; "
                             "its return to rest between patches is built from Lava's Python process models, which "
                             "a Loihi 2 chip does not run (see README, 'Running on Loihi 2')")
        self.name = backend
        self.model = model
        self.net = GraphRegNet.from_file(model)  # the file's own twin: its bounds, its encoding and decoding
        self.guard = open_graph_guard(self.net, model, range_stop)
        self.codec = self.net.codec
        self.patch_size = self.net.patch_size
        self.reduction = self.net.reduction
        self.chunk_size = 8  # patches per call: the readout of each, every step, comes back to the host
        self.lengths = [self.net.path_lengths[node.name] for node in self.net.nodes]
        self.graph = LavaGraph(model.path, precision=precision, synapses=synapses)
        self.stats = BackendStats()

    def __enter__(self) -> "GraphLavaBackend":
        return self

    def __exit__(self, exc_type, error, traceback) -> None:
        if self.graph.stop() and isinstance(error, KeyboardInterrupt):
            note(error, STOPPED_NOTE)

    def reset(self) -> None:
        self.guard.restart()  # every patch starts from rest anyway

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        count, window = len(fixed), self.codec.window
        with torch.no_grad():
            frames = fold_volume(self.net.levels(fixed, moving)).numpy()
        readout = len(self.net.nodes) - 1
        run = self.graph.run_patches(frames, window, keep=[readout], stop=False)
        values = torch.from_numpy(run.values[readout].sum(axis=-1)).float()  # (P, D*6, H, W): each unit's one spike
        controls = self.net.decode(unfold_volume(values, READOUT_CHANNELS)).numpy()
        # Lava's step t + 1 is SLAYER's t: each node's messages land one step after its path length
        per_layer = [run.values[i] if i != readout else (run.values[i] != 0).reshape(count, -1, window).sum(axis=1)
                     for i in range(len(run.values))]
        spikes = np.array([int(v.sum()) for v in per_layer], dtype=np.int64)
        series = np.stack([v.reshape(-1) for v in per_layer]).astype(np.int64)
        self.stats.input_spikes += int(spikes[0])
        self.stats.step_spikes.append(series)
        self.stats.compile_seconds += run.compile_seconds
        self.stats.add(spikes, count * window, count, run.run_seconds)
        if not self.stats.layer_neurons:
            self.stats.layer_neurons = [node.populations * node.size**3 for node in self.net.nodes]
        if progress is not None:
            progress(count, count * window, int(spikes.sum()))
        return controls


class SparseChainBackend:
    """A chain file on Lava's simulator with sparse synapses: each layer a Lava ``Sparse`` of its nonzero weights.

    Built by :class:`~lava_export.graph_builder.LavaGraph` (``synapses="sparse"``, the
    chain read as edges ``i-1 -> i``), every patch from rest, :data:`SIM_COPIES` copies
    side by side per window as ``--synapses conv`` runs them (:mod:`lava_export.copies`:
    grouped, so each copy's matrix block holds its own nonzero synapses), patches streamed
    through one compiled network: what a chip holding synapse lists runs, so the run is
    costed with nonzero synapses only (``report.json``'s ``synapse_accounting``). Only
    for graded files that run from rest and are proven in range for every input (the
    layers are not read back to watch the range). Use as a context manager.
    """

    def __init__(self, model: NetxFile, precision: str = "fixed", range_stop: bool = True) -> None:
        self.model = model
        self.meta = model.metadata
        self.codec = PatchCodec.from_metadata(self.meta)
        if not (self.codec.graded and self.meta.get("from_rest")):
            how = ("its CUBA layers reset every window" if not self.codec.graded else
                   "it streams patches without a return to rest (exported with --stream; export it again without)")
            raise ValueError(f"--synapses sparse: model {model.path} is not a graded file that runs every patch "
                             f"from rest: {how}; run it with --synapses conv")
        self.name = "sim"
        self.patch_size = self.meta["model"]["patch_size"]
        self.reduction = self.meta["reduction"]
        self.chunk_size = LAVA_CHUNK
        self.twin = SpikingRegNet.from_netx(model)
        self.guard = open_guard(self.twin, range_stop)
        if not self.guard.proven:
            raise RangeOverflowError(f"--synapses sparse: model {model.path} is not proven in the chip's range for "
                                     "every input, and a sparse build is not watched layer by layer; export it "
                                     "again with --range proven, or run it with --synapses conv")
        self.copies = SIM_COPIES if copy_blocker(model) is None else 1
        self._folder = tempfile.TemporaryDirectory(prefix="spikereg-sparse-")  # the copies' file, until built
        path = model.path if self.copies == 1 else write_copies(model, self.copies,
                                                                Path(self._folder.name) / model.path.name)
        self.graph = LavaGraph(path, precision=precision, synapses="sparse")
        self.stats = BackendStats()

    def __enter__(self) -> "SparseChainBackend":
        return self

    def __exit__(self, exc_type, error, traceback) -> None:
        try:
            if self.graph.stop() and isinstance(error, KeyboardInterrupt):
                note(error, STOPPED_NOTE)
        finally:
            self._folder.cleanup()

    def reset(self) -> None:
        self.guard.restart()  # every patch starts from rest anyway

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        count, window = len(fixed), self.codec.window
        levels = self.codec.encode_held(fixed, moving).numpy()  # (P, F, H, W, 1): held for the window
        run = self.graph.run_patches(stack(levels, self.copies)[..., 0], window, stop=False)
        # every layer's messages per patch, (P, F_l, H, W, window): the copies taken apart again
        sent = [unstack_patches(v != 0, self.copies, count) for v in run.values]  # graded spikes: nonzero values
        per_step = np.stack([s.reshape(count, -1, window).sum(axis=1).reshape(-1) for s in sent]).astype(np.int64)
        spikes = per_step.sum(axis=1)
        counter = self.stats.counter
        if counter is not None:  # SLAYER layout per layer, each patch's own window
            inputs = np.broadcast_to(levels, (*levels.shape[:-1], window))
            answers = sent[len(sent) - len(counter.fans):]
            counter.add(inputs, answers, count * window, window)
            counter.record_raster(fixed, inputs, answers, self.name)
        self.stats.input_spikes += int(spikes[0])
        self.stats.step_spikes.append(per_step)
        self.stats.compile_seconds += run.compile_seconds
        self.stats.add(spikes, count * window, count, run.run_seconds)
        if not self.stats.layer_neurons:
            self.stats.layer_neurons = [size // self.copies for size in self.graph.layer_sizes]
        if progress is not None:
            progress(count, count * window, int(spikes.sum()))
        readout = unstack_patches(run.values[-1], self.copies, count).astype(np.float32)
        return self.codec.decode(torch.from_numpy(readout)).numpy()


def open_graph_guard(net: GraphRegNet, model: NetxFile, stop: bool = True) -> RangeGuard:
    """A graph file's range record; a graph not proven in range for every input is refused before any work."""
    guard = RangeGuard.for_graph(net, stop)
    if not guard.proven:
        worst = max((row for row in guard.worst_case if row["bound"] >= row["limit"]),
                    key=lambda r: r["bound"] / r["limit"])
        raise RangeOverflowError(f"model {model.path}: layer {worst['layer']}'s {worst['quantity']} can reach "
                                 f"{worst['bound']:,.1f}, past the +-{worst['limit']:,.0f} the chip holds: a graph "
                                 "file must be proven in range for every input (export it again)")
    return guard


class LavaBackend:
    """The exported netx network on Lava, compiled once, patches streamed through it.

    Use as a context manager so the Lava runtime is always stopped.
    """

    chunk_size = LAVA_CHUNK  # patches per stream: bounds the host's buffers; each costs < 1 window of drain

    def __init__(self, model_path: str | Path | NetxFile, backend: str = "sim", precision: str = "fixed",
                 range_stop: bool = True) -> None:
        self.model = load_model(model_path)  # read once: the twin, the Lava network and the counts share it
        self.meta = self.model.metadata
        self.codec = PatchCodec.from_metadata(self.meta)
        self.name = backend
        self.patch_size = self.meta["model"]["patch_size"]
        self.reduction = self.meta["reduction"]
        # The file's own SLAYER twin: its bounds, and (not proven) the host's re-run of each layer's synapses.
        self.twin = SpikingRegNet.from_netx(self.model)
        self.guard = open_guard(self.twin, range_stop)
        # an SDNN file marked from_rest: every patch from rest, one compiled network for the whole run
        self.from_rest = self.codec.graded and bool(self.meta.get("from_rest"))
        if self.from_rest and backend != "sim":
            raise ValueError(f"--backend {backend}: model {self.model.path} runs every patch from rest, which "
                             "SpikeReg builds from Lava's Python process models (lava_export.rest): use --backend "
                             "sim or torch, or export the checkpoint again with --stream for the chip (see README, "
                             "'Running on Loihi 2')")
        copies = SIM_COPIES if self.from_rest and copy_blocker(self.model) is None else 1
        self._open = lambda: LavaNetwork(self.model, window=self.codec.window, backend=backend, precision=precision,
                                         from_rest=self.from_rest, copies=copies)
        self.network = self._open()
        self.stats = BackendStats()

    @property
    def _watch(self) -> bool:
        """Whether each layer's range must be rebuilt from its spikes (a graded file not proven in range)."""
        return self.codec.graded and not self.guard.proven

    def __enter__(self) -> "LavaBackend":
        return self

    def __exit__(self, exc_type, error, traceback) -> None:
        if self.network.stop() and isinstance(error, KeyboardInterrupt):
            note(error, STOPPED_NOTE)

    def reset(self) -> None:
        """Start a new stream: the next patch finds the network at rest.

        CUBA layers are reset by netx every window anyway. Sigma-delta layers
        never are, so an SDNN network that has run is stopped and a fresh one
        built (compiled again at the next patch: seconds, against minutes of
        streaming).
        """
        self.guard.restart()
        self._restart_stream()

    def _restart_stream(self) -> None:
        """SDNN: a fresh network, at rest (netx never resets sigma-delta neurons; a rebuild compiles in < 1 s)."""
        if self.codec.graded and self.network.has_run:  # (from rest, has_run stays False: nothing to forget)
            self.network.stop()
            self.network = self._open()

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        self._restart_stream()  # one stream per chunk (see 'Per-chunk streams' above)
        if self.from_rest:  # the levels, held for the window by the runner (no window of copies made here)
            spikes = self.codec.encode_held(fixed, moving).numpy()
        else:
            spikes = self.codec.encode(fixed, moving)[..., : self.codec.window].numpy()
        counter = self.stats.counter
        run = self.network.run(spikes, progress=progress, keep_layers=counter is not None or self._watch)
        if self._watch and self.from_rest:  # each window its own stream from rest
            window = self.codec.window
            for k in range(len(fixed)):
                cut = [from_lava(v[..., k * window:(k + 1) * window]) for v in run.layer_values]
                self.guard.observe(lava_series(self.twin.blocks, cut), window, self.stats.patches + k, 1)
        elif self._watch:
            series = lava_series(self.twin.blocks, [from_lava(v) for v in run.layer_values])
            self.guard.observe(series, self.codec.window, self.stats.patches, len(fixed))
        if counter is not None:
            self._count(counter, fixed, np.broadcast_to(spikes, (*spikes.shape[:-1], self.codec.window)), run)
        # what drives layer 1's synaptic operations: the host's spikes, or (graded) its delta encoder's messages
        self.stats.input_spikes += int(run.layer_spikes[0].sum()) if self.codec.graded else int(spikes.sum())
        self.stats.add(run.layer_spikes.sum(axis=1), run.time_steps, len(fixed), run.run_seconds)
        self.stats.compile_seconds += run.compile_seconds
        self.stats.step_spikes.append(run.step_spikes)
        if run.chip_profile is not None:  # the chip's own probes (loihi2 only), summarised by the runner
            self.stats.chip_profile = run.chip_profile
        if not self.stats.layer_neurons:
            self.stats.layer_neurons = self.network.layer_sizes
        return self.codec.decode(torch.from_numpy(run.readout)).numpy()

    def _count(self, counter, fixed: torch.Tensor, inputs: np.ndarray, run) -> None:
        """Per-neuron counts of every patch from each layer's values at every step of the stream.

        The run reads ``layers`` in order, element ``i`` answering patch ``k`` in the
        ``window`` steps from ``lead + first_lag + i + k * window`` (the runner's own
        convention, see :meth:`LavaNetwork.run`); the stream's last ``len(counter.fans)``
        elements are the netx layers counted. A graded layer's messages are its nonzero values.
        """
        count, window = len(inputs), self.codec.window
        values = run.layer_values
        first_lag = int(getattr(self.network, "first_lag", 0))
        lag = first_lag + len(values) - 1  # the readout's
        lead = values[0].shape[-1] - count * window - lag  # values keep the steps before the first patch
        answers = []
        for layer in range(len(values) - len(counter.fans), len(values)):
            start = lead + first_lag + layer
            cut = from_lava(values[layer][..., start:start + count * window] != 0)  # SLAYER layout, (..., P*window)
            answers.append(np.moveaxis(cut.reshape(cut.shape[:-1] + (count, window)), -2, 0))
        counter.add(inputs, answers, run.time_steps, window)
        counter.record_raster(fixed, inputs, answers, self.name)


def open_guard(net: SpikingRegNet, stop: bool = True) -> RangeGuard:
    """The run-time range check for ``net`` (a file's network); refuses a CUBA file not proven in range.

    CUBA layers' currents and voltages are not read back from the chip, so a
    CUBA file must be proven in range for every input to run at all.
    """
    guard = RangeGuard.for_network(net, stop)
    if net.input_block is None and not guard.proven:
        worst = max((row for row in guard.worst_case if row["bound"] >= row["limit"]), key=lambda r: r["bound"])
        raise RangeOverflowError(f"layer {worst['layer']}'s {worst['quantity']} can reach {worst['bound']:,.0f}, "
                                 f"past the +-{worst['limit']:,.0f} Lava holds: this CUBA model is not proven in "
                                 "range; export it again (spikereg export, --range proven)")
    return guard


def check_backend(backend: str, precision: str = "fixed", device: str = "cpu", synapses: str = "conv") -> None:
    """Refuse, before any work, a backend, precision, device or synapse build that cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if synapses not in SYNAPSE_BUILDS:
        raise ValueError(f"--synapses {synapses!r}: choose {' or '.join(SYNAPSE_BUILDS)}")
    if synapses == "sparse" and backend != "sim":
        raise ValueError(f"--synapses sparse: applies to --backend sim (Lava's simulator builds the synapse lists; "
                         f"--backend {backend} runs {'SLAYER' if backend == 'torch' else 'netx'}'s build)")
    if backend == "torch":
        if precision != "fixed":
            raise ValueError(f"--precision {precision}: the torch backend runs SLAYER's fixed-point "
                             "neurons on the exported 8-bit weights only; 'float' applies to --backend sim")
        torch_device(device)
        return
    if device != "cpu":
        raise ValueError(f"--device {device}: applies to --backend torch only (Lava runs on its own hardware)")
    run_config(backend, precision)  # a missing lava-loihi or a bad precision fails here


def open_backend(model_path: str | Path | NetxFile, backend: str = "sim", precision: str = "fixed",
                 device: str = "cpu", batch_size: int = 32, range_stop: bool = True,
                 synapses: str = "conv") -> TorchBackend | LavaBackend:
    """The exported network at ``model_path`` on ``backend`` ('torch', 'sim' or 'loihi2').

    Use as a context manager: ``with open_backend(path, "torch") as b: register(f, m, b, ...)``;
    the Lava runtime is stopped on leaving the block, also on errors and Ctrl-C.
    ``device`` and ``batch_size`` apply to ``torch``, ``precision`` to ``sim``
    ('fixed': Loihi's fixed-point models; 'float': floating-point ones).
    Unknown backends, a missing lava-loihi, or an unusable device raise at once.
    ``range_stop``: a layer reaching the chip's range stops the run
    (:class:`~spikereg.registration.range_guard.RangeOverflowError`); False records it in
    ``engine.guard`` instead (``--keep-failed``). The file is read once, into ``engine.model``
    (:class:`~spikereg.netx_file.NetxFile`), which the network, the spike counter and the run's
    energy report share. ``synapses`` (``sim`` only): ``conv``, each layer's synapses as Lava's
    ``Conv`` (netx's build, the folded weight whole); ``sparse``, as Lava ``Sparse`` lists of
    the nonzero weights (:class:`SparseChainBackend`; a graph's conv edges likewise).
    """
    check_backend(backend, precision, device, synapses)
    model = load_model(model_path)
    if is_graph_file(model.path):  # a U-Net: every patch from rest
        if backend == "torch":
            return GraphTorchBackend(model, batch_size=batch_size, device=device, range_stop=range_stop)
        return GraphLavaBackend(model, backend=backend, precision=precision, range_stop=range_stop,
                                synapses=synapses)
    if synapses == "sparse":
        engine = SparseChainBackend(model, precision=precision, range_stop=range_stop)
    elif backend == "torch":
        engine = TorchBackend(SpikingRegNet.from_netx(model), batch_size=batch_size, device=device,
                              range_stop=range_stop, from_rest=bool(model.metadata.get("from_rest")))
        engine.model = model
    else:
        engine = LavaBackend(model, backend=backend, precision=precision, range_stop=range_stop)
    # spikes, synaptic operations and a raster, counted neuron by neuron (spikereg.registration.counts)
    try:
        engine.stats.counter = SpikeCounter(model)
    except CountError:  # e.g. an SDNN input layer on chip: no per-neuron counts, energy uses mean fan-out
        engine.stats.counter = None
    return engine
