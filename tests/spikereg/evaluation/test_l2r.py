"""Learn2Reg's submission format: file names from the case numbers, (D, H, W, 3) float32 voxels, fixed -> moving."""
import nibabel as nib
import numpy as np
import pytest

from spikereg.evaluation.l2r import L2RNameError, case_number, field_name, save_l2r_field


def test_names_follow_the_scripts_slicing():
    for name in ("imagesTr/OASIS_0395_0000.nii.gz", "LungCT_0001_0001.nii.gz"):
        assert case_number(name) == name[-16:-12]  # what MDL-UzL/L2R's evaluation.py reads
    assert field_name("x/OASIS_0395_0000.nii.gz", "x/OASIS_0396_0000.nii.gz") == "disp_0395_0396.nii.gz"


@pytest.mark.parametrize("name", ["pair_000.nii.gz", "OASIS_0395_0000.nii", "OASIS_395_0000.nii.gz"])
def test_other_names_are_refused_in_one_line(name):
    with pytest.raises(L2RNameError, match=r"^--l2r: Learn2Reg names each field .* does not follow it$"):
        case_number(name)


def test_a_field_has_the_documented_shape_dtype_and_units(tmp_path):
    rng = np.random.default_rng(0)
    ddf = rng.uniform(-6, 6, size=(3, 5, 6, 7)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    path = save_l2r_field(tmp_path, "OASIS_0001_0000.nii.gz", "OASIS_0002_0000.nii.gz", ddf, affine)
    assert path.name == "disp_0001_0002.nii.gz" and [p.name for p in tmp_path.iterdir()] == [path.name]
    image = nib.load(path)
    assert image.shape == (5, 6, 7, 3) and image.get_data_dtype() == np.float32
    stored = np.asarray(image.dataobj)
    np.testing.assert_allclose(stored[..., 0], ddf[0], atol=0)  # voxels, component k along array axis k
    np.testing.assert_allclose(stored[..., 2], ddf[2], atol=0)
    np.testing.assert_array_equal(image.affine, affine)
