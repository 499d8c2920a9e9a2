"""spikereg run on every backend: same outputs, same report shape; refusals before any work."""
import json
from dataclasses import asdict

import nibabel as nib
import numpy as np
import pytest

from spikereg.data import load_mni, make_pair
from spikereg.hardware import load_profile


def keys(tree, prefix=""):
    """Every dotted key of a JSON tree (list items are not descended into)."""
    if not isinstance(tree, dict):
        return set()
    found = set()
    for key, value in tree.items():
        found |= {prefix + key} | keys(value, prefix + key + ".")
    return found


@pytest.fixture(scope="module")
def crop_pair(tmp_path_factory):
    """A 16^3 crop of the 8 mm brain and a randomly warped copy, as NIfTI."""
    template = load_mni("t1", 8.0)
    pair = make_pair(template.data, np.random.default_rng(3), max_displacement=2.0, control_spacing=4)
    crop = np.s_[5:21, 6:22, 4:20]
    folder = tmp_path_factory.mktemp("crop")
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), folder / f"{name}.nii.gz")
    return folder / "fixed.nii.gz", folder / "moving.nii.gz"


def test_torch_and_sim_runs_write_the_same_field_and_the_same_report_shape(cli, tiny_export, crop_pair, tmp_path):
    fixed, moving = crop_pair
    reports, fields = {}, {}
    for backend in ("torch", "sim"):
        out = tmp_path / backend
        result = cli.invoke("run", "--backend", backend, "--model", tiny_export[1], "--fixed", fixed,
                            "--moving", moving, "--out", out)
        assert result.exit_code == 0, result.output
        reports[backend] = json.loads((out / "report.json").read_text())
        fields[backend] = nib.load(out / "ddf.nii.gz").get_fdata()
    np.testing.assert_array_equal(fields["torch"], fields["sim"])
    assert keys(reports["torch"]) == keys(reports["sim"])
    for backend, report in reports.items():
        assert report["backend"] == backend and report["pyramid"] == 1
        assert report["patches"] == report["iterations"] * report["patches_per_iteration"]
        assert np.asarray(report["spikes_per_step"][0]).shape[0] == len(report["layers"])
    spikes = {b: [(row["neurons"], row["spikes"]) for row in r["layers"]] for b, r in reports.items()}
    assert spikes["torch"] == spikes["sim"] and all(count > 0 for _, count in spikes["torch"])
    # the chip the run stands for: the Loihi 2 profile it is costed on; only a chip run has measurements
    loihi2 = load_profile("loihi2")
    for backend, ran_on in (("sim", "simulator"), ("torch", "torch")):
        chip = reports[backend]["chip_profile"]
        assert chip["name"] == "loihi2" and chip["ran_on"] == ran_on and chip["measured"] is None
        assert chip["figures"]["time_per_step_us"] == asdict(loihi2.time_per_step_us)
        assert chip["figures"]["static_power_mw"] == asdict(loihi2.static_power_mw)
        # the figures the energy section costed the sequential row's static term with
        rows = reports[backend]["energy"]["neuromorphic"]
        static = rows["loihi2_sequential"]["terms"]["static"]["figures"]
        assert static["time_per_step_us"] == chip["figures"]["time_per_step_us"]
        # the main row, the streamed schedule, times its steps from the workload's per-operation figures
        assert rows["loihi2"]["model"] == "streamed" and "step_sync_us" in rows["loihi2"]["terms"]["static"]["figures"]


def test_a_volume_over_the_memory_budget_is_refused_before_any_work(cli, tiny_export, crop_pair, tmp_path):
    fixed, moving = crop_pair
    out = tmp_path / "refused"
    result = cli.invoke("run", "--backend", "torch", "--model", tiny_export[1], "--fixed", fixed, "--moving", moving,
                        "--out", out, "--memory-budget", "0.1")
    assert result.exit_code == 1
    assert "--memory-budget 0.1 GB: registering a 16x16x16 volume on --backend torch needs about" in result.output
    assert not out.exists() and not list(tmp_path.glob(".refused*"))
    ok = cli.invoke("run", "--backend", "torch", "--model", tiny_export[1], "--fixed", fixed, "--moving", moving,
                    "--out", out, "--memory-budget", "8", "--pyramid", "1")
    assert ok.exit_code == 0, ok.output
    report = json.loads((out / "report.json").read_text())
    assert 0.1e9 < report["memory"]["estimated_peak_bytes"] < 8e9


@pytest.mark.parametrize("args, message", [
    (["--backend", "torch", "--pyramid", "3"], "--pyramid 3: the coarsest level would be 4x4x4 voxels"),
    (["--backend", "torch", "--patch-stride", "3"], "--patch-stride 3: must be a positive multiple of 2"),
    (["--backend", "torch", "--device", "cuda:7"] , "--device cuda:7"),
    (["--backend", "sim", "--device", "cuda"], "applies to --backend torch only"),
    (["--backend", "torch", "--synapses", "sparse"], "--synapses sparse: applies to --backend sim"),
    (["--backend", "sim", "--synapses", "lists"], "--synapses 'lists': choose conv or sparse"),
])
def test_bad_run_options_give_one_clear_line(cli, tiny_export, crop_pair, tmp_path, args, message):
    fixed, moving = crop_pair
    result = cli.invoke("run", "--model", tiny_export[1], "--fixed", fixed, "--moving", moving,
                        "--out", tmp_path / "x", *args)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
