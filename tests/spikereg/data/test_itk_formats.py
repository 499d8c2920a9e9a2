"""NRRD and MetaImage input: read through SimpleITK, orientation and spacing kept, NIfTI's checks and messages."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from spikereg.data import VolumeError, load_volume


def oblique_nifti(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    data = rng.random((7, 9, 5)).astype(np.float32)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 0.8, 3.0])  # anisotropic and oblique
    affine[:3, 3] = [-12.0, 30.5, 7.25]
    affine[0] *= -1  # an x flip, as many scanners store it
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, data, affine


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_an_itk_file_reads_as_the_nifti_it_came_from(tmp_path, suffix):
    path, data, affine = oblique_nifti(tmp_path)
    # SimpleITK's own NIfTI reader converts RAS to LPS; writing its image out is what Slicer would hand over
    converted = tmp_path / f"img{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(path)), str(converted))
    volume = load_volume(converted, what="--moving")
    assert volume.shape == data.shape
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    np.testing.assert_allclose(volume.spacing, (1.5, 0.8, 3.0), atol=1e-6)


def test_the_same_world_point_in_both_readers(tmp_path):
    path, _, _ = oblique_nifti(tmp_path)
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(image, str(tmp_path / "img.nrrd"))
    volume = load_volume(tmp_path / "img.nrrd")
    index = (2, 5, 3)
    lps = np.array(image.TransformIndexToPhysicalPoint(index))
    ras = volume.affine @ np.array([*index, 1.0])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-5)


def test_a_2d_or_vector_itk_file_is_refused_in_one_line(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.float32)), str(tmp_path / "flat.mha"))
    with pytest.raises(VolumeError, match=r"^--fixed .*flat\.mha: not a 3-D volume \(2-D"):
        load_volume(tmp_path / "flat.mha", what="--fixed")
    vector = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.float32), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "vec.nrrd"))
    with pytest.raises(VolumeError, match="3 component"):
        load_volume(tmp_path / "vec.nrrd", what="--fixed")


def test_a_broken_itk_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.nrrd"
    broken.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n12")
    with pytest.raises(VolumeError) as error:
        load_volume(broken, what="--moving")
    message = str(error.value)
    assert message.startswith(f"--moving {broken}: ") and "\n" not in message


def test_nan_voxels_in_an_itk_file_get_the_nifti_message(tmp_path):
    array = np.ones((4, 4, 4), np.float32)
    array[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "nan.mha"))
    with pytest.raises(VolumeError, match=r"contains non-finite voxels \(1 NaN, 0 Inf\)"):
        load_volume(tmp_path / "nan.mha", what="--fixed")


def test_the_cli_registers_nrrd_input(cli, tmp_path):
    from spikereg.data import load_mni

    fixed = load_mni("t1", 8.0)
    nib.save(nib.Nifti1Image(fixed.data, fixed.affine), tmp_path / "fixed.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "fixed.nii.gz")), str(tmp_path / "moving.nrrd"))
    result = cli.invoke("run", "--backend", "torch", "--model", "demo", "--fixed", tmp_path / "fixed.nii.gz",
                        "--moving", tmp_path / "moving.nrrd", "--out", tmp_path / "out", "--iterations", "1")
    assert result.exit_code == 0, result.output
    warped = nib.load(tmp_path / "out" / "warped.nii.gz")
    np.testing.assert_allclose(warped.affine, fixed.affine, atol=1e-5)  # outputs stay NIfTI, on the fixed grid
