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

from pathlib import Path

from lava_export.chip import run_config
from spikereg.hardware.rules import SYNAPSE_BUILDS
from spikereg.networks.snn import SpikingRegNet
from spikereg.netx_file import NetxFile, is_graph_file, load_model
from spikereg.registration.counts import CountError, SpikeCounter
from spikereg.registration.lava_backends import GraphLavaBackend, LavaBackend, SparseChainBackend
from spikereg.registration.torch_backends import GraphTorchBackend, TorchBackend, torch_device

BACKENDS = ("torch", "sim", "loihi2")


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
