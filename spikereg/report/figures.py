"""Pictures of a registration and of the spikes it cost (matplotlib, no display needed).

A plain functional core: arrays and report dicts in, :class:`matplotlib.figure.Figure`
out; :func:`save_png` writes one atomically. Figures are built with matplotlib's
object API and its Agg canvas, never through ``pyplot``, so nothing here touches
the global backend of a program that imports it (or needs a display).

Planes follow the image's orientation, not its array order: the axis whose
affine direction is mostly superior-inferior is cut for the axial plane,
anterior-posterior for coronal, left-right for sagittal (``nibabel.aff2axcodes``),
and slices are drawn with their millimetre aspect ratio.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikereg.data.io import write_bytes_atomic

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: The anatomical direction each plane is cut across (its normal).
PLANE_NORMAL = {"axial": "SI", "coronal": "AP", "sagittal": "LR"}
DPI = 100

#: Energy terms in the order they are stacked, with readable names.
ENERGY_TERMS = {
    "synops_effective": "synops (nonzero weights)",
    "synops_structural_zeros": "synops (structural zeros)",
    "neuron_updates": "neuron updates",
    "spikes": "spike messages",
    "static": "static power x time",
    "macs": "MACs",
    "dram": "host I/O (DRAM)",
    "host_io": "host link (chip I/O)",
    "device": "device power x time",
    "device_active": "device above idle",
    "device_idle": "device idle power x time",
}


# -- output --------------------------------------------------------------------------


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as PNG, whole or not at all (temporary name, then rename)."""
    return write_bytes_atomic(path, png_bytes(figure))


def rgb_array(figure: Figure) -> np.ndarray:
    """The rendered figure as an ``(H, W, 3)`` uint8 array (for GIF frames)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# -- geometry ------------------------------------------------------------------------


def plane_axes(affine: Optional[np.ndarray]) -> dict[str, int]:
    """Which array axis each plane cuts across, from the affine's orientation (RAS if none)."""
    if affine is None:
        return {"sagittal": 0, "coronal": 1, "axial": 2}
    codes = nib.aff2axcodes(np.asarray(affine, dtype=np.float64))
    axes = {}
    for plane, letters in PLANE_NORMAL.items():
        axes[plane] = next(axis for axis, code in enumerate(codes) if code in letters)
    return axes


def spacing_of(affine: Optional[np.ndarray]) -> tuple[float, float, float]:
    if affine is None:
        return (1.0, 1.0, 1.0)
    return tuple(float(s) for s in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def take_slice(volume: np.ndarray, axis: int, index: Optional[int] = None) -> np.ndarray:
    """The 2-D slice across ``axis`` at ``index`` (the middle by default), first remaining axis first."""
    index = volume.shape[axis] // 2 if index is None else int(index)
    return np.take(volume, index, axis=axis)


def _in_plane(axis: int) -> tuple[int, int]:
    """The two array axes that remain in a slice across ``axis`` (horizontal, vertical)."""
    return tuple(a for a in range(3) if a != axis)


def _show(ax, image: np.ndarray, axis: int, spacing: Sequence[float], **kwargs):
    """Draw a slice with the first remaining axis horizontal, origin at the lower left, mm aspect."""
    horizontal, vertical = _in_plane(axis)
    handle = ax.imshow(image.T, origin="lower", aspect=spacing[vertical] / spacing[horizontal],
                       interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    return handle


def display_range(volume: np.ndarray) -> tuple[float, float]:
    """Robust grey-level range (1st-99th percentile) so one bright voxel does not darken the view."""
    lo, hi = (float(v) for v in np.percentile(volume, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


# -- the registration ------------------------------------------------------------------


def registration_slices(images: Mapping[str, np.ndarray], affine: Optional[np.ndarray] = None,
                        planes: Sequence[str] = PLANES) -> Figure:
    """Middle slices of each image (columns: e.g. fixed, moving, warped) in each plane (rows)."""
    axes_of, spacing = plane_axes(affine), spacing_of(affine)
    names = list(images)
    ranges = {name: display_range(volume) for name, volume in images.items()}
    figure = Figure(figsize=(3.0 * len(names), 3.0 * len(planes)))
    grid = figure.subplots(len(planes), len(names), squeeze=False)
    for row, plane in enumerate(planes):
        axis = axes_of[plane]
        for col, name in enumerate(names):
            ax = grid[row][col]
            _show(ax, take_slice(images[name], axis), axis, spacing, cmap="gray",
                  vmin=ranges[name][0], vmax=ranges[name][1])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(plane)
    figure.suptitle("middle slices")
    return figure


def checkerboard_volume(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Voxels of ``a`` and ``b`` (each scaled to its display range) in a 3-D checkerboard."""
    if a.shape != b.shape:
        raise ValueError(f"checkerboard: shapes differ ({a.shape} vs {b.shape})")
    def scaled(v: np.ndarray) -> np.ndarray:
        lo, hi = display_range(v)
        return np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    index = np.indices(a.shape)
    parity = sum((index[k] * tiles // a.shape[k]) for k in range(3)) % 2
    return np.where(parity == 0, scaled(a), scaled(b)).astype(np.float32)


def checkerboard(fixed: np.ndarray, warped: np.ndarray, affine: Optional[np.ndarray] = None,
                 planes: Sequence[str] = PLANES, tiles: int = 8,
                 names: tuple[str, str] = ("fixed", "warped")) -> Figure:
    """Checkerboard of two images in each plane: edges that line up mean a good registration."""
    board = checkerboard_volume(fixed, warped, tiles)
    axes_of, spacing = plane_axes(affine), spacing_of(affine)
    figure = Figure(figsize=(3.0 * len(planes), 3.4))
    grid = figure.subplots(1, len(planes), squeeze=False)[0]
    for ax, plane in zip(grid, planes):
        _show(ax, take_slice(board, axes_of[plane]), axes_of[plane], spacing, cmap="gray", vmin=0, vmax=1)
        ax.set_title(plane)
    figure.suptitle(f"checkerboard of {names[0]} and {names[1]}")
    return figure


def deformation_grid(ddf: np.ndarray, affine: Optional[np.ndarray] = None, planes: Sequence[str] = PLANES,
                     background: Optional[np.ndarray] = None, lines: int = 24) -> Figure:
    """A regular grid carried by the in-plane displacements, in each plane (middle slice).

    ``ddf`` is ``(3, D, H, W)`` in voxels; the grid point at ``x`` is drawn at
    ``x + ddf(x)`` (where the warped image samples the moving one).
    """
    axes_of, spacing = plane_axes(affine), spacing_of(affine)
    figure = Figure(figsize=(3.2 * len(planes), 3.6))
    grid = figure.subplots(1, len(planes), squeeze=False)[0]
    for ax, plane in zip(grid, planes):
        axis = axes_of[plane]
        horizontal, vertical = _in_plane(axis)
        if background is not None:
            lo, hi = display_range(background)
            _show(ax, take_slice(background, axis), axis, spacing, cmap="gray", vmin=lo, vmax=hi, alpha=0.5)
        u = take_slice(ddf[horizontal], axis)  # (n_h, n_v)
        v = take_slice(ddf[vertical], axis)
        n_h, n_v = u.shape
        step = max(1, max(n_h, n_v) // lines)
        xs, ys = np.meshgrid(np.arange(n_h), np.arange(n_v), indexing="ij")
        px, py = xs + u, ys + v
        for i in range(0, n_h, step):
            ax.plot(px[i, :], py[i, :], color="tab:red", linewidth=0.6)
        for j in range(0, n_v, step):
            ax.plot(px[:, j], py[:, j], color="tab:red", linewidth=0.6)
        ax.set_xlim(-0.5, n_h - 0.5)
        ax.set_ylim(-0.5, n_v - 0.5)
        ax.set_aspect(spacing[vertical] / spacing[horizontal])
        ax.set_xticks([])
        ax.set_yticks([])
        magnitude = np.sqrt(u ** 2 + v ** 2)
        ax.set_title(f"{plane}: max in-plane {magnitude.max():.2f} vox")
    figure.suptitle("deformation grid (every %d voxels)" % step)
    return figure


def jacobian_map(jacobian: np.ndarray, affine: Optional[np.ndarray] = None,
                 planes: Sequence[str] = PLANES) -> Figure:
    """Jacobian determinant in each plane: 1 = volume kept, <1 shrinking, >1 growing, <=0 folding."""
    axes_of, spacing = plane_axes(affine), spacing_of(affine)
    spread = float(np.max(np.abs(jacobian - 1.0))) if jacobian.size else 0.0
    spread = max(spread, 1e-3)
    figure = Figure(figsize=(3.2 * len(planes) + 0.8, 3.6))
    grid = figure.subplots(1, len(planes), squeeze=False)[0]
    handle = None
    for ax, plane in zip(grid, planes):
        axis = axes_of[plane]
        image = take_slice(jacobian, axis)
        handle = _show(ax, image, axis, spacing, cmap="RdBu_r", vmin=1 - spread, vmax=1 + spread)
        folds = np.argwhere(image <= 0)
        if len(folds):
            ax.scatter(folds[:, 0], folds[:, 1], s=4, c="black", marker="x")
        ax.set_title(plane)
    figure.colorbar(handle, ax=list(grid), shrink=0.8, label="det J")
    nonpositive = float((jacobian <= 0).mean()) * 100 if jacobian.size else 0.0
    figure.suptitle(f"Jacobian determinant: min {jacobian.min():.3f}, {nonpositive:.3f} % voxels <= 0")
    return figure


# -- spikes -----------------------------------------------------------------------------


def _layer_labels(layers: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"{row['layer']}" for row in layers]


def spike_rates(layers: Sequence[Mapping[str, Any]]) -> Figure:
    """Mean spike rate (spikes per neuron per time step) of each layer, from report.json's ``layers``."""
    figure = Figure(figsize=(5.0, 3.2))
    ax = figure.subplots()
    rates = [float(row["spike_rate"]) for row in layers]
    bars = ax.bar(_layer_labels(layers), rates, color="tab:blue")
    for bar, row in zip(bars, layers):
        ax.annotate(f"{row['spike_rate']:.3f}\n{row['neurons']:,} n", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylabel("spikes / neuron / step")
    ax.set_ylim(0, max(rates + [1e-3]) * 1.35)
    ax.set_title("mean spike rate per layer")
    return figure


def step_series(spikes_per_step: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
    """report.json's ``spikes_per_step`` (per backend call: layers x steps) as one ``(layers, steps)`` array."""
    parts = [np.asarray(call, dtype=np.int64) for call in spikes_per_step if np.size(call)]
    if not parts:
        return np.zeros((0, 0), dtype=np.int64)
    return np.concatenate(parts, axis=1)


def mean_patch_window(spikes_per_step: Sequence[Sequence[Sequence[int]]], window: int) -> np.ndarray:
    """``(layers, window)``: each layer's spikes at each step of a patch's window, averaged over patches.

    Every backend call streams whole patches from its first step, and layer ``l``
    (1-based) answers a patch ``l - 1`` steps after it enters, so windows are cut
    per call from step ``l - 1`` on.
    """
    calls = [np.asarray(call, dtype=np.int64) for call in spikes_per_step if np.size(call)]
    if not calls:
        return np.zeros((0, window))
    total = np.zeros((len(calls[0]), window))
    patches = np.zeros(len(calls[0]))
    for call in calls:
        for layer, row in enumerate(call):
            usable = row[layer:]
            usable = usable[: len(usable) // window * window].reshape(-1, window)
            total[layer] += usable.sum(axis=0)
            patches[layer] += len(usable)
    return total / np.maximum(patches, 1)[:, None]


def spikes_over_time(spikes_per_step: Sequence[Sequence[Sequence[int]]], window: Optional[int] = None) -> Figure:
    """Spikes of each layer at every time step of the run, and (given the patch ``window``)
    their mean over patches against the step inside a patch's window."""
    series = step_series(spikes_per_step)
    panels = 2 if window else 1
    figure = Figure(figsize=(7.0, 2.8 * panels))
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    for layer, row in enumerate(series, start=1):
        axes[0].plot(np.arange(len(row)), row, linewidth=0.7, label=f"layer {layer}")
    axes[0].set_xlabel("time step of the run")
    axes[0].set_ylabel("spikes")
    axes[0].set_title("spikes per time step (all patches, all iterations)")
    if len(series):
        axes[0].legend(fontsize=8, loc="upper right")
    if window:
        for layer, mean in enumerate(mean_patch_window(spikes_per_step, window), start=1):
            axes[1].plot(np.arange(window), mean, marker=".", label=f"layer {layer}")
        axes[1].set_xlabel("time step within a patch")
        axes[1].set_ylabel("mean spikes")
        axes[1].set_title("mean over patches")
        if len(series):
            axes[1].legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    return figure


def per_step_counts(per_step: Mapping[str, Any]) -> Figure:
    """Spikes and synaptic operations at each step of a patch's window, summed over all patches
    (report.json's ``counts.per_step``): where in time the network spends its events."""
    steps = np.arange(int(per_step["window"]))
    figure = Figure(figsize=(7.0, 5.4))
    top, bottom = figure.subplots(2, 1)
    top.plot(steps, per_step["input_spikes"], color="black", marker=".", label="input")
    for layer, row in enumerate(per_step["spikes"], start=1):
        top.plot(steps, row, marker=".", label=f"layer {layer}")
    top.set_yscale("symlog")
    top.set_ylabel("spikes")
    top.set_title("spikes per step of a patch's window, all patches (layer l answers l-1 steps late)")
    top.legend(fontsize=8, loc="upper right")
    for layer, (nonzero, zero) in enumerate(zip(per_step["synops_effective"], per_step["synops_structural_zeros"]),
                                            start=1):
        line, = bottom.plot(steps, nonzero, marker=".", label=f"into layer {layer}, nonzero w")
        bottom.plot(steps, zero, linestyle="--", color=line.get_color(), label=f"into layer {layer}, zero w")
    bottom.set_yscale("symlog")
    bottom.set_xlabel("time step within the window (synops: the step their source spiked)")
    bottom.set_ylabel("synaptic operations")
    bottom.set_title("synaptic operations per step (dashed: on zero weights)")
    bottom.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    return figure


def spike_raster(layers: Sequence[np.ndarray], title: str = "spike raster of one patch") -> Figure:
    """One panel per layer: a dot for each (time step, neuron) that spiked.

    ``layers`` holds one ``(steps, neurons)`` array per layer (0/1 or counts), the
    input first when it was recorded.
    """
    figure = Figure(figsize=(7.0, 1.8 * len(layers) + 0.6))
    axes = figure.subplots(len(layers), 1, squeeze=False)[:, 0]
    for ax, (name, spikes) in zip(axes, _named(layers)):
        steps, neurons = np.nonzero(np.asarray(spikes))
        ax.scatter(steps, neurons, s=1.0, marker="|", color="black", linewidths=0.5)
        ax.set_xlim(-0.5, np.shape(spikes)[0] - 0.5)
        ax.set_ylim(-0.5, np.shape(spikes)[1] - 0.5)
        ax.set_ylabel(f"{name}\nneuron")
        rate = float(np.count_nonzero(spikes)) / max(1, np.size(spikes))
        ax.set_title(f"{name}: {len(steps):,} spikes, {np.shape(spikes)[1]:,} neurons, rate {rate:.3f}",
                     fontsize=9)
    axes[-1].set_xlabel("time step")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _named(layers) -> Iterable[tuple[str, np.ndarray]]:
    if isinstance(layers, Mapping):
        return layers.items()
    return ((f"layer {i}", a) for i, a in enumerate(layers, start=1))


# -- energy -----------------------------------------------------------------------------


def _profiles(energy: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {**energy.get("neuromorphic", {}), **energy.get("conventional", {})}


def energy_breakdown(energy: Mapping[str, Any]) -> Figure:
    """Joules per registration of each term on each profile (log scale: terms span many decades)."""
    profiles = _profiles(energy)
    terms = [t for t in ENERGY_TERMS if any(t in p.get("terms", {}) for p in profiles.values())]
    figure = Figure(figsize=(8.0, 3.8))
    ax = figure.subplots()
    width = 0.8 / max(1, len(terms))
    x = np.arange(len(profiles))
    for k, term in enumerate(terms):
        values = [p.get("terms", {}).get(term, {}).get("joules", 0.0) or 0.0 for p in profiles.values()]
        ax.bar(x + (k - (len(terms) - 1) / 2) * width, [v if v > 0 else np.nan for v in values], width,
               label=ENERGY_TERMS[term])
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{name}\n({p.get('kind', '-')})" for name, p in profiles.items()])
    ax.set_ylabel("J per registration")
    ax.set_title("energy breakdown (estimates; kind of the weakest figure under each profile)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def snn_vs_ann(energy: Mapping[str, Any]) -> Figure:
    """Total (and dynamic-only) joules per registration of the SNN on each chip vs the ANN twin."""
    profiles = _profiles(energy)
    names = list(profiles)
    totals = [profiles[n].get("total_j") or np.nan for n in names]
    dynamic = [profiles[n].get("dynamic_j") or np.nan for n in names]
    figure = Figure(figsize=(7.0, 3.8))
    ax = figure.subplots()
    x = np.arange(len(names))
    colors = ["tab:orange" if n in energy.get("neuromorphic", {}) else "tab:gray" for n in names]
    ax.bar(x - 0.2, totals, 0.4, color=colors, label="total")
    ax.bar(x + 0.2, dynamic, 0.4, color=colors, alpha=0.5, hatch="//", label="dynamic only")
    for i, name in enumerate(names):
        ratios = profiles[name].get("snn_over_ann", {})
        text = "\n".join(f"{r['total']:.3g}x {proc}" for proc, r in ratios.items() if r.get("total") is not None)
        if text:
            ax.annotate(text, (x[i] - 0.2, totals[i]), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    finite = [t for t in totals if np.isfinite(t) and t > 0]
    if finite:
        ax.set_ylim(top=max(finite) * 10)  # room for the ratio labels
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("J per registration")
    ax.set_title("SNN on neuromorphic chips vs ANN twin (labels: SNN total / ANN total)")
    ax.legend(fontsize=8)
    return figure
