"""SimpleITK images from and to SpikeReg's volumes: nibabel's RAS+ affines, ITK's LPS+ geometry.

nibabel's affines map voxels to RAS+ millimetres; ITK's physical space is
LPS+ (x and y negated). :func:`to_sitk` and :func:`from_sitk` convert a volume
with the right origin, spacing and direction (the affine stage,
:mod:`spikereg.registration.affine`, and N4, :mod:`spikereg.data.intensity`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikereg.data.io import Volume, itk_affine, itk_geometry


def to_sitk(volume: Volume):
    """``volume`` (nibabel: array (i, j, k), RAS affine) as a float32 ``sitk.Image`` with LPS geometry.

    ITK index (i, j, k) is array element ``data[i, j, k]``; its physical point
    is the RAS point ``affine @ (i, j, k, 1)`` with x and y negated.
    """
    import SimpleITK as sitk

    spacing, direction, origin = itk_geometry(volume.affine)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.data.transpose(2, 1, 0), dtype=np.float32))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in direction])
    return image


def from_sitk(image, path: Path | None = None) -> Volume:
    """A ``sitk.Image`` as a :class:`Volume` (array (i, j, k), RAS affine): :func:`to_sitk`'s inverse."""
    import SimpleITK as sitk

    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    affine = itk_affine(image.GetSpacing(), image.GetDirection(), image.GetOrigin())
    return Volume(data=np.ascontiguousarray(data), affine=affine, path=path)
