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


def test_native_levels_need_isotropic_voxels_finer_by_a_power_of_two():
    from spikereg.registration.working_grid import native_levels

    assert native_levels((1.0, 1.0, 1.0), 2.0) == 2 and native_levels((0.5, 0.5, 0.5), 2.0) == 3
    assert [native_levels((s, s, s), 2.0) for s in (2.0, 1.5, 3.0, 0.8)] == [0, 0, 0, 0]
    assert native_levels((1.0, 1.0, 2.0), 2.0) == 0 and native_levels((1.0, 1.0, 1.0), None) == 0


@pytest.mark.parametrize("spacing, grid, pyramid, kind, levels, note", [
    # a 1 mm scan and a 2 mm model: 2 mm first, then the scan's own voxels, on the fixed grid
    (1.0, "auto", 1, "native", 2, "registered at 2 mm first, then on the images' own voxels (2 pyramid levels"),
    (1.0, "auto", 2, "native", 3, "(3 pyramid levels"),  # --pyramid counts levels from the model's spacing up
    (0.5, "auto", 1, "native", 3, "(3 pyramid levels"),
    (1.0, "working", 1, "working", 1, "(without --working-grid: then on the images' own voxels"),
    (1.0, "fixed", 1, "fixed", 1, "registered on the fixed grid as it is (--fixed-grid)"),
    (1.2, "auto", 1, "working", 1, "(--fixed-grid: register at the images' own spacing)"),  # not a power of two
    (4.0, "auto", 1, "working", 1, "working grid of 2 mm on every axis (8x8x8)"),
    (2.0, "auto", 2, "fixed", 2, None),
])
def test_the_grid_plan_and_its_note(spacing, grid, pyramid, kind, levels, note):
    from spikereg.registration.working_grid import registration_grid

    fixed = Volume(np.zeros((4, 4, 4), np.float32), np.diag([spacing] * 3 + [1.0]), path="img.nii.gz")
    plan = registration_grid(fixed, META, grid, pyramid)
    assert (plan.kind, plan.pyramid) == (kind, levels)
    assert (plan.shape != (4, 4, 4)) == (kind == "working")  # 4 voxels of 1.2 mm: 2 of 2 mm
    assert plan.native == (levels - pyramid if kind == "native" else 0)
    said = spacing_note(fixed, META, "m", plan=plan)
    assert (said is None) if note is None else (note in said)


def test_an_unknown_grid_is_refused():
    from spikereg.registration.working_grid import registration_grid

    with pytest.raises(ValueError, match="grid 'native': choose one of auto, working, fixed"):
        registration_grid(volume(1.0, 1.0, 1.0), META, "native")
