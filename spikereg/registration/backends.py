"""Patch backends: the same spiking network in SLAYER (PyTorch) or on Lava.

Both encode with the same :class:`~spikereg.networks.encoding.PatchCodec`, so
for one exported network they see identical input spikes; on the ``sim``
backend Lava's fixed-point models reproduce SLAYER's spikes exactly.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lava_export.netx import read_metadata
from spikereg.networks.encoding import PatchCodec
from spikereg.networks.snn import SpikingRegNet
from spikereg.registration.register import BackendStats


def codec_from_metadata(meta: dict) -> PatchCodec:
    model = meta["model"]
    return PatchCodec(model["time_steps"], meta["layers"], model["max_displacement"], model["encoding"])


class TorchBackend:
    """SLAYER forward pass in PyTorch, batched."""

    name = "torch"

    def __init__(self, net: SpikingRegNet, batch_size: int = 32) -> None:
        self.net = net.eval()
        self.patch_size = net.config.patch_size
        self.reduction = net.reduction
        self.batch_size = batch_size
        self.stats = BackendStats(layer_neurons=[int(np.prod(b.neuron.shape)) if b.neuron.shape else 0
                                                 for b in net.blocks])

    @torch.no_grad()
    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        tick = time.perf_counter()
        controls, spikes = [], np.zeros(len(self.net.blocks), dtype=np.int64)
        for first in range(0, len(fixed), self.batch_size):
            cut = slice(first, first + self.batch_size)
            outputs = self.net.layer_outputs(self.net.encode(fixed[cut], moving[cut]))
            spikes += np.array([int(o.sum()) for o in outputs])
            controls.append(self.net.decode(outputs[-1]).numpy())
            if progress is not None:
                progress(min(first + self.batch_size, len(fixed)), 0, int(spikes.sum()))
        self.stats.add(spikes, len(fixed) * self.net.window, len(fixed), time.perf_counter() - tick)
        return np.concatenate(controls)


class LavaBackend:
    """The exported netx network on Lava, compiled once, patches streamed through it.

    Use as a context manager so the Lava runtime is always stopped.
    """

    def __init__(self, model_path: str | Path, backend: str = "sim", precision: str = "fixed") -> None:
        from lava_export.runner import LavaNetwork

        self.meta = read_metadata(model_path)
        self.codec = codec_from_metadata(self.meta)
        self.name = backend
        self.patch_size = self.meta["model"]["patch_size"]
        self.reduction = self.meta["reduction"]
        self.network = LavaNetwork(model_path, window=self.codec.window, backend=backend, precision=precision)
        self.stats = BackendStats()

    def __enter__(self) -> "LavaBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.network.stop()

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        spikes = self.codec.encode(fixed, moving)[..., : self.codec.window].numpy()
        run = self.network.run(spikes, progress=progress)
        self.stats.input_spikes += int(spikes.sum())  # they drive layer 1's synaptic operations
        self.stats.add(run.layer_spikes.sum(axis=1), run.time_steps, len(fixed), run.run_seconds)
        self.stats.compile_seconds += run.compile_seconds
        self.stats.step_spikes.append(run.step_spikes)
        if not self.stats.layer_neurons:
            self.stats.layer_neurons = self.network.layer_sizes
        return self.codec.decode(torch.from_numpy(run.readout)).numpy()
