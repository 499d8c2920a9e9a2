"""The Lava backends: an exported file on Lava's simulator (or a Loihi 2 chip), compiled once, patches streamed.

:class:`LavaBackend` runs a chain file as stock netx builds it (``--synapses
conv``), :class:`GraphLavaBackend` a U-Net graph file as
:class:`~lava_export.graph_builder.LavaGraph` builds it, :class:`SparseChainBackend`
a chain file with sparse synapses. Each is a context manager: the Lava runtime
is stopped on leaving, also on errors and Ctrl-C. Open them through
:func:`spikereg.registration.backends.open_backend`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lava_export.copies import copy_blocker, stack, unstack_patches, write_copies
from lava_export.graph_builder import LavaGraph
from lava_export.runner import LavaNetwork, from_lava, stop_runtime
from spikereg.networks.encoding import READOUT_CHANNELS, PatchCodec
from spikereg.networks.folding import fold_volume, unfold_volume
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.snn import SpikingRegNet
from spikereg.netx_file import NetxFile, load_model
from spikereg.registration.range_guard import RangeOverflowError, lava_series, open_graph_guard, open_guard
from spikereg.registration.register import BackendStats

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
        stop_runtime(self.network, error)

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
        stop_runtime(self.graph, error)

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
            stop_runtime(self.graph, error)
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
