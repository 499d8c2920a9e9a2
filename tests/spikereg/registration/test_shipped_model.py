"""The shipped demo model, run on Lava's simulator through the CLI, registers real anatomy."""
import json

import nibabel as nib
import numpy as np
import pytest

from spikereg.data import load_mni, make_pair
from spikereg.pretrained import DEFAULT_MODEL
from spikereg.registration.register import ncc


@pytest.fixture(scope="module")
def brain_pair(tmp_path_factory):
    """A 40^3 crop (4 mm, centre of the brain) of a synthetic real-anatomy pair."""
    template = load_mni("t1", 4.0)
    pair = make_pair(template.data, np.random.default_rng(7), max_displacement=3.0, control_spacing=8,
                     noise_std=0.02)
    crop = np.s_[4:44, 8:48, 2:42]
    folder = tmp_path_factory.mktemp("brain")
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), folder / f"{name}.nii.gz")
    return folder


def test_demo_model_on_lava_brings_moving_closer_to_fixed(cli, brain_pair, tmp_path):
    assert DEFAULT_MODEL.is_file(), "the shipped model is missing"
    out = tmp_path / "run"
    result = cli.invoke("run", "--backend", "sim", "--fixed", str(brain_pair / "fixed.nii.gz"),
                        "--moving", str(brain_pair / "moving.nii.gz"), "--out", str(out),
                        "--iterations", "1")
    assert result.exit_code == 0, result.output
    fixed = nib.load(brain_pair / "fixed.nii.gz")
    moving = nib.load(brain_pair / "moving.nii.gz").get_fdata()
    warped = nib.load(out / "warped.nii.gz")
    ddf = nib.load(out / "ddf.nii.gz")
    assert warped.shape == fixed.shape and ddf.shape == fixed.shape + (1, 3)
    np.testing.assert_allclose(warped.affine, fixed.affine)
    assert np.isfinite(warped.get_fdata()).all() and np.isfinite(ddf.get_fdata()).all()
    before = ncc(fixed.get_fdata(), moving)
    after = ncc(fixed.get_fdata(), warped.get_fdata())
    assert after > before, f"NCC {before:.4f} -> {after:.4f}"
    report = json.loads((out / "report.json").read_text())
    assert report["similarity"]["ncc_after"] > report["similarity"]["ncc_before"]
