"""Many registrations at once: a cohort of pairs, in process or on a Dask cluster.

:func:`map_pairs` is the generic part: it applies one picklable callable to
every item, in order, either here (``engine="local"``, one after another, no
cluster needed) or on Dask distributed (``engine="dask"``: a scheduler at
``address``, or, without one, a throw-away ``LocalCluster`` of ``workers``
processes on this machine). Either way the results come back in input order
and are the same values: each item is computed by the same function on the
same files. :func:`register_cohort` uses it to run ``spikereg run`` on every
row of a pairs CSV, each pair into its own folder, plus ``cohort.csv``.

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
import functools
import io
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from spikereg.data.loaders import PairFiles, load_pair

ENGINES = ("local", "dask")
CONNECT_TIMEOUT_S = 5.0  # an unreachable scheduler is reported after this long
COHORT_CSV = "cohort.csv"
SUMMARY_COLUMNS = ("name", "fixed", "moving", "out", "ncc_before", "ncc_after", "total_seconds",
                   "network_seconds", "host_seconds")


class CohortError(ValueError):
    """A bad pairs file, engine or cluster address; the message names it."""


def read_pairs(path: str | Path) -> list[PairFiles]:
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
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (UnicodeDecodeError, csv.Error) as error:
        raise CohortError(f"--pairs {path}: not a readable CSV ({error})") from None
    if not rows:
        raise CohortError(f"--pairs {path}: no pairs (expected a header 'fixed,moving' and one row per pair)")
    missing = {"fixed", "moving"} - set(rows[0])
    if missing:
        raise CohortError(f"--pairs {path}: missing column(s) {', '.join(sorted(missing))} "
                          f"(header is {', '.join(rows[0])})")
    specs, names = [], set()
    for number, row in enumerate(rows):
        line = number + 2  # the header is line 1

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
    return specs


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
    if engine not in ENGINES:
        raise CohortError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if address is not None and engine != "dask":
        raise CohortError(f"--address {address}: applies to --engine dask only")
    from spikereg.options import check_bound

    check_bound("--workers", workers)
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
    from lava_export.netx import read_metadata
    from spikereg.registration.pipeline import declared_shape, preflight, run_registration

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
    similarity, timing = report["similarity"], report["timing"]
    return {"name": spec.name, "fixed": str(spec.fixed), "moving": str(spec.moving), "out": str(folder),
            "ncc_before": similarity["ncc_before"], "ncc_after": similarity["ncc_after"],
            "total_seconds": timing["total_seconds"], "network_seconds": timing["network_seconds"],
            "host_seconds": timing["host_seconds"]}


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
    **options: Any,
) -> list[dict]:
    """Register every pair (``options`` as for :func:`~spikereg.registration.pipeline.run_registration`).

    Each pair's outputs land in ``out/<name>/`` and ``out/cohort.csv`` lists
    one row per pair. The whole of ``out`` is written in a hidden staging
    folder and appears only once every pair is done; an existing non-empty
    ``out`` is refused unless ``overwrite``, which replaces it as a unit
    (:func:`spikereg.data.io.staged_folder`), so a cohort's folders never sit
    beside another cohort's.
    """
    from spikereg.data.io import staged_folder, write_text_atomic

    pairs, out = list(pairs), Path(out)
    with staged_folder(out, overwrite=overwrite) as staging:
        task = functools.partial(register_pair, model=Path(model).resolve(), out=staging.resolve(),
                                 options=options)
        rows = map_pairs(task, pairs, engine=engine, address=address, workers=workers, progress=progress)
        for row in rows:  # where each pair's folder will be, not where it was staged
            row["out"] = str(out.resolve() / row["name"])
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(staging / COHORT_CSV, text.getvalue())
    return rows
