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

Every export is verified (:mod:`lava_export.verify`): sample patches of real
anatomy go through SLAYER and through stock netx on Lava's fixed-point
simulator, and must agree (CUBA: spike for spike; SDNN: within one graded
quantum, summed inputs within the chip's 24 bits). The comparison lands in
``<model>.verify.json``.

Nothing appears at the output path unless every check passed: the file is
written under a temporary name and renamed at the end.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lava_export.verify import (
    RANGE_PATCHES,
    STRESS_KINDS,
    Verification,
    VerificationError,
    sample_patches,
    stress_patches,
    summed_input_peaks,
    verify,
)
from spikereg.data.io import write_text_atomic
from spikereg.errors import SpikeRegError
from spikereg.hardware import (
    MappingError,
    MappingReport,
    NeuromorphicProfile,
    ProfileError,
    check_fits,
    load_profile,
    map_network,
)
from spikereg.hardware.rules import exponent_problem, layer_problems
from spikereg.networks.bounds import provably_in_range, saturate_for_chip, summed_input_limit, worst_case_table
from spikereg.networks.snn import SpikingRegNet
from spikereg.netx_file import NetxFile, compress_file, layer_type, read_netx

DEFAULT_PROFILE = "loihi2"


def sidecar(model: str | Path, kind: str) -> Path:
    """``model.net`` -> ``model.<kind>.json`` beside it (``verify``, ``map``)."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".net") + f".{kind}.json")


def write_mapping(model: str | Path, mapping) -> None:
    """``model.map.json`` beside an exported file, or none: a mapping left from an earlier export would
    describe another network."""
    map_json = sidecar(model, "map")
    if mapping is not None:
        write_text_atomic(map_json, json.dumps(mapping.to_dict(), indent=2))
    else:
        map_json.unlink(missing_ok=True)


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


def check_precision(path: str | Path | NetxFile, profile: str | Path | NeuromorphicProfile,
                    label: str | Path | None = None) -> None:
    """Refuse weights, thresholds and decays the chip's registers cannot hold exactly.

    :func:`spikereg.hardware.map_network` sizes the network; this checks the
    numbers themselves against the register table of
    :mod:`spikereg.hardware.rules` (weights: even integers in
    ``[-2**weight_bits, 2**weight_bits - 2]`` with exponent 0 in the profile's
    range; ``vThMant`` in ``[0, 2**threshold_bits - 1]``; ``iDecay`` in
    ``[1, 2**decay_bits]``; ``vDecay`` in ``[0, 2**decay_bits - 1]``), the same
    table ``spikereg map`` lists its problems from, in the same words.

    A graph file's other edges (``graph/edge/K``, skips and upsampling) are
    checked after its layers. ``path`` may be the file already read. Raises
    :class:`MappingError` naming ``label`` (default ``path``), the layer or edge,
    the value and the profile limit: the first problem found.
    """
    chip = resolve_profile(profile)
    model = path if isinstance(path, NetxFile) else read_netx(path)
    label = str(label or model.path)
    exponent = exponent_problem(chip)
    if exponent is not None:
        raise MappingError(f"{label}: {exponent}")
    root = model.root
    layers = root["layer"]
    for name in sorted(layers, key=int):
        layer = layers[name]
        problems = layer_problems(layer, chip)
        if problems:
            raise MappingError(f"{label}: layer {name} ({layer_type(layer)}): {problems[0]}")
    edges = root.get("graph/edge", {})
    for name in sorted(edges, key=int):
        problems = layer_problems(edges[name], chip)
        if problems:
            raise MappingError(f"{label}: edge {name}: {problems[0]}")


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
    # The report lists register problems too; check_precision first names the first of them
    # on its own, then check_fits names every limit the network exceeds.
    check_precision(path, chip, label)
    check_fits(report)
    return report


def range_summary(model: str | Path) -> str:
    """One line: the exported file's worst cases against the chip's limits (``<model>.verify.json`` not needed)."""
    net = SpikingRegNet.from_netx(model)
    table = worst_case_table(net)
    worst = max(table, key=lambda row: row.bound / row.limit)
    verdict = "provably within" if all(row.ok for row in table) else "NOT provably within"
    saturated = [f"layer {i + 1} at {c:g}" for i, c in enumerate(net.config.clamp) if c > 0]
    how = (f"; spike_exp {net.config.spike_exp}, saturated: {', '.join(saturated)}" if saturated
           else f"; spike_exp {net.config.spike_exp}" if net.input_block is not None else "")
    return (f"range: {verdict} the chip's integer widths for every input (closest: layer {worst.layer}'s "
            f"{worst.quantity}, worst case {worst.bound:,.1f} of +-{worst.limit:,.0f}{how})")


def mapping_summary(report: dict) -> str:
    """One line from a mapping report's ``to_dict()``: cores, chips and the verdict."""
    verdict = "fits on one chip" if report["fits_one_chip"] else "does NOT fit on one chip"
    return (f"mapped onto {report['profile_name']}: {report['total_neurons']:,} neurons, "
            f"{report['cores']} cores of {report['cores_per_chip']} per chip -> "
            f"{report['chips']} chip(s): {verdict}")


RANGE_MODES = ("proven", "guarded", "saturate")


class RangeError(SpikeRegError, ValueError):
    """A network some input could drive past the chip's integer widths."""


def _range_refusal(out: Path, table: list) -> RangeError:
    worst = max((row for row in table if not row.ok), key=lambda row: row.bound / row.limit)
    return RangeError(f"export {out}: {worst.describe()} for some input (interval bound over every input the "
                      "host can send), and there it would wrap around. Use --range guarded to export it with "
                      "every run checking its layers (a run that reaches the range stops), or --range saturate "
                      "(sigma-delta: provable, at a precision cost; README, 'The chip's range')")


def chip_ready(net: SpikingRegNet, mode: str = "proven", spike_exp: int | None = None) -> SpikingRegNet:
    """The network export writes: with ``spike_exp`` (sigma-delta) on that graded-spike grid, and for
    ``--range saturate`` made provably in range (:func:`spikereg.networks.bounds.saturate_for_chip`)."""
    if mode not in RANGE_MODES:
        raise ValueError(f"--range {mode!r}: choose one of {', '.join(RANGE_MODES)}")
    if spike_exp is not None and spike_exp != net.config.spike_exp:
        if net.input_block is None:
            raise ValueError("--spike-exp applies to sigma-delta (sdnn) networks")
        if not 0 <= spike_exp <= 6:
            raise ValueError(f"--spike-exp {spike_exp}: must be an integer in [0, 6]")
        rebuilt = SpikingRegNet(replace(net.config, spike_exp=spike_exp))
        rebuilt.load_state_dict(net.state_dict())
        net = rebuilt.eval()
    if mode == "saturate":
        if net.input_block is None:
            raise ValueError("--range saturate applies to sigma-delta (sdnn) networks")
        if not provably_in_range(net):
            return saturate_for_chip(net)
    return net


def export_netx(
    net: SpikingRegNet,
    out: str | Path,
    *,
    spacing: float,
    run_defaults: dict | None = None,
    verify_patches: int = 4,
    precision: str = "fixed",
    profile: str | Path | NeuromorphicProfile | None = DEFAULT_PROFILE,
    range_mode: str = "proven",
    spike_exp: int | None = None,
    stream: bool = False,
) -> Verification | None:
    """Write ``out`` (netx HDF5), ``out.map.json`` and, unless ``verify_patches`` is 0, ``out.verify.json``.

    ``profile`` (a shipped profile name, a YAML path, or None to skip) is the
    chip the network must fit: see :func:`check_hardware`. ``range_mode``:
    ``proven`` requires every layer's worst case over every input
    (:func:`~spikereg.networks.bounds.worst_case_table`, on the file's own
    integers) within the chip's widths; ``guarded`` records the bounds and
    refuses nothing (runs then check their layers and stop at the range);
    ``saturate`` first makes a sigma-delta network provable (:func:`chip_ready`).
    ``spike_exp`` re-grids a sigma-delta network's graded spikes; ``stream``
    marks a sigma-delta file to stream its patches (no return to rest between
    them: what a Loihi 2 chip runs, see README "Running on Loihi 2") instead of
    running each from rest. Verification
    streams template patches and :func:`~lava_export.verify.stress_patches`
    through Lava. The file appears under its name only once it is complete,
    fits and is verified; otherwise :class:`MappingError`, :class:`RangeError`
    or :class:`VerificationError` is raised and nothing new is left at ``out``.
    """
    out = Path(out)
    chip = resolve_profile(profile) if profile is not None else None  # a bad name fails before any work
    net = chip_ready(net, range_mode, spike_exp)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        # SDNN files run every patch from rest on every backend (SpikingRegNet.from_rest): no stream, so no
        # truncation drift from one patch to the next, and a patch's answer never depends on the ones before.
        # ``stream``: patches back to back instead, as Lava runs netx files on a chip without a reset
        from_rest = net.input_block is not None and not stream
        net.export_hdf5(tmp, extra={"spacing_mm": spacing, "run": run_defaults or {}, "from_rest": from_rest})
        compress_file(tmp)  # what is checked and verified below is the file as shipped
        # The chip check reads the file netx will read, and comes before the
        # (slow) verification: a network that cannot be placed is refused in seconds.
        mapping = check_hardware(tmp, chip, label=out) if chip is not None else None
        table = worst_case_table(SpikingRegNet.from_netx(tmp))  # the file's own numbers
        if range_mode != "guarded" and not all(row.ok for row in table):
            raise _range_refusal(out, table)
        result = None
        if verify_patches:
            fixed, moving = sample_patches(net, spacing, verify_patches)
            stress_f, stress_m = stress_patches(fixed, moving)
            if net.input_block is not None:  # SLAYER computes what the chip computes, past its range too
                net.mirror_chip(True)
            try:
                result = verify(net, tmp, torch.cat([fixed, stress_f]), torch.cat([moving, stress_m]), precision,
                                from_rest=from_rest)
            finally:
                if net.input_block is not None:
                    net.mirror_chip(False)
            result = replace(result, worst_case=[asdict(row) for row in table], stress_kinds=list(STRESS_KINDS))
            if net.input_block is not None:
                many_f, many_m = sample_patches(net, spacing, RANGE_PATCHES, seed=1)
                extra_f, extra_m = stress_patches(many_f, many_m, seed=1)
                peaks = summed_input_peaks(net, torch.cat([many_f, extra_f]), torch.cat([many_m, extra_m]))
                result = replace(result, summed_input_peaks=peaks,
                                 summed_input_limit=summed_input_limit(net.config.spike_exp),
                                 range_patches=RANGE_PATCHES + len(STRESS_KINDS))
            report = sidecar(out, "verify")
            write_text_atomic(report, json.dumps(result.to_dict(), indent=2))
            # No sampled-range refusal: outside --range guarded the worst case over every input,
            # which bounds every sample, has been checked already.
            if not result.matched:
                # Name both: a corrupted early layer may change spike counts before the readout.
                beyond = f" beyond {result.tolerance:g}" if result.tolerance else ""
                raise VerificationError(
                    f"export {out}: Lava differs from SLAYER in {result.readout_mismatches} of "
                    f"{result.readout_elements} readout values{beyond} and in the spike counts of "
                    f"{sum(result.layer_mismatched_patches)} (layer, patch) pairs (see {report}); "
                    "use --no-verify to keep it anyway"
                )
        tmp.replace(out)
        write_mapping(out, mapping)
        return result
    finally:
        tmp.unlink(missing_ok=True)
