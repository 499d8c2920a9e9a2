"""``spikereg evaluate``: register every pair of a dataset split and tabulate the metrics (DeepReg's predict).

Files written into the output folder, all at once when every pair is done:

* ``metrics.csv``: per pair one row with ``label`` empty (pair-level metrics,
  label metrics averaged over labels, runtime, spikes), then one row per label
  (``dice_before``, ``dice``, ``hd95_mm``);
* ``metrics_per_label.csv``: per label and metric, mean, std, median, min, max
  and the number of pairs with a value;
* ``metrics_summary.csv``: the same statistics of the pair-level metrics;
* with ``save_outputs``, ``pairs/<pair>/`` holding ``ddf.nii.gz``,
  ``warped.nii.gz`` and ``warped_labels.nii.gz`` (what ``spikereg run`` writes).
"""
from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikereg.data import Dataset, warp
from spikereg.data.io import staged_folder
from spikereg.evaluation.l2r import field_name, save_l2r_field
from spikereg.evaluation.measure import PairMetrics, measure_pair
from spikereg.netx_file import read_metadata
from spikereg.registration.backends import open_backend
from spikereg.registration.pipeline import network_input, run_options, save_registration
from spikereg.registration.register import register

EVALUATION_FILES = {"metrics": "metrics.csv", "per_label": "metrics_per_label.csv",
                    "summary": "metrics_summary.csv"}
LABEL_METRICS = ("dice_before", "dice", "hd95_mm")
PAIR_METRICS = ("ncc_before", "ncc", "dice_before", "dice", "hd95_mm", "epe_before_vox", "epe_vox", "epe_mm",
                "sdlogj", "jacobian_nonpositive_pct", "seconds", "spikes", "input_spikes")
STATISTICS = ("mean", "std", "median", "min", "max", "count")


@dataclass
class EvaluationResult:
    """Per-pair metrics (pair name -> PairMetrics) and the statistics that were written."""

    pairs: dict[str, PairMetrics]
    summary: dict[str, dict[str, float]]  # metric -> statistic -> value
    per_label: dict[int, dict[str, dict[str, float]]]  # label -> metric -> statistic -> value
    out: Path


def statistics(values: Sequence[float]) -> dict[str, float]:
    """mean, std, median, min, max over the non-NaN ``values``, and their count (NaN where none)."""
    array = np.asarray([v for v in values if not np.isnan(v)], dtype=np.float64)
    if not array.size:
        return {**{name: float("nan") for name in STATISTICS[:-1]}, "count": 0}
    return {"mean": float(array.mean()), "std": float(array.std()), "median": float(np.median(array)),
            "min": float(array.min()), "max": float(array.max()), "count": int(array.size)}


def _format(value) -> str:
    """Empty for NaN (does not apply), integers (counts) in full, other floats to 6 significant digits."""
    if isinstance(value, float):
        if np.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else f"{value:.6g}"
    return str(value)


def _csv(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_format(v) for v in row] for row in rows])
    return buffer.getvalue()


def write_tables(folder: Path, pairs: dict[str, PairMetrics]) -> tuple[dict, dict]:
    """Write the three CSV files for ``pairs`` into ``folder``; returns (summary, per_label) statistics."""
    folder = Path(folder)
    rows = []
    for name, metrics in pairs.items():
        rows.append([name, ""] + [metrics.values.get(m, float("nan")) for m in PAIR_METRICS])
        for label, values in metrics.labels.items():
            rows.append([name, label] + [values[m] if m in LABEL_METRICS else float("nan") for m in PAIR_METRICS])
    (folder / EVALUATION_FILES["metrics"]).write_text(_csv(["pair", "label", *PAIR_METRICS], rows))

    summary = {m: statistics([p.values.get(m, float("nan")) for p in pairs.values()]) for m in PAIR_METRICS}
    (folder / EVALUATION_FILES["summary"]).write_text(
        _csv(["metric", *STATISTICS], [[m, *summary[m].values()] for m in PAIR_METRICS]))

    labels = sorted({label for p in pairs.values() for label in p.labels})
    per_label = {label: {m: statistics([p.labels[label][m] for p in pairs.values() if label in p.labels])
                         for m in LABEL_METRICS} for label in labels}
    (folder / EVALUATION_FILES["per_label"]).write_text(
        _csv(["label", "metric", *STATISTICS],
             [[label, m, *per_label[label][m].values()] for label in labels for m in LABEL_METRICS]))
    return summary, per_label


def _spikes(stats) -> int:
    return 0 if stats.layer_spikes is None else int(np.sum(stats.layer_spikes))


def evaluate(
    model: Path,
    dataset: Dataset,
    out: Path,
    *,
    backend: str = "torch",
    precision: str = "fixed",
    synapses: str = "conv",
    device: str = "cpu",
    iterations: int | None = None,
    patch_stride: int | None = None,
    pyramid: int = 1,
    smoothing: float | None = None,
    batch_size: int = 32,
    save_outputs: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    overwrite: bool = False,
    percentiles: tuple[float, float] = (1.0, 99.0),
    histogram_match: bool = False,
    n4: bool = False,
    l2r: Path | None = None,
    grid: str = "auto",
) -> EvaluationResult:
    """Register every pair of ``dataset`` with the exported ``model`` on ``backend``; write the tables.

    ``iterations`` / ``patch_stride`` / ``smoothing`` default to the model's; ``pyramid``,
    ``batch_size`` (torch) and ``synapses`` (sim) are those of ``spikereg run``. ``progress(done,
    total, pair_name)`` is called after each pair. Nothing appears in ``out``
    unless every pair succeeded; an existing non-empty ``out`` is refused
    unless ``overwrite``, which replaces it whole. Pairs on different grids
    were resampled onto the fixed grid by the loader; as ``spikereg run``
    (:func:`~spikereg.registration.pipeline.network_input`, no affine), the
    network registers where ``grid`` and ``pyramid`` plan it (the model's working
    grid, or the fixed grid after the model's spacing for scans finer by a power
    of two: :func:`~spikereg.registration.working_grid.registration_grid`), and the
    field is brought back; ``percentiles``,
    ``histogram_match`` and ``n4`` prepare the intensities the network reads
    (:mod:`spikereg.data.intensity`). ``l2r``: a folder that receives every
    pair's field as Learn2Reg's evaluation reads it (:mod:`spikereg.evaluation.l2r`),
    written as a whole with the tables (names checked before any work).
    """
    meta = read_metadata(model)
    iterations, patch_stride, smoothing = run_options(meta, iterations, patch_stride, smoothing)
    if l2r is not None:  # every pair must carry Learn2Reg case numbers: fail before the first registration
        for files in dataset:
            field_name(files.fixed, files.moving)
    results: dict[str, PairMetrics] = {}
    out = Path(out)
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(staged_folder(out, overwrite=overwrite))
        l2r_staging = stack.enter_context(staged_folder(l2r, overwrite=overwrite)) if l2r is not None else None
        net = stack.enter_context(open_backend(model, backend, precision=precision, device=device,
                                               batch_size=batch_size, synapses=synapses))
        for index, files in enumerate(dataset):
            pair = dataset.load(index)
            spikes, inputs = _spikes(net.stats), net.stats.input_spikes
            tick = time.perf_counter()
            # as spikereg run reads a pair (no affine: a dataset's pairs are aligned), on the grid it plans,
            # the field brought back onto the fixed grid
            network = network_input(pair.fixed, pair.moving, meta, grid=grid, pyramid=pyramid,
                                    percentiles=percentiles, histogram_match=histogram_match, n4=n4)
            registration = register(network.fixed, network.moving, net, iterations=iterations,
                                    patch_stride=patch_stride, pyramid=network.pyramid, smoothing=smoothing,
                                    percentiles=percentiles)
            if network.on_working_grid or network.moving_prepared is not pair.moving:
                registration.ddf = network.field(registration.ddf, pair.fixed)
                registration.warped = warp(pair.moving.data, registration.ddf)  # the moving image as given
            seconds = time.perf_counter() - tick
            labels = {k: getattr(pair, k).data if getattr(pair, k) is not None else None
                      for k in ("fixed_labels", "moving_labels")}
            metrics = measure_pair(pair.fixed.data, pair.moving.data, registration.ddf, spacing=pair.fixed.spacing,
                                   true_ddf=pair.ddf, **labels)
            metrics.values.update(seconds=seconds, spikes=float(_spikes(net.stats) - spikes),
                                  input_spikes=float(net.stats.input_spikes - inputs))
            results[files.name] = metrics
            if save_outputs:
                save_registration(staging / "pairs" / files.name, registration.ddf, registration.warped,
                                  pair.fixed.affine, pair.moving_labels)
            if l2r_staging is not None:
                save_l2r_field(l2r_staging, files.fixed, files.moving, registration.ddf, pair.fixed.affine)
            if progress is not None:
                progress(index + 1, len(dataset), files.name)
        summary, per_label = write_tables(staging, results)
    return EvaluationResult(results, summary, per_label, out)
