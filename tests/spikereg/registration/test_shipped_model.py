"""The shipped demo model, run on Lava's simulator through the CLI, registers real anatomy."""
import json

import nibabel as nib
import numpy as np
import pytest

from spikereg.data import load_ddf, load_mni, make_pair
from spikereg.pretrained import DEMO_MODEL
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
    assert DEMO_MODEL.is_file(), "the shipped model is missing"
    out = tmp_path / "run"
    result = cli.invoke("run", "--backend", "sim", "--model", "demo", "--fixed", str(brain_pair / "fixed.nii.gz"),
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


@pytest.mark.parametrize("name", ["sdnn-2mm-mixed", "sdnn-2mm-varied", "sdnn-2mm"])
def test_the_sdnn_models_are_shipped_verified_and_in_range(name, tmp_path):
    """Each shipped SDNN model: its checkpoint exports its netx file, Lava verified it, proven in the chip's range."""
    import h5py

    from lava_export.netx import chip_ready
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import SHIPPED
    from spikereg.training.trainer import load_checkpoint, load_twin

    entry = SHIPPED[name]
    verify = json.loads(entry.netx.with_suffix(".verify.json").read_text())
    assert verify["matched"] and verify["neuron"] == "sdnn" and verify["max_graded_error"] == 0
    # exported with --range saturate: spike_exp 0 (+-2048 in 24 bits), layer 2 saturated, proven for every input,
    # every patch from rest (verified so)
    assert verify["summed_input_limit"] == 2048 and verify["provably_in_range"] is True
    assert "every patch from rest" in verify["alignment"]
    assert {row["quantity"] for row in verify["worst_case"]} >= {"summed input", "synaptic input per step"}
    meta = read_metadata(entry.netx)
    assert meta["model"]["spike_exp"] == 0 and meta["model"]["clamp"][1] > 0 and meta["from_rest"] is True
    assert meta["spacing_mm"] == 2.0 and meta["model"]["readout_gain"] > 1
    assert meta["run"] == {"iterations": 8, "patch_stride": 12, "smoothing": 3.0}
    net, config = load_checkpoint(entry.checkpoint)
    assert load_twin(entry.checkpoint) is not None  # the ANN twin the benchmark compares with
    chip_ready(net, "saturate").export_hdf5(tmp_path / "again.net")
    with h5py.File(entry.netx, "r") as shipped, h5py.File(tmp_path / "again.net", "r") as again:
        for index in range(1, len(shipped["layer"])):
            np.testing.assert_array_equal(again[f"layer/{index}/weight"][()], shipped[f"layer/{index}/weight"][()])


def test_the_default_model_registers_on_lava_as_on_torch(cli, tmp_path):
    """The default (sdnn-2mm-mixed) registers a 2 mm crop on Lava, 8 copies side by side, as torch does."""
    template = load_mni("t1", 2.0)
    pair = make_pair(template.data, np.random.default_rng(3), max_displacement=3.0, control_spacing=8,
                     noise_std=0.02)
    crop = np.s_[30:62, 40:72, 30:62]  # 32^3 voxels of brain: 27 patches
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), tmp_path / f"{name}.nii.gz")
    result = cli.invoke("run", "--model", "sdnn-2mm-mixed", "--backend", "sim",
                        "--fixed", str(tmp_path / "fixed.nii.gz"),
                        "--moving", str(tmp_path / "moving.nii.gz"), "--out", str(tmp_path / "run"),
                        "--iterations", "2")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["smoothing"] == 3.0 and report["iterations"] == 2
    true = pair.ddf[(slice(None),) + crop]
    ddf = load_ddf(tmp_path / "run" / "ddf.nii.gz")[0]
    assert np.linalg.norm(ddf - true, axis=0).mean() < 0.8 * np.linalg.norm(true, axis=0).mean()
    # Lava ran 8 copies side by side (27 patches: the last window half padding); torch runs them one by one
    result = cli.invoke("run", "--model", "sdnn-2mm-mixed", "--backend", "torch",
                        "--fixed", str(tmp_path / "fixed.nii.gz"),
                        "--moving", str(tmp_path / "moving.nii.gz"), "--out", str(tmp_path / "torch"),
                        "--iterations", "2")
    assert result.exit_code == 0, result.output
    slayer = load_ddf(tmp_path / "torch" / "ddf.nii.gz")[0]
    np.testing.assert_array_equal(ddf, slayer)
    reports = [json.loads((tmp_path / run / "report.json").read_text()) for run in ("run", "torch")]
    for key in ("layers", "input_spikes", "time_steps", "time_steps_per_patch"):
        assert reports[0][key] == reports[1][key], key
    # the same on Lava with every layer a Sparse of its nonzero synapses: same field, costed as that build
    result = cli.invoke("run", "--model", "sdnn-2mm-mixed", "--backend", "sim", "--synapses", "sparse",
                        "--fixed", str(tmp_path / "fixed.nii.gz"),
                        "--moving", str(tmp_path / "moving.nii.gz"), "--out", str(tmp_path / "sparse"),
                        "--iterations", "2")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(load_ddf(tmp_path / "sparse" / "ddf.nii.gz")[0], slayer)
    sparse = json.loads((tmp_path / "sparse" / "report.json").read_text())
    for key in ("layers", "input_spikes", "time_steps"):
        assert sparse[key] == reports[0][key], key
    assert sparse["synapses"] == "sparse" and reports[0]["synapses"] == "conv"
    assert reports[0]["energy"]["synapse_accounting"]["name"] == "dense"
    assert sparse["energy"]["synapse_accounting"]["name"] == "nonzero"
    dense_counts, sparse_counts = reports[0]["energy"]["counts"], sparse["energy"]["counts"]
    assert dense_counts["synops_structural_zeros"] > 0.5 * dense_counts["synops"]  # depth folding's zeros
    assert sparse_counts["synops_zero_weights_not_charged"] == dense_counts["synops_structural_zeros"]


def test_the_shipped_unet_is_verified_proven_and_its_checkpoints_export(tmp_path):
    """The shipped U-Net: Lava verified it from rest (0 difference), proven in range, its checkpoint's export."""
    import h5py

    from lava_export.graph_file import export_graph
    from spikereg.netx_file import is_graph_file, read_metadata
    from spikereg.pretrained import SHIPPED
    from spikereg.training.trainer import load_checkpoint, load_twin

    entry = SHIPPED["unet-2mm-mixed"]
    assert is_graph_file(entry.netx)
    verify = json.loads(entry.netx.with_suffix(".verify.json").read_text())
    assert verify["matched"] and verify["provably_in_range"] and verify["readout_mismatches"] == 0
    assert max(verify["max_error"]) == 0 and not any(verify["stray_messages"])
    assert verify["messages_lava"] == verify["messages_slayer"] and len(verify["kinds"]) >= 10  # the stress kinds
    meta = read_metadata(entry.netx)
    assert meta["spacing_mm"] == 2.0 and meta["run"] == {"iterations": 8, "patch_stride": 24, "smoothing": 2.0}
    net, config = load_checkpoint(entry.checkpoint)
    assert config.model.architecture == "unet" and load_twin(entry.checkpoint) is not None
    export_graph(net, tmp_path / "again.net")
    with h5py.File(entry.netx, "r") as shipped, h5py.File(tmp_path / "again.net", "r") as again:
        weights = []
        shipped.visit(lambda name: weights.append(name) if name.endswith("/weight") else None)
        assert len(weights) > len(shipped["layer"]) - 1  # the skip and upsampling edges' own weights too
        for name in weights:
            np.testing.assert_array_equal(again[name][()], shipped[name][()], err_msg=name)
            assert shipped[name].compression == "gzip", name  # a 32^3 U-Net's weights are ~200 MB uncompressed


def test_the_shipped_unet_registers_on_lava_as_on_torch(cli, tmp_path):
    """One 32^3 patch of brain, one pass: Lava's fixed-point graph and SLAYER on torch, the same field."""
    template = load_mni("t1", 2.0)
    pair = make_pair(template.data, np.random.default_rng(5), max_displacement=3.0, control_spacing=8,
                     noise_std=0.02)
    crop = np.s_[30:62, 40:72, 30:62]
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), tmp_path / f"{name}.nii.gz")
    fields = {}
    for backend in ("sim", "torch"):
        result = cli.invoke("run", "--model", "unet-2mm-mixed", "--backend", backend,
                            "--fixed", str(tmp_path / "fixed.nii.gz"), "--moving", str(tmp_path / "moving.nii.gz"),
                            "--out", str(tmp_path / backend), "--iterations", "1")
        assert result.exit_code == 0, result.output
        fields[backend] = load_ddf(tmp_path / backend / "ddf.nii.gz")[0]
        report = json.loads((tmp_path / backend / "report.json").read_text())
        assert report["smoothing"] == 2.0 and report["patches"] == 1
    np.testing.assert_array_equal(fields["sim"], fields["torch"])
    true = pair.ddf[(slice(None),) + crop]
    assert np.linalg.norm(fields["torch"] - true, axis=0).mean() < 0.8 * np.linalg.norm(true, axis=0).mean()


def test_the_shipped_unet_refuses_an_export_to_nir_in_one_line(cli, tmp_path):
    """NIR 1.0 has no node for a U-Net's upsampling edges: refused by name, nothing written."""
    line = cli.one_error_line("export", "unet-2mm-mixed", "--to", "nir", "--out", tmp_path / "u.nir")
    assert "--to nir" in line and "upsampling" in line
    assert list(tmp_path.iterdir()) == []
