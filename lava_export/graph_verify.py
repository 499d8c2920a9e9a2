"""Prove a graph export on Lava: the same stream through the SLAYER U-Net and through the Lava graph.

:func:`compare_graph` streams patches back to back (each held ``window``
steps, then silent steps until the longest path has drained) through
:class:`~spikereg.networks.unet.SpikingUNet` and through
:class:`~lava_export.graph_builder.LavaGraph` on Lava's fixed-point models,
and compares every layer's graded spikes at every step (Lava's step ``t + 1``
against SLAYER's ``t``: the host's delta encoder) within one graded quantum,
and each patch's readout value (its summed graded spikes at the end of the
patch's window). It also *measures* each layer's delay in both: the first
step at which it sends anything after the stream starts (SLAYER: the longest
path from the input, in steps; Lava: one more), and checks every edge's and
node's worst case over every input against the chip's range
(:func:`spikereg.networks.graph_bounds.graph_worst_case_table`).
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lava_export.graph_builder import LavaGraph
from lava_export.graph_file import export_graph
from lava_export.netx import check_precision, sidecar, write_mapping
from lava_export.verify import STRESS_KINDS, graded_quantum, stress_patches
from spikereg.data import load_mni
from spikereg.data.io import write_text_atomic
from spikereg.errors import SpikeRegError
from spikereg.hardware.graph_mapping import map_graph
from spikereg.networks.encoding import hold_encode, input_features, rate_encode
from spikereg.networks.folding import fold_volume
from spikereg.networks.graph_bounds import graph_cuba_table, graph_worst_case_table
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.snn import stream_of
from spikereg.netx_file import compress_file, load_model


class GraphVerificationError(SpikeRegError, RuntimeError):
    """Lava's output differs from SLAYER's for an exported graph."""


@dataclass
class GraphVerification:
    patches: int
    window: int
    steps: int
    layers: list[str]
    max_error: list[float]  # per layer, largest |Lava - SLAYER| over every unit and step
    mismatches: list[int]  # per layer, values beyond the tolerance
    messages_slayer: list[int]
    messages_lava: list[int]
    first_step_slayer: list[int | None]  # measured delay: first step the layer sends anything
    first_step_lava: list[int | None]
    readout_elements: int
    readout_mismatches: int
    readout_max_error: float
    tolerance: float
    seconds: float
    edges: list[dict]  # per edge: source, destination, kind, delay (as built)
    worst_case: list[dict]
    precision: str = "fixed"
    neuron: str = "sdnn"
    lava_compile_seconds: float = 0.0  # compile and first chunk's start
    lava_run_seconds: float = 0.0  # streaming every step
    synapses: str = "conv"  # how Lava held each conv edge (spikereg.hardware.rules.SYNAPSE_BUILDS)

    @property
    def matched(self) -> bool:
        return not any(self.mismatches) and self.readout_mismatches == 0

    @property
    def provably_in_range(self) -> bool | None:
        """Every edge's and node's worst case within the chip's widths (SDNN: +-32 or 2048; CUBA: 24-bit u, v)."""
        if not self.worst_case:
            return None
        return all(row["bound"] < row["limit"] for row in self.worst_case)

    @property
    def passed(self) -> bool:
        return self.matched

    def to_dict(self) -> dict:
        return dict(asdict(self), matched=self.matched, passed=self.passed,
                    provably_in_range=self.provably_in_range)


def _first_step(values: np.ndarray) -> int | None:
    busy = np.flatnonzero(np.abs(values.reshape(-1, values.shape[-1])).sum(axis=0))
    return int(busy[0]) if busy.size else None


def compare_graph(net, model_path: str | Path, frames: torch.Tensor, synapses: str = "conv") -> GraphVerification:
    """Stream ``frames`` ``(P, P*C_in, P, P, window)`` through SLAYER and through Lava; compare.

    * SDNN (graded levels): no reset; SLAYER runs the very same stream, and
      Lava's step ``t + 1`` is compared with SLAYER's ``t``; tolerance one
      graded quantum.
    * CUBA (binary spikes): every layer resets each window, staggered by its
      path length ``L`` (:class:`~lava_export.graph_builder.LavaGraph`); SLAYER
      runs each patch alone from rest, and layer answers patch ``k`` in Lava's
      steps ``[k*w + L - 1, (k+1)*w + L - 1)`` and SLAYER's ``[L - 1, w + L - 1)``;
      every spike must be equal (leave each patch's last input step silent).

    ``synapses``: how Lava holds each conv edge (:data:`~spikereg.hardware.rules.SYNAPSE_BUILDS`).
    """
    start = time.perf_counter()
    count, window = len(frames), frames.shape[-1]
    longest = net.path_lengths[net.nodes[-1].name]
    lengths = [net.path_lengths[n.name] for n in net.nodes]
    graded = net.config.graded
    stream = stream_of(frames, longest + 1)
    steps = stream.shape[-1]
    with LavaGraph(model_path, window=None if graded else window, synapses=synapses) as graph:
        run = graph.run(np.pad(stream.numpy(), [(0, 0)] * (stream.dim() - 1) + [(0, 1)]))
    if graded:
        with torch.no_grad():
            slayer = [o[0].double().numpy() for o in net.node_outputs(stream.unsqueeze(0))]
        tolerance = graded_quantum(net.chip_layers)
        lava = [v[..., 1:1 + steps] for v in run.values]
        ends = (np.arange(1, count + 1) * window + longest - 1).clip(max=steps - 1)
        readout_slayer = np.cumsum(slayer[-1], axis=-1)[..., ends]
        readout_lava = np.cumsum(lava[-1], axis=-1)[..., ends]
        first_slayer, first_lava = [_first_step(s) for s in slayer], [_first_step(v) for v in run.values]
    else:
        with torch.no_grad():
            alone = [o.double().numpy() for o in
                     net.node_outputs(torch.nn.functional.pad(frames, (0, longest + 1)))]
        tolerance = 0.0
        # every layer's answers, patch after patch, on one time axis: (*shape, P*w)
        slayer = [np.concatenate([o[k, ..., max(length - 1, 0):max(length - 1, 0) + window] for k in range(count)],
                                 axis=-1) for o, length in zip(alone, lengths)]
        lava = [v[..., max(length - 1, 0):max(length - 1, 0) + count * window]
                for v, length in zip(run.values, lengths)]
        readout_slayer = np.stack([s.sum(axis=-1) for s in np.split(slayer[-1], count, axis=-1)])
        readout_lava = np.stack([s.sum(axis=-1) for s in np.split(lava[-1], count, axis=-1)])
        first_slayer = [_first_step(o[0]) for o in alone]
        first_lava = [_first_step(v) for v in run.values]
    errors = [np.abs(a - b) for a, b in zip(lava, slayer)]
    readout_error = np.abs(readout_lava - readout_slayer)
    return GraphVerification(
        patches=count, window=window, steps=steps, layers=list(run.names),
        max_error=[float(e.max()) for e in errors],
        mismatches=[int((e > tolerance).sum()) for e in errors],
        messages_slayer=[int(np.count_nonzero(s)) for s in slayer],
        messages_lava=[int(np.count_nonzero(v)) for v in lava],
        first_step_slayer=first_slayer,
        first_step_lava=first_lava,
        readout_elements=int(readout_error.size),
        readout_mismatches=int((readout_error > tolerance).sum()),
        readout_max_error=float(readout_error.max()),
        tolerance=tolerance,
        seconds=time.perf_counter() - start,
        edges=[{"source": e.source, "destination": e.destination, "kind": e.kind, "delay": e.delay,
                "primary": e.primary} for e in graph.edges],
        worst_case=[asdict(row) for row in (graph_worst_case_table(net) if graded
                                            else graph_cuba_table(net, window))],
        neuron=net.config.neuron,
        lava_compile_seconds=run.compile_seconds,
        lava_run_seconds=run.run_seconds,
        synapses=synapses,
    )


@functools.lru_cache(maxsize=2)
def _template_t1(spacing: float) -> torch.Tensor:
    return torch.as_tensor(np.asarray(load_mni("t1", spacing).data, dtype=np.float32))


def template_pairs(size: int, count: int, spacing: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` real-anatomy patch pairs ``(count, 1, size, size, size)``: the MNI T1 at ``spacing`` mm against the
    same anatomy shifted 1-2 voxels, patches that are mostly brain."""
    rng = np.random.default_rng(seed)
    volume = _template_t1(float(spacing))
    margin = 2
    fixed, moving = [], []
    while len(fixed) < count:
        corner = [int(rng.integers(margin, s - size - margin)) for s in volume.shape]
        shift = [int(v) for v in rng.integers(-margin, margin + 1, 3)]
        f = volume[tuple(slice(c, c + size) for c in corner)]
        if float(f.mean()) < 0.2:  # mostly background: draw again
            continue
        fixed.append(f)
        moving.append(volume[tuple(slice(c + s, c + s + size) for c, s in zip(corner, shift))])
    return torch.stack(fixed)[:, None], torch.stack(moving)[:, None]


def template_frames(net, count: int, window: int, spacing: float = 2.0, seed: int = 0,
                    stress: bool = True, time_steps: int | None = None) -> torch.Tensor:
    """``count`` real-anatomy patch pairs (MNI T1 at ``spacing`` mm vs the same anatomy shifted 1-2 voxels),
    plus (``stress``) one pair of each :data:`lava_export.verify.STRESS_KINDS`: SDNN, graded levels held
    ``window`` steps; CUBA, a rate code over ``time_steps`` (default ``window // 2``) then silence."""
    fixed, moving = template_pairs(net.config.patch_size, count, spacing, seed)
    if stress:
        extra_f, extra_m = stress_patches(fixed, moving, seed=seed)
        fixed, moving = torch.cat([fixed, extra_f]), torch.cat([moving, extra_m])
    features = input_features(fixed, moving)
    if features.shape[1] != net.config.in_channels:
        raise ValueError(f"the input code gives {features.shape[1]} channels, the network takes "
                         f"{net.config.in_channels}")
    if net.config.graded:
        return fold_volume(hold_encode(features, window))
    return fold_volume(rate_encode(features, time_steps or window // 2, window))


def report_of(result: GraphVerification, net) -> dict:
    """``<model>.verify.json`` for a graph: the totals, then one entry per layer and one per edge."""
    data = result.to_dict()
    rows = data.pop("worst_case")
    data["per_layer"] = [
        {"layer": i, "name": name, "path_length": net.path_lengths[name], "max_error": result.max_error[i],
         "mismatches": result.mismatches[i], "messages_slayer": result.messages_slayer[i],
         "messages_lava": result.messages_lava[i], "first_step_slayer": result.first_step_slayer[i],
         "first_step_lava": result.first_step_lava[i],
         "worst_case": [r for r in rows if r["layer"] == i and not r["quantity"].startswith("edge ")]}
        for i, name in enumerate(result.layers)]
    per_edge = []
    for k, edge in enumerate(data.pop("edges")):
        name = f"{result.layers[edge['source']]}->{result.layers[edge['destination']]}"
        bound = [r for r in rows if r["quantity"] == f"edge {name} synaptic input per step"]
        per_edge.append(dict(edge, edge=k, name=name, worst_case=bound[0] if bound else None))
    data["per_edge"] = per_edge
    return data


def export_graph_verified(net, out: str | Path, *, patches: int = 3, window: int | None = None,
                          spacing: float = 2.0, range_mode: str = "guarded", stress: bool = True) -> GraphVerification:
    """Write ``out`` (graph netx file) and ``out.verify.json``, only if Lava reproduces SLAYER on it.

    ``range_mode`` ``proven`` refuses an SDNN graph whose worst case over every
    input, on some edge or node, passes the chip's widths; ``guarded`` records
    the bounds only. Verification streams ``patches`` real-anatomy pairs (and
    the stress pairs) through both. Nothing appears at ``out`` unless every
    check passed.
    """
    if range_mode not in ("proven", "guarded"):
        raise ValueError(f"range_mode {range_mode!r}: choose proven or guarded")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    window = window or (8 if net.config.graded else 16)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        export_graph(net, tmp, extra={"window": window, "spacing_mm": spacing})
        if range_mode == "proven" and net.config.graded:
            bad = [row for row in graph_worst_case_table(net) if not row.ok]
            if bad:
                worst = max(bad, key=lambda row: row.bound / row.limit)
                raise GraphVerificationError(f"export {out}: {worst.describe()} for some input; "
                                             "use range_mode='guarded' to export it anyway")
        frames = template_frames(net, patches, window, spacing=spacing, stress=stress)
        result = compare_graph(net, tmp, frames)
        report = sidecar(out, "verify")
        write_text_atomic(report, json.dumps(report_of(result, net), indent=2))
        if not result.matched:
            bad = [f"{name} ({n})" for name, n in zip(result.layers, result.mismatches) if n]
            raise GraphVerificationError(f"export {out}: Lava differs from SLAYER beyond {result.tolerance:g} in "
                                         f"layers {', '.join(bad) or '-'} and in {result.readout_mismatches} "
                                         f"readout values (see {report})")
        tmp.replace(out)
        return result
    finally:
        tmp.unlink(missing_ok=True)


# -- the registration U-Net: export, proof and verification from rest ------------------------

VERIFY_BATCH = 2  # patches per Lava call in verification: every node's every step comes back (memory)


@dataclass
class RestVerification:
    """Lava's from-rest run of a graph file against SLAYER's one pass (:meth:`SpikingGraph.from_rest`)."""

    patches: int
    window: int
    layers: list[str]
    path_lengths: list[int]
    max_error: list[float]  # per layer: largest |Lava - SLAYER| over units, patches and the answering step
    stray_messages: list[int]  # per layer: Lava messages on any other step of a patch's window
    messages_slayer: list[int]
    messages_lava: list[int]
    readout_elements: int
    readout_mismatches: int
    tolerance: float
    kinds: list[str]  # what each patch is: template, or a stress kind
    seconds: float
    lava_compile_seconds: float
    lava_run_seconds: float
    worst_case: list[dict]
    synapses: str = "conv"  # how Lava held each conv edge (spikereg.hardware.rules.SYNAPSE_BUILDS)

    @property
    def matched(self) -> bool:
        return self.readout_mismatches == 0 and not any(self.stray_messages) and \
            all(e <= self.tolerance for e in self.max_error)

    @property
    def provably_in_range(self) -> bool:
        return all(row["bound"] < row["limit"] for row in self.worst_case)

    def to_dict(self) -> dict:
        return dict(asdict(self), matched=self.matched, provably_in_range=self.provably_in_range,
                    mode="every patch from rest: Lava's step L + 1 against SLAYER's one pass, L the node's "
                         "longest path (the host's delta encoder adds one step)")


def verify_from_rest(net, model_path: str | Path, fixed: torch.Tensor, moving: torch.Tensor,
                     kinds: list[str], synapses: str = "conv") -> RestVerification:
    """Each patch pair through Lava from rest (:meth:`LavaGraph.run_patches`) and through ``net.from_rest``.

    ``net`` is the file's own :class:`~spikereg.networks.graph_model.GraphRegNet`.
    Every node must send, on Lava, exactly SLAYER's graded spikes at step
    ``L + 1`` of the patch's window and nothing on any other step (a biased
    readout also its bias at the window's first step: its window's sum is
    compared).
    """
    start = time.perf_counter()
    window = net.window
    lengths = [net.path_lengths[node.name] for node in net.nodes]
    tolerance = graded_quantum(net.chip_layers)
    layers = len(net.nodes)
    biased = net.readout_bias > 0
    max_error, stray = [0.0] * layers, [0] * layers
    sent_slayer, sent_lava = [0] * layers, [0] * layers
    readout_elements = readout_mismatches = 0
    compile_seconds = run_seconds = 0.0
    with LavaGraph(model_path, synapses=synapses) as graph:
        for first in range(0, len(fixed), VERIFY_BATCH):
            cut = slice(first, first + VERIFY_BATCH)
            with torch.no_grad():
                levels = net.levels(fixed[cut], moving[cut])
                messages = []
                slayer = [fold_volume(v).double().numpy() for v in net.from_rest(levels, keep=True, messages=messages)]
            run = graph.run_patches(fold_volume(levels).numpy(), window, stop=False)
            compile_seconds += run.compile_seconds
            run_seconds += run.run_seconds
            for i, (lava, ours) in enumerate(zip(run.values, slayer)):
                if i == layers - 1 and biased:  # a biased readout sends its bias first: its value is the sum
                    answer = lava.sum(axis=-1)
                    others = np.delete(lava, [0, lengths[i] + 1], axis=-1)
                else:
                    answer = lava[..., lengths[i] + 1]
                    others = np.delete(lava, lengths[i] + 1, axis=-1)
                max_error[i] = max(max_error[i], float(np.abs(answer - ours).max()))
                stray[i] += int(np.count_nonzero(others))
                sent_slayer[i] += int(messages[i].sum())
                sent_lava[i] += int(np.count_nonzero(lava))
                if i == layers - 1:
                    readout_elements += int(answer.size)
                    readout_mismatches += int((np.abs(answer - ours) > tolerance).sum())
    return RestVerification(
        patches=len(fixed), window=window, layers=[node.name for node in net.nodes], path_lengths=lengths,
        max_error=max_error, stray_messages=stray, messages_slayer=sent_slayer, messages_lava=sent_lava,
        readout_elements=readout_elements, readout_mismatches=readout_mismatches, tolerance=tolerance,
        kinds=kinds, seconds=time.perf_counter() - start, lava_compile_seconds=compile_seconds,
        lava_run_seconds=run_seconds, worst_case=[asdict(row) for row in graph_worst_case_table(net)],
        synapses=synapses)


def verification_patches(net, spacing: float, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list]:
    """``count`` template patch pairs (:func:`template_pairs`) and one of each stress kind, with what each is."""
    fixed, moving = template_pairs(net.patch_size, count, spacing, seed)
    extra_f, extra_m = stress_patches(fixed, moving, seed=seed)
    kinds = ["template"] * count + list(STRESS_KINDS)
    return torch.cat([fixed, extra_f]), torch.cat([moving, extra_m]), kinds


def export_unet(net, out: str | Path, *, spacing: float, run_defaults: dict | None = None,
                verify_patches: int = 4, profile=None) -> RestVerification | None:
    """Write a registration U-Net (:class:`~spikereg.networks.graph_model.GraphRegNet`) as a graph netx file.

    The file must be proven in range for every input (every edge and node,
    :func:`~spikereg.networks.graph_bounds.graph_worst_case_table` on the file's
    own integers: refused otherwise, naming the quantity and the figure), and,
    unless ``verify_patches`` is 0, Lava must reproduce SLAYER on it from rest
    (:func:`verify_from_rest`) on template patches and one of each stress kind
    (:data:`lava_export.verify.STRESS_KINDS`). ``profile`` (a neuromorphic
    profile or None): its registers must hold every layer's and edge's numbers
    (:func:`~lava_export.netx.check_precision`), and ``<model>.map.json`` sizes it
    on that chip, edge by edge (several chips allowed: a 32^3 U-Net does not fit one). Nothing appears at
    ``out`` unless every check passed.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        export_graph(net, tmp, extra={"spacing_mm": spacing, "run": run_defaults or {}})
        compress_file(tmp)  # what is checked and verified below is the file as shipped
        written = load_model(tmp)  # read once (decompressed) for every check below
        again = GraphRegNet.from_file(written)  # the file's own numbers
        bad = [row for row in graph_worst_case_table(again) if not row.ok]
        if bad:
            worst = max(bad, key=lambda row: row.bound / row.limit)
            raise GraphVerificationError(f"export {out}: {worst.describe()} for some input: not proven in the "
                                         "chip's range (train it with model.architecture unet, whose conversion "
                                         "and fine-tuning keep it there)")
        mapping = None
        if profile is not None:
            check_precision(written, profile, out)  # every layer's and edge's numbers in the chip's registers
            mapping = map_graph(written, profile)
        result = None
        if verify_patches:
            fixed, moving, kinds = verification_patches(again, spacing, verify_patches)
            result = verify_from_rest(again, tmp, fixed, moving, kinds)
            report = sidecar(out, "verify")
            write_text_atomic(report, json.dumps(result.to_dict(), indent=2))
            if not result.matched:
                bad = [f"{name} ({e:g}, {s} stray)" for name, e, s in
                       zip(result.layers, result.max_error, result.stray_messages) if e > result.tolerance or s]
                raise GraphVerificationError(f"export {out}: Lava differs from SLAYER from rest in {', '.join(bad)}"
                                             f" and {result.readout_mismatches} readout values (see {report}); "
                                             "use --no-verify to keep it anyway")
        tmp.replace(out)
        write_mapping(out, mapping)
        return result
    finally:
        tmp.unlink(missing_ok=True)
