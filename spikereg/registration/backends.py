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
``sim`` give the same control displacements, bit for bit.
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

BACKENDS = ("torch", "sim", "loihi2")


def codec_from_metadata(meta: dict) -> PatchCodec:
    model = meta["model"]
    return PatchCodec(model["time_steps"], meta["layers"], model["max_displacement"], model["encoding"])


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

    def __init__(self, net: SpikingRegNet, batch_size: int = 32, device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size {batch_size}: must be at least 1")
        self.device = torch_device(device)
        self.net = net.eval().to(self.device)
        self.codec = net.codec
        self.patch_size = net.config.patch_size
        self.reduction = net.reduction
        self.batch_size = batch_size
        self.chunk_size = batch_size  # patches register() hands over per call
        self.stats = BackendStats()

    def __enter__(self) -> "TorchBackend":
        return self

    def __exit__(self, *exc) -> None:
        pass

    @torch.no_grad()
    def predict(self, fixed: torch.Tensor, moving: torch.Tensor,
                progress: Callable[[int, int, int], None] | None = None) -> np.ndarray:
        tick = time.perf_counter()
        controls, spikes = [], np.zeros(len(self.net.blocks), dtype=np.int64)
        input_spikes = 0
        for first in range(0, len(fixed), self.batch_size):
            cut = slice(first, first + self.batch_size)
            encoded = self.net.encode(fixed[cut].to(self.device), moving[cut].to(self.device))
            input_spikes += int(encoded[..., : self.net.window].sum())
            outputs = self.net.layer_outputs(encoded)
            spikes += np.array([int(o.sum()) for o in outputs])
            controls.append(self.net.decode(outputs[-1]).cpu().numpy())
            if progress is not None:
                progress(min(first + self.batch_size, len(fixed)), 0, int(spikes.sum()))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if not self.stats.layer_neurons:  # SLAYER blocks know their shapes after a forward pass
            self.stats.layer_neurons = [int(np.prod(b.neuron.shape)) for b in self.net.blocks]
        self.stats.input_spikes += input_spikes
        self.stats.add(spikes, len(fixed) * self.net.window, len(fixed), time.perf_counter() - tick)
        return np.concatenate(controls)


class LavaBackend:
    """The exported netx network on Lava, compiled once, patches streamed through it.

    Use as a context manager so the Lava runtime is always stopped.
    """

    chunk_size = 64  # patches per stream: bounds the host's buffers; costs layers-1 drain steps each

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


def open_backend(model_path: str | Path, backend: str = "sim", precision: str = "fixed",
                 device: str = "cpu", batch_size: int = 32) -> TorchBackend | LavaBackend:
    """The exported network at ``model_path`` on ``backend`` ('torch', 'sim' or 'loihi2').

    Use as a context manager: ``with open_backend(path, "torch") as b: register(f, m, b, ...)``;
    the Lava runtime is stopped on leaving the block, also on errors and Ctrl-C.
    ``device`` and ``batch_size`` apply to ``torch``, ``precision`` to ``sim``
    ('fixed': Loihi's fixed-point models; 'float': floating-point ones).
    Unknown backends, a missing lava-loihi, or an unusable device raise at once.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        if precision != "fixed":
            raise ValueError(f"--precision {precision}: the torch backend runs SLAYER's fixed-point "
                             "neurons on the exported 8-bit weights only; 'float' applies to --backend sim")
        device = str(torch_device(device))  # before loading anything
        return TorchBackend(SpikingRegNet.from_netx(model_path), batch_size=batch_size, device=device)
    if device != "cpu":
        raise ValueError(f"--device {device}: applies to --backend torch only (Lava runs on its own hardware)")
    return LavaBackend(model_path, backend=backend, precision=precision)
