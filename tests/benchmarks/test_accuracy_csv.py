"""The accuracy benchmark's shard CSVs: rows come back bit for bit, and merging refuses shards that do not fit."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("accuracy_csv", ROOT / "benchmarks" / "accuracy_csv.py")
acc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(acc)

METHODS = ["identity", acc.TORCH, acc.LAVA]


def settings(**changes) -> dict:
    return dict(dict(methods=METHODS, pairs=4, lava_pairs=2, torch_pairs=4, iterations=8), **changes)


def rows(indices, lava_below=2) -> list[dict]:
    """What a shard registers: every method on its pairs, Lava only on the first ``lava_below`` of the set."""
    out = []
    for i in indices:
        for method in METHODS:
            if method == acc.LAVA and i >= lava_below:
                continue
            out.append(dict(pair=f"pair_{i:03d}", index=i, method=method, epe_vox=0.1 * i + 1 / 3, dice=0.9 + i / 7))
    return out


def write_shard(tmp_path: Path, shard: str, indices, **changes) -> Path:
    path = tmp_path / f"shard{shard.replace('/', 'of')}.csv"
    acc.write_csv(path, rows(indices), dict(settings=settings(**changes), notes=["a note"], shard=shard,
                                           command="benchmarks/accuracy.py ...", machine="2 cores",
                                           date="2026-11-24", wall_seconds=12.5))
    return path


def test_round_trip_keeps_every_float_and_the_metadata(tmp_path):
    path = write_shard(tmp_path, "0/1", range(4))
    metadata, back = acc.read_csv(path)
    assert metadata["settings"] == settings() and metadata["wall_seconds"] == 12.5
    assert back == rows(range(4))  # floats written as repr: equal, not close
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # written whole, no temporary left


def test_merge_of_shards_equals_the_unsharded_rows(tmp_path):
    first = write_shard(tmp_path, "0/2", [0, 2])
    second = write_shard(tmp_path, "1/2", [1, 3])
    merged_settings, records, shards = acc.merge_csvs([second, first])  # order given does not matter
    assert merged_settings == settings()
    assert [s["shard"] for s in shards] == ["0/2", "1/2"]
    assert records == rows(range(4))
    lines = acc.coverage(records, METHODS)
    assert lines[2] == f"{acc.LAVA}: 2 pairs (pair_000, pair_001)"


def test_merge_refuses_a_missing_shard(tmp_path):
    with pytest.raises(ValueError, match=r"need shards 0/2, 1/2 once each.*missing 1/2"):
        acc.merge_csvs([write_shard(tmp_path, "0/2", [0, 2])])


def test_merge_refuses_other_settings_and_names_them(tmp_path):
    first = write_shard(tmp_path, "0/2", [0, 2])
    second = write_shard(tmp_path, "1/2", [1, 3], iterations=3)
    with pytest.raises(ValueError, match=r"other settings .*\(iterations differ\)"):
        acc.merge_csvs([first, second])


def test_merge_refuses_a_pair_measured_twice(tmp_path):
    first = write_shard(tmp_path, "0/2", [0, 1])
    second = write_shard(tmp_path, "1/2", [1, 3])
    with pytest.raises(ValueError, match=r"pair pair_001 of identity is also in"):
        acc.merge_csvs([first, second])


def test_merge_refuses_a_method_short_of_its_pairs(tmp_path):
    # Both shards promise Lava on pairs 0..2, but their rows hold it on 0 and 1 only.
    both = [write_shard(tmp_path, shard, indices, lava_pairs=3)
            for shard, indices in (("0/2", [0, 2]), ("1/2", [1, 3]))]
    with pytest.raises(ValueError,
                       match=r"SNN, Lava simulator \(sim backend\) should cover pairs 0\.\.2 .* hold 0, 1$"):
        acc.merge_csvs(both)


def test_read_refuses_a_csv_without_its_header_lines(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("pair,index,method,epe_vox\npair_000,0,identity,1.0\n")
    with pytest.raises(ValueError, match=r"old\.csv: no settings, notes, shard, command, machine, date, "
                                         r"wall_seconds header lines"):
        acc.read_csv(path)
    with pytest.raises(ValueError, match=r"cannot read it"):
        acc.read_csv(tmp_path / "absent.csv")


@pytest.mark.parametrize("text, message", [("2", "expected K/N"), ("2/2", "K must be one of 0..N-1"),
                                           ("a/b", "expected K/N")])
def test_parse_shard(text, message):
    assert acc.parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError, match=message):
        acc.parse_shard(text)
