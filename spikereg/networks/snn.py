"""The spiking registration network: SLAYER conv blocks on folded 3-D patches.

Topology (defaults): 3-D conv 3^3 stride 2 -> conv stride 2 -> conv stride 1
with 6 readout channels, so a ``16^3`` patch gives a ``4^3`` grid of control
points, each with a signed 3-D displacement. Every block is a stock SLAYER
conv block (2-D in space, depth folded into features, see
:mod:`spikereg.networks.folding`) whose weight is parametrized by a trainable
3-D kernel:

* ``model.neuron.type: cuba`` -- ``slayer.block.cuba.Conv``, binary spikes
  (Loihi 1 and 2); the file's ``input`` layer is a shape only, and the host
  sends spikes;
* ``sdnn`` -- ``slayer.block.sigma_delta.Conv`` (ReLU), graded spikes
  (Loihi 2), behind a ``slayer.block.sigma_delta.Input`` block that turns the
  host's held graded levels into sigma-delta messages. Its blocks shift their
  output by one step (``delay_shift``), as every layer on the chip does, so
  SLAYER's time axis is the chip's.

The blocks export themselves with SLAYER's own ``export_hdf5``; the network
adds the ``input`` layer (CUBA) and its metadata, which is the whole netx file.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.nn.utils import parametrize

from spikereg import compat
from spikereg.config import ModelConfig, config_from_dict
from spikereg.networks.encoding import READOUT_CHANNELS, PatchCodec
from spikereg.networks.folding import DepthFold, FoldedKernel
from spikereg.netx_file import METADATA_ATTR, ModelFileError, NetxFile, load_model


def graded_spike_scale(spike_exp: int) -> int:
    """Graded spikes are integers of ``1 / scale`` in SLAYER's units: ``2**(6 + spike_exp)`` (netx, Lava)."""
    return 1 << (6 + int(spike_exp))


def bias_mantissa(block: torch.nn.Module) -> np.ndarray:
    """A sigma-delta block's per-feature bias as netx reads it: an integer mantissa like ``vThMant``.

    Lava's sigma-delta neuron scales its bias as it scales its threshold
    (``<< spike_exp + state_exp``), so the mantissa is ``bias * w_scale``.
    """
    bias = block.neuron.bias.detach().reshape(-1) * block.neuron.w_scale
    return np.round(bias.cpu().numpy()).astype(np.int32)


def is_flatten(block: torch.nn.Module) -> bool:
    """SLAYER's Flatten blocks reshape only; netx makes no Lava layer of them."""
    return type(block).__name__ == "Flatten"


def chip_layer_outputs(blocks, spikes: torch.Tensor) -> list[torch.Tensor]:
    """Every chip layer's output over all of SLAYER's time steps (Flatten blocks applied, not listed)."""
    outputs = []
    with torch.no_grad():
        for block in blocks:
            spikes = block(spikes)
            if not is_flatten(block):
                outputs.append(spikes)
    return outputs


def stream_of(frames: torch.Tensor, drain: int) -> torch.Tensor:
    """``(P, *input, window)`` -> one stream ``(*input, P*window + drain)``, patch ``k`` in ``[k*w, (k+1)*w)``."""
    count, window = len(frames), frames.shape[-1]
    stream = frames.movedim(0, -2).reshape(*frames.shape[1:-1], count * window)
    return torch.nn.functional.pad(stream, (0, drain))


def stream_patches(blocks, frames: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """SDNN patches as Lava streams them through the exported file (:meth:`LavaNetwork.run`).

    ``frames`` ``(P, *input, window)`` go back to back in time, batch of one,
    then ``layers - 1`` silent steps drain the layers; netx resets nothing.
    Returns every chip layer's output over the stream, ``(*shape, P*window +
    layers - 1)``, and for each patch ``k`` the step ``(k+1)*window + layers
    - 2`` at the end of its readout window: the readout's graded spikes summed
    up to it are that patch's value. Blocks in SLAYER's ``persistent_state``
    carry their state on from the previous call (the torch backend's stream);
    fresh blocks start from rest (export verification).
    """
    count, window = len(frames), frames.shape[-1]
    layers = sum(not is_flatten(block) for block in blocks)
    stream = stream_of(frames, layers - 1).unsqueeze(0)
    outputs = [out[0] for out in chip_layer_outputs(blocks, stream)]
    ends = torch.arange(1, count + 1, device=stream.device) * window + layers - 2
    return outputs, ends


def wrap_24_bits(value: torch.Tensor, spike_exp: int) -> torch.Tensor:
    """A synaptic input as Lava's ``Conv`` hands it on: a signed 24-bit integer of ``2**-(12 + spike_exp)``
    (``lava.proc.conv.utils.signed_clamp``); values within the range come back unchanged."""
    quantum = 2.0 ** -(12 + spike_exp)
    half = 2 ** 23
    integer = torch.round(value / quantum)
    wrapped = torch.remainder(integer + half, 2 * half) - half
    return torch.where(integer == wrapped, value, wrapped * quantum)


def neuron_step(neuron, z: torch.Tensor) -> torch.Tensor:
    """SLAYER's sigma-delta neuron on one step of ``z`` ``(N, C, D, H, W)``, from rest (folded and back).

    From rest, a unit whose input arrives in one step sends its activation
    floored to the spike grid, or nothing below the delta threshold, and
    never again: the one message SLAYER's block and Lava's process send.
    Without gradients the same arithmetic is done in place on ``z``'s layout
    (:func:`neuron_step_inference`: SLAYER's call copies, folds and runs a
    time loop of one step, half of a U-Net's inference time).
    """
    if not torch.is_grad_enabled():
        return neuron_step_inference(neuron, z)
    n, c, d = z.shape[:3]
    folded = z.transpose(1, 2).reshape(n, d * c, *z.shape[3:]).unsqueeze(-1)
    persistent = neuron.persistent_state
    neuron.persistent_state = neuron.sigma.persistent_state = neuron.delta.persistent_state = False
    try:
        out = neuron(folded)[..., 0]
    finally:
        neuron.persistent_state = neuron.sigma.persistent_state = neuron.delta.persistent_state = persistent
    return out.reshape(n, d, c, *z.shape[3:]).transpose(1, 2)


def neuron_step_inference(neuron, z: torch.Tensor) -> torch.Tensor:
    """:func:`neuron_step` without gradients, in ``z``'s own ``(N, C, D, H, W)`` layout (``z`` is reused).

    SLAYER's operations in SLAYER's order, so the result is the same bit for
    bit (tested): ``relu(z + bias)`` (a saturated layer's per-feature offsets,
    folded as ``d*C + c``), zeroed below the delta threshold, floored to the
    spike grid ``1 / scale`` as ``floor(x / step) * step``.
    """
    if getattr(neuron, "bias_is_set", False):
        c, d = z.shape[1], z.shape[2]
        z = z.add_(neuron.bias.detach().reshape(d, c).t().reshape(1, c, d, 1, 1))
    act = torch.relu_(z)
    step = 1 / neuron.delta.scale
    threshold = neuron.delta.threshold.detach()
    if bool(threshold > step):  # at or below one spike step the floor below zeroes the same units
        act = act.masked_fill_(act < threshold, 0.0)  # act >= 0: SLAYER's abs() changes nothing
    return act.div_(step).floor_().mul_(step)


class SpikingRegNet(torch.nn.Module):
    """Predicts a control-point displacement grid for one cubic patch pair."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        slayer = compat.slayer()
        graded = config.neuron.type == "sdnn"
        if graded:
            kind = slayer.block.sigma_delta
            neuron = dict(threshold=config.neuron.threshold, tau_grad=config.neuron.tau_grad,
                          scale_grad=config.neuron.scale_grad, activation=torch.nn.functional.relu,
                          requires_grad=False)
            extra = dict(delay_shift=True)  # one step per layer, as on the chip
        else:
            kind = slayer.block.cuba
            neuron = {k: v for k, v in asdict(config.neuron).items() if k != "type"}
            neuron["requires_grad"] = False
            extra = {}
        kernel = config.kernel_size
        layers = list(zip(config.channels, config.strides)) + [(READOUT_CHANNELS, 1)]
        clamps = list(config.clamp) or [0.0] * len(config.channels)
        depth, c_in, paired_in = config.patch_size, config.in_channels, False
        self.folds: list[DepthFold] = []
        blocks = []
        for index, (c_out, stride) in enumerate(layers):
            clamp = clamps[index] if index < len(clamps) else 0.0
            paired_out = clamp > 0
            fold = DepthFold(depth, kernel, stride, kernel // 2)
            features_in = depth * c_in * (2 if paired_in else 1)
            features_out = fold.depth_out * c_out * (2 if paired_out else 1)
            block = kind.Conv(neuron, features_in, features_out, kernel, stride=stride, padding=kernel // 2,
                              **extra)
            parametrize.register_parametrization(
                block.synapse, "weight", FoldedKernel(fold, c_out, c_in, paired_out, paired_in)
            )
            with torch.no_grad():  # fan-in of the 3-D kernel, not of the folded one
                # (ReLU units: He's gain; CUBA: a gain that makes the first layers spike)
                std = (np.sqrt(2.0) if graded else 3.0) / np.sqrt(c_in * kernel**3)
                block.synapse.parametrizations.weight.original.normal_(0.0, std)
            if paired_out:  # the second population computes relu(x - c)
                offsets = torch.tensor([0.0] * c_out + [-clamp] * c_out).repeat(fold.depth_out)
                block.neuron.bias.data = offsets.reshape(-1, 1, 1)
                block.neuron.bias_is_set = True
            blocks.append(block)
            self.folds.append(fold)
            depth, c_in, paired_in = fold.depth_out, c_out, paired_out
        self.blocks = torch.nn.ModuleList(blocks)
        # Kept apart from ``blocks`` so that parameter names (and so checkpoints and the
        # ANN twin's snn_state) are the same for both neuron types.
        self.input_block = kind.Input(neuron) if graded else None
        if graded:  # graded spikes on netx's spike_exp grid (SLAYER floors every delta to it)
            for block in self.chip_layers:
                block.neuron.s_scale = block.neuron.delta.scale = graded_spike_scale(config.spike_exp)
        self.grid_size = depth  # control points per patch side
        self.codec = PatchCodec(config.time_steps, len(self.chip_layers), config.max_displacement,
                                config.encoding, config.spike_code, config.readout_gain)

    @property
    def chip_layers(self) -> list[torch.nn.Module]:
        """The blocks that are layers on the chip (netx builds one Lava layer each), in order."""
        return ([self.input_block] if self.input_block is not None else []) + list(self.blocks)

    @property
    def reduction(self) -> int:
        return self.config.patch_size // self.grid_size

    @property
    def window(self) -> int:
        return self.codec.window

    @property
    def span(self) -> int:
        return self.codec.span

    def encode(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(fixed, moving)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Folded input spikes -> folded readout spikes ``(N, g*6, g, g, span)``."""
        for block in self.chip_layers:
            spikes = block(spikes)
        return spikes

    def layer_outputs(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        """Every chip layer's spikes, each cut to the ``window`` steps in which that layer answers."""
        outputs = []
        for index, block in enumerate(self.chip_layers):
            spikes = block(spikes)
            outputs.append(spikes[..., index:index + self.window])
        return outputs

    def summed_inputs(self, spikes: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """SDNN: every conv layer's summed input (its sigma unit, before the ReLU), and :meth:`layer_outputs`.

        The summed input is what Lava and Loihi 2 carry in 24 bits; training keeps it in range.
        """
        if self.input_block is None:
            raise ValueError("summed inputs apply to sigma-delta (sdnn) networks")
        summed: list[torch.Tensor] = []
        hooks = [block.neuron.sigma.register_forward_hook(lambda _module, _inputs, output: summed.append(output))
                 for block in self.blocks]
        try:
            outputs = self.layer_outputs(spikes)
        finally:
            for hook in hooks:
                hook.remove()
        return summed, outputs

    def from_rest(self, levels: torch.Tensor, keep: bool = False, summed: list | None = None,
                  wrap: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """SDNN: every layer's graded spikes for input ``levels`` ``(N, C_in, P, P, P)`` held from rest, one pass.

        As :meth:`spikereg.networks.unet.SpikingGraph.from_rest` (the argument
        and the exactness are the same: a chain's paths are all equally long):
        each block one 3-D convolution of its 8-bit kernel over the chip's
        populations, then SLAYER's own neuron on that one step. Returns the
        readout's graded spikes ``(N, 6, g, g, g)`` (its value), or with ``keep``
        every layer's, the input's first. ``summed`` (a list) receives each
        block's summed input: from rest, its one step's synaptic input (before
        ``wrap``). ``wrap``: each synaptic input wrapped to the 24-bit integer
        Lava's ``Conv`` hands on (:meth:`mirror_chip`), so that a file not proven
        in range gives Lava's answer past it too.
        """
        if self.input_block is None:
            raise ValueError("from_rest applies to sigma-delta (sdnn) networks: CUBA spikes live in time")
        values = [neuron_step(self.input_block.neuron, levels)]
        for block, fold in zip(self.blocks, self.folds):
            parametrization = block.synapse.parametrizations.weight[0]
            kernel = block.neuron.quantize_8bit(parametrization.populations(
                block.synapse.parametrizations.weight.original))
            z = torch.nn.functional.conv3d(values[-1], kernel, stride=fold.stride, padding=fold.padding)
            if summed is not None:
                summed.append(z)
            if wrap:
                z = wrap_24_bits(z, self.config.spike_exp)
            values.append(neuron_step(block.neuron, z))
            if not keep:
                values = values[-1:]
        return values if keep else values[-1]

    def set_streaming(self, on: bool) -> None:
        """SDNN: let successive forward calls run as one stream, the way Lava runs the exported file.

        netx never resets a sigma-delta layer, so on the chip each patch finds
        what the patches before it left: sub-threshold residues in every delta
        unit, and the readout's running level. With streaming on, every
        sigma-delta neuron (SLAYER's ``persistent_state``) and every block's
        one-step delay carry their state from one call to the next; feed a batch
        of one, patches back to back in time. Starts from rest either way.
        """
        if self.input_block is None:
            raise ValueError("streaming applies to sigma-delta (sdnn) networks: CUBA layers are reset every window")
        for block in self.chip_layers:
            neuron = block.neuron
            neuron.persistent_state = neuron.sigma.persistent_state = neuron.delta.persistent_state = on
        self.reset_state()

    def mirror_chip(self, on: bool = True) -> None:
        """SDNN: compute what Lava's fixed-point models compute past their widths, and watch the ranges.

        With it on, each conv/dense block's per-step synaptic input is wrapped
        to a signed 24-bit integer as Lava's ``Conv`` wraps it
        (``lava.proc.conv.utils.signed_clamp``), so SLAYER gives Lava's answer on
        every input; and every call records, per block and per time step, the
        largest ``|synaptic input|`` (before the wrap) and ``|summed input|``
        (:attr:`range_series`), which a run checks against
        :func:`~spikereg.networks.bounds.summed_input_limit`. float32 holds the
        sums exactly up to ``2**(24 - 11 - spike_exp)`` (4x the limit); a run
        stops at the limit anyway. Off for training.
        """
        if self.input_block is None:
            raise ValueError("the chip's 24-bit synaptic input applies to sigma-delta (sdnn) networks")
        for handle in getattr(self, "_chip_hooks", []):
            handle.remove()
        self._chip_hooks = []
        self.range_series = [[None, None] for _ in self.blocks]
        if not on:
            return
        def record(index: int, slot: int, value: torch.Tensor) -> None:  # (batch, steps): largest |value|
            self.range_series[index][slot] = value.detach().abs().movedim(-1, 1).reshape(
                value.shape[0], value.shape[-1], -1).amax(dim=-1)

        def synapse_hook(index: int):
            def hook(_module, _inputs, output):
                record(index, 0, output)
                return wrap_24_bits(output, self.config.spike_exp)
            return hook

        def sigma_hook(index: int):
            return lambda _module, _inputs, output: record(index, 1, output)

        for index, block in enumerate(self.blocks):
            self._chip_hooks.append(block.synapse.register_forward_hook(synapse_hook(index)))
            self._chip_hooks.append(block.neuron.sigma.register_forward_hook(sigma_hook(index)))

    def reset_state(self) -> None:
        """Forget what earlier streamed calls left: the next call starts from rest."""
        for block in self.chip_layers:
            # A state whose batch size differs from the next input is zeroed by SLAYER itself.
            for unit, names in ((block.neuron.sigma, ("pre_state",)),
                                (block.neuron.delta, ("pre_state", "residual_state", "error_state"))):
                for name in names:
                    setattr(unit, name, torch.zeros(0, device=getattr(unit, name).device))
            block.delay_buffer = None

    def readout_window(self, readout: torch.Tensor) -> torch.Tensor:
        """The last layer's ``window`` answering steps (what the chip's readout streams out)."""
        first = self.codec.layers - 1
        return readout[..., first:first + self.window]

    def decode(self, readout: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(readout)

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        return self.decode(self(self.encode(fixed, moving)))

    # -- export -----------------------------------------------------------------
    def metadata(self) -> dict:
        """What the host needs to drive the exported network without the checkpoint."""
        return {
            "format": "spikereg-netx/1",
            "model": asdict(self.config),
            "window": self.window,
            "layers": len(self.chip_layers),
            "grid_size": self.grid_size,
            "reduction": self.reduction,
            "readout": "channels (2k, 2k+1) = (+, -) displacement along array axis k",
            "layout": "netx (x, y, f) = (W, H, D*C) with feature d*C + c",
        }

    def export_hdf5(self, path: str | Path, extra: dict | None = None) -> None:
        """Write the netx description (weights and thresholds quantized by SLAYER's hooks).

        ``extra`` is merged into the metadata (e.g. the training spacing and run defaults).
        """
        patch = self.config.patch_size
        with torch.no_grad():  # SLAYER blocks learn their neuron shapes from a forward pass
            self(torch.zeros(1, patch * self.config.in_channels, patch, patch, 1))
        with h5py.File(path, "w") as handle:
            handle.attrs[METADATA_ATTR] = json.dumps(dict(self.metadata(), **(extra or {})))
            layers = handle.create_group("layer")
            inp = layers.create_group("0")
            if self.input_block is not None:  # SDNN: the input layer has a sigma-delta neuron
                self.input_block.export_hdf5(inp)
            else:
                inp.create_dataset("type", (1,), "S10", [b"input"])
                inp.create_dataset("shape", data=np.array([patch * self.config.in_channels, patch, patch]))
            for index, block in enumerate(self.blocks, start=1):
                group = layers.create_group(str(index))
                block.export_hdf5(group)
                # a saturated layer's offsets, as a mantissa like vThMant
                if getattr(block.neuron, "bias_is_set", False):
                    group.create_dataset("bias", data=bias_mantissa(block))

    @classmethod
    def from_netx(cls, source: str | Path | NetxFile) -> "SpikingRegNet":
        """The network of an exported netx file, carrying the file's quantized weights.

        Rebuilt from the file's metadata; each block's weight is the 8-bit
        integer weight netx hands to Lava (divided by SLAYER's ``w_scale``), so
        SLAYER on it computes what Lava's fixed-point models compute. The 3-D
        kernel is recovered through the fold's right inverse, exactly: every
        copy of a kernel slice in the folded weight holds the same value.
        ``source`` is the file's path, or the file already read (:func:`spikereg.netx_file.load_model`).
        """
        model = load_model(source)
        path, meta = model.path, model.metadata
        net = cls(config_from_dict({"model": meta["model"]}, source=f"model {path}").model)
        layers = model.layers
        if len(layers) != len(net.blocks) + 1:
            raise ModelFileError(f"model {path}: {len(layers) - 1} layers, but its metadata describes "
                                 f"{len(net.blocks)}")
        for index, block in enumerate(net.blocks, start=1):
            layer = layers[str(index)]
            weight = torch.as_tensor(np.asarray(layer["weight"][()]), dtype=torch.float32)
            expected = tuple(block.synapse.weight.shape[:-1])
            if tuple(weight.shape) != expected:
                raise ModelFileError(f"model {path}: layer {index} weight has shape {tuple(weight.shape)}, "
                                     f"its metadata implies {expected}")
            for key, value in block.neuron.device_params.items():
                if key in ("vThMant", "iDecay", "vDecay") and int(np.asarray(layer["neuron"][key])) != int(value):
                    raise ModelFileError(f"model {path}: layer {index} neuron {key} is "
                                         f"{int(np.asarray(layer['neuron'][key]))}, "
                                         f"its metadata implies {int(value)}")
            expected_bias = bias_mantissa(block) if getattr(block.neuron, "bias_is_set", False) else None
            bias = np.asarray(layer["bias"][()]) if "bias" in layer else None
            if (bias is None) != (expected_bias is None) or (
                    bias is not None and (bias.shape != expected_bias.shape or (bias != expected_bias).any())):
                raise ModelFileError(f"model {path}: layer {index} bias does not match the saturation "
                                     f"(model.clamp {net.config.clamp}) its metadata describes")
            with torch.no_grad():
                block.synapse.weight = (weight / block.neuron.w_scale).unsqueeze(-1)
        return net.eval()
