"""Cohorts that keep going: a failing pair is a row of cohort.csv, the others finish, --resume skips what is done."""
import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spikereg.data import load_mni, make_pair
from spikereg.registration.cohort import read_pairs, register_cohort
from spikereg.report.summary import read_report

RUN = ("--model", "demo", "--backend", "torch", "--iterations", "1")  # the shipped small model: seconds a pair
OUTPUTS = ("ddf.nii.gz", "warped.nii.gz", "report.json")


@pytest.fixture
def cohort(tmp_path):
    """Three 20^3 crops of 8 mm real-anatomy pairs in pairs.csv, with a blank line before the third row."""
    template = load_mni("t1", 8.0)
    for k in range(3):
        pair = make_pair(template.data, np.random.default_rng(20 + k), max_displacement=2.0, control_spacing=4)
        for name in ("fixed", "moving"):
            nib.save(nib.Nifti1Image(getattr(pair, name)[2:22, 2:22, 2:22], template.affine),
                     tmp_path / f"{name}_{k}.nii.gz")
    (tmp_path / "pairs.csv").write_text("name,fixed,moving\ns0,fixed_0.nii.gz,moving_0.nii.gz\n"
                                        "s1,fixed_1.nii.gz,moving_1.nii.gz\n\ns2,fixed_2.nii.gz,moving_2.nii.gz\n")
    return tmp_path


def table(out: Path) -> list[dict]:
    with open(out / "cohort.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def one_error(result, *fragments: str) -> str:
    """Exit 1, exactly one error line on stderr (the last), containing FRAGMENTS; no traceback, no crash."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught exception
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    assert all(fragment in errors[0] for fragment in fragments), errors[0]
    return errors[0]


def leftovers(out: Path) -> list[str]:
    """Temporary files or staging folders left in OUT or its pair folders."""
    return [str(p) for p in out.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".partial")]


def break_moving_1(folder: Path, how: str) -> None:
    if how == "not a NIfTI":
        (folder / "moving_1.nii.gz").write_bytes(b"this is not a volume")
    else:  # a grid that does not overlap the fixed image's (other grids that do are resampled)
        image = nib.load(folder / "moving_1.nii.gz")
        far = image.affine.copy()
        far[:3, 3] += 1000.0
        nib.save(nib.Nifti1Image(image.get_fdata(), far), folder / "moving_1.nii.gz")


@pytest.mark.parametrize("how, why", [("not a NIfTI", "cannot be read as a NIfTI image"),
                                      ("far grid", "does not overlap the fixed image")])
def test_one_failing_pair_is_recorded_and_the_others_finish(cli, cohort, how, why):
    break_moving_1(cohort, how)
    out = cohort / "out"
    result = cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out)
    one_error(result, "1 of 3 pairs failed", str(out / "cohort.csv"))
    rows = table(out)
    assert [(r["name"], r["status"]) for r in rows] == [("s0", "ok"), ("s1", "failed"), ("s2", "ok")]
    assert rows[1]["message"].startswith("pairs.csv line 3 (s1): ") and why in rows[1]["message"]
    assert str(cohort / "moving_1.nii.gz") in rows[1]["message"]
    assert rows[1]["ncc_after"] == "" and rows[1]["out"] == ""
    assert rows[0]["message"] == rows[2]["message"] == "" and float(rows[2]["ncc_after"]) > 0
    assert sorted(p.name for p in out.iterdir()) == ["cohort.csv", "s0", "s2"]  # no folder for the failed pair
    for name in ("s0", "s2"):
        assert all((out / name / output).is_file() for output in OUTPUTS)
    read_report(out / "s0")  # a real run's report passes `spikereg report`'s checks
    assert not leftovers(out)
    assert "s1: failed (pairs.csv line 3 (s1): " in result.stderr


def test_the_csv_line_counts_blank_lines(cli, cohort):
    (cohort / "moving_2.nii.gz").write_bytes(b"")
    out = cohort / "out"
    one_error(cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out), "1 of 3 pairs failed")
    assert table(out)[2]["message"].startswith("pairs.csv line 5 (s2): ")  # line 4 is blank


def test_every_pair_failing_still_writes_cohort_csv(cli, cohort):
    for k in range(3):
        (cohort / f"fixed_{k}.nii.gz").write_bytes(b"x")
    out = cohort / "out"
    one_error(cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out), "3 of 3 pairs failed")
    assert [r["status"] for r in table(out)] == ["failed"] * 3
    assert sorted(p.name for p in out.iterdir()) == ["cohort.csv"]


def test_resume_runs_only_what_failed_and_keeps_what_is_done(cli, cohort):
    original = (cohort / "moving_1.nii.gz").read_bytes()
    break_moving_1(cohort, "not a NIfTI")
    out = cohort / "out"
    one_error(cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out), "1 of 3 pairs failed")
    kept = {name: (out / name / "ddf.nii.gz").stat().st_mtime_ns for name in ("s0", "s2")}
    first = table(out)
    (cohort / "moving_1.nii.gz").write_bytes(original)  # fixed
    result = cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out, "--resume")
    assert result.exit_code == 0 and result.exception is None, result.output
    rows = table(out)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [r["message"] for r in rows] == ["kept from an earlier run", "", "kept from an earlier run"]
    assert {name: (out / name / "ddf.nii.gz").stat().st_mtime_ns for name in ("s0", "s2")} == kept  # not rerun
    assert rows[0]["ncc_after"] == first[0]["ncc_after"] and rows[2]["ncc_after"] == first[2]["ncc_after"]
    assert all((out / "s1" / output).is_file() for output in OUTPUTS)
    assert not leftovers(out)


@pytest.mark.parametrize("change", ["other options", "output deleted", "cohort.csv says failed"])
def test_resume_reruns_a_pair_whose_earlier_outputs_do_not_match(cli, cohort, change):
    out = cohort / "out"
    assert cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out).exit_code == 0
    stamps = {name: (out / name / "report.json").stat().st_mtime_ns for name in ("s0", "s1", "s2")}
    args = list(RUN)
    if change == "other options":
        args[-1] = "2"  # --iterations 2: every earlier output is for another run
    elif change == "output deleted":
        (out / "s1" / "warped.nii.gz").unlink()
    else:
        rows = table(out)
        rows[1]["status"] = "failed"
        with open(out / "cohort.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    result = cli.invoke("run", "--pairs", cohort / "pairs.csv", *args, "--out", out, "--resume")
    assert result.exit_code == 0 and result.exception is None, result.output
    rerun = {name for name in stamps if (out / name / "report.json").stat().st_mtime_ns != stamps[name]}
    assert rerun == ({"s0", "s1", "s2"} if change == "other options" else {"s1"})
    assert [r["message"] == "" for r in table(out)] == [name in rerun for name in ("s0", "s1", "s2")]
    assert all((out / "s1" / output).is_file() for output in OUTPUTS)


def test_resume_needs_pairs(cli, cohort):
    out = cohort / "out"
    result = cli.invoke("run", "--fixed", cohort / "fixed_0.nii.gz", "--moving", cohort / "moving_0.nii.gz",
                        *RUN, "--out", out, "--resume")
    one_error(result, "--resume applies to --pairs only")
    assert not out.exists()


def test_a_failing_pair_on_dask_is_recorded_as_in_process(cohort):
    """The dask engine catches a pair's failure in the worker: the same rows as the local engine."""
    pytest.importorskip("dask.distributed")
    from spikereg import compat
    from spikereg.pretrained import SHIPPED

    # Lava sets the start method when first imported, which fails once a local cluster has set it: import it
    # first, as the session's other tests (which run Lava here) would find it.
    compat.import_lava("lava.magma.runtime.message_infrastructure.multiprocessing")

    break_moving_1(cohort, "not a NIfTI")
    pairs, options = read_pairs(cohort / "pairs.csv"), dict(backend="torch", iterations=1)
    local = register_cohort(pairs, SHIPPED["demo"].netx, cohort / "local", **options)
    dask = register_cohort(pairs, SHIPPED["demo"].netx, cohort / "dask", engine="dask", workers=1, **options)
    assert [(r["status"], r["message"]) for r in dask] == [(r["status"], r["message"]) for r in local]
    assert [r["status"] for r in table(cohort / "dask")] == ["ok", "failed", "ok"]
    assert os.listdir(cohort / "dask") and not (cohort / "dask" / "s1").exists()


@pytest.mark.parametrize("earlier", ["none (interrupted run)", "without status (older SpikeReg)"])
def test_resume_without_a_status_column_trusts_the_pairs_own_reports(cli, cohort, earlier):
    """An interrupted run wrote no cohort.csv, an older SpikeReg one without status (only when all succeeded)."""
    out = cohort / "out"
    assert cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out).exit_code == 0
    stamps = {name: (out / name / "report.json").stat().st_mtime_ns for name in ("s0", "s1", "s2")}
    if earlier.startswith("none"):
        (out / "cohort.csv").unlink()
    else:
        rows = [{k: v for k, v in row.items() if k not in ("status", "message")} for row in table(out)]
        with open(out / "cohort.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    result = cli.invoke("run", "--pairs", cohort / "pairs.csv", *RUN, "--out", out, "--resume")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert {name: (out / name / "report.json").stat().st_mtime_ns for name in stamps} == stamps
    assert [(r["status"], r["message"]) for r in table(out)] == [("ok", "kept from an earlier run")] * 3
