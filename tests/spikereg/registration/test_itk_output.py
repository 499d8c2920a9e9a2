"""run --ddf-format itk: SimpleITK applying ddf_itk.nii.gz to the moving file gets spikereg's warped image."""
import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spikereg.data import load_mni


def test_simpleitk_applies_the_runs_itk_field_as_spikereg_warps(cli, tmp_path):
    fixed = load_mni("t1", 8.0)
    nib.save(nib.Nifti1Image(fixed.data, fixed.affine), tmp_path / "fixed.nii.gz")
    # the moving scan: the template shifted by a few mm and stored on its own, rotated 6 mm grid
    angle = np.deg2rad(8)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moving_affine = np.eye(4)
    moving_affine[:3, :3] = rotation @ np.diag([6.0, 6.0, 6.0])
    moving_affine[:3, 3] = fixed.affine[:3, 3] + [4.0, -3.0, 2.0]
    size = (np.array(fixed.shape) * 8 / 6).astype(int) + 2
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij")).reshape(3, -1)
    world = moving_affine[:3, :3] @ index + moving_affine[:3, 3:]
    voxel = np.linalg.inv(fixed.affine)[:3, :3] @ world + np.linalg.inv(fixed.affine)[:3, 3:]
    moving = ndimage.map_coordinates(fixed.data, voxel, order=1, mode="constant").reshape(tuple(size))
    nib.save(nib.Nifti1Image(moving.astype(np.float32), moving_affine), tmp_path / "moving.nii.gz")

    out = tmp_path / "out"
    result = cli.invoke("run", "--backend", "torch", "--model", "demo", "--fixed", tmp_path / "fixed.nii.gz",
                        "--moving", tmp_path / "moving.nii.gz", "--out", out, "--iterations", "2",
                        "--ddf-format", "itk")
    assert result.exit_code == 0, result.output
    assert "ddf_itk.nii.gz" in result.output

    field = sitk.ReadImage(str(out / "ddf_itk.nii.gz"), sitk.sitkVectorFloat64)
    transform = sitk.DisplacementFieldTransform(field)
    reference = sitk.ReadImage(str(tmp_path / "fixed.nii.gz"))
    theirs = sitk.Resample(sitk.ReadImage(str(tmp_path / "moving.nii.gz"), sitk.sitkFloat32), reference, transform,
                           sitk.sitkLinear, 0.0)
    theirs = sitk.GetArrayFromImage(theirs).transpose(2, 1, 0)
    ours = nib.load(out / "warped.nii.gz").get_fdata()
    brain = ndimage.binary_erosion(fixed.data > 0.1 * fixed.data.max(), iterations=2)  # away from borders
    assert brain.sum() > 100
    assert np.abs(theirs - ours)[brain].max() < 1e-3 * float(ours.max())

    # spikereg warp reads the ITK field too, and gets what the run wrote
    warped = tmp_path / "again.nii.gz"
    again = cli.invoke("warp", "--image", tmp_path / "moving.nii.gz", "--ddf", out / "ddf_itk.nii.gz",
                       "--ddf-format", "itk", "--out", warped)
    assert again.exit_code == 0, again.output
    np.testing.assert_allclose(nib.load(warped).get_fdata()[brain], ours[brain], atol=1e-4 * float(ours.max()))


def test_a_bad_ddf_format_is_one_line(cli, tmp_path):
    line = cli.one_error_line("run", "--backend", "torch", "--fixed", tmp_path / "f.nii.gz", "--moving",
                              tmp_path / "m.nii.gz", "--out", tmp_path / "o", "--ddf-format", "mm")
    assert "--ddf-format 'mm'" in line
    assert not (tmp_path / "o").exists()
