"""--out as users expect: checked before any work, a result folder written whole, replaced whole (issue 14).

Tests may run as root, where permission bits do not stop writes, so an
unwritable destination is one under a regular file.
"""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from spikereg.data import load_mni, make_pair, tissue_labels

    template = load_mni("t1", 8.0)
    pair = make_pair(template.data, np.random.default_rng(3), max_displacement=2.0, control_spacing=4,
                     base_labels=tissue_labels(8.0).data)
    crop = np.s_[5:21, 6:22, 4:20]
    folder = tmp_path_factory.mktemp("images")
    files = {}
    for name, data in (("fixed", pair.fixed[crop]), ("moving", pair.moving[crop]),
                       ("labels", pair.moving_labels[crop].astype(np.uint8))):
        files[name] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, template.affine), files[name])
    return files


def run(cli, images, out, *extra):
    return cli.invoke("run", "--model", "demo", "--backend", "torch", "--fixed", images["fixed"],
                      "--moving", images["moving"], "--out", out, *extra)


def one_line(result) -> str:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def no_leftovers(folder):
    """No hidden staging (.partial) or set-aside (.old) folders beside the outputs."""
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def blocker(tmp_path):
    """A regular file: a path under it cannot be created, even by root."""
    path = tmp_path / "blocker"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("command", ["run", "evaluate", "train", "data synth"])
def test_an_existing_file_as_out_folder_is_refused_before_any_work(cli, images, blocker, tmp_path, command):
    args = {"run": ["run", "--model", "demo", "--backend", "torch", "--fixed", images["fixed"],
                    "--moving", images["moving"]],
            "evaluate": ["evaluate", "--data", tmp_path, "--model", "demo"],
            "train": ["train", "--config", ROOT_CONFIG],
            "data synth": ["data", "synth", "--pairs", 1]}[command]
    line = one_line(cli.invoke(*args, "--out", blocker))
    assert f"--out {blocker}: is an existing file; give a folder" in line
    assert blocker.read_text() == "not a folder" and no_leftovers(tmp_path)


@pytest.mark.parametrize("command", ["run", "evaluate", "train", "data synth", "warp", "export"])
def test_an_out_that_cannot_be_created_is_refused_before_any_work(cli, images, blocker, tmp_path, command):
    target = blocker / "sub" / ("o.nii.gz" if command == "warp" else "m.net" if command == "export" else "x")
    args = {"run": ["run", "--model", "demo", "--backend", "torch", "--fixed", images["fixed"],
                    "--moving", images["moving"]],
            "evaluate": ["evaluate", "--data", tmp_path, "--model", "demo"],
            "train": ["train", "--config", ROOT_CONFIG],
            "data synth": ["data", "synth", "--pairs", 1],
            "warp": ["warp", "--image", images["moving"], "--ddf", images["moving"]],
            "export": ["export", "demo", "--no-verify", "--profile", "none"]}[command]
    line = one_line(cli.invoke(*args, "--out", target))
    assert f"--out {target}: cannot be created, {blocker} is a file, not a folder" in line
    assert no_leftovers(tmp_path)


@pytest.mark.parametrize("command", ["warp", "export"])
def test_a_folder_as_out_file_is_refused(cli, images, tmp_path, command):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    args = {"warp": ["warp", "--image", images["moving"], "--ddf", images["moving"]],
            "export": ["export", "demo", "--no-verify", "--profile", "none"]}[command]
    line = one_line(cli.invoke(*args, "--out", folder))
    assert f"--out {folder}: is a folder; give a file name" in line
    assert not any(folder.iterdir())


def test_a_result_folder_is_refused_without_overwrite_and_replaced_whole_with_it(cli, images, tmp_path):
    out = tmp_path / "result"
    first = run(cli, images, out, "--moving-labels", images["labels"])
    assert first.exit_code == 0, first.output
    assert (out / "warped_labels.nii.gz").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    line = one_line(run(cli, images, out))
    assert f"--out {out}: the folder exists and is not empty" in line and "--overwrite" in line
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched

    again = run(cli, images, out, "--overwrite")
    assert again.exit_code == 0, again.output
    # the old run's labels do not sit beside the new field: the folder is the new run's, whole
    assert not (out / "warped_labels.nii.gz").exists()
    report = json.loads((out / "report.json").read_text())
    assert set(report["outputs"].values()) <= {p.name for p in out.iterdir()}
    assert "warped_labels" not in report["outputs"]
    assert no_leftovers(tmp_path)


def test_an_empty_existing_folder_is_used_without_overwrite(cli, images, tmp_path):
    out = tmp_path / "made_by_hand"
    out.mkdir()
    result = run(cli, images, out)
    assert result.exit_code == 0, result.output
    assert (out / "ddf.nii.gz").is_file() and no_leftovers(tmp_path)


def test_a_failed_overwrite_leaves_the_old_folder_as_it_was(tmp_path):
    from spikereg.data.io import staged_folder

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(out, overwrite=True) as staging:
            (staging / "new.txt").write_text("new")
            raise RuntimeError("the registration failed")
    assert [p.name for p in out.iterdir()] == ["old.txt"] and no_leftovers(tmp_path)
    with staged_folder(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"] and no_leftovers(tmp_path)


def test_evaluate_refuses_a_used_folder_and_replaces_it_whole_with_overwrite(cli, tmp_path):
    data, out = tmp_path / "data", tmp_path / "eval"
    made = cli.invoke("data", "synth", "--out", data, "--pairs", 1, "--spacing", 8, "--split", "0,0,1")
    assert made.exit_code == 0, made.output
    out.mkdir()
    (out / "stale.csv").write_text("from another model")
    line = one_line(cli.invoke("evaluate", "--data", data, "--model", "demo", "--out", out))
    assert f"--out {out}: the folder exists and is not empty" in line
    assert [p.name for p in out.iterdir()] == ["stale.csv"]
    ok = cli.invoke("evaluate", "--data", data, "--model", "demo", "--out", out, "--overwrite")
    assert ok.exit_code == 0, ok.output
    assert not (out / "stale.csv").exists() and (out / "metrics.csv").is_file() and no_leftovers(tmp_path)


def test_a_cohort_folder_is_replaced_whole(cli, images, tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"fixed,moving,name\n{images['fixed']},{images['moving']},a\n")
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "b").mkdir()  # a pair of an earlier cohort
    line = one_line(cli.invoke("run", "--model", "demo", "--backend", "torch", "--pairs", csv, "--out", out))
    assert "the folder exists and is not empty" in line and (out / "b").is_dir()
    ok = cli.invoke("run", "--model", "demo", "--backend", "torch", "--pairs", csv, "--out", out, "--overwrite")
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in out.iterdir()) == ["a", "cohort.csv"] and no_leftovers(tmp_path)
    row = (out / "cohort.csv").read_text().splitlines()[1].split(",")
    assert str(out.resolve() / "a") in row  # where the pair's folder is, not where it was staged


def test_train_refuses_an_earlier_runs_folder_and_points_to_resume(cli, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "best.pt").write_bytes(b"an earlier run")
    line = one_line(cli.invoke("train", "--config", ROOT_CONFIG, "--out", out))
    assert f"--out {out}: the folder exists and is not empty" in line and f"--resume {out}" in line
    assert (out / "checkpoints" / "best.pt").read_bytes() == b"an earlier run"
