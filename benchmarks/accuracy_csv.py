"""The accuracy benchmark's per-pair CSVs: writing them, reading them back, merging shards.

``benchmarks/accuracy.py --csv`` writes one row per pair and method, after
``# key: <json>`` header lines that record what the rows were measured with;
``--shard K/N`` runs write one CSV each, and ``--merge`` rebuilds the whole
set's rows from them alone (:func:`merge_csvs`), refusing shards that do not
fit together. pandas reads a CSV with ``read_csv(path, comment="#")``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

# The SNN rows' method names: --lava-pairs and --torch-pairs may cover fewer pairs than the rest.
LAVA = "SNN, Lava simulator (sim backend)"
TORCH = "SNN, SLAYER (torch backend)"


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 0 <= K < N, or ValueError saying what is wrong."""
    try:
        shard, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text}: expected K/N, e.g. 0/2") from None
    if not 0 <= shard < count:
        raise ValueError(f"--shard {text}: K must be one of 0..N-1")
    return shard, count


# A per-pair CSV opens with "# key: <json>" lines: what its rows were measured
# with (settings, which --merge checks agree), the run's notes, its shard,
# exact command, machine and load. pandas reads it with comment="#".
CSV_METADATA = ("settings", "notes", "shard", "command", "machine", "date", "wall_seconds")


def write_csv(path: Path, records: list[dict], metadata: dict) -> None:
    """Every method's metrics per pair, one row per pair and method, written whole or not at all."""
    from spikereg.data.io import write_text_atomic

    columns = list(dict.fromkeys(key for record in records for key in record
                                 if key not in ("pair", "index", "method")))
    text = io.StringIO()
    for key in CSV_METADATA:
        text.write(f"# {key}: {json.dumps(metadata[key])}\n")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["pair", "index", "method", *columns])
    for record in records:  # floats as repr: read back bit for bit
        writer.writerow([record["pair"], record["index"], record["method"], *(record.get(key, "") for key in columns)])
    write_text_atomic(path, text.getvalue())


def read_csv(path: Path) -> tuple[dict, list[dict]]:
    """A per-pair CSV written by ``--csv``: its metadata and its rows (metrics as floats)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ValueError(f"--merge {path}: cannot read it ({error.strerror})") from None
    metadata = {}
    for line in lines:
        if line.startswith("# ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            metadata[key] = json.loads(value)
    missing = [key for key in CSV_METADATA if key not in metadata]
    if missing:
        raise ValueError(f"--merge {path}: no {', '.join(missing)} header lines; only CSVs written by "
                         f"accuracy.py --csv since --shard/--merge exist can be merged")
    records = []
    for row in csv.DictReader(line for line in lines if not line.startswith("#")):
        record = {"pair": row.pop("pair"), "index": int(row.pop("index")), "method": row.pop("method")}
        record.update({key: float(value) for key, value in row.items() if value != ""})
        records.append(record)
    return metadata, records


def merge_csvs(paths: list[Path]) -> tuple[dict, list[dict], list[dict]]:
    """Shards' CSVs -> (their common settings, all rows in pair order, each shard's metadata in shard order).

    Refuses CSVs measured with different settings, a shard given twice or
    missing, and a pair measured twice for a method.
    """
    shards = []
    records = []
    seen = {}
    for path in paths:
        metadata, rows = read_csv(path)
        metadata["path"] = str(path)
        if shards and metadata["settings"] != shards[0]["settings"]:
            first = shards[0]["settings"]
            differ = sorted(key for key in first.keys() | metadata["settings"].keys()
                            if first.get(key) != metadata["settings"].get(key))
            raise ValueError(f"--merge {path}: measured with other settings than {shards[0]['path']} "
                             f"({', '.join(differ)} differ)")
        for row in rows:
            if row["method"] not in metadata["settings"]["methods"]:
                raise ValueError(f"--merge {path}: method {row['method']!r} is not among its settings' methods")
            key = (row["method"], row["pair"])
            if key in seen:
                raise ValueError(f"--merge {path}: pair {row['pair']} of {row['method']} is also in {seen[key]}")
            seen[key] = path
        shards.append(metadata)
        records += rows
    counts = {shard["shard"].split("/")[1] for shard in shards}
    given = sorted(shard["shard"] for shard in shards)
    if len(counts) > 1:
        raise ValueError(f"--merge: the CSVs are shards of different splits ({', '.join(given)})")
    count = int(counts.pop())
    wanted = [f"{k}/{count}" for k in range(count)]
    if given != sorted(wanted):
        missing = sorted(set(wanted) - set(given))
        raise ValueError(f"--merge: need shards {', '.join(wanted)} once each; got {', '.join(given)}"
                         + (f" (missing {', '.join(missing)})" if missing else ""))
    shards.sort(key=lambda shard: int(shard["shard"].split("/")[0]))
    records.sort(key=lambda record: record["index"])  # stable: methods stay in their order within a pair
    settings = shards[0]["settings"]
    for method in settings["methods"]:
        wanted = {LAVA: settings["lava_pairs"], TORCH: settings.get("torch_pairs", settings["pairs"])}.get(
            method, settings["pairs"])
        got = sorted(r["index"] for r in records if r["method"] == method)
        if got != list(range(wanted)):
            raise ValueError(f"--merge: {method} should cover pairs 0..{wanted - 1} of the whole set; the CSVs "
                             f"hold {', '.join(map(str, got)) or 'none'}")
    return settings, records, shards


def coverage(records: list[dict], methods: list[str]) -> list[str]:
    """One line per method: which pairs its rows cover."""
    return [f"{method}: {len(names)} pairs ({', '.join(names)})" for method in methods
            for names in [[r["pair"] for r in records if r["method"] == method]]]
