"""The spacing note names anisotropic voxels, axis by axis, instead of averaging them away (issue 14)."""
import numpy as np
import pytest

from spikereg.data import Volume
from spikereg.registration.pipeline import spacing_note

META = {"spacing_mm": 2.0}


def volume(*spacing):
    return Volume(np.zeros((4, 4, 4), np.float32), np.diag([*spacing, 1.0]), path="img.nii.gz")


@pytest.mark.parametrize("spacing, expected", [
    ((1.0, 1.0, 3.0), "img.nii.gz has anisotropic voxels of 1 x 1 x 3 mm"),  # mean 1.67: no axis is near it
    ((2.0, 2.0, 4.0), "img.nii.gz has anisotropic voxels of 2 x 2 x 4 mm"),  # mean 2.67; one axis 2x off
    ((4.0, 4.0, 4.0), "img.nii.gz has 4 mm voxels"),
])
def test_a_note_names_each_axis_of_anisotropic_voxels(spacing, expected):
    note = spacing_note(volume(*spacing), META, "m")
    assert note is not None and expected in note and "every axis" in note


def test_no_note_where_every_axis_is_near_the_models():
    assert spacing_note(volume(2.0, 2.2, 1.8), META, "m") is None
    assert spacing_note(volume(2.0, 2.0, 2.0), {}, "m") is None  # a model that does not say


def test_scans_finer_than_the_model_by_a_power_of_two_get_the_native_pass_hint():
    from spikereg.registration.working_grid import native_levels

    assert native_levels((1.0, 1.0, 1.0), 2.0) == 2 and native_levels((0.5, 0.5, 0.5), 2.0) == 3
    assert [native_levels((s, s, s), 2.0) for s in (2.0, 1.5, 3.0, 0.8)] == [0, 0, 0, 0]
    assert native_levels((1.0, 1.0, 2.0), 2.0) == 0 and native_levels((1.0, 1.0, 1.0), None) == 0
    fine = spacing_note(volume(1.0, 1.0, 1.0), META, "m", working=(2, 2, 2))
    assert "--fixed-grid --pyramid 2: register at 2 mm first, then on the images' own voxels" in fine
    coarse = spacing_note(volume(4.0, 4.0, 4.0), META, "m", working=(2, 2, 2))
    assert "(--fixed-grid: register at the images' own spacing)" in coarse
