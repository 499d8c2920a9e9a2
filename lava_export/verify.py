"""Prove an export on Lava: the same patches through SLAYER and through stock netx.

Sample patches of real anatomy (:func:`sample_patches`) go through the SLAYER
blocks a file was exported from and through ``lava.lib.dl.netx.hdf5.Network``
on Lava's fixed-point simulator (:func:`compare_on_lava`): a CUBA network's
spikes, layer by layer and patch by patch, and its readout, element by
element, must be equal; an SDNN network's graded values must agree within
one graded-spike quantum (:func:`graded_quantum`), and its summed inputs must stay within the 24 bits the
chip carries (:func:`summed_input_peaks`). :func:`lava_export.netx.export_netx`
runs this on every export and writes the :class:`Verification` to
``<model>.verify.json``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lava_export.graph_builder import LavaGraph
from lava_export.runner import LavaNetwork, from_lava
from spikereg.data import load_mni, make_pair
from spikereg.data.sampling import PatchSampler
from spikereg.errors import SpikeRegError
from spikereg.networks.snn import SpikingRegNet, chip_layer_outputs, stream_of, stream_patches

# SDNN: SLAYER and Lava compute graded values on the same dyadic grid. Weights are
# multiples of 2**-5 (SLAYER's 8-bit quantization, step 2 / w_scale), graded spikes
# multiples of q = 2**-(6 + spike_exp) (SLAYER floors every delta to 1 / s_scale; Lava's
# fixed-point models right-shift, which floors too), so every product, sum and state is a
# multiple of q / 32. float32 holds such numbers exactly up to 2**24 q / 32 in magnitude
# (128 for netx's default spike_exp 6, 8192 for spike_exp 0), and sums of exact numbers
# whose result is exact are computed exactly, in any order. Below that bound the two are
# therefore identical, and the tolerance only has to absorb float32 rounding above it:
# there a rounded value can land on the other side of a floor and change one spike by one
# quantum q. A larger difference is a real mismatch (a wrong weight, threshold or time
# step). The observed maximum and the largest magnitude seen go into verify.json.
SDNN_TOLERANCE = 2.0**-12  # q for netx's default spike_exp 6 (graded_quantum gives any file's)


def graded_quantum(blocks) -> float:
    """One graded spike's quantum ``q`` of the network (its sigma-delta neurons' ``1 / s_scale``)."""
    return 1.0 / float(blocks[0].neuron.s_scale)


# A sigma-delta layer's summed input must stay within the 24-bit range Lava and Loihi 2 carry
# (spikereg.networks.bounds.summed_input_limit). Verification streams a few patches through
# Lava; the range is checked on many more, in SLAYER alone.
RANGE_PATCHES = 512


class VerificationError(SpikeRegError, RuntimeError):
    """Lava's output differs from SLAYER's for the exported network."""


@dataclass
class Verification:
    """SLAYER vs Lava for one exported file.

    ``layer_spikes_*`` count spikes (graded: messages, i.e. nonzero values)
    per layer; ``layer_mismatched_patches`` counts the patches where a layer's
    count differs. ``readout_mismatches`` counts readout values that differ by
    more than ``tolerance`` (0 for CUBA: every spike must be equal).
    """

    patches: int
    time_steps_per_patch: int
    alignment: str
    layer_spikes_slayer: list[int]
    layer_spikes_lava: list[int]
    layer_mismatched_patches: list[int]
    readout_elements: int
    readout_mismatches: int
    max_abs_error: float
    precision: str
    seconds: float
    neuron: str = "cuba"
    tolerance: float = 0.0
    tolerance_rule: str = "CUBA: binary spikes must be equal, element by element"
    # graded (SDNN) only: the largest difference of any layer's value at any step,
    # the values compared, those beyond the tolerance, the largest magnitude seen
    max_graded_error: float | None = None
    graded_values_compared: int | None = None
    graded_mismatches: int | None = None
    max_abs_value: float | None = None
    max_abs_spike: float | None = None  # largest graded spike (Lava's integer: x 2**12; netx declares 16-bit messages)
    # SDNN only: Lava's streamed readout vs SLAYER run on each patch alone from rest:
    # the sub-threshold residues carried between patches differ
    per_patch_max_error: float | None = None
    # SDNN only: each conv/dense layer's largest |summed input| in SLAYER on range_patches
    # real-anatomy patches, which must stay below summed_input_limit (spikereg.networks.bounds.summed_input_limit)
    summed_input_peaks: list[float] | None = None
    summed_input_limit: float | None = None
    range_patches: int | None = None
    # every layer's worst case over every input (spikereg.networks.bounds.worst_case_table), from the
    # file's own integers; stress_kinds: the patches unlike the template that were verified too
    worst_case: list[dict] | None = None
    stress_kinds: list[str] | None = None

    @property
    def provably_in_range(self) -> bool | None:
        return None if self.worst_case is None else all(row["bound"] < row["limit"] for row in self.worst_case)

    @property
    def in_range(self) -> bool:
        return self.summed_input_peaks is None or max(self.summed_input_peaks) < self.summed_input_limit

    @property
    def exact(self) -> bool:
        """Every spike and value equal (an SDNN within tolerance can still be exact)."""
        return self.passed and not self.max_abs_error

    @property
    def matched(self) -> bool:
        """Lava == SLAYER on every patch, whatever the range."""
        return self.readout_mismatches == 0 and not any(self.layer_mismatched_patches) and not self.graded_mismatches

    @property
    def passed(self) -> bool:
        return self.matched and self.in_range

    def to_dict(self) -> dict:
        return dict(asdict(self), exact=self.exact, matched=self.matched, passed=self.passed,
                    provably_in_range=self.provably_in_range)


def sample_patches(net: SpikingRegNet, spacing: float, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` real-anatomy patch pairs (MNI T1 vs a randomly warped copy)."""
    rng = np.random.default_rng(seed)
    base = load_mni("t1", spacing).data
    pair = make_pair(base, rng, max_displacement=net.config.max_displacement, control_spacing=8)
    batch = PatchSampler([pair], net.config.patch_size, net.reduction, rng).sample(count)
    return batch.fixed, batch.moving


# Patches unlike the training template, for verification: what a real scan of another person,
# scanner or protocol brings (and what it must never do to the chip's state).
STRESS_KINDS = ("blank", "saturated", "opposite", "inverted", "gamma 0.4", "gamma 2.5", "bias field",
                "noise", "edges")


def stress_patches(fixed: torch.Tensor, moving: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One patch pair of each :data:`STRESS_KINDS`, made from the given pairs (values in [0, 1]).

    Empty and saturated patches; a fixed patch against an empty moving one (the
    largest differences the input code allows); contrast inverted; gamma
    changes; a smooth multiplicative bias; strong noise; and a binary edge
    pattern (steep gradients everywhere, which feeds the force channels).
    """
    rng = np.random.default_rng(seed)
    pick = [int(i) % len(fixed) for i in rng.integers(0, len(fixed), len(STRESS_KINDS))]
    f, m = fixed[pick].clone(), moving[pick].clone()
    size = f.shape[-1]
    axis = torch.linspace(-1, 1, size)
    ramp = axis.view(-1, 1, 1) + axis.view(1, -1, 1) + axis.view(1, 1, -1)
    out_f, out_m = [], []
    for k, kind in enumerate(STRESS_KINDS):
        a, b = f[k], m[k]
        if kind == "blank":
            a, b = torch.zeros_like(a), torch.zeros_like(b)
        elif kind == "saturated":
            a, b = torch.ones_like(a), torch.ones_like(b)
        elif kind == "opposite":
            b = torch.zeros_like(b)
        elif kind == "inverted":
            b = 1 - b
        elif kind.startswith("gamma"):
            b = b.clamp(0, 1) ** float(kind.split()[1])
        elif kind == "bias field":
            b = b * torch.exp(0.7 * ramp)
        elif kind == "noise":
            b = b + torch.as_tensor(rng.normal(0, 0.3, b.shape), dtype=b.dtype)
        elif kind == "edges":
            grid = torch.arange(size)
            cells = (grid.view(-1, 1, 1) // 2 + grid.view(1, -1, 1) // 2 + grid.view(1, 1, -1) // 2) % 2
            a, b = cells.to(a.dtype).expand_as(a), (1 - cells).to(b.dtype).expand_as(b)
        out_f.append(a.clamp(0, 1))
        out_m.append(b.clamp(0, 1))
    return torch.stack(out_f), torch.stack(out_m)


def _is_graded(blocks) -> bool:
    return any(getattr(getattr(b, "neuron", None), "graded_spike", False) for b in blocks)


def _events(x: np.ndarray) -> np.ndarray:
    """Spikes per patch, summed over all but the patch axis (graded: nonzero values)."""
    return np.count_nonzero(x.reshape(x.shape[0], -1), axis=1)


def compare_on_lava(blocks, model_path: str | Path, frames: torch.Tensor, window: int,
                    precision: str = "fixed", from_rest: bool = False, synapses: str = "netx") -> Verification:
    """Stream ``frames`` ``(P, *input, window)`` through the exported file on Lava and through SLAYER.

    ``blocks`` are the SLAYER blocks the file was exported from, in order (a
    sigma-delta Input block first for SDNN; Flatten blocks where they were).
    The alignment is the one the runner uses:

    * CUBA: netx resets layer ``l`` (1-based) at ``k*window + l-1``, so patch
      ``k`` starts from rest in every layer; SLAYER runs each patch alone for
      ``window + layers - 1`` steps and layer ``l``'s answer is its steps
      ``[l-1, window + l-1)``. Spike counts per layer and patch, and the readout
      element by element, must be equal.
    * SDNN: no reset; the stream goes on. SLAYER runs the very same stream (all
      patches back to back, then ``layers - 1`` silent steps) and every layer's
      value at every step is compared with Lava's one step later (the host-side
      delta encoder's step) within one graded quantum; so is each patch's
      readout value at the end of its window (the sum of the readout's graded
      spikes since the stream began).
    * SDNN ``from_rest`` (files that run every patch from rest): Lava returns
      to rest every window (:mod:`lava_export.rest`); each patch's steps
      ``1 .. window-1`` on Lava against SLAYER's ``0 .. window-2`` on that patch
      alone from rest, and Lava's first step of each window silent.

    ``synapses``: ``"netx"`` builds the file with stock netx (Lava's ``Conv`` per
    layer, the whole folded weight); ``"sparse"`` (SDNN, streamed) builds it with
    :class:`~lava_export.graph_builder.LavaGraph`, each layer's synapses a Lava
    ``Sparse`` of its nonzero weights only, and compares the same way.
    """
    start = time.perf_counter()
    graded = _is_graded(blocks)
    count = len(frames)
    if synapses == "sparse":
        if not graded or from_rest:
            raise VerificationError("sparse synapses are verified on a streamed SDNN file (graded, not from rest)")
        return _compare_sparse_stream(blocks, model_path, frames, window, start)
    if synapses != "netx":
        raise VerificationError(f"synapses {synapses!r}: choose netx or sparse")
    with LavaNetwork(model_path, window=window, precision=precision, from_rest=from_rest and graded) as lava:
        run = lava.run(frames.numpy(), keep_layers=graded)
    layers = len(run.layer_spikes)
    # SLAYER on each patch alone, from rest, long enough for the last layer to answer:
    # netx's CUBA run, and the torch backend's former SDNN answer (per_patch_max_error).
    alone = chip_layer_outputs(blocks, torch.nn.functional.pad(frames, (0, layers - 1)))
    if not graded:
        outputs = alone
        slayer_layers = np.stack([_events(o[..., i:i + window].numpy()) for i, o in enumerate(outputs)])
        slayer_readout = outputs[-1][..., layers - 1:layers - 1 + window].numpy()
        difference = np.abs(run.readout - slayer_readout)
        return Verification(
            patches=count,
            time_steps_per_patch=window,
            alignment=(f"layer l answers patch k in steps [k*{window} + l-1, (k+1)*{window} + l-1); "
                       "SLAYER simulates window + layers - 1 steps per patch"),
            layer_spikes_slayer=slayer_layers.sum(axis=1).tolist(),
            layer_spikes_lava=run.layer_spikes.sum(axis=1).tolist(),
            layer_mismatched_patches=(slayer_layers != run.layer_spikes).sum(axis=1).tolist(),
            readout_elements=int(difference.size),
            readout_mismatches=int((difference > 0).sum()),
            max_abs_error=float(difference.max()),
            precision=precision,
            seconds=time.perf_counter() - start,
        )
    tolerance = graded_quantum(blocks)
    if from_rest:
        return _compare_from_rest(run, alone, count, window, tolerance, precision, start)
    # SDNN: SLAYER on the same stream, batch of one, time concatenated.
    outputs, ends = stream_patches(blocks, frames)
    outputs = [o.numpy() for o in outputs]
    steps = outputs[0].shape[-1]
    lava = [from_lava(lava_values)[..., 1:1 + steps] for lava_values in run.layer_values]
    return _graded_stream_verification(blocks, outputs, ends, lava, run.layer_spikes, run.readout.sum(axis=-1),
                                       count, window, precision, start, alone[-1].sum(dim=-1).numpy())


def _compare_sparse_stream(blocks, model_path: str | Path, frames: torch.Tensor, window: int,
                           start: float) -> Verification:
    """The SDNN stream of :func:`compare_on_lava` on the file built with sparse synapses (:class:`LavaGraph`)."""
    count = len(frames)
    outputs, ends = stream_patches(blocks, frames)
    outputs = [o.numpy() for o in outputs]
    steps = outputs[0].shape[-1]
    stream = stream_of(frames, steps - count * window + 1)  # + the host encoder's step
    with LavaGraph(model_path, synapses="sparse") as graph:
        run = graph.run(stream.numpy())
    lava = [v[..., 1:1 + steps] for v in run.values]
    layer_spikes = np.stack([_events(np.stack([v[..., k * window + i:(k + 1) * window + i] for k in range(count)]))
                             for i, v in enumerate(lava)])
    readout = np.moveaxis(np.cumsum(lava[-1], axis=-1)[..., ends.numpy()], -1, 0)
    alone = chip_layer_outputs(blocks, torch.nn.functional.pad(frames, (0, len(outputs) - 1)))
    result = _graded_stream_verification(blocks, outputs, ends, lava, layer_spikes, readout, count, window,
                                         "fixed", start, alone[-1].sum(dim=-1).numpy())
    result.alignment += "; built with sparse synapses (Lava's Sparse, nonzero weights only: LavaGraph)"
    return result


def _graded_stream_verification(blocks, outputs: list[np.ndarray], ends: torch.Tensor, lava: list[np.ndarray],
                                lava_layer_spikes: np.ndarray, lava_values: np.ndarray, count: int, window: int,
                                precision: str, start: float, alone_values: np.ndarray) -> Verification:
    """SLAYER's stream ``outputs`` against Lava's ``lava`` (the same layout, already one step back)."""
    tolerance = graded_quantum(blocks)
    layers = len(outputs)
    errors = [np.abs(v - slayer) for v, slayer in zip(lava, outputs)]
    max_graded = max(float(e.max()) for e in errors)
    slayer_layers = np.stack([
        _events(np.stack([o[..., k * window + i:(k + 1) * window + i] for k in range(count)]))
        for i, o in enumerate(outputs)
    ])
    slayer_values = np.cumsum(outputs[-1], axis=-1)[..., ends.numpy()]
    slayer_values = np.moveaxis(slayer_values, -1, 0)
    difference = np.abs(lava_values - slayer_values)
    return Verification(
        patches=count,
        time_steps_per_patch=window,
        alignment=(f"one stream of {count} x {window} steps + {layers - 1} drain steps, no reset; "
                   f"Lava layer l at step t+1 == SLAYER layer l at step t (host delta encoder: one step); "
                   f"patch k's readout value: the readout's summed graded spikes at step "
                   f"(k+1)*{window} + layers - 1"),
        layer_spikes_slayer=slayer_layers.sum(axis=1).tolist(),
        layer_spikes_lava=lava_layer_spikes.sum(axis=1).tolist(),
        layer_mismatched_patches=(slayer_layers != lava_layer_spikes).sum(axis=1).tolist(),
        readout_elements=int(difference.size),
        readout_mismatches=int((difference > tolerance).sum()),
        max_abs_error=float(difference.max()),
        precision=precision,
        seconds=time.perf_counter() - start,
        neuron="sdnn",
        tolerance=tolerance,
        tolerance_rule=(f"SDNN: graded values agree within {tolerance:g} (one graded-spike quantum q): "
                        f"weights are multiples of 2**-5 and spikes of q in both, so float32 is exact below "
                        f"{2.0**24 * tolerance / 32:g} and only its rounding above may move one floor by one "
                        "quantum"),
        max_graded_error=max_graded,
        graded_values_compared=int(sum(e.size for e in errors)),
        graded_mismatches=int(sum((e > tolerance).sum() for e in errors)),
        max_abs_value=float(max(np.abs(np.cumsum(o, axis=-1)).max() for o in outputs)),
        max_abs_spike=float(max(np.abs(o).max() for o in outputs)),
        per_patch_max_error=float(np.abs(lava_values - alone_values).max()),
    )


def _compare_from_rest(run, alone, count: int, window: int, tolerance: float, precision: str,
                       start: float) -> Verification:
    """SDNN patches each from rest: Lava's window ``k`` (one step late) against SLAYER on patch ``k`` alone."""
    lava = [np.moveaxis(from_lava(v).reshape(*from_lava(v).shape[:-1], count, window), -2, 0)
            for v in run.layer_values]  # (P, *shape, window) per layer
    slayer = [o[..., :window - 1].numpy() for o in alone]
    errors = [np.abs(v[..., 1:] - o) for v, o in zip(lava, slayer)]
    stray = sum(int(np.count_nonzero(v[..., 0])) for v in lava)  # a window's first step: nothing has arrived
    slayer_layers = np.stack([_events(o) for o in slayer])
    lava_values = run.readout.sum(axis=-1)
    slayer_values = slayer[-1].sum(axis=-1)
    difference = np.abs(lava_values - slayer_values)
    return Verification(
        patches=count,
        time_steps_per_patch=window,
        alignment=(f"every patch from rest in its own {window} steps (the network returns to rest at each window's "
                   "first step); Lava layer l at step t+1 == SLAYER layer l at step t on that patch alone"),
        layer_spikes_slayer=slayer_layers.sum(axis=1).tolist(),
        layer_spikes_lava=run.layer_spikes.sum(axis=1).tolist(),
        layer_mismatched_patches=(slayer_layers != run.layer_spikes).sum(axis=1).tolist(),
        readout_elements=int(difference.size),
        readout_mismatches=int((difference > tolerance).sum()) + stray,
        max_abs_error=float(difference.max()),
        precision=precision,
        seconds=time.perf_counter() - start,
        neuron="sdnn",
        tolerance=tolerance,
        tolerance_rule=f"SDNN from rest: graded values agree within {tolerance:g} (one graded-spike quantum)",
        max_graded_error=max(float(e.max()) for e in errors),
        graded_values_compared=int(sum(e.size for e in errors)),
        graded_mismatches=int(sum((e > tolerance).sum() for e in errors)) + stray,
        max_abs_value=float(max(np.abs(o.sum(axis=-1)).max() for o in slayer)),
        max_abs_spike=float(max(np.abs(o).max() for o in slayer)),
        per_patch_max_error=float(difference.max()),
    )


def verify(net: SpikingRegNet, model_path: Path, fixed: torch.Tensor, moving: torch.Tensor,
           precision: str = "fixed", from_rest: bool = False) -> Verification:
    """Run the same patches through SLAYER and through stock netx on Lava; compare (:func:`compare_on_lava`)."""
    with torch.no_grad():
        frames = net.encode(fixed, moving)[..., : net.window]
    return compare_on_lava(net.chip_layers, model_path, frames, net.window, precision, from_rest=from_rest)


def summed_input_peaks(net: SpikingRegNet, fixed: torch.Tensor, moving: torch.Tensor, batch: int = 64) -> list[float]:
    """SDNN: each conv/dense layer's largest ``|summed input|`` over the patches, in SLAYER (each from rest)."""
    peaks = np.zeros(len(net.blocks))
    with torch.no_grad():
        for first in range(0, len(fixed), batch):
            summed, _ = net.summed_inputs(net.encode(fixed[first:first + batch], moving[first:first + batch]))
            peaks = np.maximum(peaks, [float(s.abs().max()) for s in summed])
    return peaks.tolist()
