"""SimpleITK images from and to SpikeReg's volumes: nibabel's RAS+ affines, ITK's LPS+ geometry.

nibabel's affines map voxels to RAS+ millimetres; ITK's physical space is
LPS+ (x and y negated). :func:`to_sitk` and :func:`from_sitk` convert a volume
with the right origin, spacing and direction (the affine stage,
:mod:`spikereg.registration.affine`, and N4, :mod:`spikereg.data.intensity`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikereg.data.io import Volume

LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS, its own inverse


def to_sitk(volume: Volume):
    """``volume`` (nibabel: array (i, j, k), RAS affine) as a float32 ``sitk.Image`` with LPS geometry.

    ITK index (i, j, k) is array element ``data[i, j, k]``; its physical point
    is ``LPS @ affine @ (i, j, k, 1)``.
    """
    import SimpleITK as sitk

    affine = np.asarray(volume.affine, dtype=np.float64)
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.data.transpose(2, 1, 0), dtype=np.float32))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in LPS @ affine[:3, 3]])
    image.SetDirection([float(v) for v in (LPS @ linear / spacing).ravel()])
    return image


def from_sitk(image, path: Path | None = None) -> Volume:
    """A ``sitk.Image`` as a :class:`Volume` (array (i, j, k), RAS affine): :func:`to_sitk`'s inverse."""
    import SimpleITK as sitk

    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = LPS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return Volume(data=np.ascontiguousarray(data), affine=affine, path=path)
