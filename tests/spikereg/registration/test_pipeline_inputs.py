"""spikereg run's --fixed/--moving/--moving-labels: read and checked by load_pair, as a dataset's pairs are."""
import nibabel as nib
import numpy as np
import pytest

from spikereg.data import load_mni, make_pair, save_volume, tissue_labels

CROP = np.s_[5:21, 6:22, 4:20]  # 16^3 of the 8 mm brain, through grey and white matter


@pytest.fixture(scope="module")
def labelled_crop(tmp_path_factory):
    """fixed, moving and the moving image's tissue labels as a 3-D map and as DeepReg's 4-D one-hot masks."""
    template = load_mni("t1", 8.0)
    labels = tissue_labels(8.0).data
    pair = make_pair(template.data, np.random.default_rng(3), max_displacement=2.0, control_spacing=4,
                     base_labels=labels)
    folder = tmp_path_factory.mktemp("labelled")
    files = {name: folder / f"{name}.nii.gz" for name in ("fixed", "moving", "labels", "onehot")}
    save_volume(files["fixed"], pair.fixed[CROP], template.affine)
    save_volume(files["moving"], pair.moving[CROP], template.affine)
    label_map = pair.moving_labels[CROP]
    assert set(np.unique(label_map)) == {0, 1, 2}
    save_volume(files["labels"], label_map, template.affine, dtype=np.uint8)
    onehot = np.stack([label_map == 1, label_map == 2], axis=-1)  # channel k is label k + 1
    save_volume(files["onehot"], onehot, template.affine, dtype=np.uint8)
    return files


def test_one_hot_labels_warp_as_their_label_map_in_run_and_warp(cli, tiny_export, labelled_crop, tmp_path):
    files = labelled_crop
    warped = {}
    for kind in ("labels", "onehot"):
        out = tmp_path / kind
        result = cli.invoke("run", "--backend", "torch", "--model", tiny_export[1], "--fixed", files["fixed"],
                            "--moving", files["moving"], "--moving-labels", files[kind], "--out", out)
        assert result.exit_code == 0, result.output
        image = nib.load(out / "warped_labels.nii.gz")
        assert image.shape == (16, 16, 16) and image.get_data_dtype() == np.int16
        warped[kind] = np.asarray(image.dataobj)
    np.testing.assert_array_equal(warped["onehot"], warped["labels"])
    assert set(np.unique(warped["labels"])) == {0, 1, 2}
    # spikereg warp --labels on the one-hot file with the run's field: the same map again
    out = tmp_path / "warped_onehot.nii.gz"
    result = cli.invoke("warp", "--image", files["onehot"], "--ddf", tmp_path / "onehot" / "ddf.nii.gz",
                        "--out", out, "--labels")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), warped["labels"])


def _shifted(path, out, mm=8.0):
    """``path`` with its origin moved ``mm`` along x: same voxels, another grid."""
    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] += mm
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), out)
    return out


@pytest.mark.parametrize("kind, change, message", [
    ("labels", "far", "does not overlap the moving image"),  # labels on another grid are resampled; not these
    ("onehot", "far", "does not overlap the moving image"),
    ("onehot", "soft", "a 4-D label array (16, 16, 16, 2) must hold one binary (0/1) mask per label"),
])
def test_labels_off_the_moving_grid_or_not_labels_are_one_line_naming_the_option(
        cli, labelled_crop, tmp_path, kind, change, message):
    files = labelled_crop
    bad = tmp_path / f"bad_{kind}.nii.gz"
    if change == "far":
        _shifted(files[kind], bad, mm=1000.0)
    else:
        image = nib.load(files[kind])
        data = np.asarray(image.dataobj, dtype=np.float32)
        data = data[:, :, :15] if change == "crop" else data * 0.5
        nib.save(nib.Nifti1Image(data, image.affine), bad)
    out = tmp_path / "out"
    line = cli.one_error_line("run", "--backend", "torch", "--fixed", files["fixed"], "--moving", files["moving"],
                              "--moving-labels", bad, "--out", out)  # the shipped model: no work before the check
    assert f"--moving-labels {bad}: " in line and message in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_missing_image_names_its_option(cli, labelled_crop, tmp_path):
    line = cli.one_error_line("run", "--backend", "torch", "--fixed", tmp_path / "nope.nii.gz",
                              "--moving", labelled_crop["moving"], "--out", tmp_path / "out")
    assert f"--fixed {tmp_path / 'nope.nii.gz'}: file not found" in line


def test_images_far_from_the_models_voxel_size_get_a_note_not_an_error(cli, labelled_crop, tmp_path):
    from spikereg.data import load_volume
    from spikereg.netx_file import read_metadata
    from spikereg.pretrained import DEMO_MODEL
    from spikereg.registration.pipeline import spacing_note

    result = cli.invoke("run", "--backend", "torch", "--model", "demo", "--fixed", labelled_crop["fixed"],
                        "--moving", labelled_crop["moving"], "--out", tmp_path / "out", "--iterations", "1")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"trained on 4 mm voxels; {labelled_crop['fixed']} has 8 mm" in flat and "resample" in flat
    volume, meta = load_volume(labelled_crop["fixed"]), read_metadata(DEMO_MODEL)
    assert spacing_note(volume, dict(meta, spacing_mm=7.0), "m") is None  # within 25 %
    assert spacing_note(volume, {k: v for k, v in meta.items() if k != "spacing_mm"}, "m") is None  # unknown
