"""The spikereg command line: help, the run path on real anatomy, and one clear line for bad input."""
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    """A real-anatomy pair at 8 mm (the tiny network's spacing), ground truth kept."""
    from spikereg.data import write_dataset

    out = tmp_path_factory.mktemp("pairs")
    (pair,) = write_dataset(out, 1, spacing=8.0, seed=3, max_displacement=2.0, control_spacing=4)["train"]
    return pair  # PairFiles: .fixed, .moving, .moving_labels, .ddf paths


def test_help_lists_every_command(cli):
    result = cli.invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "export", "run", "report", "map", "data"):
        assert command in result.output
    for command in ("train", "export", "run", "report", "map"):
        sub = cli.invoke(command, "--help")
        assert sub.exit_code == 0 and "Usage" in sub.output


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "spikereg", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "export" in result.stdout


def test_run_sim_writes_nifti_outputs_and_report(cli, tiny_export, small_pair, tmp_path):
    net, model = tiny_export
    out = tmp_path / "run"
    result = cli.invoke("run", "--backend", "sim", "--model", model, "--fixed", small_pair.fixed,
                        "--moving", small_pair.moving, "--out", out, "--iterations", "1",
                        "--moving-labels", small_pair.moving_labels)
    assert result.exit_code == 0, result.output
    fixed = nib.load(small_pair.fixed)
    ddf = nib.load(out / "ddf.nii.gz")
    warped = nib.load(out / "warped.nii.gz")
    assert ddf.shape == fixed.shape + (1, 3) and warped.shape == fixed.shape
    np.testing.assert_allclose(warped.affine, fixed.affine)
    np.testing.assert_allclose(ddf.affine, fixed.affine)
    assert np.isfinite(ddf.get_fdata()).all() and np.isfinite(warped.get_fdata()).all()
    labels = np.asarray(nib.load(out / "warped_labels.nii.gz").dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2}
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "sim" and report["time_steps"] > 0
    assert len(report["layers"]) == len(net.blocks) and all(row["spikes"] >= 0 for row in report["layers"])
    assert sum(row["spikes"] for row in report["layers"]) > 0
    summary = cli.invoke("report", out)
    assert summary.exit_code == 0 and "NCC" in summary.output and "spikes" in summary.output
    assert not list(tmp_path.glob(".*partial"))


def test_loihi2_backend_without_lava_loihi_says_what_is_missing(cli, tiny_export, small_pair, tmp_path):
    from lava_export.chip import loihi2_available

    if loihi2_available():
        pytest.skip("lava-loihi is installed here")
    _, model = tiny_export
    result = cli.invoke("run", "--backend", "loihi2", "--model", model, "--fixed", small_pair.fixed,
                        "--moving", small_pair.moving, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "lava-loihi" in result.output and "--backend sim" in result.output
    assert not (tmp_path / "out").exists()


def test_bad_inputs_give_one_line_and_no_outputs(cli, tiny_export, small_pair, tmp_path):
    _, model = tiny_export
    fixed, moving = small_pair.fixed, small_pair.moving
    out = tmp_path / "out"

    line = cli.one_error_line("run", "--model", model, "--fixed", tmp_path / "nope.nii.gz",
                              "--moving", moving, "--out", out)
    assert "nope.nii.gz" in line

    other = tmp_path / "other.nii.gz"
    img = nib.load(fixed)
    far = img.affine.copy()
    far[:3, 3] += 1000.0  # other shapes and grids are resampled (issue 16); one a metre away is refused
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7), np.float32), far), other)
    line = cli.one_error_line("run", "--model", model, "--fixed", fixed, "--moving", other, "--out", out)
    assert "does not overlap" in line

    not_hdf5 = tmp_path / "model.net"
    not_hdf5.write_text("not a network")
    line = cli.one_error_line("run", "--model", not_hdf5, "--fixed", fixed, "--moving", moving, "--out", out)
    assert "not an HDF5 file" in line and "model.net" in line

    line = cli.one_error_line("run", "--model", model, "--fixed", fixed, "--moving", moving, "--out", out,
                              "--patch-stride", "3")
    assert "--patch-stride 3" in line

    line = cli.one_error_line("report", tmp_path)
    assert "report.json" in line
    assert not out.exists()


def test_export_rejects_a_non_checkpoint(cli, tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"\x00garbage")
    line = cli.one_error_line("export", bad, "--to", "netx", "--out", tmp_path / "m.net")
    assert "best.pt" in line and "not a SpikeReg checkpoint" in line
    assert not (tmp_path / "m.net").exists()


def test_long_work_logs_plain_progress_lines_where_stderr_is_not_a_terminal(cli, tmp_path, monkeypatch):
    from spikereg import cli as cli_module

    # CliRunner's stderr is not a terminal: rich's bar would show nothing until the end
    monkeypatch.setattr(cli_module.LoggedProgress, "every_s", 1e-9)
    result = cli.invoke("data", "synth", "--out", str(tmp_path / "data"), "--pairs", "2", "--spacing", "4",
                        "--seed", "3")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("pairs: ")]
    assert lines and lines[-1].startswith("pairs: 2/2") and lines[-1].endswith("]"), result.output
    assert sum(line.startswith("pairs: 2/2") for line in lines) == 1  # the end is said once

    monkeypatch.setattr(cli_module.LoggedProgress, "every_s", 3600.0)  # short work: as quiet as before
    result = cli.invoke("data", "synth", "--out", str(tmp_path / "data2"), "--pairs", "2", "--spacing", "4",
                        "--seed", "3")
    assert result.exit_code == 0 and not any(line.startswith("pairs: ") for line in result.output.splitlines())
    monkeypatch.setattr(cli_module.LoggedProgress, "every_s", 0.0)  # SPIKEREG_PROGRESS_SECONDS=0: off
    result = cli.invoke("data", "synth", "--out", str(tmp_path / "data3"), "--pairs", "2", "--spacing", "4",
                        "--seed", "3")
    assert result.exit_code == 0 and not any(line.startswith("pairs: ") for line in result.output.splitlines())
