"""Host-side encoding of image patches into spikes, and decoding of the readout.

Functional core: plain tensor functions, shared by training (SLAYER), the
``torch`` path and the Lava runner, so every backend sees identical spikes.

Encoding is deterministic rate coding: a value ``x`` in ``[0, 1]`` spikes at
step ``t`` when ``floor((t+1)x) > floor(tx)``, i.e. ``round(x T)`` evenly
spaced spikes in ``T`` steps -- no random numbers, so a patch always gives the
same spikes on every backend.

The readout is signed: for each axis ``k`` the last layer has a "+" and a "-"
channel (``2k`` and ``2k+1``); the displacement is
``(rate_plus - rate_minus) * max_displacement``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from spikereg.networks.folding import fold_volume, unfold_volume

READOUT_CHANNELS = 6  # (+, -) for each of the three array axes

DIFFERENCE_GAIN = 2.0  # small intensity differences still need spikes to be seen


# (F - M) * grad M is a product of two small numbers (both about 0.1 for brain
# tissue at 4 mm); this gain brings it into the rate code's [0, 1] range.
FORCE_GAIN = 32.0


def input_features(fixed: torch.Tensor, moving: torch.Tensor, force: bool = False) -> torch.Tensor:
    """``(N, 1, D, H, W)`` fixed and moving in [0, 1] -> channels in [0, 1].

    Channels: fixed, moving, and the positive and negative parts of their
    difference (spikes cannot be negative, so a signed quantity takes two).
    With ``force``, also the signed parts of the optical-flow (demons) force
    ``(F - M) grad M`` along each axis (6 more channels): the direction in
    which moving must shift to match fixed, which a small spiking network
    cannot form itself because it needs a product of two inputs.
    """
    diff = (fixed - moving) * DIFFERENCE_GAIN
    channels = [fixed, moving, diff.clamp(min=0), (-diff).clamp(min=0)]
    if force:
        grads = torch.gradient(moving, dim=(2, 3, 4))
        for grad in grads:
            f = (fixed - moving) * grad * FORCE_GAIN
            channels += [f.clamp(min=0), (-f).clamp(min=0)]
    return torch.cat(channels, dim=1).clamp(0, 1)


def rate_encode(values: torch.Tensor, time_steps: int, window: int | None = None) -> torch.Tensor:
    """Values in [0, 1] of any shape -> spikes with a trailing time axis of ``window`` steps.

    The first ``time_steps`` steps carry the code; the rest (pipeline drain
    before the next patch) are silent.
    """
    window = window or time_steps
    steps = torch.arange(time_steps + 1, dtype=values.dtype, device=values.device)
    cumulative = torch.floor(values.unsqueeze(-1) * steps + 1e-6)
    spikes = cumulative[..., 1:] - cumulative[..., :-1]
    if window > time_steps:
        spikes = torch.nn.functional.pad(spikes, (0, window - time_steps))
    return spikes


def decode_displacement(counts: torch.Tensor, time_steps: int, max_displacement: float) -> torch.Tensor:
    """``(N, 6, d, h, w)`` spike counts -> ``(N, 3, d, h, w)`` displacement in voxels."""
    rates = counts / float(time_steps)
    return (rates[:, 0::2] - rates[:, 1::2]) * max_displacement


def next_power_of_two(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


@dataclass(frozen=True)
class PatchCodec:
    """Everything the host needs to talk to the network, on any backend.

    ``window``: steps one patch occupies on the chip (code + one step per
    layer, rounded up to a power of two as Loihi 2's reset interval needs).
    ``span``: steps SLAYER simulates per patch -- layer ``l`` answers in
    ``[l-1, window+l-1)`` because netx resets it ``l-1`` steps after the patch
    starts (the propagation delay), so the readout ends ``layers-1`` steps
    after the window.
    """

    time_steps: int
    layers: int
    max_displacement: float
    encoding: str = "intensity"  # see ModelConfig.encoding

    @property
    def window(self) -> int:
        return next_power_of_two(self.time_steps + self.layers)

    @property
    def span(self) -> int:
        return self.window + self.layers - 1

    def encode(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(N, 1, P, P, P)`` patch pairs -> folded input spikes ``(N, P*C, P, P, span)``."""
        features = input_features(fixed, moving, force=self.encoding == "intensity+force")
        return fold_volume(rate_encode(features, self.time_steps, self.span))

    def decode(self, readout: torch.Tensor) -> torch.Tensor:
        """Folded readout spikes ``(N, g*6, g, g, T)`` -> ``(N, 3, g, g, g)`` voxels."""
        counts = unfold_volume(readout.sum(dim=-1), READOUT_CHANNELS)
        return decode_displacement(counts, self.time_steps, self.max_displacement)
