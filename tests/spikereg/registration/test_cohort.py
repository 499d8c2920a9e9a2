"""Cohorts: a pairs CSV registered in process and on a 2-worker Dask cluster give the same outputs."""
import csv
import time

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from spikereg.cli import app
from spikereg.data import PairFiles, VolumeError, load_mni, load_pair, make_pair
from spikereg.registration.cohort import CohortError, map_pairs, read_pairs, register_cohort


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    """Three 16^3 crops of 8 mm real-anatomy pairs, listed in pairs.csv with relative paths."""
    template = load_mni("t1", 8.0)
    folder = tmp_path_factory.mktemp("cohort")
    rows = []
    for k in range(3):
        pair = make_pair(template.data, np.random.default_rng(20 + k), max_displacement=2.0, control_spacing=4)
        crop = np.s_[5:21, 6:22, 4 + k:20 + k]
        for name in ("fixed", "moving"):
            nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), folder / f"{name}_{k}.nii.gz")
        rows.append({"name": f"subject{k}", "fixed": f"fixed_{k}.nii.gz", "moving": f"moving_{k}.nii.gz"})
    with open(folder / "pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "fixed", "moving"])
        writer.writeheader()
        writer.writerows(rows)
    return folder / "pairs.csv"


def test_dask_cluster_of_two_workers_gives_the_in_process_outputs(tiny_export, pairs_csv, tmp_path):
    pytest.importorskip("dask.distributed")
    pairs = read_pairs(pairs_csv)
    options = dict(backend="torch", iterations=1, patch_stride=4)
    local = register_cohort(pairs, tiny_export[1], tmp_path / "local", engine="local", **options)
    dask = register_cohort(pairs, tiny_export[1], tmp_path / "dask", engine="dask", workers=2, **options)
    assert [row["name"] for row in dask] == [row["name"] for row in local] == ["subject0", "subject1", "subject2"]
    for row in local:
        for output in ("ddf.nii.gz", "warped.nii.gz"):
            here = nib.load(tmp_path / "local" / row["name"] / output).get_fdata()
            there = nib.load(tmp_path / "dask" / row["name"] / output).get_fdata()
            np.testing.assert_array_equal(here, there)
        assert np.abs(nib.load(tmp_path / "local" / row["name"] / "ddf.nii.gz").get_fdata()).max() > 0.05
    for engine in ("local", "dask"):
        table = list(csv.DictReader(open(tmp_path / engine / "cohort.csv")))
        assert [r["name"] for r in table] == ["subject0", "subject1", "subject2"]
        assert [float(r["ncc_after"]) for r in table] == [row["ncc_after"] for row in local]


def test_cli_runs_a_pairs_csv_in_process(tiny_export, pairs_csv, tmp_path):
    result = CliRunner().invoke(app, ["run", "--pairs", str(pairs_csv), "--backend", "torch", "--model",
                                      str(tiny_export[1]), "--out", str(tmp_path / "cohort"), "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "cohort").iterdir()) == ["cohort.csv", "subject0", "subject1",
                                                                     "subject2"]
    assert (tmp_path / "cohort" / "subject2" / "report.json").is_file()


def test_an_unreachable_cluster_is_one_clear_error_quickly():
    pytest.importorskip("dask.distributed")
    tick = time.perf_counter()
    with pytest.raises(CohortError, match=r"--address tcp://127\.0\.0\.1:9: no Dask scheduler answered within"):
        map_pairs(abs, [1, -2], engine="dask", address="tcp://127.0.0.1:9")
    assert time.perf_counter() - tick < 30


def test_map_pairs_keeps_input_order_and_refuses_bad_engines():
    assert map_pairs(abs, [3, -1, -2]) == [3, 1, 2]
    with pytest.raises(CohortError, match="--engine 'ray'"):
        map_pairs(abs, [1], engine="ray")
    with pytest.raises(CohortError, match="applies to --engine dask only"):
        map_pairs(abs, [1], address="tcp://x:1")


@pytest.mark.parametrize("text, message", [
    ("fixed,moving\n", "no pairs"),
    ("fixed,target\na.nii.gz,b.nii.gz\n", "missing column(s) moving"),
    ("fixed,moving\nfixed_0.nii.gz,nothere.nii.gz\n", "line 2: moving nothere.nii.gz not found"),
    ("name,fixed,moving\nx,fixed_0.nii.gz,moving_0.nii.gz\nx,fixed_1.nii.gz,moving_1.nii.gz\n", "line 3: name 'x'"),
])
def test_bad_pairs_files_name_the_file_and_line(pairs_csv, text, message):
    bad = pairs_csv.parent / "bad.csv"
    bad.write_text(text)
    with pytest.raises(CohortError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_pairs(bad)


def test_pairs_csv_rows_are_pair_files_that_load_pair_reads_and_checks(pairs_csv):
    """A CSV row is the datasets' PairFiles, so a cohort's volumes get the same checks as a dataset's."""
    folder = pairs_csv.parent
    labels = nib.load(folder / "fixed_1.nii.gz")
    far = labels.affine.copy()
    far[:3, 3] += 1000.0  # labels on another grid are resampled; a metre away, they are refused
    nib.save(nib.Nifti1Image(labels.get_fdata(), far), folder / "short_labels.nii.gz")
    with_labels = folder / "with_labels.csv"
    with_labels.write_text("fixed,moving,moving_labels\nfixed_0.nii.gz,moving_0.nii.gz,\n"
                           "fixed_1.nii.gz,moving_1.nii.gz,short_labels.nii.gz\n")
    rows = read_pairs(with_labels)
    assert rows[0] == PairFiles("pair_000", folder / "fixed_0.nii.gz", folder / "moving_0.nii.gz")
    pair = load_pair(rows[0])
    np.testing.assert_array_equal(pair.moving.data, nib.load(folder / "moving_0.nii.gz").get_fdata())
    assert pair.moving_labels is None
    with pytest.raises(VolumeError, match=r"moving labels .*short_labels.nii.gz: does not overlap the moving image "
                                          r".*moving_1.nii.gz in world space"):
        load_pair(rows[1])


def test_lava_imports_in_a_process_whose_start_method_is_set_as_in_a_dask_worker():
    """Dask's worker processes have a start method; Lava's import sets 'fork' and would raise."""
    import subprocess
    import sys

    script = ("import multiprocessing as mp; mp.set_start_method('spawn')\n"
              "from spikereg.registration.cohort import _let_lava_set_its_start_method\n"
              "_let_lava_set_its_start_method()\n"
              "from spikereg import compat\n"
              "compat.import_lava('lava.magma.runtime.message_infrastructure.multiprocessing')\n"
              "print(mp.get_start_method())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "fork"
