"""The torch backends: SLAYER's forward pass on an exported file's own 8-bit weights, batched, CPU or CUDA.

:class:`TorchBackend` runs a chain (netx) file, :class:`GraphTorchBackend` a
U-Net graph file; both give the same control displacements as Lava's
fixed-point run of the same file, bit for bit (tested), and stop a run whose
layers reach the chip's range as Lava would (:mod:`.range_guard`).
Open them through :func:`spikereg.registration.backends.open_backend`.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.snn import SpikingRegNet, stream_patches
from spikereg.netx_file import NetxFile
from spikereg.registration.lava_backends import LAVA_CHUNK
from spikereg.registration.range_guard import open_graph_guard, open_guard
from spikereg.registration.register import BackendStats

GRAPH_BATCH_MAX = 4  # patches per pass of a graph (U-Net) model on torch (see GraphTorchBackend)


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
