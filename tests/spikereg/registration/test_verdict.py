"""A registration whose result is implausible is a failed registration: exit != 0, nothing written as a success."""
import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest

from spikereg.data import load_mni, make_pair
from spikereg.pretrained import resolve_model
from spikereg.registration.verdict import MAX_FOLDING, failures, reach


@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory):
    """The 4 mm brain and a warped copy (what make demo registers), as NIfTI."""
    template = load_mni("t1", 4.0)
    pair = make_pair(template.data, np.random.default_rng(2026), max_displacement=3.0, control_spacing=8)
    folder = tmp_path_factory.mktemp("demo_pair")
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name), template.affine), folder / f"{name}.nii.gz")
    return folder / "fixed.nii.gz", folder / "moving.nii.gz"


@pytest.fixture(scope="module")
def flipped_model(tmp_path_factory):
    """The shipped demo model with its readout's (+, -) channels swapped: every displacement's sign flipped."""
    path = tmp_path_factory.mktemp("flipped") / "flipped.net"
    shutil.copy(resolve_model("demo"), path)
    with h5py.File(path, "r+") as handle:
        last = handle["layer"][str(len(handle["layer"]) - 1)]
        weight = np.asarray(last["weight"][()])
        swap = np.arange(weight.shape[0]).reshape(-1, 2)[:, ::-1].reshape(-1)  # features d*6 + c: c pairs
        last["weight"][...] = weight[swap]
    return path


def run(cli, model, pair, out, *extra):
    fixed, moving = pair
    return cli.invoke("run", "--backend", "torch", "--model", model, "--fixed", fixed, "--moving", moving,
                      "--out", out, *extra)


def test_the_shipped_demo_passes_its_own_verdict(cli, demo_pair, tmp_path):
    result = run(cli, "demo", demo_pair, tmp_path / "ok")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert report["status"] == "ok" and report["failure"] == []
    assert report["range"]["proven"] and report["range"]["events"] == []


def test_a_flipped_readout_is_a_failed_registration_and_writes_nothing(cli, demo_pair, flipped_model, tmp_path):
    out = tmp_path / "flipped"
    line = cli.one_error_line("run", "--backend", "torch", "--model", flipped_model, "--fixed", demo_pair[0],
                              "--moving", demo_pair[1], "--out", out)
    assert line.startswith("error: registration failed:") and "NCC fell from" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".flipped")]


def test_keep_failed_writes_the_outputs_marked_failed_and_still_exits_non_zero(cli, demo_pair, flipped_model,
                                                                               tmp_path):
    out = tmp_path / "kept"
    result = run(cli, flipped_model, demo_pair, out, "--keep-failed")
    assert result.exit_code == 1 and "marked failed" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and any("NCC fell" in reason for reason in report["failure"])
    assert (out / "ddf.nii.gz").exists()


def test_each_rule_names_what_is_wrong():
    ddf = np.zeros((3, 4, 4, 4), dtype=np.float32)
    good = {"ncc_before": 0.9, "ncc_after": 0.95}
    assert failures(ddf, good, 0.0, 10.0) == []
    ddf[0, 0, 0, 0] = 50.0
    assert "beyond the 10.0" in failures(ddf, good, 0.0, 10.0)[0]
    assert "NCC fell from 0.9500 to 0.9000" in failures(np.zeros_like(ddf), {"ncc_before": 0.95, "ncc_after": 0.9},
                                                        0.0, 10.0)[0]
    assert "fold" in failures(np.zeros_like(ddf), good, 2 * MAX_FOLDING, 10.0)[0]
    ddf[0, 0, 0, 0] = np.nan
    assert "non-finite" in failures(ddf, good, 0.0, 10.0)[0]
    # reach: max_displacement per pass, iterations per level, doubled per coarser level, with a margin
    assert reach(3.0, 8, 1) == 2 * 24 and reach(3.0, 1, 2) == 2 * 9
