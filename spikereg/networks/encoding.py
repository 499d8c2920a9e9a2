"""Host-side encoding of image patches into spikes, and decoding of the readout.

Functional core: plain tensor functions, shared by training (SLAYER), the
``torch`` path and the Lava runner, so every backend sees identical spikes.

Three input codes (``model.spike_code``), all deterministic -- no random
numbers, so a patch always gives the same spikes on every backend:

* ``rate`` (CUBA): a value ``x`` in ``[0, 1]`` spikes at step ``t`` when
  ``floor((t+1)x) > floor(tx)``, i.e. ``floor(x T)`` evenly spaced spikes in
  ``T`` steps;
* ``latency`` (CUBA): one spike per input, at step ``T - floor(x T)`` -- the
  brighter, the earlier; ``floor(x T) = 0`` stays silent (the rate code's
  resolution, with one spike instead of up to ``T``);
* ``delta`` (SDNN): the value held for the whole window as a graded level on
  SLAYER's 8-bit input grid (``round(127 x) / 32``, steps of 1/32 up to
  3.97); the network's sigma-delta input layer turns it into graded spikes
  that carry only its changes.

The readout is signed: for each axis ``k`` the last layer has a "+" and a "-"
channel (``2k`` and ``2k+1``); the displacement is
``(rate_plus - rate_minus) * max_displacement``. For CUBA the rate is the
spike count over the ``T`` code steps divided by ``T``; for SDNN it is the
readout neuron's value, which is the sum of its graded spikes since rest.
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
    # Step by step into one (window, ...) buffer, returned as a view with time last: the same
    # float32 products x * t and floors as a (..., T + 1) cumulative tensor, without materialising
    # it (a batch of 16^3 patches made it hundreds of MB). Steps after ``time_steps`` stay 0.
    spikes = values.new_empty((window, *values.shape))
    spikes[time_steps:] = 0
    previous = torch.floor(values * 0.0 + 1e-6)
    current = torch.empty_like(previous)
    for t in range(time_steps):
        torch.mul(values, float(t + 1), out=current)
        current.add_(1e-6).floor_()
        torch.sub(current, previous, out=spikes[t])
        previous, current = current, previous
    return spikes.movedim(0, -1)


def latency_encode(values: torch.Tensor, time_steps: int, window: int | None = None) -> torch.Tensor:
    """Values in [0, 1] -> at most one spike each, at step ``T - floor(x T)`` (brighter is earlier)."""
    window = window or time_steps
    level = torch.floor(values.clamp(0, 1) * time_steps + 1e-6)  # the rate code's levels
    steps = torch.arange(window, dtype=values.dtype, device=values.device)
    return ((steps == (time_steps - level).unsqueeze(-1)) & (level.unsqueeze(-1) > 0)).to(values.dtype)


# The SDNN input block quantizes to SLAYER's 8-bit grid (step 2 / w_scale = 1/32, at most 254/64):
# 127 levels of 1/32 use all of it, so [0, 1] maps onto [0, 3.97] without clipping.
GRADED_LEVELS = 127
GRADED_STEP = 1.0 / 32


def graded_levels(values: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] -> graded input levels on SLAYER's 8-bit input grid (multiples of 1/32)."""
    return torch.round(values.clamp(0, 1) * GRADED_LEVELS) * GRADED_STEP


def hold_encode(values: torch.Tensor, window: int) -> torch.Tensor:
    """Graded levels held for ``window`` steps (the SDNN input layer sends only their changes)."""
    return graded_levels(values).unsqueeze(-1).expand(*values.shape, window).contiguous()


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
    layers: int  # layers on the chip, an SDNN's input layer included
    max_displacement: float
    encoding: str = "intensity"  # see ModelConfig.encoding
    spike_code: str = "rate"  # see ModelConfig.spike_code
    readout_gain: float = 1.0  # see ModelConfig.readout_gain (graded readouts only)

    @classmethod
    def from_metadata(cls, meta: dict) -> "PatchCodec":
        """The codec of an exported network, from its netx file's SpikeReg metadata."""
        model = meta["model"]
        return cls(model["time_steps"], meta["layers"], model["max_displacement"], model["encoding"],
                   model.get("spike_code", "rate"),  # files from before spike_code are rate coded
                   model.get("readout_gain", 1.0))

    @property
    def graded(self) -> bool:
        """Graded (SDNN) spikes: the readout is a value, not a spike count."""
        return self.spike_code == "delta"

    @property
    def window(self) -> int:
        return next_power_of_two(self.time_steps + self.layers)

    @property
    def span(self) -> int:
        return self.window + self.layers - 1

    def features(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(N, 1, P, P, P)`` patch pairs -> the input features in [0, 1], ``(N, C, P, P, P)``."""
        return input_features(fixed, moving, force=self.encoding == "intensity+force")

    def levels(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """Graded (SDNN) patch pairs -> the input levels a patch holds, ``(N, C, P, P, P)`` (unfolded)."""
        if not self.graded:
            raise ValueError(f"spike code {self.spike_code!r}: only graded (delta) inputs are held levels")
        return graded_levels(self.features(fixed, moving))

    def encode(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``(N, 1, P, P, P)`` patch pairs -> folded input spikes ``(N, P*C, P, P, span)``."""
        features = self.features(fixed, moving)
        if self.spike_code == "latency":
            return fold_volume(latency_encode(features, self.time_steps, self.span))
        if self.graded:
            return fold_volume(hold_encode(features, self.span))
        return fold_volume(rate_encode(features, self.time_steps, self.span))

    def encode_held(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """Graded (SDNN) patch pairs -> folded levels ``(N, P*C, P, P, 1)``: :meth:`encode`'s, held for any window."""
        return fold_volume(self.levels(fixed, moving).unsqueeze(-1))

    def decode_values(self, values: torch.Tensor) -> torch.Tensor:
        """A graded readout's values ``(N, 6, g, g, g)`` (unfolded, summed over time) -> ``(N, 3, g, g, g)`` voxels."""
        return decode_displacement(values, 1 if self.graded else self.time_steps,
                                   self.max_displacement / self.readout_gain)

    def decode(self, readout: torch.Tensor) -> torch.Tensor:
        """Folded readout spikes ``(N, g*6, g, g, T)`` -> ``(N, 3, g, g, g)`` voxels.

        The readout's sum over time is a spike count (CUBA, divided by the
        ``T`` code steps) or, for graded spikes, the readout neurons' value.
        """
        return self.decode_values(unfold_volume(readout.sum(dim=-1), READOUT_CHANNELS))
