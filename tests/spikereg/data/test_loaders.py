"""DeepReg-layout datasets (paired / unpaired / grouped, NIfTI / HDF5): good layouts load, bad ones say which file."""
from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from spikereg.data import H5Key, VolumeError, load_dataset, save_ddf, save_volume, write_dataset

SHAPE = (6, 7, 5)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _volume(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE, dtype=np.float32)


def _labels(seed: int) -> np.ndarray:
    return np.rint(_volume(seed) * 2)


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    return save_volume(path, data, affine)


def _paired_nifti(root: Path, names=("a", "b"), labels=True, ddfs=True) -> Path:
    for i, name in enumerate(names):
        _nifti(root / "fixed_images" / f"{name}.nii.gz", _volume(i))
        _nifti(root / "moving_images" / f"{name}.nii.gz", _volume(10 + i))
        if labels:
            _nifti(root / "fixed_labels" / f"{name}.nii.gz", _labels(i))
            _nifti(root / "moving_labels" / f"{name}.nii.gz", _labels(10 + i))
        if ddfs:
            save_ddf(root / "ddfs" / f"{name}.nii.gz", np.full((3, *SHAPE), float(i), np.float32), AFFINE)
    return root


def test_synth_output_is_a_paired_dataset_with_ground_truth(tmp_path: Path) -> None:
    written = write_dataset(tmp_path, 2, spacing=8.0, seed=1, max_displacement=2.0, control_spacing=4,
                            split=(0.5, 0.0, 0.5))
    dataset = load_dataset(tmp_path, "test")
    assert (dataset.layout, dataset.format, len(dataset)) == ("paired", "nifti", 1)
    assert dataset.files == written["test"]
    pair = dataset.load(0)
    assert pair.name == "pair_001" and pair.ddf.shape == (3, *pair.fixed.shape)
    assert set(np.unique(pair.fixed_labels.data)) == {0.0, 1.0, 2.0}


def test_paired_nifti_with_and_without_optional_folders(tmp_path: Path) -> None:
    dataset = load_dataset(_paired_nifti(tmp_path / "full"))
    assert [f.name for f in dataset] == ["a", "b"]
    pair = dataset.load(1)
    np.testing.assert_array_equal(pair.fixed.data, _volume(1))
    np.testing.assert_array_equal(pair.moving_labels.data, _labels(11))
    np.testing.assert_array_equal(pair.ddf, 1.0)
    bare = load_dataset(_paired_nifti(tmp_path / "bare", labels=False, ddfs=False)).load(0)
    assert bare.fixed_labels is None and bare.moving_labels is None and bare.ddf is None


def test_paired_hdf5_with_affine_attribute_and_labels(tmp_path: Path) -> None:
    for kind, offset in (("fixed_images", 0), ("moving_images", 10), ("fixed_labels", 20), ("moving_labels", 30)):
        with h5py.File(tmp_path / f"{kind}.h5", "w") as h5:
            for i, key in enumerate(("p1", "p2")):
                data = _labels(offset + i) if "labels" in kind else _volume(offset + i)
                h5.create_dataset(key, data=data[..., None])  # a trailing singleton axis is fine
                h5[key].attrs["affine"] = AFFINE
    dataset = load_dataset(tmp_path)
    assert (dataset.layout, dataset.format, len(dataset)) == ("paired", "h5", 2)
    assert dataset.files[0].fixed == H5Key(tmp_path / "fixed_images.h5", "p1")
    pair = dataset.load(1)
    np.testing.assert_array_equal(pair.moving.data, _volume(11))
    np.testing.assert_array_equal(pair.fixed.affine, AFFINE)
    np.testing.assert_array_equal(pair.fixed_labels.data, _labels(21))


def test_unpaired_and_grouped_layouts_pair_every_two_images(tmp_path: Path) -> None:
    for i, name in enumerate("xyz"):
        _nifti(tmp_path / "u" / "images" / f"{name}.nii.gz", _volume(i))
        _nifti(tmp_path / "u" / "labels" / f"{name}.nii.gz", _labels(i))
    unpaired = load_dataset(tmp_path / "u")
    assert unpaired.layout == "unpaired" and len(unpaired) == 6  # ordered pairs of 3 images
    assert unpaired.files[0].name == "y_to_x"
    pair = unpaired.load(0)
    np.testing.assert_array_equal(pair.fixed.data, _volume(0))
    np.testing.assert_array_equal(pair.moving.data, _volume(1))
    np.testing.assert_array_equal(pair.moving_labels.data, _labels(1))

    for group, names in (("g1", "ab"), ("g2", "cde")):
        for i, name in enumerate(names):
            _nifti(tmp_path / "g" / "images" / group / f"{name}.nii.gz", _volume(i))
    grouped = load_dataset(tmp_path / "g")
    assert grouped.layout == "grouped" and len(grouped) == 2 + 6  # no pair across groups
    assert {f.name for f in grouped} >= {"g1_b_to_a", "g2_e_to_c"} and "g1_c_to_a" not in {f.name for f in grouped}

    with h5py.File(tmp_path / "images.h5", "w") as h5:
        for group, keys in (("s1", "ab"), ("s2", "cd")):
            for i, key in enumerate(keys):
                h5.create_dataset(f"{group}/{key}", data=_volume(i))
    grouped_h5 = load_dataset(tmp_path)
    assert (grouped_h5.layout, grouped_h5.format, len(grouped_h5)) == ("grouped", "h5", 4)
    np.testing.assert_array_equal(grouped_h5.load(0).moving.data, _volume(1))
    np.testing.assert_array_equal(grouped_h5.load(0).fixed.affine, np.eye(4))  # no attribute: 1 mm identity


def _error(root: Path, match: str, split: str | None = None, load: int | None = None) -> str:
    with pytest.raises(VolumeError, match=match) as info:  # DatasetError for layouts
        dataset = load_dataset(root, split)
        if load is not None:
            dataset.load(load)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_layout_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    _error(tmp_path / "nope", "no such folder")
    (tmp_path / "empty" / "fixed_images").mkdir(parents=True)
    (tmp_path / "empty" / "moving_images").mkdir()
    assert "empty/fixed_images" in _error(tmp_path / "empty", "empty folder, no NIfTI files")
    _error(tmp_path / "empty", r"--split test: .*empty/test does not exist", split="test")
    _error(tmp_path, "not a DeepReg dataset")

    root = _paired_nifti(tmp_path / "missing")
    (root / "moving_images" / "b.nii.gz").unlink()
    assert "fixed_images/b.nii.gz: no moving image" in _error(root, "no moving image of the same name")
    root = _paired_nifti(tmp_path / "extra")
    _nifti(root / "fixed_labels" / "c.nii.gz", _labels(0))
    assert "fixed_labels/c.nii.gz" in _error(root, "no fixed image of the same name")
    (tmp_path / "both" / "images").mkdir(parents=True)
    (tmp_path / "both" / "images.h5").write_bytes(b"")
    _error(tmp_path / "both", "both images/ and images.h5 exist")
    (tmp_path / "bad_h5").mkdir()
    (tmp_path / "bad_h5" / "images.h5").write_bytes(b"not hdf5")
    assert "images.h5" in _error(tmp_path / "bad_h5", "cannot be read as HDF5")
    _nifti(tmp_path / "one" / "images" / "x.nii.gz", _volume(0))
    _error(tmp_path / "one", "needs at least two images")


@pytest.mark.parametrize("case, match", [
    ("far", r"moving_images/a.nii.gz: does not overlap the fixed image .*fixed_images/a.nii.gz in world space "
            r"\(overlap 0.0 %"),
    ("nan", r"fixed_images/a.nii.gz: contains non-finite voxels \(1 NaN, 1 Inf\)"),
    ("2d", r"moving_images/a.nii.gz: not a 3-D volume \(shape \(6, 7\)\)"),
    ("4d", r"moving_images/a.nii.gz: not a 3-D volume \(shape \(6, 7, 5, 2\)\)"),
    ("labels", r"fixed labels .*fixed_labels/a.nii.gz: does not overlap the fixed image .*fixed_images/a.nii.gz"),
    ("ddf", r"ground-truth ddf .*ddfs/a.nii.gz: affine differs from the fixed image's"),
])
def test_bad_voxels_and_grids_name_the_file(tmp_path: Path, case: str, match: str) -> None:
    root = _paired_nifti(tmp_path)
    far = AFFINE.copy()
    far[:3, 3] += 1000.0  # a metre away: no voxel in common
    if case == "far":
        _nifti(root / "moving_images" / "a.nii.gz", _volume(0), far)
    elif case == "nan":
        bad = _volume(0)
        bad[0, 0, 0], bad[1, 1, 1] = np.nan, np.inf
        _nifti(root / "fixed_images" / "a.nii.gz", bad)
    elif case in ("2d", "4d"):
        data = _volume(0)[:, :, 0] if case == "2d" else np.stack([_volume(0)] * 2, axis=-1)
        nib.save(nib.Nifti1Image(data, AFFINE), str(root / "moving_images" / "a.nii.gz"))
    elif case == "labels":
        _nifti(root / "fixed_labels" / "a.nii.gz", _labels(0), far)
    else:
        save_ddf(root / "ddfs" / "a.nii.gz", np.zeros((3, *SHAPE), np.float32), np.eye(4))
    assert load_dataset(root).load(1).name == "b"  # the other pair is fine
    _error(root, match, load=0)


def test_hdf5_volume_errors_name_file_and_key(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "fixed_images.h5", "w") as h5:
        h5.create_dataset("p", data=np.zeros((4, 5)))
    with h5py.File(tmp_path / "moving_images.h5", "w") as h5:
        h5.create_dataset("p", data=np.full((4, 5, 6), np.nan))
    _error(tmp_path, r"fixed image .*fixed_images.h5\[p\]: not a 3-D volume \(shape \(4, 5\)\)", load=0)
    with h5py.File(tmp_path / "fixed_images.h5", "w") as h5:  # a valid fixed image: not constant
        h5.create_dataset("p", data=np.arange(120.0).reshape(4, 5, 6))
    _error(tmp_path, r"moving_images.h5\[p\]: contains non-finite voxels \(120 NaN, 0 Inf\)", load=0)


def _one_hot(label_map: np.ndarray, n_labels: int) -> np.ndarray:
    """DeepReg's multi-label layout: (D, H, W, n_labels), channel k the binary mask of label k + 1."""
    return np.stack([label_map == k + 1 for k in range(n_labels)], axis=-1).astype(np.uint8)


def test_deepreg_4d_one_hot_labels_load_as_the_label_map(tmp_path: Path) -> None:
    root = _paired_nifti(tmp_path / "nifti", ddfs=False)
    fixed_map, moving_map = _labels(0), _labels(10)
    moving_channels = _one_hot(moving_map, 3)  # a third, empty channel: a label absent from this image
    moving_channels[0, 0, 0] = 1  # overlapping masks: the first channel's label wins
    moving_map[0, 0, 0] = 1
    nib.save(nib.Nifti1Image(_one_hot(fixed_map, 2), AFFINE), str(root / "fixed_labels" / "a.nii.gz"))
    nib.save(nib.Nifti1Image(moving_channels, AFFINE), str(root / "moving_labels" / "a.nii.gz"))
    pair = load_dataset(root).load(0)
    np.testing.assert_array_equal(pair.fixed_labels.data, fixed_map)
    np.testing.assert_array_equal(pair.moving_labels.data, moving_map)
    np.testing.assert_array_equal(pair.fixed_labels.affine, AFFINE)

    with h5py.File(tmp_path / "images.h5", "w") as h5:
        for key, seed in (("x", 0), ("y", 1)):
            h5.create_dataset(key, data=_volume(seed))
    with h5py.File(tmp_path / "labels.h5", "w") as h5:
        h5.create_dataset("x", data=_one_hot(_labels(0), 2))
        h5.create_dataset("y", data=_labels(1))  # a 3-D map beside a 4-D one: both are label maps
    pair = load_dataset(tmp_path).load(1)  # x_to_y: fixed y, moving x
    assert pair.name == "x_to_y"
    np.testing.assert_array_equal(pair.moving_labels.data, _labels(0))
    np.testing.assert_array_equal(pair.fixed_labels.data, _labels(1))


def test_4d_labels_that_are_not_binary_masks_name_the_file(tmp_path: Path) -> None:
    root = _paired_nifti(tmp_path / "nifti", ddfs=False)
    soft = _one_hot(_labels(0), 2).astype(np.float32) * 0.8  # DeepReg's soft labels
    nib.save(nib.Nifti1Image(soft, AFFINE), str(root / "fixed_labels" / "a.nii.gz"))
    message = _error(root, r"fixed labels .*fixed_labels/a.nii.gz: a 4-D label array \(6, 7, 5, 2\) must hold "
                           r"one binary \(0/1\) mask per label .*\(e.g. 0.8\)", load=0)
    assert "threshold soft labels" in message

    root = tmp_path / "h5"
    root.mkdir()
    for kind, data in (("fixed_images", _volume(0)), ("moving_images", _volume(1)),
                       ("moving_labels", np.stack([_labels(0)] * 2, axis=-1))):  # label maps stacked: 0..2
        with h5py.File(root / f"{kind}.h5", "w") as h5:
            h5.create_dataset("p", data=data)
    _error(root, r"moving labels .*moving_labels.h5\[p\]: a 4-D label array \(6, 7, 5, 2\) must hold one binary",
           load=0)
