"""What the spiking network did, counted event by event: spikes, synaptic operations, neuron updates.

A plain functional core shared by every backend (SLAYER in PyTorch, Lava's
simulator, a Loihi 2 chip). A backend hands over, for each patch, how often
each neuron spiked (the input's encoded spikes and every layer's); the counts
here turn them into synaptic operations with the *exact* fan-out of each
neuron, read from the netx file:

* **Fan-out** of a presynaptic neuron = the synapses leaving it in the layer it
  feeds: for a convolution, the (output position, kernel tap) pairs that read
  it, found as the gradient of ``sum(conv2d(x, mask))`` with respect to ``x``
  (so stride, padding, dilation and groups count exactly as in the layer; a
  neuron at a padded border feeds fewer taps); for a dense layer, the number of
  outputs. ``mask`` is all ones for the synapses the chip stores, ``weight != 0``
  for the *effective* ones; their difference is the structural zeros (the zero
  depth blocks of depth folding, and weights that quantised to zero).
* **Synaptic operations** into layer ``l`` = sum over the neurons of its source
  population (the input for layer 1, layer ``l-1`` otherwise) of spikes x
  fan-out. The readout's spikes leave the network and drive none.
* **Neuron updates** = neurons x time steps run: every compartment is updated
  on every step.
* **Mean spike rate** = layer spikes / neuron updates.

Counts are kept per patch for each refinement iteration (one backend call) and
summed per iteration and per registration by :func:`counts_section`, which
writes the ``counts`` section of ``report.json``.

A *raster* is one patch's spikes, per time step and neuron, for the report's
raster plot: ``raster.npz`` in the run folder (boolean arrays, compressed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from spikereg.errors import SpikeRegError
from spikereg.hardware.activity import layer_fanout
from spikereg.hardware.netx_layers import read_network
from spikereg.netx_file import Group, NetxFile, is_dataset, netx_text

RASTER_NAME = "raster.npz"
BRAIN_THRESHOLD = 0.1  # a patch shows brain where a normalized intensity exceeds this
COUNTS_METHOD = "exact per-neuron fan-out of the netx file x each neuron's measured spikes"


class CountError(SpikeRegError, ValueError):
    """Spike counts that do not fit the network; the message is one line."""


# -- fan-out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fanout:
    """Synapses leaving each neuron of the population that feeds netx layer ``index``.

    Arrays are flat, in SLAYER's ``(C, H, W)`` order of the source population.
    """

    index: int
    type: str
    neurons: int  # of the layer fed
    total: np.ndarray  # stored synapses, zero weights included
    nonzero: np.ndarray  # synapses with a nonzero weight

    @property
    def source_neurons(self) -> int:
        return int(self.total.size)


def _pair(group: Group, name: str) -> tuple[int, int]:
    values = np.asarray(group[name][()]).reshape(-1).astype(int)
    return (int(values[0]), int(values[0])) if values.size == 1 else (int(values[0]), int(values[1]))


def conv_fanout(weight: np.ndarray, in_shape: Sequence[int], stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int], groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(total, nonzero) fan-out of each ``(C, H, W)`` input neuron of a 2-D convolution, flat."""
    if weight.ndim == 5 and weight.shape[-1] == 1:  # SLAYER's trailing time axis
        weight = weight[..., 0]
    result = []
    for mask in (np.ones(weight.shape), (weight != 0).astype(np.float64)):
        x = torch.ones((1, *in_shape), dtype=torch.float64, requires_grad=True)
        y = torch.nn.functional.conv2d(x, torch.from_numpy(mask), stride=stride, padding=padding,
                                       dilation=dilation, groups=groups)
        y.sum().backward()
        result.append(np.rint(x.grad[0].numpy()).astype(np.int64).reshape(-1))
    return result[0], result[1]


def fanouts(source: str | Path | NetxFile) -> list[Fanout]:
    """One :class:`Fanout` per spiking layer of the netx file at ``source`` (or that file already read), in order.

    The file is first checked and sized by :func:`spikereg.hardware.map_network`
    (clear errors for files netx cannot load); the synapse totals here must equal
    its per-layer counts.
    """
    model = source if isinstance(source, NetxFile) else read_network(source)
    path = model.path
    costs = layer_fanout(model)  # validates the file; per-layer synapse totals to check against
    result: list[Fanout] = []
    layers = model.layers
    shape: Optional[tuple[int, ...]] = None
    for index in range(len(layers)):
        group = layers[str(index)]
        kind = netx_text(group["type"][()])
        if kind == "input":
            shape = tuple(int(s) for s in np.asarray(group["shape"][()]).reshape(-1))
            if "neuron" in group:
                raise CountError(f"{path}: an input layer with neurons (an on-chip input block, or a "
                                 "sigma-delta input delta-encoded on the host) is not supported by the "
                                 "per-neuron counts")
            continue
        if kind == "flatten":
            shape = (int(np.prod(shape)),)
            continue
        out_shape = tuple(int(s) for s in np.asarray(group["shape"][()]).reshape(-1))
        weight = np.asarray(group["weight"][()]) if is_dataset(group.get("weight")) else None
        if kind == "conv" and weight is not None:
            total, nonzero = conv_fanout(weight, shape, _pair(group, "stride"), _pair(group, "padding"),
                                         _pair(group, "dilation"), int(np.asarray(group["groups"][()])))
        elif kind == "dense" and weight is not None:
            weight = weight.reshape(int(np.prod(out_shape)), -1)
            total = np.full(weight.shape[1], weight.shape[0], dtype=np.int64)
            nonzero = (weight != 0).sum(axis=0).astype(np.int64)
        else:
            raise CountError(f"{path}: layer {index} ({kind}): per-neuron counts support conv and dense "
                             "layers with real weights only")
        result.append(Fanout(index, kind, int(np.prod(out_shape)), total, nonzero))
        shape = out_shape
    for fan, cost in zip(result, costs):
        if int(fan.total.sum()) != cost.synapses or int(fan.nonzero.sum()) != cost.nonzero_synapses:
            raise CountError(f"{path}: layer {fan.index}: fan-out sums ({int(fan.total.sum())}, "
                             f"{int(fan.nonzero.sum())}) differ from the mapping's synapse counts "
                             f"({cost.synapses}, {cost.nonzero_synapses})")
    return result


# -- counting ----------------------------------------------------------------------------


@dataclass
class PatchCounts:
    """Counts of one backend call (one refinement iteration), per patch and per spiking layer.

    The ``step_*`` arrays hold the same counts per time step of a patch's window,
    summed over the call's patches (synops indexed by the step their source spiked).
    """

    input_spikes: np.ndarray  # (P,)
    spikes: np.ndarray  # (P, L) spikes of each layer
    synops_effective: np.ndarray  # (P, L) synaptic operations into each layer on nonzero weights
    synops_structural_zeros: np.ndarray  # (P, L) ... on zero weights
    time_steps: int  # steps this call ran (all patches, pipeline drain included)
    window: int  # steps one patch occupies
    step_input: np.ndarray  # (T,)
    step_spikes: np.ndarray  # (L, T)
    step_synops_effective: np.ndarray  # (L, T)
    step_synops_structural_zeros: np.ndarray  # (L, T)

    @property
    def patches(self) -> int:
        return int(len(self.input_spikes))

    @property
    def events(self) -> np.ndarray:
        """(P, L) spikes arriving at each layer: the input's at layer 1, layer l-1's at layer l."""
        return np.concatenate([self.input_spikes[:, None], self.spikes[:, :-1]], axis=1)


def _per_patch_and_step(spikes: torch.Tensor | np.ndarray, binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(P, ..., T)`` spikes (0/1, or graded values whose nonzeros are messages) ->
    per-patch counts ``(P, N)`` and per-step counts ``(N, T)`` summed over patches.

    ``binary``: the caller guarantees every value is 0 or 1, so the counts are
    plain float32 sums (exact: far below 2**24), about ten times cheaper than
    counting nonzeros; graded values must be counted as nonzeros.
    """
    if binary and isinstance(spikes, torch.Tensor) and spikes.is_floating_point():
        spikes = spikes.detach()
        per_patch = spikes.sum(dim=-1).reshape(spikes.shape[0], -1)
        per_step = spikes.sum(dim=0).reshape(-1, spikes.shape[-1])
        return per_patch.to(torch.int64).cpu().numpy(), per_step.to(torch.int64).cpu().numpy()
    if isinstance(spikes, torch.Tensor):
        # One boolean mask (1 byte an element), summed straight into int64: no int32 copy of it.
        events = (spikes.detach() != 0).reshape(spikes.shape[0], -1, spikes.shape[-1])
        return events.sum(dim=2).cpu().numpy(), events.sum(dim=0).cpu().numpy()
    spikes = np.asarray(spikes)
    events = (spikes != 0).reshape(spikes.shape[0], -1, spikes.shape[-1])
    return events.sum(axis=2, dtype=np.int64), events.sum(axis=0, dtype=np.int64)


def count_patches(input_spikes: torch.Tensor | np.ndarray, layer_spikes: Sequence[torch.Tensor | np.ndarray],
                  fans: Sequence[Fanout], time_steps: int, window: int, binary: bool = False) -> PatchCounts:
    """Per-patch and per-step counts from the spikes themselves.

    ``input_spikes`` is ``(P, C, H, W, T)`` (SLAYER layout: the encoded input of
    ``P`` patches over their ``T`` window steps); ``layer_spikes[l]`` the same for
    spiking layer ``l``, each cut to the window in which that layer answers.
    """
    if len(layer_spikes) != len(fans):
        raise CountError(f"{len(layer_spikes)} layers of spike counts for a network of {len(fans)} spiking layers")
    counted = [_per_patch_and_step(s, binary) for s in (input_spikes, *layer_spikes)]
    patches = len(counted[0][0])
    effective, zeros, step_effective, step_zeros = [], [], [], []
    for layer, ((per_patch, per_step), fan) in enumerate(zip(counted[:-1], fans), start=1):
        if per_patch.shape[1] != fan.source_neurons:
            raise CountError(f"layer {layer}: {per_patch.shape[1]} source neurons counted, the network's layer "
                             f"{fan.index} is fed by {fan.source_neurons}")
        zero = fan.total - fan.nonzero
        effective.append(per_patch @ fan.nonzero)
        zeros.append(per_patch @ zero)
        step_effective.append(fan.nonzero @ per_step)
        step_zeros.append(zero @ per_step)
    return PatchCounts(
        input_spikes=counted[0][0].sum(axis=1),
        spikes=np.stack([per_patch.sum(axis=1) for per_patch, _ in counted[1:]], axis=1).reshape(patches, -1),
        synops_effective=np.stack(effective, axis=1),
        synops_structural_zeros=np.stack(zeros, axis=1),
        time_steps=int(time_steps),
        window=int(window),
        step_input=counted[0][1].sum(axis=0),
        step_spikes=np.stack([per_step.sum(axis=0) for _, per_step in counted[1:]]),
        step_synops_effective=np.stack(step_effective),
        step_synops_structural_zeros=np.stack(step_zeros),
    )


def _totals(calls: Sequence[PatchCounts], neurons: Sequence[int]) -> dict[str, Any]:
    steps = sum(c.time_steps for c in calls)
    input_spikes = int(sum(int(c.input_spikes.sum()) for c in calls))
    spikes = sum((c.spikes.sum(axis=0) for c in calls), np.zeros(len(neurons), dtype=np.int64))
    effective = sum((c.synops_effective.sum(axis=0) for c in calls), np.zeros(len(neurons), dtype=np.int64))
    zeros = sum((c.synops_structural_zeros.sum(axis=0) for c in calls), np.zeros(len(neurons), dtype=np.int64))
    updates = int(sum(neurons)) * steps
    return {
        "patches": int(sum(c.patches for c in calls)),
        "time_steps": steps,
        "input_spikes": input_spikes,
        "layer_spikes": int(spikes.sum()),
        "synops_effective": int(effective.sum()),
        "synops_structural_zeros": int(zeros.sum()),
        "synops": int(effective.sum() + zeros.sum()),
        "neuron_updates": updates,
        "mean_spike_rate": float(spikes.sum()) / updates if updates else 0.0,
        "_per_layer": (spikes, effective, zeros),
    }


def merge(parts: Sequence[PatchCounts]) -> PatchCounts:
    """One :class:`PatchCounts` of several chunks of patches (in order)."""
    if not parts:
        raise CountError("no counts to merge")
    return PatchCounts(
        input_spikes=np.concatenate([p.input_spikes for p in parts]),
        spikes=np.concatenate([p.spikes for p in parts]),
        synops_effective=np.concatenate([p.synops_effective for p in parts]),
        synops_structural_zeros=np.concatenate([p.synops_structural_zeros for p in parts]),
        time_steps=sum(p.time_steps for p in parts),
        window=parts[0].window,
        step_input=sum(p.step_input for p in parts),
        step_spikes=sum(p.step_spikes for p in parts),
        step_synops_effective=sum(p.step_synops_effective for p in parts),
        step_synops_structural_zeros=sum(p.step_synops_structural_zeros for p in parts),
    )


def counts_section(calls: Sequence[PatchCounts], neurons: Sequence[int],
                   labels: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The ``counts`` section of report.json: per layer, per iteration, per patch, per registration.

    ``calls`` holds one :class:`PatchCounts` per refinement iteration (``labels``
    name them, e.g. ``level 1/2, iteration 1/2``); ``neurons`` the neurons of each
    spiking layer.
    """
    if not calls:
        raise CountError("no counts: the backend predicted no patches")
    neurons = [int(n) for n in neurons]
    whole = _totals(calls, neurons)
    spikes, effective, zeros = whole.pop("_per_layer")
    steps = whole["time_steps"]
    events = [whole["input_spikes"]] + [int(s) for s in spikes[:-1]]
    layers = [
        {"layer": i, "neurons": n, "spikes": int(spikes[i - 1]), "events": int(events[i - 1]),
         "synops_effective": int(effective[i - 1]), "synops_structural_zeros": int(zeros[i - 1]),
         "synops": int(effective[i - 1] + zeros[i - 1]), "neuron_updates": n * steps,
         "spike_rate": float(spikes[i - 1]) / (n * steps) if n and steps else 0.0}
        for i, n in enumerate(neurons, start=1)
    ]
    iterations = []
    for number, call in enumerate(calls, start=1):
        totals = _totals([call], neurons)
        totals.pop("_per_layer")
        iterations.append({"iteration": number, "label": labels[number - 1] if labels else f"iteration {number}",
                           **totals})
    per_patch = {
        "columns": ["input_spikes"] + [f"spikes_{i}" for i in range(1, len(neurons) + 1)] + ["synops",
                                                                                             "synops_structural_zeros"],
        "iterations": [
            np.concatenate([c.input_spikes[:, None], c.spikes,
                            (c.synops_effective + c.synops_structural_zeros).sum(axis=1, keepdims=True),
                            c.synops_structural_zeros.sum(axis=1, keepdims=True)], axis=1).tolist()
            for c in calls
        ],
        "time_steps_per_patch": calls[0].window,
    }
    patches_run = whole["patches"]
    per_step = {  # per step of a patch's window, summed over every patch of the registration
        "window": calls[0].window,
        "input_spikes": sum(c.step_input for c in calls).tolist(),
        "spikes": sum(c.step_spikes for c in calls).tolist(),
        "synops_effective": sum(c.step_synops_effective for c in calls).tolist(),
        "synops_structural_zeros": sum(c.step_synops_structural_zeros for c in calls).tolist(),
        "neuron_updates": [n * patches_run for n in neurons],  # per layer, at every step
    }
    return {"method": COUNTS_METHOD, **whole, "layers": layers, "iterations": iterations, "per_patch": per_patch,
            "per_step": per_step}


# -- the counter a backend feeds -----------------------------------------------------------


class SpikeCounter:
    """Collects a registration's counts as a backend predicts chunk after chunk of patches.

    ``register`` calls :meth:`start_iteration` before each refinement pass; the
    backend calls :meth:`add` with each chunk's per-neuron spike counts, then
    :meth:`record_raster` with the same spikes, which keeps one patch with brain in full.
    """

    def __init__(self, model: str | Path | NetxFile) -> None:
        self.fans = fanouts(model)
        self.labels: list[str] = []
        self.iterations: list[list[PatchCounts]] = []
        self.raster: Optional[Raster] = None
        self._seen = 0  # patches of the current iteration counted so far

    def start_iteration(self, label: str) -> None:
        self.labels.append(label)
        self.iterations.append([])
        self._seen = 0

    def add(self, input_spikes: torch.Tensor | np.ndarray, layer_spikes: Sequence[torch.Tensor | np.ndarray],
            time_steps: int, window: int, binary: bool = False) -> PatchCounts:
        """Count a chunk of patches: spikes as :func:`count_patches` takes them."""
        if not self.iterations:  # a backend used without register(): one iteration
            self.start_iteration("iteration 1")
        counts = count_patches(input_spikes, layer_spikes, self.fans, time_steps, window, binary)
        self.iterations[-1].append(counts)
        self._seen += counts.patches
        return counts

    def raster_patch(self, fixed_patches: np.ndarray | torch.Tensor) -> Optional[int]:
        """Index in this chunk of the patch to record: the first with brain, in the first iteration only."""
        if self.raster is not None or len(self.iterations) > 1:
            return None
        values = np.asarray(fixed_patches).reshape(len(fixed_patches), -1)
        found = np.flatnonzero(values.max(axis=1) > BRAIN_THRESHOLD)
        return int(found[0]) if len(found) else None

    def set_raster(self, layers: Mapping[str, np.ndarray], index: int, backend: str) -> None:
        """``layers``: name -> ``(steps, neurons)`` spikes of patch ``index`` of the chunk just added."""
        first = self._seen - self.iterations[-1][-1].patches if self.iterations and self.iterations[-1] else 0
        self.raster = Raster({k: np.asarray(v) != 0 for k, v in layers.items()}, first + int(index),
                             backend=backend)

    def record_raster(self, fixed_patches: np.ndarray | torch.Tensor, input_spikes: torch.Tensor | np.ndarray,
                      layer_spikes: Sequence[torch.Tensor | np.ndarray], backend: str) -> None:
        """Keep, from the chunk just added, the patch :meth:`raster_patch` picks: input and every layer."""
        index = self.raster_patch(fixed_patches)
        if index is None:
            return
        layers = {"input": patch_raster(input_spikes[index])}
        layers.update({f"layer {n}": patch_raster(spikes[index]) for n, spikes in enumerate(layer_spikes, start=1)})
        self.set_raster(layers, index, backend)

    @property
    def counted(self) -> bool:
        """Whether any patch was counted (a backend that does not count leaves this False)."""
        return any(self.iterations)

    def section(self, neurons: Sequence[int]) -> dict[str, Any]:
        calls = [merge(parts) for parts in self.iterations if parts]
        labels = [label for label, parts in zip(self.labels, self.iterations) if parts]
        return counts_section(calls, neurons, labels)


def patch_raster(spikes: torch.Tensor | np.ndarray) -> np.ndarray:
    """One patch's ``(..., T)`` spikes in SLAYER layout -> ``(T, neurons)`` booleans."""
    if isinstance(spikes, torch.Tensor):
        spikes = spikes.detach().cpu().numpy()
    spikes = np.asarray(spikes)
    return (spikes.reshape(-1, spikes.shape[-1]) != 0).T


# -- raster ------------------------------------------------------------------------------


@dataclass
class Raster:
    """One patch's spikes: name -> ``(steps, neurons)`` booleans (input first), and where it was."""

    layers: dict[str, np.ndarray]
    patch: int
    origin: list[int] = field(default_factory=list)
    backend: str = ""


def save_raster(path: str | Path, raster: Raster) -> Path:
    """Write ``raster`` compressed (``np.savez_compressed``), whole or not at all."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    meta = {"names": list(raster.layers), "patch": int(raster.patch), "origin": [int(o) for o in raster.origin],
            "backend": raster.backend}
    try:
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)),
                            **{f"layer_{i}": np.asarray(a, dtype=bool) for i, a in enumerate(raster.layers.values())})
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_raster(path: str | Path) -> Raster:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:  # a raster holds arrays only: no object arrays
            meta = json.loads(str(data["meta"]))
            layers = {name: data[f"layer_{i}"] for i, name in enumerate(meta["names"])}
    except (OSError, KeyError, ValueError) as error:
        raise CountError(f"{path}: not a SpikeReg raster ({error})") from None
    return Raster(layers, meta["patch"], meta.get("origin", []), meta.get("backend", ""))


