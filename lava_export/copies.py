"""Copies of a netx conv chain side by side in one Lava network: several patches per time step.

Lava's simulator spends most of a time step passing messages between its
processes (one OS process per Lava process), not on arithmetic: a 16^3
patch of ``sdnn-2mm`` takes about 3 ms a step whatever it holds. ``k``
copies of the network stacked on the feature axis carry ``k`` patches per
step through the same processes: every conv layer gets ``k`` times its
``groups``, its kernel and bias repeated ``k`` times, so copy ``c`` reads
input features ``[c*F, (c+1)*F)`` and writes only its own block of each
layer. Grouped convolution keeps the copies apart and neuron models act
element by element, so each copy computes exactly what the single network
computes on its patch. This is also how a chip holds copies on its cores
(the parallel copies of :mod:`spikereg.hardware.loihi2_schedule`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from spikereg.netx_file import NetxFile, layer_type

# what a conv layer group may hold besides its neuron; the neuron's parameters must be scalars
CONV_DATASETS = {"type", "shape", "weight", "bias", "groups", "inChannels", "outChannels", "kernelSize",
                 "stride", "padding", "dilation"}
INPUT_DATASETS = {"type", "shape"}


def copy_blocker(model: NetxFile) -> str | None:
    """Why ``model`` cannot run as stacked copies (one line), or None where it can.

    Copies need a chain of an input layer and conv layers whose neurons have
    one set of parameters for all channels: dense layers flatten the feature
    axis (the copies' blocks would mix), and per-channel neuron arrays or
    delays are not repeated here.
    """
    layers = model.layers
    for index in sorted(layers, key=int):
        group = layers[index]
        kind = layer_type(group)
        allowed = INPUT_DATASETS if kind == "input" else CONV_DATASETS if kind == "conv" else None
        if allowed is None:
            return f"layer {index} is {kind!r}: only input and conv layers stack as copies"
        extra = sorted(set(group) - allowed - {"neuron"})
        if extra:
            return f"layer {index} holds {', '.join(extra)}, which copies do not repeat"
        neuron = group.get("neuron")
        if neuron is not None:
            arrays = [name for name, value in neuron.items() if np.asarray(value).size > 1]
            if arrays:
                return f"layer {index}'s neuron has per-neuron {', '.join(sorted(arrays))}"
    return None


def write_copies(model: NetxFile, copies: int, path: str | Path) -> Path:
    """Write ``model`` as ``copies`` stacked copies to ``path`` (a netx file netx loads); returns ``path``.

    Raises ValueError where :func:`copy_blocker` names a reason.
    """
    if copies < 1:
        raise ValueError(f"copies {copies}: must be at least 1")
    reason = copy_blocker(model)
    if reason is not None:
        raise ValueError(f"model {model.path}: cannot stack copies: {reason}")
    path = Path(path)
    shutil.copyfile(model.path, path)
    with h5py.File(path, "r+") as file:
        for index in model.layers:
            group = file[f"layer/{index}"]
            _replace(group, "shape", group["shape"][()] * np.array([copies, 1, 1]))  # (C, H, W)
            if layer_type(model.layers[index]) != "conv":
                continue
            for name in ("weight", "bias"):  # out channels first: copy c's block is [c*out, (c+1)*out)
                if name in group:
                    _replace(group, name, np.concatenate([group[name][()]] * copies))
            for name in ("groups", "inChannels", "outChannels"):
                _replace(group, name, group[name][()] * copies)
    return path


def _replace(group: h5py.Group, name: str, value: np.ndarray) -> None:
    dtype = group[name].dtype
    del group[name]
    group.create_dataset(name, data=np.asarray(value, dtype=dtype))


def stack(patches: np.ndarray, copies: int) -> np.ndarray:
    """``(P, F, H, W, T)`` patches -> ``(ceil(P / copies), copies * F, H, W, T)``, padded with silent patches."""
    frames = -(-len(patches) // copies)
    pad = frames * copies - len(patches)
    if pad:
        patches = np.concatenate([patches, np.zeros((pad, *patches.shape[1:]), dtype=patches.dtype)])
    return patches.reshape(frames, copies * patches.shape[1], *patches.shape[2:])


def unstack_patches(values: np.ndarray, copies: int, count: int) -> np.ndarray:
    """:func:`stack`'s inverse for per-frame values ``(frames, copies * F, ...)`` -> ``(count, F, ...)``."""
    split = values.reshape(len(values) * copies, values.shape[1] // copies, *values.shape[2:])
    return split[:count]


def unstack_steps(values: np.ndarray, copies: int, window: int, count: int) -> np.ndarray:
    """Stacked ``(..., copies * F, frames * window)`` -> ``(..., F, count * window)`` (netx layout: features, time).

    Step ``t`` of copy ``c`` in frame ``b`` becomes step ``(b * copies + c) * window + t``: the patches one
    after another, as a network without copies runs them; the padding patches are dropped.
    """
    *space, features, steps = values.shape
    frames = steps // window
    split = values.reshape(*space, copies, features // copies, frames, window)
    axes = len(space)
    order = list(range(axes)) + [axes + 1, axes + 2, axes, axes + 3]  # (..., F, frames, copies, window)
    return split.transpose(order).reshape(*space, features // copies, frames * copies * window)[..., :count * window]


def unstack_counts(series: np.ndarray, window: int, count: int) -> np.ndarray:
    """Per-copy counts ``(layers, copies, frames * window)`` -> ``(layers, count * window)``, patches in order."""
    layers, copies, steps = series.shape
    split = series.reshape(layers, copies, steps // window, window).transpose(0, 2, 1, 3)
    return split.reshape(layers, -1)[:, :count * window]


def pad_windows(values: np.ndarray, run_window: int, window: int) -> np.ndarray:
    """``(..., count * run_window)`` -> ``(..., count * window)``: each patch's steps, then zeros to ``window``."""
    if run_window == window:
        return values
    split = values.reshape(*values.shape[:-1], -1, run_window)
    padded = np.zeros((*split.shape[:-1], window), dtype=values.dtype)
    padded[..., :run_window] = split
    return padded.reshape(*values.shape[:-1], -1)


def one_after_another(series: np.ndarray, readout: np.ndarray, values: list[np.ndarray] | None, copies: int,
                      run_window: int, window: int, count: int):
    """A run of ``count`` patches, ``copies`` per frame of ``run_window`` steps, as if run one by one in ``window``s.

    ``series`` per-copy counts ``(layers, copies, steps)``, ``readout`` and each of ``values`` (netx layout,
    time last): the padding copies dropped, each patch's steps in order, zeros up to ``window``.
    """
    def each(stacked_steps: np.ndarray) -> np.ndarray:
        return pad_windows(unstack_steps(stacked_steps, copies, run_window, count), run_window, window)

    return (pad_windows(unstack_counts(series, run_window, count), run_window, window), each(readout),
            None if values is None else [each(v) for v in values])
