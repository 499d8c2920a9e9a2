"""The exported network as a NIR graph (Neuromorphic Intermediate Representation), checked in snnTorch.

NIR (the ``nir`` package) is the one network description that snnTorch, Norse,
Sinabs, Rockpool and SpiNNaker2 read. :func:`netx_to_nir` translates a CUBA
netx file -- the chip's own quantized weights and integer neuron parameters --
node for node:

* each layer's folded 2-D conv (depth folded into features, exactly as Lava
  holds it) becomes a ``nir.Conv2d`` with the 8-bit weights divided by
  SLAYER's ``w_scale`` (64), no bias;
* each CUBA neuron becomes a ``nir.CubaLIF``. Loihi's decays are per-step
  fractions of 4096: ``I <- I (4096 - iDecay)/4096 + input``,
  ``v <- v (4096 - vDecay)/4096 + I``, spike and reset to 0 when ``v`` passes
  ``vThMant / 64``. NIR is continuous-time; its readers discretise it with
  forward Euler at a time step :data:`TIME_STEP` (snnTorch's importer assumes
  1e-4 s), so ``tau = TIME_STEP * 4096 / decay`` (``inf`` for no decay),
  ``w_in = tau_syn / TIME_STEP`` and ``r = tau_mem / TIME_STEP`` (unit gains);
  ``v_threshold`` sits half a state quantum (1/4096) above the threshold,
  because the chip compares integers: ``v > threshold`` means
  ``v >= threshold + 1/4096``.

What NIR cannot express, and so what the translation refuses: sigma-delta
(SDNN) neurons -- NIR has no graded delta unit -- and per-neuron biases.
The chip's one-step delay per layer (SLAYER's ``delay_shift``) is a pure time
shift in a feed-forward graph and is left out: NIR's output at step ``t`` is
the chip's at ``t + layers``.

Exactness. The chip's state is an integer: each step it truncates the decayed
current towards zero, ``trunc(I (4096 - iDecay) / 4096)``, where NIR (and
every float simulator reading it) keeps the exact product. That is the only
difference (a float recurrence with the truncation put back matches SLAYER
spike for spike), so :func:`verify_nir` compares each layer on the chip's own
input to it (SLAYER's spikes of the layer before) and requires agreement on
at least :data:`AGREEMENT` of neuron-steps; it reports the cascaded readout's
agreement too.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lava_export.verify import sample_patches
from spikereg.errors import SpikeRegError
from spikereg.networks.snn import SpikingRegNet
from spikereg.netx_file import read_metadata

TIME_STEP = 1e-4  # s: the step NIR readers discretise with (snnTorch's importer fixes it)
STATE_QUANTUM = 1.0 / 4096  # SLAYER's CUBA state unit (s_scale = 64 * 64)
AGREEMENT = 0.99  # least fraction of equal neuron-steps per layer (see the module docstring)


class NirExportError(SpikeRegError, ValueError):
    """A network NIR cannot express, or a NIR graph that does not compute what the chip computes."""


def _nir():
    try:
        import nir
    except ImportError as error:  # an optional extra
        raise NirExportError("--to nir needs the 'nir' package: pip install 'spikereg[nir]'") from error
    return nir


def _cuba_node(nir, device: dict, shape: tuple[int, ...]):
    decays = {}
    for key in ("iDecay", "vDecay"):
        decay = int(device[key])
        decays[key] = TIME_STEP * 4096 / decay if decay else np.inf
    tau_syn, tau_mem = decays["iDecay"], decays["vDecay"]
    threshold = int(device["vThMant"]) / 64 + STATE_QUANTUM / 2

    def full(value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float64)

    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / TIME_STEP),
                       v_leak=full(0.0), v_threshold=full(threshold), w_in=full(tau_syn / TIME_STEP))


def network_to_nir(net: SpikingRegNet, input_shape: tuple[int, int, int]):
    """The CUBA network ``net`` (with a netx file's weights, :meth:`SpikingRegNet.from_netx`) as a NIR graph."""
    nir = _nir()
    if net.input_block is not None:
        raise NirExportError("NIR has no sigma-delta neuron: only CUBA networks (model.neuron.type: cuba) "
                             "export to NIR; sdnn ones run on Lava/Loihi 2 through netx")
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    edges, previous, shape = [], "input", tuple(input_shape)
    with torch.no_grad():
        for index, block in enumerate(net.blocks, start=1):
            if getattr(block.neuron, "bias_is_set", False):
                raise NirExportError(f"layer {index} has a neuron bias, which NIR's CubaLIF cannot hold")
            synapse = block.synapse
            weight = synapse.weight.detach().double().numpy()[..., 0]  # (out, in, k, k): the folded 2-D kernel
            conv = nir.Conv2d(input_shape=np.array(shape[1:]), weight=weight, stride=np.array(synapse.stride[:2]),
                              padding=np.array(synapse.padding[:2]), dilation=np.array(synapse.dilation[:2]),
                              groups=int(synapse.groups), bias=np.zeros(weight.shape[0]))
            size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                    zip(shape[1:], synapse.padding[:2], synapse.dilation[:2], weight.shape[2:], synapse.stride[:2])]
            shape = (weight.shape[0], *size)
            nodes[f"conv{index}"] = conv
            nodes[f"cuba{index}"] = _cuba_node(nir, block.neuron.device_params, shape)
            edges += [(previous, f"conv{index}"), (f"conv{index}", f"cuba{index}")]
            previous = f"cuba{index}"
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


@dataclass
class NirVerification:
    """How the NIR graph, run in snnTorch, compares with SLAYER on the chip's weights."""

    framework: str
    patches: int
    time_steps: int
    layer_agreement: list[float] = field(default_factory=list)  # per layer, on SLAYER's input to it
    layer_spikes_slayer: list[int] = field(default_factory=list)
    layer_spikes_nir: list[int] = field(default_factory=list)
    readout_agreement: float = 0.0  # cascaded through the NIR graph
    required: float = AGREEMENT

    @property
    def passed(self) -> bool:
        return min(self.layer_agreement) >= self.required


def _snntorch_modules(graph) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """snnTorch's own NIR importer on ``graph``: its (conv, neuron) modules in layer order."""
    try:
        from snntorch.import_nir import import_from_nir
    except ImportError as error:
        raise NirExportError("verifying a NIR export needs snnTorch: pip install 'spikereg[nir]'") from error
    with open(os.devnull, "w") as quiet, _redirect_stdout(quiet):  # the importer prints per node
        module = import_from_nir(graph)
    children = dict(module.named_children())
    layers = sorted(int(name[4:]) for name in children if name.startswith("conv"))
    return [(children[f"conv{i}"], children[f"cuba{i}"]) for i in layers]


def _redirect_stdout(stream):
    import contextlib

    return contextlib.redirect_stdout(stream)


def _run_layer(conv: torch.nn.Module, neuron: torch.nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """One imported layer over a (N, C, H, W, T) spike train, from rest."""
    neuron.reset_hidden() if hasattr(neuron, "reset_hidden") else None
    neuron.reset_mem()
    return torch.stack([neuron(conv(spikes[..., t])) for t in range(spikes.shape[-1])], dim=-1)


@torch.no_grad()
def verify_nir(graph, net: SpikingRegNet, spikes: torch.Tensor) -> NirVerification:
    """Run ``graph`` in snnTorch on encoded input ``spikes`` (N, C, H, W, T) and compare with SLAYER."""
    layers = _snntorch_modules(graph)
    reference, x = [], spikes
    for block in net.blocks:
        x = block(x)
        reference.append(x)
    steps = spikes.shape[-1]
    result = NirVerification(framework="snntorch", patches=int(spikes.shape[0]), time_steps=int(steps))
    layer_input = spikes
    for (conv, neuron), chip in zip(layers, reference):
        # SLAYER's layer answers one step late (delay_shift): its step t+1 is NIR's step t
        ours = _run_layer(conv, neuron, layer_input.float())[..., :steps - 1]
        theirs = chip[..., 1:]
        result.layer_agreement.append(float((ours == theirs).float().mean()))
        result.layer_spikes_nir.append(int(ours.sum()))
        result.layer_spikes_slayer.append(int(theirs.sum()))
        layer_input = chip
    cascade = spikes.float()
    for conv, neuron in layers:
        cascade = _run_layer(conv, neuron, cascade)
    shift = len(layers)
    result.readout_agreement = float((cascade[..., :steps - shift] == reference[-1][..., shift:]).float().mean())
    return result


def export_nir(netx_path: str | Path, out: str | Path, verify_patches: int = 8, spacing: float | None = None
               ) -> NirVerification | None:
    """Write the CUBA netx file ``netx_path`` as a NIR file ``out`` (temporary name, then renamed).

    With ``verify_patches`` > 0 the graph is read back from disk, imported
    into snnTorch and run on that many real-anatomy patches
    (:func:`lava_export.verify.sample_patches`); a graph below
    :data:`AGREEMENT` on any layer is refused and nothing is written. The
    verification is stored beside it as ``<out>.verify.json``.
    """
    nir = _nir()
    out = Path(out)
    net = SpikingRegNet.from_netx(netx_path)
    graph = network_to_nir(net, (net.config.in_channels * net.config.patch_size, net.config.patch_size,
                                 net.config.patch_size))
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".nir", dir=out.parent)
    os.close(handle)
    try:
        nir.write(temporary, graph)
        result = None
        if verify_patches > 0:
            spacing = spacing or float(read_metadata(netx_path).get("spacing_mm") or 2.0)
            fixed, moving = sample_patches(net, spacing, verify_patches)
            result = verify_nir(nir.read(temporary), net, net.encode(fixed, moving))
            if not result.passed:
                worst = int(np.argmin(result.layer_agreement))
                raise NirExportError(
                    f"NIR export of {netx_path}: layer {worst + 1} agrees with SLAYER on "
                    f"{result.layer_agreement[worst]:.4f} of neuron-steps in snnTorch, below the "
                    f"{AGREEMENT} required; nothing written")
            sidecar = out.with_name(out.name + ".verify.json")
            sidecar.write_text(json.dumps(asdict(result) | {"passed": result.passed}, indent=1) + "\n")
        os.replace(temporary, out)
        return result
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
