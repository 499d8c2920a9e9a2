"""The MNI ICBM152 2009a brain template shipped inside the ``nilearn`` package.

nilearn is installed only as a data carrier (``pip install --no-deps
nilearn``): importing it would pull in pandas and scikit-learn, so its folder
is located with :func:`importlib.util.find_spec`, which does not import it.

Resampling keeps the **corner** of the field of view fixed: the outer corner
of voxel (0, 0, 0) lies at the same world position at every spacing, and
output voxel i samples the 1 mm image at continuous index
``i * spacing + (spacing - 1) / 2``. The affine's voxel size is exactly
``spacing`` mm, so world coordinates stay consistent between resolutions.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .io import Volume, VolumeError, normalize_intensity
from .world import zoom_sample

TEMPLATE_FILES: dict[str, str] = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

_INSTALL_HINT = "install it with `pip install --no-deps nilearn` (only its data files are used)"


class TemplateNotFoundError(VolumeError, RuntimeError):
    """The nilearn package or one of its template files is missing.

    A VolumeError (so command-line tools print it as one line) and a RuntimeError
    (it is an installation problem rather than bad user data).
    """


def template_dir() -> Path:
    """Folder ``nilearn/datasets/data`` of the installed nilearn package (not imported)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise TemplateNotFoundError(f"MNI template: the nilearn package is not installed; {_INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    if not folder.is_dir():
        raise TemplateNotFoundError(f"MNI template: folder {folder} is missing; {_INSTALL_HINT}")
    return folder


@functools.lru_cache(maxsize=len(TEMPLATE_FILES))
def _read_1mm(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The 1 mm template as float32 in [0, 1] (uint8 / 255) and its affine, read once."""
    path = template_dir() / TEMPLATE_FILES[kind]
    if not path.is_file():
        raise TemplateNotFoundError(f"MNI template {path}: file not found; {_INSTALL_HINT}")
    img = nib.load(str(path))
    data = img.get_fdata(dtype=np.float32, caching="unchanged")
    data *= np.float32(1.0 / 255.0)  # stored as uint8 0..255
    # The cached array is shared by every caller: make accidental in-place edits fail loudly.
    data.flags.writeable = False
    affine = np.asarray(img.affine, dtype=np.float64)
    affine.flags.writeable = False
    return data, affine


def _resample(data: np.ndarray, affine: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a 1 mm volume to isotropic ``spacing`` mm (corner-aligned, trilinear)."""
    factor = float(spacing)  # template voxels are 1 mm, so output step in input voxels
    out_shape = tuple(max(1, int(round(n / factor))) for n in data.shape)
    src = data
    if factor > 1.0:
        # Anti-aliasing before subsampling; sigma = (factor - 1) / 2 input voxels
        # as in skimage.transform.resize, so a 1 mm-wide edge does not alias.
        src = ndimage.gaussian_filter(data, sigma=(factor - 1.0) / 2.0, mode="nearest")
    # Output voxel i samples input index i*factor + (factor-1)/2: voxel corners coincide.
    offset = (factor - 1.0) / 2.0
    out = zoom_sample(src, factor, offset, out_shape, order=1, mode="nearest", output=np.float32)
    new_affine = np.array(affine, dtype=np.float64)
    new_affine[:3, :3] = affine[:3, :3] * factor
    new_affine[:3, 3] = affine[:3, :3] @ np.full(3, offset) + affine[:3, 3]
    return out, new_affine


def _check_spacing(spacing: float) -> float:
    spacing = float(spacing)
    if not np.isfinite(spacing) or not 0.25 <= spacing <= 32.0:
        raise VolumeError(f"template spacing: must be between 0.25 and 32 mm, got {spacing}")
    return spacing


def load_mni(kind: str = "t1", spacing: float = 2.0) -> Volume:
    """MNI152 2009a template ``kind`` ("t1", "gm", "wm") resampled to isotropic ``spacing`` mm.

    The output shape is ``round(shape_1mm / spacing)`` per axis. "t1" is scaled
    to [0, 1] with :func:`normalize_intensity`; "gm"/"wm" are tissue
    probabilities in [0, 1]. The returned Volume's ``path`` is the 1 mm file.
    """
    if kind not in TEMPLATE_FILES:
        raise VolumeError(f"template kind: expected one of {sorted(TEMPLATE_FILES)}, got {kind!r}")
    spacing = _check_spacing(spacing)
    data_1mm, affine_1mm = _read_1mm(kind)
    data, affine = _resample(data_1mm, affine_1mm, spacing)
    if kind == "t1":
        data = normalize_intensity(data)
    else:
        np.clip(data, 0.0, 1.0, out=data)  # trilinear keeps [0, 1]; clip float rounding
    return Volume(data=data, affine=affine, path=template_dir() / TEMPLATE_FILES[kind])


def tissue_labels(spacing: float) -> Volume:
    """Label map at ``spacing`` mm: 0 background, 1 grey matter, 2 white matter (float32).

    A voxel is tissue when p(gm) + p(wm) >= 0.5, and then takes the more likely
    class (grey matter on ties).
    """
    gm = load_mni("gm", spacing)
    wm = load_mni("wm", spacing).data
    tissue = (gm.data + wm) >= 0.5
    labels = np.where(tissue, np.where(wm > gm.data, 2.0, 1.0), 0.0).astype(np.float32)
    return Volume(data=labels, affine=gm.affine, path=None)
