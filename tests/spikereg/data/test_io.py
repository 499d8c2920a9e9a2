"""NIfTI reading/writing, error messages, atomic saves, pair checks, ddf files."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spikereg.data import (
    Volume,
    VolumeError,
    check_pair,
    load_ddf,
    load_volume,
    normalize_intensity,
    save_ddf,
    save_volume,
)

AFFINE = np.array(
    [
        [2.0, 0.0, 0.0, -10.0],
        [0.0, 2.5, 0.0, 20.5],
        [0.0, 0.0, 3.0, 7.25],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _volume(shape: tuple[int, ...] = (5, 6, 7), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _write_raw(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """A NIfTI written directly with nibabel, bypassing save_volume's checks."""
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` that look like save_volume's temporary files."""
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def test_roundtrip_keeps_data_affine_and_spacing(tmp_path: Path) -> None:
    data = _volume()
    out = save_volume(tmp_path / "sub" / "img.nii.gz", data, AFFINE)
    assert out == tmp_path / "sub" / "img.nii.gz"  # parent folder created
    # gzip magic bytes: the .nii.gz temp name made nibabel compress
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    vol = load_volume(out)
    assert vol.data.dtype == np.float32
    assert vol.affine.dtype == np.float64
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, AFFINE, atol=1e-6)
    assert vol.shape == (5, 6, 7)
    assert vol.spacing == pytest.approx((2.0, 2.5, 3.0))
    assert vol.path == out


def test_integer_dtype_is_rounded(tmp_path: Path) -> None:
    labels = np.array([0.0, 0.9, 1.2, 2.0] * 6, dtype=np.float32).reshape(2, 3, 4)
    out = save_volume(tmp_path / "lab.nii.gz", labels, AFFINE, dtype=np.uint8)
    assert nib.load(str(out)).get_data_dtype() == np.uint8
    np.testing.assert_array_equal(load_volume(out).data, np.rint(labels))


def test_trailing_singleton_axis_is_squeezed(tmp_path: Path) -> None:
    data = _volume((4, 5, 6, 1))
    vol = load_volume(_write_raw(tmp_path / "v.nii.gz", data))
    assert vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol.data, data[..., 0])


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(VolumeError, match="fixed image .*nope.nii.gz: file not found"):
        load_volume(path, what="fixed image")


def test_text_file_is_not_nifti(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    path.write_text("this is not an image\n")
    with pytest.raises(VolumeError) as err:
        load_volume(path, what="moving image")
    msg = str(err.value)
    assert msg.startswith(f"moving image {path}: cannot be read as a NIfTI image")
    assert "\n" not in msg


def test_2d_image_rejected_with_shape(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "f.nii.gz", _volume((4, 5)))
    with pytest.raises(VolumeError) as err:
        load_volume(path, what="fixed image")
    assert str(err.value) == f"fixed image {path}: not a 3-D volume (shape (4, 5))"


def test_real_4d_image_rejected_with_shape(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "series.nii.gz", _volume((4, 5, 6, 2)))
    with pytest.raises(VolumeError) as err:
        load_volume(path)
    assert str(err.value) == f"volume {path}: not a 3-D volume (shape (4, 5, 6, 2))"


def test_nan_and_inf_voxels_counted(tmp_path: Path) -> None:
    data = _volume()
    data[0, 0, 0] = np.nan
    data[1, 2, 3] = np.nan
    data[4, 5, 6] = np.inf
    path = _write_raw(tmp_path / "bad.nii.gz", data)
    with pytest.raises(VolumeError) as err:
        load_volume(path, what="moving image")
    assert str(err.value) == f"moving image {path}: contains non-finite voxels (2 NaN, 1 Inf)"


def test_truncated_file(tmp_path: Path) -> None:
    good = save_volume(tmp_path / "good.nii.gz", _volume((20, 20, 20)), AFFINE)
    bad = tmp_path / "cut.nii.gz"
    # Cut after the header: the header opens, the voxel data ends early.
    bad.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(VolumeError) as err:
        load_volume(bad)
    assert str(err.value).startswith(f"volume {bad}: voxel data cannot be read (EOFError")


def test_atomic_save_leaves_no_temp_file(tmp_path: Path) -> None:
    save_volume(tmp_path / "a.nii.gz", _volume(), AFFINE)
    save_volume(tmp_path / "a.nii.gz", _volume(seed=1), AFFINE)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]
    np.testing.assert_array_equal(load_volume(tmp_path / "a.nii.gz").data, _volume(seed=1))


def test_failing_save_leaves_no_partial_file(tmp_path: Path) -> None:
    # The destination is a folder: the temp file is fully written, then the
    # final rename fails; the temp file must be removed, the folder untouched.
    target = tmp_path / "out.nii.gz"
    target.mkdir()
    with pytest.raises(VolumeError, match=f"output {target}: cannot write"):
        save_volume(target, _volume(), AFFINE)
    assert _leftovers(tmp_path) == []
    assert target.is_dir() and list(target.iterdir()) == []


def test_failing_save_keeps_previous_file(tmp_path: Path) -> None:
    path = save_volume(tmp_path / "keep.nii.gz", _volume(), AFFINE)
    before = path.read_bytes()
    with pytest.raises(VolumeError, match="do not fit in uint8"):
        save_volume(path, np.full((5, 6, 7), 300.0), AFFINE, dtype=np.uint8)
    with pytest.raises(VolumeError, match="must be 3-D or 4-D"):
        save_volume(path, np.zeros((5, 6)), AFFINE)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_save_rejects_non_nifti_name(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match=r"out.png: file name must end in \.nii\.gz"):
        save_volume(tmp_path / "out.png", _volume(), AFFINE)


def test_volume_validates_shape() -> None:
    with pytest.raises(VolumeError, match="must be 3-D"):
        Volume(np.zeros((2, 2)), np.eye(4))
    vol = Volume(np.zeros((2, 3, 4), dtype=np.float64), np.eye(4))
    assert vol.data.dtype == np.float32


def test_check_pair_accepts_same_grid() -> None:
    a = Volume(_volume(), AFFINE, Path("f.nii.gz"))
    b = Volume(_volume(seed=2), AFFINE + 1e-5, Path("m.nii.gz"))  # header rounding
    check_pair(a, b)


def test_check_pair_shape_mismatch() -> None:
    a = Volume(_volume((5, 6, 7)), AFFINE, Path("/d/f.nii.gz"))
    b = Volume(_volume((5, 6, 8)), AFFINE, Path("/d/m.nii.gz"))
    with pytest.raises(VolumeError) as err:
        check_pair(a, b)
    msg = str(err.value)
    for part in ("/d/f.nii.gz", "/d/m.nii.gz", "(5, 6, 7)", "(5, 6, 8)"):
        assert part in msg


def test_check_pair_affine_mismatch() -> None:
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01  # 0.01 mm > 1e-3 mm tolerance
    a = Volume(_volume(), AFFINE, Path("/d/f.nii.gz"))
    b = Volume(_volume(), shifted, Path("/d/m.nii.gz"))
    with pytest.raises(VolumeError, match=r"/d/f.nii.gz and moving image /d/m.nii.gz have different affines"):
        check_pair(a, b)


def test_ddf_roundtrip_and_file_layout(tmp_path: Path) -> None:
    ddf = np.random.default_rng(3).normal(size=(3, 4, 5, 6)).astype(np.float32)
    path = save_ddf(tmp_path / "ddf.nii.gz", ddf, AFFINE)
    img = nib.load(str(path))
    assert img.shape == (4, 5, 6, 1, 3)
    assert img.header.get_intent()[0] == "vector"
    # component k of voxel (i, j, l) is stored at [i, j, l, 0, k]
    np.testing.assert_array_equal(np.asanyarray(img.dataobj)[1, 2, 3, 0], ddf[:, 1, 2, 3])
    back, affine = load_ddf(path)
    assert back.dtype == np.float32 and back.shape == ddf.shape
    np.testing.assert_array_equal(back, ddf)
    np.testing.assert_allclose(affine, AFFINE, atol=1e-6)
    assert _leftovers(tmp_path) == []


def test_load_ddf_accepts_dhw3(tmp_path: Path) -> None:
    ddf = np.random.default_rng(4).normal(size=(3, 4, 5, 6)).astype(np.float32)
    path = _write_raw(tmp_path / "d.nii.gz", np.moveaxis(ddf, 0, -1))
    np.testing.assert_array_equal(load_ddf(path)[0], ddf)


def test_load_ddf_rejects_scalar_volume(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "img.nii.gz", _volume())
    with pytest.raises(VolumeError, match=r"img.nii.gz: expected shape \(D, H, W, 1, 3\)"):
        load_ddf(path)


def test_normalize_intensity_known_answer() -> None:
    data = np.arange(101, dtype=np.float32)  # percentiles 1 and 99 are 1 and 99
    out = normalize_intensity(data)
    assert out.dtype == np.float32
    assert out[0] == 0.0 and out[100] == 1.0  # clipped
    np.testing.assert_allclose(out[1:100], (data[1:100] - 1) / 98, atol=1e-6)


def test_normalize_intensity_constant_is_zero() -> None:
    out = normalize_intensity(np.full((3, 3, 3), 7.0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, 0.0)
