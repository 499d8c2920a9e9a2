"""Many registrations at once: a cohort of pairs, in process or on a Dask cluster.

:func:`map_pairs` is the generic part: it applies one picklable callable to
every item, in order, either here (``engine="local"``, one after another, no
cluster needed) or on Dask distributed (``engine="dask"``: a scheduler at
``address``, or, without one, a throw-away ``LocalCluster`` of ``workers``
processes on this machine). Either way the results come back in input order
and are the same values: each item is computed by the same function on the
same files. :func:`register_cohort` uses it to run ``spikereg run`` on every
row of a pairs CSV, each pair into its own folder, plus ``cohort.csv``. A pair
that fails (an unreadable volume, say) does not stop the others: its row of
``cohort.csv`` says ``failed`` and why, naming its CSV line; ``resume`` skips
the pairs an earlier run of the same cohort already registered.

On a real cluster: start ``dask scheduler`` on one machine and ``dask worker
tcp://SCHEDULER:8786`` on each of the others (all with SpikeReg installed and
the images and model on a path every worker can read), then pass
``--engine dask --address tcp://SCHEDULER:8786``. The Lava backends start
their own processes, which Dask's daemonic worker processes may not do: run
workers with ``--no-nanny`` (or ``DASK_DISTRIBUTED__WORKER__DAEMON=False``)
for ``--backend sim``; ``--backend torch`` needs nothing special.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from spikereg.data.io import staged_folder, write_text_atomic
from spikereg.data.loaders import PairFiles, load_pair
from spikereg.errors import SpikeRegError
from spikereg.netx_file import read_metadata
from spikereg.options import check_bound
from spikereg.registration.pipeline import declared_shape, preflight, run_registration

ENGINES = ("local", "dask")
CONNECT_TIMEOUT_S = 5.0  # an unreachable scheduler is reported after this long
COHORT_CSV = "cohort.csv"
SUMMARY_COLUMNS = ("name", "status", "fixed", "moving", "out", "ncc_before", "ncc_after", "total_seconds",
                   "network_seconds", "host_seconds", "message")
OK, FAILED = "ok", "failed"
#: report.json entries that must equal this run's options for --resume to keep a pair's earlier outputs.
RESUME_OPTIONS = ("backend", "precision", "device", "iterations", "patch_stride", "pyramid", "smoothing")
#: the same, for the options report.json records under "preparation" (grids, affine, intensities; issue 16)
RESUME_PREPARATION = ("affine", "grid", "percentiles", "histogram_match", "n4")


class CohortError(SpikeRegError, ValueError):
    """A bad pairs file, engine or cluster address; the message names it."""


class PairsFile(list):
    """The pairs of a pairs CSV, in its order, knowing the file and the line each came from (for messages)."""

    def __init__(self, path: Path, specs: list[PairFiles], lines: list[int]) -> None:
        super().__init__(specs)
        self.path = path
        self.lines = {spec.name: line for spec, line in zip(specs, lines)}

    def where(self, name: str) -> str:
        line = self.lines.get(name)
        return f"{self.path.name} line {line} ({name})" if line is not None else name


def read_pairs(path: str | Path) -> PairsFile:
    """Rows of a CSV with columns ``fixed, moving`` (and optionally ``moving_labels``, ``name``).

    Relative paths are relative to the CSV's folder; ``name`` (default: the
    row number, ``pair_000``...) names each pair's output folder. Here only the
    CSV and that the files exist are checked; the volumes are read and checked
    by :func:`spikereg.data.loaders.load_pair`, as a dataset's pairs are.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortError(f"--pairs {path}: file not found")
    try:
        reader = csv.DictReader(io.StringIO(path.read_text()))
        # line_num after each row: blank lines are skipped and quoted fields may span lines, so count them
        rows = [(row, reader.line_num) for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise CohortError(f"--pairs {path}: not a readable CSV ({error})") from None
    if not rows:
        raise CohortError(f"--pairs {path}: no pairs (expected a header 'fixed,moving' and one row per pair)")
    missing = {"fixed", "moving"} - set(rows[0][0])
    if missing:
        raise CohortError(f"--pairs {path}: missing column(s) {', '.join(sorted(missing))} "
                          f"(header is {', '.join(rows[0][0])})")
    specs, names, lines = [], set(), []
    for number, (row, line) in enumerate(rows):

        def resolve(key: str) -> Path | None:
            value = (row.get(key) or "").strip()
            if not value:
                return None
            file = Path(value) if Path(value).is_absolute() else path.parent / value
            if not file.is_file():
                raise CohortError(f"--pairs {path}, line {line}: {key} {value} not found")
            return file

        fixed, moving = resolve("fixed"), resolve("moving")
        if fixed is None or moving is None:
            raise CohortError(f"--pairs {path}, line {line}: fixed and moving are both required")
        name = (row.get("name") or "").strip() or f"pair_{number:03d}"
        if name in names or "/" in name or name.startswith("."):
            raise CohortError(f"--pairs {path}, line {line}: name {name!r} is repeated or not a plain folder name")
        names.add(name)
        specs.append(PairFiles(name, fixed, moving, moving_labels=resolve("moving_labels")))
        lines.append(line)
    return PairsFile(path, specs, lines)


def _dask_client(address: str | None, workers: int):
    """A connected client and what to close afterwards (a local cluster we started, if any)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CohortError("--engine dask needs Dask distributed: pip install 'dask[distributed]' "
                          "(or spikereg's 'cluster' extra)") from None
    if address is None:
        import dask

        # Workers must be allowed child processes: Lava's runtime starts its own.
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        return Client(cluster), cluster
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise CohortError(f"--address {address}: no Dask scheduler answered within {CONNECT_TIMEOUT_S:g} s "
                          f"({error.__class__.__name__}); start one with 'dask scheduler' and workers with "
                          "'dask worker ADDRESS'") from None
    return client, None


def check_engine(engine: str, address: str | None, workers: int) -> None:
    """--engine, --address and --workers make sense together, or a CohortError naming the option."""
    if engine not in ENGINES:
        raise CohortError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if address is not None and engine != "dask":
        raise CohortError(f"--address {address}: applies to --engine dask only")

    check_bound("--workers", workers)


def map_pairs(
    task: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """``[task(item) for item in items]``, here or on Dask; results in input order.

    ``task`` must be picklable for Dask (a module-level function, or a
    ``functools.partial`` of one). An exception in any task is raised here.
    ``progress(done, total)`` is called as results arrive.
    """
    check_engine(engine, address, workers)
    total = len(items)
    if engine == "local":
        results = []
        for item in items:
            results.append(task(item))
            if progress is not None:
                progress(len(results), total)
        return results
    from dask.distributed import as_completed

    client, cluster = _dask_client(address, workers)
    try:
        # pure=False: the same item twice is two runs, as it would be locally.
        futures = [client.submit(task, item, pure=False) for item in items]
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * total
        for done, future in enumerate(as_completed(futures), start=1):
            results[index[future.key]] = future.result()  # re-raises a task's exception here
            if progress is not None:
                progress(done, total)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _let_lava_set_its_start_method() -> None:
    """Lava calls ``multiprocessing.set_start_method('fork')`` when first imported, which
    raises in a process whose start method is already chosen -- a Dask worker process.
    Unset it there first; a process where Lava is already imported is left alone."""
    import multiprocessing
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules and \
            multiprocessing.get_start_method(allow_none=True) is not None:
        multiprocessing.set_start_method(None, force=True)


def register_pair(spec: PairFiles, model: Path, out: Path, options: dict) -> dict:
    """``spikereg run`` on one pair into ``out / spec.name``; its row of ``cohort.csv``."""
    if options.get("backend", "sim") != "torch":
        _let_lava_set_its_start_method()
    meta = read_metadata(model)
    budget = options.get("memory_budget_gb")
    shape = declared_shape(spec.fixed, "fixed image") if isinstance(spec.fixed, Path) else None
    if shape is not None:  # the budget, from the header, before the volumes are read
        preflight(shape, meta, options.get("backend", "sim"), options.get("pyramid", 1), budget,
                  options.get("batch_size", 32))
    pair = load_pair(spec, limit_gb=budget)
    folder = Path(out) / spec.name
    report = run_registration(pair.fixed, pair.moving, model, meta, folder,
                              labels=pair.moving_labels, **options)
    return _row(spec, folder, report)


def _row(spec: PairFiles, folder: Path, report: dict, message: str = "") -> dict:
    similarity, timing = report["similarity"], report["timing"]
    return {"name": spec.name, "status": OK, "fixed": str(spec.fixed), "moving": str(spec.moving),
            "out": str(folder), "ncc_before": similarity["ncc_before"], "ncc_after": similarity["ncc_after"],
            "total_seconds": timing["total_seconds"], "network_seconds": timing["network_seconds"],
            "host_seconds": timing["host_seconds"], "message": message}


def register_or_record(spec: PairFiles, where: str, model: Path, out: Path, options: dict) -> dict:
    """:func:`register_pair`, or, if the pair fails, a ``failed`` row whose message says where and why.

    Caught in the task itself, so that a failing pair is one row on either
    engine and the other pairs go on (Ctrl-C still stops the cohort).
    """
    try:
        return register_pair(spec, model, out, options)
    except Exception as error:  # noqa: BLE001 -- one pair's failure, whatever it is, must not lose the others
        text = str(error).splitlines()[0] if str(error) else ""
        if not isinstance(error, (ValueError, OSError)):  # not an expected input error: say what kind it was
            text = f"{error.__class__.__name__}: {text}" if text else error.__class__.__name__
        row = dict.fromkeys(SUMMARY_COLUMNS, "")
        row.update(name=spec.name, status=FAILED, fixed=str(spec.fixed), moving=str(spec.moving),
                   message=f"{where}: {text}")
        return row


def _absolute(spec: PairFiles) -> PairFiles:
    """The pair with absolute file paths: workers may run elsewhere, and --resume compares them."""
    return dataclasses.replace(spec, **{field: Path(value).resolve() for field, value in vars(spec).items()
                                        if isinstance(value, Path)})


def _earlier_rows(out: Path) -> dict[str, dict] | None:
    """``out/cohort.csv``'s rows by name; None where an earlier run wrote none (it was interrupted)."""
    path = out / COHORT_CSV
    if not path.is_file():
        return None
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (UnicodeDecodeError, csv.Error) as error:
        raise CohortError(f"--resume: {path} is not a readable CSV ({error}); remove it to run every pair") from None
    if rows and "name" not in rows[0]:
        raise CohortError(f"--resume: {path} has no name column (not a cohort.csv of SpikeReg?); "
                          "remove it to run every pair")
    # SpikeReg before the status column wrote cohort.csv only once every pair had succeeded.
    return {row["name"]: {"status": OK, **{k: v for k, v in row.items() if v is not None}} for row in rows}


def _as_recorded(value):
    """An option as report.json holds it (tuples become lists, None becomes "none")."""
    if value is None:
        return "none"
    return list(value) if isinstance(value, tuple) else value


def _done_before(spec: PairFiles, folder: Path, model: Path, options: dict, earlier: dict[str, dict] | None
                 ) -> dict | None:
    """The pair's row if an earlier run registered it exactly as this one would, else None (run it).

    Done means: cohort.csv (where there is one) says ``ok`` for this name and
    these files, and the pair's report.json records the same files, model and
    options, and every output it lists is there. Anything less is run again.
    """
    if earlier is not None:
        row = earlier.get(spec.name)
        if row is None or row.get("status") != OK or row.get("fixed") != str(spec.fixed) \
                or row.get("moving") != str(spec.moving):
            return None
    try:
        report = json.loads((folder / "report.json").read_text())
        inputs = report["inputs"]
        same = (inputs["fixed"], inputs["moving"], inputs["model"]) == (str(spec.fixed), str(spec.moving), str(model))
        same = same and all(report.get(key) == options[key] for key in RESUME_OPTIONS if key in options)
        preparation = report.get("preparation", {})
        same = same and all(preparation.get(key) == _as_recorded(options[key])
                            for key in RESUME_PREPARATION if key in options)
        outputs = report["outputs"]
        same = same and ("warped_labels" in outputs) == (spec.moving_labels is not None)
        same = same and all((folder / name).is_file() for name in outputs.values())
        return _row(spec, folder, report, "kept from an earlier run") if same else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no report, or not one we wrote: run it
        return None


def register_cohort(
    pairs: Iterable[PairFiles],
    model: str | Path,
    out: str | Path,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    **options: Any,
) -> list[dict]:
    """Register every pair (``options`` as for :func:`~spikereg.registration.pipeline.run_registration`).

    Each pair's outputs land in ``out/<name>/`` and ``out/cohort.csv`` lists
    one row per pair, in input order, with its ``status`` (``ok`` or
    ``failed``) and ``message`` (why it failed, naming its CSV line where
    ``pairs`` comes from :func:`read_pairs`). A failed pair does not stop the
    others. The whole of ``out`` is written in a hidden staging folder and
    appears only once every pair is done; an existing non-empty ``out`` is
    refused unless ``overwrite``, which replaces it as a unit
    (:func:`spikereg.data.io.staged_folder`), so a cohort's folders never sit
    beside another cohort's. ``resume`` instead works in ``out`` itself: it
    keeps the pairs an earlier run there registered with the same files, model
    and options (see :func:`_done_before`) and registers the rest in place.
    """
    check_engine(engine, address, workers)  # before anything, even when --resume leaves nothing to run
    where = pairs.where if isinstance(pairs, PairsFile) else str
    specs, out, model = [_absolute(spec) for spec in pairs], Path(out).resolve(), Path(model).resolve()
    rows: list[dict | None] = [None] * len(specs)
    if resume:
        earlier = _earlier_rows(out)
        rows = [_done_before(spec, out / spec.name, model, options, earlier) for spec in specs]
    todo = [index for index, row in enumerate(rows) if row is None]
    done = len(specs) - len(todo)
    step = None if progress is None else (lambda finished, _: progress(done + finished, len(specs)))
    items = [(specs[i], where(specs[i].name)) for i in todo]

    def run_into(folder: Path, pair_options: dict) -> None:
        task = functools.partial(_register_item, model=model, out=folder, options=pair_options)
        # Nothing left to run (all kept by --resume): no cluster to start for it.
        results = map_pairs(task, items, engine=engine, address=address, workers=workers,
                            progress=step) if items else []
        for index, row in zip(todo, results):
            if row.get("out"):  # where each pair's folder will be, not where it was staged
                row["out"] = str(out / specs[index].name)
            rows[index] = row
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / COHORT_CSV, text.getvalue())

    if resume:  # a pair run again replaces whatever its earlier attempt left, as a unit
        run_into(out, dict(options, overwrite=True))
    else:
        with staged_folder(out, overwrite=overwrite) as staging:
            run_into(Path(staging).resolve(), options)
    return rows


def _register_item(item: tuple[PairFiles, str], model: Path, out: Path, options: dict) -> dict:
    """:func:`register_or_record` on a (pair, where) item: module-level, so Dask can pickle it."""
    spec, where = item
    return register_or_record(spec, where, model, out, options)
