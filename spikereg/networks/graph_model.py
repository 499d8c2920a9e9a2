"""The registration U-Net: a :class:`~spikereg.networks.unet.SpikingUNet` with SpikeReg's input and readout.

A patch pair becomes the graded input levels of :mod:`spikereg.networks.encoding`
(``model.encoding``), held from rest; the readout is a signed ``(+, -)``
channel pair per axis *per voxel*, decoded as ``(v+ - v-) max_displacement /
readout_gain`` (a control grid whose spacing is one voxel: ``reduction`` 1).
Every patch runs from rest (:meth:`SpikingGraph.from_rest`), on every
backend: the chip is returned to rest between patches
(:mod:`lava_export.graph_builder`), so a patch's answer never depends on the
patches before it, and the truncation of Lava's graded spikes never
accumulates.

The exported file is a graph netx file (:mod:`lava_export.graph_file`) whose
metadata carries the registration model (``model``, a
:class:`~spikereg.config.ModelConfig`) beside the graph's own shape
(``graph``, a :class:`~spikereg.networks.graph_topology.UNetConfig`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from spikereg.config import ModelConfig, config_from_dict
from spikereg.networks.encoding import READOUT_CHANNELS, decode_displacement, graded_levels, input_features
from spikereg.networks.graph_twin import unet_config
from spikereg.networks.unet import SpikingUNet, file_delays
from spikereg.netx_file import NetxFile, load_model


@dataclass(frozen=True)
class GraphCodec:
    """What the host needs of a U-Net's timing: each patch's window on the chip (graded spikes, from rest)."""

    window: int
    graded: bool = True


class GraphRegNet(SpikingUNet):
    """The U-Net of ``model`` (``model.architecture: unet``), saturated per ``model.clamp``."""

    def __init__(self, model: ModelConfig) -> None:
        if model.architecture != "unet":
            raise ValueError(f"model.architecture {model.architecture!r}: GraphRegNet is a unet")
        super().__init__(replace(unet_config(model), clamp=tuple(model.clamp)))
        self.model = model
        if model.readout_bias > 0:  # its value in the chip's units is conversion's (set_readout_bias)
            self.set_readout_bias(float(self.blocks[self.nodes[-1].name].neuron.threshold))

    def set_readout_bias(self, bias: float) -> None:
        """The readout's bias in SLAYER's units, every unit alike (on the ``1 / w_scale`` grid, >= the threshold)."""
        neuron = self.blocks[self.nodes[-1].name].neuron
        node = self.nodes[-1]
        neuron.bias.data = torch.full((node.features, 1, 1), float(bias), device=neuron.bias.device)
        neuron.bias_is_set = True

    @property
    def readout_bias(self) -> float:
        """The readout's bias in SLAYER's units (0: none)."""
        neuron = self.blocks[self.nodes[-1].name].neuron
        return float(neuron.bias.reshape(-1)[0]) if getattr(neuron, "bias_is_set", False) else 0.0

    # -- the host's side -------------------------------------------------------------
    @property
    def patch_size(self) -> int:
        return self.model.patch_size

    @property
    def reduction(self) -> int:
        return 1

    @property
    def grid_size(self) -> int:
        return self.model.patch_size

    @property
    def window(self) -> int:
        """Steps one patch occupies on the chip: its longest path, the host's encoder step and the readout's.

        From rest every unit sends at most once, at its path length (Lava: one
        step later, the host's delta encoder), so nothing is left to wait for.
        """
        return max(self.path_lengths.values()) + 2

    @property
    def codec(self) -> GraphCodec:
        return GraphCodec(self.window)

    def levels(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(N, 1, P, P, P)`` patch pairs -> graded input levels ``(N, C_in, P, P, P)`` (the host's encoding)."""
        return graded_levels(input_features(fixed, moving, force=self.model.encoding == "intensity+force"))

    def decode(self, readout: torch.Tensor) -> torch.Tensor:
        """The readout's values ``(N, 6, P, P, P)`` -> displacement ``(N, 3, P, P, P)`` in voxels."""
        return decode_displacement(readout, 1, self.model.max_displacement / self.model.readout_gain)

    def predict(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        return self.decode(self.from_rest(self.levels(fixed, moving)))

    # -- the file ----------------------------------------------------------------------
    def metadata(self) -> dict:
        meta = super().metadata()
        meta.update({"graph": meta.pop("model"), "model": asdict(self.model), "window": self.window,
                     "layers": len(self.nodes), "grid_size": self.grid_size, "reduction": self.reduction,
                     "readout": "channels (2k, 2k+1) = (+, -) displacement along array axis k, every voxel",
                     "from_rest": True})
        return meta

    @classmethod
    def from_file(cls, source) -> "GraphRegNet":
        """The registration U-Net of an exported graph file, carrying the file's 8-bit weights.

        ``source``: the file's path or the file already read (:func:`spikereg.netx_file.load_model`).
        The file's delays must be the ones this model aligns (from-rest runs need them).
        """
        model_file = load_model(source)
        meta = model_file.metadata
        model = config_from_dict({"model": meta["model"]}, source=f"model {model_file.path}").model
        net = cls(model)
        delays = file_delays(model_file.path, [n.name for n in net.nodes])
        if any(delays.get((e.source, e.destination)) != e.delay for e in net.edges):
            raise ValueError(f"model {model_file.path}: its edges' delays are not the aligned ones its U-Net needs")
        return net.load_file_weights(model_file)


__all__ = ["GraphCodec", "GraphRegNet", "NetxFile", "READOUT_CHANNELS"]
