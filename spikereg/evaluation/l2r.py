"""Displacement fields as Learn2Reg's evaluation reads them (MDL-UzL/L2R, ``evaluation/evaluation.py``).

Learn2Reg scores a submission folder of ``disp_FFFF_MMMM.nii.gz`` files, one
per evaluation pair of its task JSON, where ``FFFF`` and ``MMMM`` are the case
numbers in the fixed and moving image names (``TASK_0395_0000.nii.gz`` ->
``0395``: the script takes ``name[-16:-12]``). Each field has shape
``expected_shape`` = the fixed image's shape followed by 3, holds voxel
displacements of the fixed grid along its array axes, and maps fixed to
moving: the fixed voxel ``p`` corresponds to the moving voxel ``p + disp(p)``
(its TRE adds the field to the fixed landmarks). That is SpikeReg's DDF
convention, so only the layout changes: (3, D, H, W) -> (D, H, W, 3), float32
(the script reads any dtype with ``get_fdata``; NIfTI has no float16, which
Learn2Reg asks for in ``.npz`` submissions only).
"""
from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from spikereg.data.io import write_bytes_atomic
from spikereg.errors import SpikeRegError

L2R_IMAGE = re.compile(r"(\d{4})_\d{4}\.nii\.gz$")  # TASK_<case>_<modality/time>.nii.gz
L2R_DTYPE = np.float32


class L2RNameError(SpikeRegError, ValueError):
    """An image whose file name does not carry a Learn2Reg case number."""


def case_number(image: str | Path, option: str = "--l2r") -> str:
    """The case number Learn2Reg's script reads from ``image``'s name (``name[-16:-12]``)."""
    name = Path(str(image)).name  # an HDF5 dataset key names no file: refused below
    found = L2R_IMAGE.search(name)
    if found is None:
        raise L2RNameError(f"{option}: Learn2Reg names each field after its images' case numbers "
                           f"(TASK_NNNN_NNNN.nii.gz, the script reads name[-16:-12]); {image} does not follow it")
    return found.group(1)


def field_name(fixed: str | Path, moving: str | Path) -> str:
    return f"disp_{case_number(fixed)}_{case_number(moving)}.nii.gz"


def l2r_field(ddf: np.ndarray) -> np.ndarray:
    """SpikeReg's (3, D, H, W) DDF as Learn2Reg's (D, H, W, 3) array."""
    ddf = np.asarray(ddf)
    if ddf.ndim != 4 or ddf.shape[0] != 3:
        raise ValueError(f"ddf must have shape (3, D, H, W), got {ddf.shape}")
    return np.ascontiguousarray(np.moveaxis(ddf, 0, -1), dtype=L2R_DTYPE)


def save_l2r_field(folder: str | Path, fixed: str | Path, moving: str | Path, ddf: np.ndarray,
                   affine: np.ndarray) -> Path:
    """Write one pair's field into ``folder`` under its Learn2Reg name; returns the path."""
    path = Path(folder) / field_name(fixed, moving)
    image = nib.Nifti1Image(l2r_field(ddf), np.asarray(affine, dtype=np.float64))
    image.header.set_data_dtype(L2R_DTYPE)
    return write_bytes_atomic(path, _gzipped(image))


def _gzipped(image: nib.Nifti1Image) -> bytes:
    import gzip

    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
