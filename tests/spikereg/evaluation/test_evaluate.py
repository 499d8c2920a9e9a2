"""Evaluation: metrics of a registered pair, the statistics files, and `spikereg evaluate` end to end."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from spikereg.data import load_ddf, load_volume, make_pair
from spikereg.evaluation import PairMetrics, measure_pair, statistics, write_tables


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _base(shape=(24, 28, 20)) -> tuple[np.ndarray, np.ndarray]:
    grids = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    r = np.sqrt(sum(g * g for g in grids))
    image = (np.clip(1.5 - 1.5 * r, 0, 1) * (1 + 0.3 * np.sin(6 * grids[0]))).astype(np.float32)
    labels = np.where(r < 0.4, 2.0, np.where(r < 0.8, 1.0, 0.0)).astype(np.float32)
    return image / image.max(), labels


def test_measure_pair_perfect_and_identity_fields() -> None:
    base, labels = _base()
    pair = make_pair(base, np.random.default_rng(0), max_displacement=2.0, control_spacing=6, base_labels=labels)
    kwargs = dict(spacing=(2.0, 2.0, 2.0), fixed_labels=pair.fixed_labels, moving_labels=pair.moving_labels,
                  true_ddf=pair.ddf)
    perfect = measure_pair(pair.fixed, pair.moving, pair.ddf, **kwargs)
    assert perfect.values["epe_vox"] == 0.0 and perfect.values["epe_mm"] == 0.0
    assert perfect.values["dice"] == 1.0 and perfect.values["hd95_mm"] == 0.0
    assert perfect.values["ncc"] == pytest.approx(1.0, abs=1e-6)
    assert perfect.values["jacobian_nonpositive_pct"] == 0.0 and perfect.values["sdlogj"] > 0
    assert set(perfect.labels) == {1, 2} and perfect.labels[2]["dice"] == 1.0
    identity = measure_pair(pair.fixed, pair.moving, np.zeros_like(pair.ddf), **kwargs)
    v = identity.values
    assert v["epe_vox"] == v["epe_before_vox"] == perfect.values["epe_before_vox"] > 0.3
    assert v["epe_mm"] == pytest.approx(2 * v["epe_vox"])  # isotropic 2 mm voxels
    assert v["dice"] == v["dice_before"] < 0.97 and v["ncc"] == v["ncc_before"] < perfect.values["ncc"]
    assert v["sdlogj"] == 0.0 and v["hd95_mm"] >= 2.0
    # Without labels and ground truth, those metrics do not apply.
    bare = measure_pair(pair.fixed, pair.moving, pair.ddf)
    assert np.isnan(bare.values["epe_vox"]) and np.isnan(bare.values["dice"]) and bare.labels == {}


def test_statistics_and_tables(tmp_path: Path) -> None:
    assert statistics([1.0, 2.0, 6.0, float("nan")]) == {"mean": 3.0, "std": pytest.approx(np.std([1, 2, 6])),
                                                         "median": 2.0, "min": 1.0, "max": 6.0, "count": 3}
    assert statistics([float("nan")])["count"] == 0
    pairs = {
        "p0": PairMetrics({"dice": 0.5, "epe_vox": 1.0, "spikes": 1234567.0},
                          {1: {"dice_before": 0.2, "dice": 0.4, "hd95_mm": 3.0},
                           2: {"dice_before": 0.3, "dice": 0.6, "hd95_mm": float("nan")}}),
        "p1": PairMetrics({"dice": 0.7, "epe_vox": 3.0, "spikes": 10.0},
                          {1: {"dice_before": 0.5, "dice": 0.8, "hd95_mm": 5.0}}),
    }
    summary, per_label = write_tables(tmp_path, pairs)
    rows = _rows(tmp_path / "metrics.csv")
    assert [(r["pair"], r["label"]) for r in rows] == [("p0", ""), ("p0", "1"), ("p0", "2"), ("p1", ""), ("p1", "1")]
    assert rows[0]["spikes"] == "1234567" and rows[0]["epe_vox"] == "1" and rows[0]["ncc"] == ""
    assert rows[2]["dice"] == "0.6" and rows[2]["hd95_mm"] == "" and rows[2]["epe_vox"] == ""
    summary_rows = {r["metric"]: r for r in _rows(tmp_path / "metrics_summary.csv")}
    assert summary_rows["epe_vox"]["mean"] == "2" and summary_rows["epe_vox"]["count"] == "2"
    assert summary["dice"]["median"] == pytest.approx(0.6)
    label_rows = {(r["label"], r["metric"]): r for r in _rows(tmp_path / "metrics_per_label.csv")}
    assert label_rows[("1", "dice")]["mean"] == "0.6" and label_rows[("1", "dice")]["count"] == "2"
    assert label_rows[("2", "hd95_mm")]["count"] == "0" and label_rows[("2", "hd95_mm")]["mean"] == ""
    assert per_label[2]["dice"]["max"] == 0.6


@pytest.fixture(scope="module")
def test_split(cli, tmp_path_factory) -> Path:
    """A held-out real-anatomy pair at the shipped model's 4 mm, made by `spikereg data synth`."""
    root = tmp_path_factory.mktemp("synth")
    result = cli.invoke("data", "synth", "--out", root, "--pairs", 1, "--spacing", 4, "--split", "0,0,1",
                        "--seed", 99, "--max-displacement", 3, "--noise-std", 0.02)
    assert result.exit_code == 0, result.output
    return root


def test_evaluate_shipped_model_beats_identity(cli, test_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = cli.invoke("evaluate", "--model", "demo", "--data", test_split, "--split", "test", "--backend", "torch",
                        "--out", out, "--iterations", 1, "--save-outputs")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no staging folder left
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics_per_label.csv",
                                                     "metrics_summary.csv", "pairs"]
    pair_rows = [r for r in _rows(out / "metrics.csv") if r["label"] == ""]
    assert [r["pair"] for r in pair_rows] == ["pair_000"]
    for row in pair_rows:
        assert float(row["epe_vox"]) < 0.85 * float(row["epe_before_vox"])
        assert float(row["dice"]) > float(row["dice_before"]) and float(row["ncc"]) > float(row["ncc_before"])
        assert float(row["jacobian_nonpositive_pct"]) < 0.1 and int(row["spikes"]) > 0
        assert float(row["epe_mm"]) == pytest.approx(4 * float(row["epe_vox"]), rel=1e-4)
    labels = {r["label"] for r in _rows(out / "metrics_per_label.csv")}
    assert labels == {"1", "2"}
    # The saved field is the one measured: recomputing its EPE from the files gives the same number.
    ddf, _ = load_ddf(out / "pairs" / "pair_000" / "ddf.nii.gz")
    truth, _ = load_ddf(test_split / "test" / "ddfs" / "pair_000.nii.gz")
    mask = load_volume(test_split / "test" / "fixed_labels" / "pair_000.nii.gz").data > 0
    assert np.linalg.norm(ddf - truth, axis=0)[mask].mean() == pytest.approx(float(pair_rows[0]["epe_vox"]),
                                                                              rel=1e-4)
    assert "EPE (voxels)" in result.output and "before ->" in result.output


def test_evaluate_errors_are_one_line_and_write_nothing(cli, test_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert "--split validation: " in cli.one_error_line("evaluate", "--data", test_split, "--split", "validation",
                                                        "--out", out)
    (tmp_path / "empty" / "test" / "fixed_images").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "moving_images").mkdir()
    assert "empty folder" in cli.one_error_line("evaluate", "--data", tmp_path / "empty", "--out", out)
    assert "no such folder" in cli.one_error_line("evaluate", "--data", tmp_path / "nope", "--out", out)
    assert "--backend 'gpu'" in cli.one_error_line("evaluate", "--data", test_split, "--backend", "gpu", "--out", out)
    assert "--pyramid 0" in cli.one_error_line("evaluate", "--data", test_split, "--pyramid", 0, "--out", out)
    assert "--synapses sparse: applies to --backend sim" in cli.one_error_line(
        "evaluate", "--data", test_split, "--synapses", "sparse", "--out", out)
    assert not out.exists() and not list(tmp_path.glob(".out*"))



def test_evaluate_writes_learn2reg_fields(cli, test_split: Path, tmp_path: Path) -> None:
    import shutil

    import nibabel as nib

    data = tmp_path / "l2r_data"
    shutil.copytree(test_split, data)
    for path in (data / "test").rglob("pair_000.nii.gz"):
        path.rename(path.with_name("TASK_0007_0000.nii.gz"))  # Learn2Reg's naming: case 0007
    out, fields = tmp_path / "eval", tmp_path / "submission"
    result = cli.invoke("evaluate", "--model", "demo", "--data", data, "--backend", "torch", "--out", out,
                        "--iterations", 1, "--save-outputs", "--l2r", fields)
    assert result.exit_code == 0, result.output
    assert [p.name for p in fields.iterdir()] == ["disp_0007_0007.nii.gz"]
    image = nib.load(fields / "disp_0007_0007.nii.gz")
    fixed = load_volume(data / "test" / "fixed_images" / "TASK_0007_0000.nii.gz")
    assert image.shape == fixed.shape + (3,)  # Learn2Reg's expected_shape
    ddf, _ = load_ddf(out / "pairs" / "TASK_0007_0000" / "ddf.nii.gz")
    np.testing.assert_array_equal(np.moveaxis(np.asarray(image.dataobj), -1, 0), ddf)  # the same voxels


def test_evaluate_l2r_refuses_names_without_case_numbers(cli, test_split: Path, tmp_path: Path) -> None:
    line = cli.one_error_line("evaluate", "--model", "demo", "--data", test_split, "--backend", "torch",
                              "--out", tmp_path / "eval", "--l2r", tmp_path / "submission")
    assert "--l2r: Learn2Reg names each field" in line and "pair_000.nii.gz" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flags, kind, levels", [((), "native", 2), (("--working-grid",), "working", 1)])
def test_evaluate_registers_on_the_grid_run_does(cli, tmp_path: Path, flags, kind, levels) -> None:
    """A 2 mm pair with the 4 mm demo model -- by default at 4 mm, then on the pair's own voxels; with
    --working-grid on the 4 mm working grid alone: evaluate's field is the one `spikereg run --affine none` writes."""
    data = tmp_path / "synth2mm"
    result = cli.invoke("data", "synth", "--out", data, "--pairs", 1, "--spacing", 2, "--split", "0,0,1",
                        "--seed", 5, "--max-displacement", 2)
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval"
    result = cli.invoke("evaluate", "--model", "demo", "--data", data, "--split", "test", "--backend", "torch",
                        "--out", out, "--iterations", 1, "--save-outputs", *flags)
    assert result.exit_code == 0, result.output
    evaluated, _ = load_ddf(out / "pairs" / "pair_000" / "ddf.nii.gz")
    fixed = load_volume(data / "test" / "fixed_images" / "pair_000.nii.gz")
    assert evaluated.shape[1:] == fixed.shape  # on the fixed (2 mm) grid
    run = tmp_path / "run"
    result = cli.invoke("run", "--model", "demo", "--backend", "torch", "--affine", "none", "--iterations", 1,
                        "--fixed", data / "test" / "fixed_images" / "pair_000.nii.gz",
                        "--moving", data / "test" / "moving_images" / "pair_000.nii.gz", "--out", run, *flags)
    assert result.exit_code == 0, result.output
    ran, _ = load_ddf(run / "ddf.nii.gz")
    assert report_grid(run)["kind"] == kind and report_value(run, "pyramid") == levels
    np.testing.assert_array_equal(evaluated, ran)


def report_grid(run: Path) -> dict:
    import json

    return json.loads((run / "report.json").read_text())["grids"]["registered_on"]


def report_value(run: Path, key: str):
    import json

    return json.loads((run / "report.json").read_text())[key]
