"""Export a trained SpikeReg checkpoint to a netx HDF5 file, and prove the export on Lava.

The file is what stock ``lava.lib.dl.netx.hdf5.Network`` loads: an ``input``
layer followed by SLAYER's own ``export_hdf5`` of every conv block, which
writes 8-bit weights (SLAYER's ``quantize_8bit`` hook, the same one training
used) and Loihi's integer neuron parameters (``vThMant``, ``iDecay``,
``vDecay``). The 3-D network reaches Lava's 2-D conv through the exact depth
folding of :mod:`spikereg.networks.folding`. SpikeReg's metadata (patch
size, time steps, readout scale) rides along as a root attribute that netx
ignores.

Every export is checked against a hardware profile (default ``loihi2``,
:mod:`spikereg.hardware`): the network must fit the chip's cores, fan-in and
synaptic memory, and every weight, threshold and decay must fit the chip's
registers exactly; the mapping lands in ``<model>.map.json``.

Every export is verified: sample patches of real anatomy go through SLAYER
and through stock netx on Lava's fixed-point simulator (see :func:`verify`):
a CUBA network's spikes, layer by layer and patch by patch, and its readout,
element by element, must be equal; an SDNN network's graded values must agree
within :data:`SDNN_TOLERANCE`. The comparison lands in ``<model>.verify.json``.

Nothing appears at the output path unless every check passed: the file is
written under a temporary name and renamed at the end.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from spikereg.hardware import (
    NETX_LOADABLE_TYPES,
    MappingError,
    MappingReport,
    NeuromorphicProfile,
    ProfileError,
    check_fits,
    load_profile,
    map_network,
)
from spikereg.data.io import write_text_atomic
from spikereg.networks.ann import SUMMED_INPUT_LIMIT
from spikereg.networks.snn import METADATA_ATTR, SpikingRegNet

DEFAULT_PROFILE = "loihi2"

# SDNN: SLAYER and Lava compute graded values on the same dyadic grid. Weights are
# multiples of 2**-5 (SLAYER's 8-bit quantization, step 2 / w_scale), graded spikes
# multiples of 2**-12 (SLAYER floors every delta to 1 / s_scale; Lava's fixed-point
# models right-shift, which floors too), so every product, sum and state is a multiple
# of 2**-17. float32 holds such numbers exactly up to 2**(24-17) = 128 in magnitude,
# and sums of exact numbers whose result is exact are computed exactly, in any order.
# Below that bound the two are therefore identical, and the tolerance only has to
# absorb float32 rounding above it: there a rounded value can land on the other side
# of a floor and change one spike by one quantum, 2**-12. A larger difference is a
# real mismatch (a wrong weight, threshold or time step). The observed maximum and the
# largest magnitude seen go into verify.json.
SDNN_TOLERANCE = 2.0**-12
SDNN_EXACT_BELOW = 2.0**7
# A sigma-delta layer's summed input must stay within the 24-bit range Lava and Loihi 2 carry
# (spikereg.networks.ann.SUMMED_INPUT_LIMIT). Verification streams a few patches through
# Lava; the range is checked on many more, in SLAYER alone.
SDNN_SUMMED_INPUT_LIMIT = SUMMED_INPUT_LIMIT
RANGE_PATCHES = 512


class ModelFileError(ValueError):
    """A file that is not an exported SpikeReg netx network."""


class VerificationError(RuntimeError):
    """Lava's output differs from SLAYER's for the exported network."""


def read_metadata(path: str | Path) -> dict:
    """The SpikeReg metadata of an exported netx file, with clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model {path}: file not found")
    if not h5py.is_hdf5(path):
        raise ModelFileError(f"model {path}: not an HDF5 file (expected a netx network from 'spikereg export')")
    try:
        with h5py.File(path, "r") as handle:
            if "layer" not in handle:
                raise ModelFileError(f"model {path}: HDF5 file has no 'layer' group, so it is not a netx network")
            if METADATA_ATTR not in handle.attrs:
                raise ModelFileError(
                    f"model {path}: netx file without SpikeReg metadata; export it with 'spikereg export'"
                )
            _check_layer_types(handle["layer"], path)
            return json.loads(handle.attrs[METADATA_ATTR])
    except (OSError, KeyError) as error:
        raise ModelFileError(f"model {path}: unreadable HDF5 file, truncated or corrupt? ({error})") from None


def _layer_type(group) -> str | None:
    """A netx layer's ``type`` (SLAYER writes ``[b'conv']``), or None where there is none."""
    if not isinstance(group, h5py.Group) or "type" not in group:
        return None
    kind = group["type"][()]
    if isinstance(kind, np.ndarray):
        kind = kind.reshape(-1)[0] if kind.size else b""
    return kind.decode("ascii", "replace") if isinstance(kind, bytes) else str(kind)


def _check_layer_types(layers, path: Path) -> None:
    """Refuse now a layer stock netx cannot build (it would raise deep inside Lava later)."""
    if not isinstance(layers, h5py.Group):
        raise ModelFileError(f"model {path}: 'layer' is not a group, so it is not a netx network")
    for name in sorted(layers, key=lambda n: int(n) if n.isdigit() else -1):
        kind = _layer_type(layers[name])
        if kind not in NETX_LOADABLE_TYPES:
            raise ModelFileError(
                f"model {path}: layer {name} has type {kind!r}, which stock netx cannot load "
                f"(it loads {', '.join(NETX_LOADABLE_TYPES)})"
            )


def sidecar(model: str | Path, kind: str) -> Path:
    """``model.net`` -> ``model.<kind>.json`` beside it (``verify``, ``map``)."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".net") + f".{kind}.json")


# -- precision against a hardware profile -------------------------------------------


def resolve_profile(profile: str | Path | NeuromorphicProfile) -> NeuromorphicProfile:
    """Load ``profile`` and insist it is a chip (a CPU/GPU profile has no cores to map onto)."""
    chip = profile if isinstance(profile, NeuromorphicProfile) else load_profile(profile)
    if not isinstance(chip, NeuromorphicProfile):
        raise ProfileError(
            f"profile {chip.name!r} is {chip.category}; export needs a neuromorphic profile "
            "(e.g. loihi1, loihi2) or --profile none"
        )
    return chip


def _integers_in(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Elementwise: a finite integer in ``[lo, hi]`` (NaN and inf are simply not)."""
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0)
    return finite & (clean == np.round(clean)) & (clean >= lo) & (clean <= hi)


def _first_bad(values: np.ndarray, ok: np.ndarray) -> str:
    """``'300 at (2, 0, 1, 1)'``: the first offending element, for the error message."""
    index = tuple(int(i) for i in np.argwhere(~ok)[0])
    return f"{values[index]:g} at {index}"


def check_precision(path: str | Path, profile: str | Path | NeuromorphicProfile,
                    label: str | Path | None = None) -> None:
    """Refuse weights, thresholds and decays the chip's registers cannot hold exactly.

    :func:`spikereg.hardware.map_network` sizes the network; this checks the
    numbers themselves, as SLAYER writes them and netx hands them to Lava:

    * **weights**: SLAYER's ``quantize_8bit`` rounds to a step of 2 and clamps to
      ``[-256, 254]``, with the exponent implicit (``weight_exponent`` = 0 for CUBA
      blocks, and netx builds ``Conv`` with ``weight_exp`` 0). That is a
      ``weight_bits``-bit magnitude plus sign (``[-2**weight_bits, 2**weight_bits - 1]``)
      whose lowest bit is 0, because in mixed-sign mode the sign takes one of the
      ``weight_bits`` (``lava.utils.weightutils.truncate_weights`` drops the lowest
      bit). So every weight must be an even integer in
      ``[-2**weight_bits, 2**weight_bits - 2]`` -- exactly SLAYER's grid for 8 bits;
      conservative for single-sign layers -- and exponent 0 must lie in the
      profile's ``[weight_exponent_min, weight_exponent_max]``.
    * **threshold**: ``vThMant`` becomes Lava's ``vth``, an unsigned
      ``threshold_bits``-bit integer. (SLAYER writes ``2**18 - 1`` for dense layers
      without dynamics; ``spikereg map`` only notes that, export refuses it.)
    * **decays**: netx passes ``du = iDecay - 1`` and ``dv = vDecay`` to Lava's
      LIF, whose fixed-point model adds a fixed offset of 1 back to ``du``; both
      are unsigned ``decay_bits``-bit integers, so ``iDecay`` must lie in
      ``[1, 2**decay_bits]`` (a current that never decays cannot be expressed)
      and ``vDecay`` in ``[0, 2**decay_bits - 1]``.

    Raises :class:`MappingError` naming ``label`` (default ``path``), the layer,
    the value and the profile limit.
    """
    chip = resolve_profile(profile)
    label = str(label or path)
    wb = int(chip.weight_bits.value)
    w_lo, w_hi = -(2**wb), 2**wb - 2
    th_max = 2 ** int(chip.threshold_bits.value) - 1
    decay_bits = int(chip.decay_bits.value)
    decay_top = 2**decay_bits
    if not int(chip.weight_exponent_min.value) <= 0 <= int(chip.weight_exponent_max.value):
        raise MappingError(
            f"{label}: SLAYER's weights carry exponent 0, outside {chip.name}'s weight exponent range "
            f"[{chip.weight_exponent_min.value}, {chip.weight_exponent_max.value}]"
        )
    with h5py.File(path, "r") as handle:
        for name in sorted(handle["layer"], key=int):
            layer = handle["layer"][name]
            kind = _layer_type(layer)
            tag = f"{label}: layer {name} ({kind})"
            for key in ("weight", "weight/real", "weight/imag", "weight_rec"):
                if key not in layer or not isinstance(layer[key], h5py.Dataset):
                    continue
                weight = np.asarray(layer[key][()], dtype=np.float64)
                ok = _integers_in(weight, w_lo, w_hi)
                ok &= np.mod(np.where(ok, weight, 0), 2) == 0
                if not ok.all():
                    raise MappingError(
                        f"{tag}: {key} {_first_bad(weight, ok)} does not fit {chip.name}'s "
                        f"weight_bits {wb} (+ sign): weights must be even integers in [{w_lo}, {w_hi}]"
                    )
            if "neuron" not in layer or not isinstance(layer["neuron"], h5py.Group):
                continue
            neuron = layer["neuron"]
            limits = {  # dataset -> (lowest, highest, the profile field that sets it)
                "vThMant": (0, th_max, f"threshold_bits {chip.threshold_bits.value}"),
                "iDecay": (1, decay_top, f"decay_bits {decay_bits} (netx writes du = iDecay - 1)"),
                "vDecay": (0, decay_top - 1, f"decay_bits {decay_bits}"),
            }
            for key, (lo, hi, limit) in limits.items():
                if key not in neuron:
                    continue
                value = np.asarray(neuron[key][()], dtype=np.float64).reshape(-1)
                ok = _integers_in(value, lo, hi)
                if not ok.all():
                    raise MappingError(
                        f"{tag}: neuron {key} {_first_bad(value, ok)} does not fit {chip.name}'s "
                        f"{limit}: must be an integer in [{lo}, {hi}]"
                    )


def check_hardware(path: str | Path, profile: str | Path | NeuromorphicProfile,
                   label: str | Path | None = None) -> MappingReport:
    """Map the netx file at ``path`` onto ``profile`` and refuse anything that does not fit.

    ``label`` is the name errors and the report use for the file (export maps
    its temporary file but the user knows the output name). Raises
    :class:`MappingError` for a network that exceeds a limit or does not fit a
    register; returns the mapping report otherwise.
    """
    chip = resolve_profile(profile)
    label = str(label or path)
    try:
        report = map_network(path, chip)
    except MappingError as error:
        raise MappingError(str(error).replace(str(path), label)) from None
    report.path = label
    check_fits(report)
    check_precision(path, chip, label)
    return report


def mapping_summary(report: dict) -> str:
    """One line from a mapping report's ``to_dict()``: cores, chips and the verdict."""
    verdict = "fits on one chip" if report["fits_one_chip"] else "does NOT fit on one chip"
    return (f"mapped onto {report['profile_name']}: {report['total_neurons']:,} neurons, "
            f"{report['cores']} cores of {report['cores_per_chip']} per chip -> "
            f"{report['chips']} chip(s): {verdict}")


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
    # real-anatomy patches, which must stay below summed_input_limit (SDNN_SUMMED_INPUT_LIMIT)
    summed_input_peaks: list[float] | None = None
    summed_input_limit: float | None = None
    range_patches: int | None = None

    @property
    def in_range(self) -> bool:
        return self.summed_input_peaks is None or max(self.summed_input_peaks) < self.summed_input_limit

    @property
    def exact(self) -> bool:
        """Every spike and value equal (an SDNN within tolerance can still be exact)."""
        return self.passed and not self.max_abs_error

    @property
    def passed(self) -> bool:
        return (self.readout_mismatches == 0 and not any(self.layer_mismatched_patches)
                and not self.graded_mismatches and self.in_range)

    def to_dict(self) -> dict:
        return dict(asdict(self), exact=self.exact, passed=self.passed)


def sample_patches(net: SpikingRegNet, spacing: float, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` real-anatomy patch pairs (MNI T1 vs a randomly warped copy)."""
    from spikereg.data import load_mni, make_pair
    from spikereg.training.trainer import PatchSampler

    rng = np.random.default_rng(seed)
    base = load_mni("t1", spacing).data
    pair = make_pair(base, rng, max_displacement=net.config.max_displacement, control_spacing=8)
    batch = PatchSampler([pair], net.config.patch_size, net.reduction, rng).sample(count)
    return batch.fixed, batch.moving


def _is_flatten(block: torch.nn.Module) -> bool:
    """SLAYER's Flatten blocks reshape only; netx makes no Lava layer of them."""
    return type(block).__name__ == "Flatten"


def _is_graded(blocks) -> bool:
    return any(getattr(getattr(b, "neuron", None), "graded_spike", False) for b in blocks)


def slayer_layer_outputs(blocks, spikes: torch.Tensor) -> list[torch.Tensor]:
    """Every chip layer's output, in SLAYER's time (flatten blocks applied, not listed)."""
    outputs = []
    with torch.no_grad():
        for block in blocks:
            spikes = block(spikes)
            if not _is_flatten(block):
                outputs.append(spikes)
    return outputs


def _events(x: np.ndarray) -> np.ndarray:
    """Spikes per patch, summed over all but the patch axis (graded: nonzero values)."""
    return np.count_nonzero(x.reshape(x.shape[0], -1), axis=1)


def compare_on_lava(blocks, model_path: str | Path, frames: torch.Tensor, window: int,
                    precision: str = "fixed") -> Verification:
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
      delta encoder's step) within :data:`SDNN_TOLERANCE`; so is each patch's
      readout value at the end of its window (the sum of the readout's graded
      spikes since the stream began).
    """
    from lava_export.runner import LavaNetwork, from_lava

    start = time.perf_counter()
    graded = _is_graded(blocks)
    count = len(frames)
    with LavaNetwork(model_path, window=window, precision=precision) as lava:
        run = lava.run(frames.numpy(), keep_layers=graded)
    layers = len(run.layer_spikes)
    if not graded:
        padded = torch.nn.functional.pad(frames, (0, layers - 1))
        outputs = slayer_layer_outputs(blocks, padded)
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
    # SDNN: SLAYER on the same stream, batch of one, time concatenated.
    stream = torch.cat(list(frames), dim=-1)
    stream = torch.nn.functional.pad(stream, (0, layers - 1)).unsqueeze(0)
    outputs = [o[0].numpy() for o in slayer_layer_outputs(blocks, stream)]
    steps = stream.shape[-1]
    errors = [np.abs(from_lava(lava_values)[..., 1:1 + steps] - slayer)
              for lava_values, slayer in zip(run.layer_values, outputs)]
    max_graded = max(float(e.max()) for e in errors)
    slayer_layers = np.stack([
        _events(np.stack([o[..., k * window + i:(k + 1) * window + i] for k in range(count)]))
        for i, o in enumerate(outputs)
    ])
    ends = [(k + 1) * window + layers - 2 for k in range(count)]
    slayer_values = np.cumsum(outputs[-1], axis=-1)[..., ends]
    slayer_values = np.moveaxis(slayer_values, -1, 0)
    lava_values = run.readout.sum(axis=-1)
    difference = np.abs(lava_values - slayer_values)
    with torch.no_grad():  # each patch alone, from rest (the torch backend)
        padded = torch.nn.functional.pad(frames, (0, layers - 1))
        alone = slayer_layer_outputs(blocks, padded)[-1][..., :window + layers - 1].sum(dim=-1).numpy()
    return Verification(
        patches=count,
        time_steps_per_patch=window,
        alignment=(f"one stream of {count} x {window} steps + {layers - 1} drain steps, no reset; "
                   f"Lava layer l at step t+1 == SLAYER layer l at step t (host delta encoder: one step); "
                   f"patch k's readout value: the readout's summed graded spikes at step "
                   f"(k+1)*{window} + layers - 1"),
        layer_spikes_slayer=slayer_layers.sum(axis=1).tolist(),
        layer_spikes_lava=run.layer_spikes.sum(axis=1).tolist(),
        layer_mismatched_patches=(slayer_layers != run.layer_spikes).sum(axis=1).tolist(),
        readout_elements=int(difference.size),
        readout_mismatches=int((difference > SDNN_TOLERANCE).sum()),
        max_abs_error=float(difference.max()),
        precision=precision,
        seconds=time.perf_counter() - start,
        neuron="sdnn",
        tolerance=SDNN_TOLERANCE,
        tolerance_rule=(f"SDNN: graded values agree within {SDNN_TOLERANCE:g} (one graded-spike quantum, "
                        "2**-12): weights are multiples of 2**-5 and spikes of 2**-12 in both, so float32 "
                        f"is exact below {SDNN_EXACT_BELOW:g} and only its rounding above may move one "
                        "floor by one quantum"),
        max_graded_error=max_graded,
        graded_values_compared=int(sum(e.size for e in errors)),
        graded_mismatches=int(sum((e > SDNN_TOLERANCE).sum() for e in errors)),
        max_abs_value=float(max(np.abs(np.cumsum(o, axis=-1)).max() for o in outputs)),
        max_abs_spike=float(max(np.abs(o).max() for o in outputs)),
        per_patch_max_error=float(np.abs(lava_values - alone).max()),
    )


def verify(net: SpikingRegNet, model_path: Path, fixed: torch.Tensor, moving: torch.Tensor,
           precision: str = "fixed") -> Verification:
    """Run the same patches through SLAYER and through stock netx on Lava; compare (:func:`compare_on_lava`)."""
    with torch.no_grad():
        frames = net.encode(fixed, moving)[..., : net.window]
    return compare_on_lava(net.chip_layers, model_path, frames, net.window, precision)


def summed_input_peaks(net: SpikingRegNet, fixed: torch.Tensor, moving: torch.Tensor, batch: int = 64) -> list[float]:
    """SDNN: each conv/dense layer's largest ``|summed input|`` over the patches, in SLAYER (each from rest)."""
    peaks = np.zeros(len(net.blocks))
    with torch.no_grad():
        for first in range(0, len(fixed), batch):
            summed, _ = net.summed_inputs(net.encode(fixed[first:first + batch], moving[first:first + batch]))
            peaks = np.maximum(peaks, [float(s.abs().max()) for s in summed])
    return peaks.tolist()


def export_netx(
    net: SpikingRegNet,
    out: str | Path,
    *,
    spacing: float,
    run_defaults: dict | None = None,
    verify_patches: int = 4,
    precision: str = "fixed",
    profile: str | Path | NeuromorphicProfile | None = DEFAULT_PROFILE,
) -> Verification | None:
    """Write ``out`` (netx HDF5), ``out.map.json`` and, unless ``verify_patches`` is 0, ``out.verify.json``.

    ``profile`` (a shipped profile name, a YAML path, or None to skip) is the
    chip the network must fit: see :func:`check_hardware`. The file appears
    under its name only once it is complete, fits and is verified; otherwise
    :class:`MappingError` or :class:`VerificationError` is raised and nothing
    new is left at ``out``.
    """
    out = Path(out)
    chip = resolve_profile(profile) if profile is not None else None  # a bad name fails before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        net.export_hdf5(tmp, extra={"spacing_mm": spacing, "run": run_defaults or {}})
        # The chip check reads the file netx will read, and comes before the
        # (slow) verification: a network that cannot be placed is refused in seconds.
        mapping = check_hardware(tmp, chip, label=out) if chip is not None else None
        result = None
        if verify_patches:
            fixed, moving = sample_patches(net, spacing, verify_patches)
            result = verify(net, tmp, fixed, moving, precision)
            if net.input_block is not None:
                many = sample_patches(net, spacing, RANGE_PATCHES, seed=1)
                result = replace(result, summed_input_peaks=summed_input_peaks(net, *many),
                                 summed_input_limit=SDNN_SUMMED_INPUT_LIMIT, range_patches=RANGE_PATCHES)
            report = sidecar(out, "verify")
            write_text_atomic(report, json.dumps(result.to_dict(), indent=2))
            if not result.in_range:
                layer = int(np.argmax(result.summed_input_peaks))
                raise VerificationError(
                    f"export {out}: layer {layer + 1}'s summed input reaches {max(result.summed_input_peaks):.1f} "
                    f"on {RANGE_PATCHES} real-anatomy patches, past the +-{SDNN_SUMMED_INPUT_LIMIT:g} Lava and "
                    f"Loihi 2 carry (24 bits, 18 fractional; see {report}): on the chip it would wrap around. "
                    "Retrain with train.snn_range_weight > 0, or use --no-verify to keep it anyway")
            if not result.passed:
                # Name both: a corrupted early layer may change spike counts before the readout.
                beyond = f" beyond {result.tolerance:g}" if result.tolerance else ""
                raise VerificationError(
                    f"export {out}: Lava differs from SLAYER in {result.readout_mismatches} of "
                    f"{result.readout_elements} readout values{beyond} and in the spike counts of "
                    f"{sum(result.layer_mismatched_patches)} (layer, patch) pairs (see {report}); "
                    "use --no-verify to keep it anyway"
                )
        tmp.replace(out)
        map_json = sidecar(out, "map")
        if mapping is not None:
            write_text_atomic(map_json, json.dumps(mapping.to_dict(), indent=2))
        else:
            # A mapping left from an earlier export would describe another network.
            map_json.unlink(missing_ok=True)
        return result
    finally:
        tmp.unlink(missing_ok=True)
