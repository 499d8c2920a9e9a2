"""The MNI152 template from nilearn's data folder, resampled to 4 mm (fast)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spikereg.data import TEMPLATE_FILES, VolumeError, load_mni, template_dir, tissue_labels

SPACING = 4.0
SHAPE_1MM = (197, 233, 189)
SHAPE_4MM = tuple(round(n / SPACING) for n in SHAPE_1MM)  # (49, 58, 47)


def test_template_dir_holds_the_files() -> None:
    folder = template_dir()
    assert folder.parts[-3:] == ("nilearn", "datasets", "data")
    for name in TEMPLATE_FILES.values():
        assert (folder / name).is_file()


@pytest.mark.parametrize("kind", ["t1", "gm", "wm"])
def test_load_mni_shape_affine_range(kind: str) -> None:
    vol = load_mni(kind, SPACING)
    assert vol.shape == SHAPE_4MM == (49, 58, 47)
    assert vol.data.dtype == np.float32
    assert vol.spacing == pytest.approx((4.0, 4.0, 4.0))
    # Corner-aligned: the outer corner of voxel 0 is where it is at 1 mm
    # (1 mm affine: origin -98, -134, -72, so the corner is 0.5 mm further out).
    corner = vol.affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    np.testing.assert_allclose(corner[:3], [-98.5, -134.5, -72.5], atol=1e-9)
    assert vol.data.min() >= 0.0 and vol.data.max() <= 1.0
    if kind == "t1":  # normalize_intensity: background at 0, bright tissue saturates at 1
        assert vol.data.min() == 0.0 and vol.data.max() == 1.0


def test_world_coordinates_consistent_with_1mm_file() -> None:
    # The white-matter centre of mass in mm must not move when resampling.
    img = nib.load(str(template_dir() / TEMPLATE_FILES["wm"]))
    ref = img.get_fdata(dtype=np.float32)

    def centroid_mm(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
        # Per-axis marginals avoid a (3, N) index array for the 1 mm volume.
        total = data.sum(dtype=np.float64)
        com = np.array([
            np.arange(n) @ data.sum(axis=tuple(a for a in range(3) if a != k), dtype=np.float64) / total
            for k, n in enumerate(data.shape)
        ])
        return affine[:3, :3] @ com + affine[:3, 3]

    vol = load_mni("wm", SPACING)
    expected = centroid_mm(ref, img.affine)
    np.testing.assert_allclose(centroid_mm(vol.data, vol.affine), expected, atol=0.1)


def test_tissue_labels_values_and_fractions() -> None:
    labels = tissue_labels(SPACING)
    assert labels.shape == SHAPE_4MM
    assert labels.data.dtype == np.float32
    assert set(np.unique(labels.data).tolist()) == {0.0, 1.0, 2.0}
    frac = {k: float(np.mean(labels.data == k)) for k in (0, 1, 2)}
    # The brain fills ~20 % of the MNI box; cortex + deep grey outweigh white matter.
    assert 0.12 < frac[1] + frac[2] < 0.35
    assert 0.5 < frac[1] / (frac[1] + frac[2]) < 0.75
    np.testing.assert_allclose(labels.affine, load_mni("t1", SPACING).affine)


def test_labels_agree_with_t1_contrast() -> None:
    # On a T1-weighted image white matter is brighter than grey matter, which
    # is brighter than the (skull-stripped) background outside the brain.
    t1 = load_mni("t1", SPACING).data
    labels = tissue_labels(SPACING).data
    bg, gm, wm = (float(t1[labels == k].mean()) for k in (0, 1, 2))
    assert wm > gm + 0.1
    assert gm > bg + 0.1


def test_bad_kind_and_spacing() -> None:
    with pytest.raises(VolumeError, match="template kind: expected one of"):
        load_mni("csf", SPACING)
    with pytest.raises(VolumeError, match="template spacing"):
        load_mni("t1", 0.0)
