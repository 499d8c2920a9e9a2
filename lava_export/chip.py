"""Lava's run configuration and the Loihi 2 chip: backends, host, I/O adapters, profilers.

The chip-setup half of running an exported network (:mod:`lava_export.runner`
streams patches through it): :func:`run_config` for ``sim`` (``Loihi2SimCfg``,
fixed- or floating-point models) and ``loihi2`` (``Loihi2HwCfg``),
:func:`use_loihi2_host` (SLURM or an ethernet host), the embedded I/O adapters
between host and chip (:func:`attach_chip_io`) and lava-loihi's power and
execution-time probes (:class:`ChipProfile`), as lava-dl's Loihi 2 tutorials
build them. Everything Loihi 2 needs Intel's lava-loihi; without it
:func:`run_config` stops before any work with one clear message.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from spikereg import compat
from spikereg.errors import SpikeRegError

BACKENDS = ("sim", "loihi2")
PRECISIONS = {"fixed": "fixed_pt", "float": "floating_pt"}


class BackendUnavailable(SpikeRegError, RuntimeError):
    """The requested backend cannot run here; the message says what is missing."""


def io_modules():
    return compat.import_lava("lava.proc.io.injector"), compat.import_lava("lava.proc.io.extractor")


def loihi2_available() -> bool:
    """True where Intel's lava-loihi (the Loihi 2 compiler and runtime) is installed.

    ``lava.utils.loihi.is_installed()`` looks for ``lava.utils.loihi2_profiler``,
    which only lava-loihi ships -- the same module the profilers below need.
    """
    loihi = compat.import_lava("lava.utils.loihi")
    return loihi.is_installed()


def use_loihi2_host() -> str:
    """Point Lava at the Loihi 2 system, as lava-dl's tutorials do; returns where it runs.

    With SLURM (INRC): ``lava.utils.loihi.use_slurm_host`` with ``$PARTITION``
    or ``$BOARD`` and ``$LOIHI_GEN`` (default N3B3, most INRC systems). With
    ``$NXSDKHOST`` set (a Kapoho Point on the local network):
    ``use_ethernet_host``. Only reached where lava-loihi is installed.
    """
    loihi = compat.import_lava("lava.utils.loihi")
    name = os.environ.get("LOIHI_GEN", loihi.ChipGeneration.N3B3.value)
    try:
        generation = loihi.ChipGeneration(name)
    except ValueError:
        choices = ", ".join(g.value for g in loihi.ChipGeneration)
        raise ValueError(f"LOIHI_GEN={name!r}: not a Loihi chip generation; choose one of {choices}") from None
    if os.environ.get("NXSDKHOST"):
        loihi.use_ethernet_host(os.environ["NXSDKHOST"], loihi_gen=generation)
        return f"ethernet host {os.environ['NXSDKHOST']} ({generation.value})"
    partition, board = os.environ.get("PARTITION"), os.environ.get("BOARD")
    loihi.use_slurm_host(partition=None if board else partition, board=board, loihi_gen=generation)
    return f"SLURM {'board ' + board if board else 'partition ' + (partition or '(any)')} ({generation.value})"


@dataclass
class ChipProfile:
    """lava-loihi's power and execution-time probes of one Loihi 2 run (lava-dl's benchmark tutorial)."""

    power: object  # loihi2_profiler.Loihi2Power
    runtime: object  # loihi2_profiler.Loihi2ExecutionTime

    @classmethod
    def attach(cls, num_steps: int) -> "ChipProfile":
        profiler = compat.import_lava("lava.utils.loihi2_profiler")
        return cls(profiler.Loihi2Power(num_steps=num_steps), profiler.Loihi2ExecutionTime())

    @property
    def callbacks(self) -> list:
        return [self.power, self.runtime]

    def summary(self, steps_per_patch: int) -> dict:
        """Mean power, time per step and energy per patch, as the tutorial computes them."""
        per_step_us = float(self.runtime.avg_time_per_step)
        total = float(np.mean(self.power.total_power))
        static = float(self.power.static_total_power)
        return {
            "time_per_step_us": per_step_us,
            "total_power_w": total,
            "static_power_w": static,
            "dynamic_power_w": total - static,
            "energy_per_patch_j": total * per_step_us * 1e-6 * steps_per_patch,
            "dynamic_energy_per_patch_j": (total - static) * per_step_us * 1e-6 * steps_per_patch,
            "source": "lava.utils.loihi2_profiler (measured on the chip)",
        }


def run_config(backend: str, precision: str = "fixed", callbacks: list | None = None):
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
    injector, extractor = io_modules()
    # The host-side injector/extractor models carry no fixed/float tag; name them.
    host_models = {
        injector.Injector: injector.PyLoihiInjectorModel,
        extractor.Extractor: extractor.PyLoihiExtractorModel,
    }
    encoder = compat.import_lava("lava.proc.io.encoder")  # SDNN input, as in the PilotNet SDNN tutorial
    if backend == "loihi2":
        host_models[encoder.DeltaEncoder] = encoder.PyDeltaEncoderModelSparse
        return configs.Loihi2HwCfg(exception_proc_model_map=host_models, callback_fxs=callbacks or [])
    host_models[encoder.DeltaEncoder] = encoder.PyDeltaEncoderModelDense
    if precision == "float":
        # netx's blocks and network are hierarchical models tagged 'fixed_pt' only, so a
        # 'floating_pt' selection finds none for them; name them: inside, the neurons and
        # synapses then take their floating-point models.
        host_models.update(_netx_block_models())
    return configs.Loihi2SimCfg(select_tag=PRECISIONS[precision], exception_proc_model_map=host_models)


def _netx_block_models() -> dict:
    """netx's hierarchical process models (network and blocks), keyed by the process they implement."""
    netx = compat.netx()
    models = {netx.hdf5.Network: netx.hdf5.PyNetworkModel}
    for model in vars(netx.blocks.models).values():
        process = getattr(model, "implements_process", None)
        if isinstance(model, type) and process is not None:
            models[process] = model
    return models


def attach_chip_io(net, source, extractors, graded: bool, spike_exp: int) -> None:
    """Loihi 2: spikes cross between host and chip through embedded I/O adapters.

    As in lava-dl's netx tutorials (PilotNet SNN / SDNN ``utils.py``): binary
    spikes through ``PyToNxAdapter``, graded ones through
    ``PyToN3ConvAdapter`` (16-bit messages, the file's spike_exp, sparse), read back
    through ``NxToPyAdapter`` (32-bit for graded values). Only reached where
    lava-loihi is installed; it has never run here.
    """
    eio = compat.import_lava("lava.proc.embedded_io")
    if graded:
        encoder_mod = compat.import_lava("lava.proc.io.encoder")
        in_adapter = eio.spike.PyToN3ConvAdapter(shape=net.inp.shape, num_message_bits=16, spike_exp=spike_exp,
                                                 compression=encoder_mod.Compression.DELTA_SPARSE_8)
    else:
        in_adapter = eio.spike.PyToNxAdapter(shape=net.inp.shape)
    source.connect(in_adapter.inp)
    in_adapter.out.connect(net.inp)
    bits = {"num_message_bits": 32} if graded else {}
    for layer, extractor in zip(net.layers, extractors):
        out_adapter = eio.spike.NxToPyAdapter(shape=layer.out.shape, **bits)
        layer.out.connect(out_adapter.inp)
        out_adapter.out.connect(extractor.in_port)
