"""Reading and writing NIfTI volumes and displacement fields; reading NRRD and MetaImage too.

NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) are read through
SimpleITK (:func:`open_image`), their LPS world coordinates turned into the
RAS affine NIfTI uses, so every later check and message is the NIfTI one.
Outputs are NIfTI.

Every error a user can cause (a wrong path, a file that is not a 3-D image,
NaN voxels, two images on different grids) is raised as :class:`VolumeError`
whose message is one line naming the file and what is wrong, so command-line
tools can print it as it is.

Writes are atomic: the image goes to a temporary file in the destination
folder, which then replaces the destination with :func:`os.replace`. A reader
therefore sees either the old file or the complete new one, never a partial
file, and an interrupted or failing save leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from spikereg.errors import SpikeRegError
from spikereg.options import OptionError, check_out_folder

# Affines of a fixed/moving pair may differ by rounding in the file headers
# (qform quaternions are stored in float32); 1e-3 mm is far below a voxel.
AFFINE_TOLERANCE_MM = 1e-3

_NIFTI_SUFFIXES = (".nii.gz", ".nii")

# Reading a volume holds its voxels as stored plus their float32 copy. A header
# may declare far more than the machine has (a typo'd or hostile file), so the
# declared size is checked against this ceiling before any voxel is read;
# spikereg run --memory-budget replaces it. 4 GB covers a 512x512x1000 CT.
DEFAULT_VOLUME_LIMIT_GB = 4.0


class VolumeError(SpikeRegError, ValueError):
    """A user-facing problem with an image file or image data.

    ``str(error)`` is a single line naming the file (or option) and what is wrong.
    """


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of a library exception, squeezed onto one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _name(path: Path | None) -> str:
    """How a volume is named in messages."""
    return str(path) if path is not None else "<in-memory volume>"


@dataclass
class Volume:
    """A 3-D image: float32 voxels, its 4x4 voxel-to-world (mm) affine and its file."""

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        # Normalise types once here so every consumer can rely on them;
        # asarray does not copy data that is already float32.
        self.path = Path(self.path) if self.path is not None else None
        self.data = np.asarray(self.data, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.data.ndim != 3:
            raise VolumeError(
                f"{_name(self.path)}: volume data must be 3-D, got shape {self.data.shape}"
            )
        if self.affine.shape != (4, 4):
            raise VolumeError(
                f"{_name(self.path)}: affine must be 4x4, got shape {self.affine.shape}"
            )

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (D, H, W)."""
        d, h, w = self.data.shape
        return (int(d), int(h), int(w))


# What SimpleITK reads for us: NRRD and MetaImage, the formats 3D Slicer, ITK-SNAP and MITK hand over.
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
DDF_FORMATS = ("voxels", "itk")  # spikereg's ddf.nii.gz (voxels, array axes) or an ITK displacement field (mm, LPS)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_affine(spacing, direction, origin) -> np.ndarray:
    """The RAS voxel-to-world affine of an ITK image (``p_LPS = origin + D diag(spacing) index``)."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    affine[:3, 3] = origin
    return _LPS_TO_RAS @ affine


def _open_itk(path: Path, what: str) -> nib.Nifti1Image:
    """An NRRD/MetaImage file as an in-memory NIfTI image: voxels on (i, j, k), the RAS affine."""
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        size, components = tuple(reader.GetSize()), reader.GetNumberOfComponents()
        if len(size) != 3 or components != 1:
            shape = size[::-1] + ((components,) if components > 1 else ())
            raise VolumeError(f"{what} {path}: not a 3-D volume ({len(size)}-D, {components} component(s) per "
                              f"voxel, shape {shape})")
        check_declared_size(size, np.float32, path, what)
        image = reader.Execute()
    except VolumeError:
        raise
    except Exception as exc:  # SimpleITK raises RuntimeError with ITK's multi-line text
        raise VolumeError(f"{what} {path}: cannot be read as a {path.suffix[1:]} image ({_one_line(exc)})") from None
    data = np.ascontiguousarray(sitk.GetArrayViewFromImage(image).transpose(2, 1, 0))  # (z, y, x) -> (i, j, k)
    return nib.Nifti1Image(data, itk_affine(image.GetSpacing(), image.GetDirection(), image.GetOrigin()))


def open_image(path: str | Path, what: str) -> tuple[Path, nib.spatialimages.SpatialImage]:
    """Open ``path`` with nibabel (header only; NRRD/MetaImage: read by SimpleITK), failures as a VolumeError."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{what} {path}: file not found")
    if not path.is_file():
        raise VolumeError(f"{what} {path}: not a file")
    if path.name.lower().endswith(ITK_SUFFIXES):
        return path, _open_itk(path, what)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types (ImageFileError, OSError, gzip errors)
        raise VolumeError(
            f"{what} {path}: cannot be read as a NIfTI image ({_one_line(exc)})"
        ) from None
    return path, img


def check_declared_size(shape: tuple[int, ...], dtype: np.dtype, source: object, what: str,
                        limit_gb: float | None = None, volumes: int = 1) -> None:
    """Refuse, from the header alone, a volume whose reading would take more than ``limit_gb``.

    ``limit_gb`` None is :data:`DEFAULT_VOLUME_LIMIT_GB`; the cost counted is
    the stored voxels plus their float32 copy (what :func:`read_float32` holds),
    per volume where the array holds ``volumes`` of them (a field: 3).
    """
    limit = DEFAULT_VOLUME_LIMIT_GB if limit_gb is None else limit_gb
    voxels = int(np.prod([int(s) for s in shape], dtype=object)) // volumes
    needed = voxels * (np.dtype(dtype).itemsize + 4)
    if needed > limit * 1e9:
        where = "--memory-budget" if limit_gb is not None else "the default limit; --memory-budget raises it"
        raise VolumeError(
            f"{what} {source}: the header declares {'x'.join(str(int(s)) for s in shape)} voxels of "
            f"{np.dtype(dtype)}, about {needed / 1e9:.3g} GB to read, over {limit:g} GB ({where}); "
            "resample it to a coarser grid"
        )


def refuse_blank(data: np.ndarray, source: object, what: str) -> None:
    """Refuse an image with nothing to register: constant, or blank once its intensities are normalised.

    The network sees :func:`normalize_intensity`'s output, which maps the 1st
    and 99th percentiles to 0 and 1: where they are equal, every voxel becomes
    0 and any field it returns is made up.
    """
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        raise VolumeError(f"{what} {source}: the image is constant (every voxel {lo:g}); nothing to register")
    p1, p99 = (float(v) for v in np.percentile(data, [1.0, 99.0]))
    if p1 == p99:
        raise VolumeError(f"{what} {source}: at least 98 % of the voxels hold one value ({p1:g}), so the image is "
                          "blank once its intensities are normalised; nothing to register")


def integer_labels(data: np.ndarray, source: object, what: str) -> np.ndarray:
    """A label map's voxels as exact integers; refuses one holding values that are not integers.

    Within 1e-3 of an integer is rounding in the file's scaling (2.9999998 is
    label 3); anything further would be rounded to another label, or merged
    with one, without a word.
    """
    rounded = np.rint(data)
    off = np.abs(data - rounded) > 1e-3
    if off.any():
        bad = np.unique(data[off])
        raise VolumeError(f"{what} {source}: labels must be integers, but {int(off.sum())} voxels are not "
                          f"(e.g. {bad[0]:g}" + (f", {bad[1]:g}" if bad.size > 1 else "") + "); store a label "
                          "map of integer labels, or warp it as an image")
    return rounded.astype(np.float32, copy=False)


def read_float32(img: nib.spatialimages.SpatialImage, path: Path, what: str) -> np.ndarray:
    """Voxel data as float32 (scaling applied), failing on truncated files or NaN/Inf."""
    try:
        # caching="unchanged": the image object is dropped right after, so no second copy.
        data = img.get_fdata(dtype=np.float32, caching="unchanged")
    except Exception as exc:  # truncated gzip, complex dtype, ...
        raise VolumeError(
            f"{what} {path}: voxel data cannot be read ({_one_line(exc)})"
        ) from None
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(data)))
        n_inf = int(data.size - np.count_nonzero(finite) - n_nan)
        raise VolumeError(
            f"{what} {path}: contains non-finite voxels ({n_nan} NaN, {n_inf} Inf)"
        )
    return data


def check_affine(affine: np.ndarray | None, path: Path, what: str) -> np.ndarray:
    """A finite, invertible 4x4 float64 affine, or a VolumeError."""
    if affine is None:  # some non-NIfTI formats nibabel reads carry no affine
        raise VolumeError(f"{what} {path}: the header has no voxel-to-world affine")
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"{what} {path}: the header's affine is not a valid (invertible) transform")
    return affine


def load_volume(path: str | Path, *, what: str = "volume", limit_gb: float | None = None) -> Volume:
    """Load a 3-D NIfTI (or NRRD/MetaImage, see :func:`open_image`) image as float32 with its affine.

    A 4-D image with trailing singleton axes (e.g. shape (D, H, W, 1)) is
    squeezed to 3-D; anything else that is not 3-D is rejected. ``what`` names
    the role of the file in error messages ("fixed image", "moving image", ...).
    ``limit_gb``: see :func:`check_declared_size`, checked before any voxel is read.
    """
    path, img = open_image(path, what)
    shape = tuple(int(s) for s in img.shape)
    # Check the shape from the header before reading any voxels, so a large
    # 4-D series is rejected without being decompressed.
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise VolumeError(f"{what} {path}: not a 3-D volume (shape {shape})")
    if min(shape[:3]) < 1:
        raise VolumeError(f"{what} {path}: volume has an empty axis (shape {shape})")
    affine = check_affine(img.affine, path, what)
    check_declared_size(shape, img.get_data_dtype(), path, what, limit_gb)
    data = read_float32(img, path, what).reshape(shape[:3])
    return Volume(data=data, affine=affine, path=path)


def _nifti_suffix(path: Path) -> str:
    """The NIfTI suffix of ``path`` (".nii.gz" or ".nii"), or a VolumeError."""
    for suffix in _NIFTI_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return suffix
    raise VolumeError(f"output {path}: file name must end in .nii.gz or .nii")


def _atomic_save(img: nib.Nifti1Image, path: Path) -> Path:
    """Write ``img`` to ``path`` via a temporary file in the same folder and os.replace."""
    suffix = _nifti_suffix(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VolumeError(f"output {path}: cannot create folder ({exc.strerror or exc})") from None
    # Same folder so os.replace is a rename on one file system (atomic); the
    # name keeps the real suffix because nibabel picks gzip from it; the
    # leading dot keeps it out of globs such as pair_*/fixed*.nii.gz.
    tmp = path.parent / f".{path.name[: -len(suffix)]}.tmp-{uuid.uuid4().hex}{suffix}"
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise VolumeError(f"output {path}: cannot write ({_one_line(exc)})") from None
    return path


def _cast(data: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    """``data`` converted to ``dtype``; integers are rounded and must fit the type."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(data.dtype, np.integer):
        if data.size and not np.isfinite(data).all():
            raise VolumeError(f"output {path}: NaN or Inf cannot be stored as {dtype}")
        data = np.rint(data)
    if np.issubdtype(dtype, np.integer) and data.size:
        info = np.iinfo(dtype)
        lo, hi = data.min(), data.max()
        if lo < info.min or hi > info.max:
            raise VolumeError(
                f"output {path}: values [{lo}, {hi}] do not fit in {dtype}"
            )
    return data.astype(dtype, copy=False)


def save_volume(
    path: str | Path, data: np.ndarray, affine: np.ndarray, *, dtype: np.dtype | type = np.float32
) -> Path:
    """Write ``data`` (3-D, or 4-D such as (D, H, W, 3)) as NIfTI atomically; returns the path.

    Parent folders are created. The file is gzip-compressed when the name ends
    in ``.nii.gz``. Integer ``dtype`` values are rounded to the nearest integer.
    """
    path = Path(path)
    _nifti_suffix(path)  # fail on a bad name before any work
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise VolumeError(f"output {path}: data must be 3-D or 4-D, got shape {data.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise VolumeError(f"output {path}: affine must be 4x4, got shape {affine.shape}")
    img = nib.Nifti1Image(_cast(data, dtype, path), affine)
    img.header.set_xyzt_units("mm")
    return _atomic_save(img, path)


def check_pair(fixed: Volume, moving: Volume) -> None:
    """Raise VolumeError unless both volumes lie on the same voxel grid (shape and affine)."""
    f, m = _name(fixed.path), _name(moving.path)
    if fixed.shape != moving.shape:
        raise VolumeError(
            f"fixed image {f} and moving image {m} have different shapes "
            f"({fixed.shape} vs {moving.shape}); resample one onto the other's grid first"
        )
    diff = float(np.max(np.abs(fixed.affine - moving.affine)))
    if diff > AFFINE_TOLERANCE_MM:
        raise VolumeError(
            f"fixed image {f} and moving image {m} have different affines "
            f"(largest difference {diff:.4g} mm > {AFFINE_TOLERANCE_MM} mm); "
            "resample one onto the other's grid first"
        )


# NIfTI intent_name holds at most 16 bytes.
DDF_INTENT_NAME = "ddf voxel units"


def save_ddf(path: str | Path, ddf: np.ndarray, affine: np.ndarray) -> Path:
    """Write a displacement field ``ddf`` (3, D, H, W) atomically as NIfTI; returns the path.

    The file has shape (D, H, W, 1, 3) and intent "vector", as the NIfTI
    standard prescribes for vector fields (vector index on the 5th axis). The
    values are in **voxel units** along the array axes (component k moves
    along array axis k), not in mm and not in world/RAS axes: multiply by the
    voxel size (and rotate by the affine) to get world displacements.
    """
    path = Path(path)
    _nifti_suffix(path)
    ddf = np.asarray(ddf)
    if ddf.ndim != 4 or ddf.shape[0] != 3:
        raise VolumeError(f"output {path}: ddf must have shape (3, D, H, W), got {ddf.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise VolumeError(f"output {path}: affine must be 4x4, got shape {affine.shape}")
    # moveaxis is a view; nibabel writes it without a contiguous copy of our own.
    vec = np.moveaxis(ddf.astype(np.float32, copy=False), 0, -1)[:, :, :, None, :]
    img = nib.Nifti1Image(vec, affine)
    img.header.set_intent("vector", name=DDF_INTENT_NAME)
    img.header["descrip"] = b"displacement (voxels) along array axes i,j,k"
    return _atomic_save(img, path)


def load_ddf(path: str | Path, *, what: str = "displacement field",
             limit_gb: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a field written by :func:`save_ddf`: returns (ddf (3, D, H, W) float32 voxels, affine).

    Files of shape (D, H, W, 1, 3) (NIfTI vector layout) and (D, H, W, 3) are accepted.
    """
    path, img = open_image(path, what)
    shape = tuple(int(s) for s in img.shape)
    if not (
        (len(shape) == 5 and shape[3] == 1 and shape[4] == 3)
        or (len(shape) == 4 and shape[3] == 3)
    ):
        raise VolumeError(
            f"{what} {path}: expected shape (D, H, W, 1, 3) or (D, H, W, 3), got {shape}"
        )
    affine = check_affine(img.affine, path, what)
    # a field is three volumes: the limit is per volume, so one component is what is counted
    check_declared_size(shape[:3], img.get_data_dtype(), path, what, limit_gb)
    data = read_float32(img, path, what).reshape(shape[:3] + (3,))
    return np.ascontiguousarray(np.moveaxis(data, -1, 0)), affine


def itk_geometry(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(spacing, direction, origin) of the ITK image whose RAS affine is ``affine``."""
    lps = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)  # the flip is its own inverse
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return tuple(spacing), tuple((lps[:3, :3] / spacing).ravel()), tuple(lps[:3, 3])


def save_itk_displacement(path: str | Path, ddf: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``ddf`` (3, D, H, W voxels on the grid ``affine``) as an ITK displacement field; returns the path.

    ITK's convention: a vector image on the fixed grid whose value at each
    voxel centre ``p`` is the physical displacement in mm, LPS axes, to the
    matching point of the moving image (``p + d(p)``) -- what
    ``antsApplyTransforms -t``, SimpleITK's ``DisplacementFieldTransform`` and
    ITK-SNAP apply. Any suffix SimpleITK writes (``.nii.gz``, ``.nrrd``,
    ``.mha``); written under a temporary name, then renamed.
    """
    import SimpleITK as sitk

    path = Path(path)
    ddf = np.asarray(ddf, dtype=np.float64)
    if ddf.ndim != 4 or ddf.shape[0] != 3:
        raise VolumeError(f"output {path}: ddf must have shape (3, D, H, W), got {ddf.shape}")
    # voxel steps along array axes -> mm in RAS (the affine's columns) -> LPS
    ras = np.tensordot(np.asarray(affine, dtype=np.float64)[:3, :3], ddf, axes=1)
    lps = ras * np.array([-1.0, -1.0, 1.0]).reshape(3, 1, 1, 1)
    image = sitk.GetImageFromArray(np.ascontiguousarray(lps.transpose(3, 2, 1, 0)), isVector=True)  # (z, y, x, 3)
    spacing, direction, origin = itk_geometry(affine)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    tmp = path.parent / f".{path.name[: len(path.name) - len(suffix)]}.tmp-{uuid.uuid4().hex}{suffix}"
    try:
        sitk.WriteImage(image, str(tmp))
        os.replace(tmp, path)
    except RuntimeError as exc:
        raise VolumeError(f"output {path}: cannot be written as an ITK displacement field ({_one_line(exc)})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_itk_displacement(path: str | Path, *, what: str = "displacement field") -> tuple[np.ndarray, np.ndarray]:
    """Read an ITK displacement field (mm, LPS): returns (ddf (3, D, H, W) voxels on its grid, RAS affine)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise VolumeError(f"{what} {path}: file not found")
    try:
        image = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    except RuntimeError as exc:
        raise VolumeError(f"{what} {path}: cannot be read as an ITK displacement field ({_one_line(exc)})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 3:
        raise VolumeError(f"{what} {path}: an ITK displacement field is a 3-D image of 3-vectors; this one is "
                          f"{image.GetDimension()}-D with {image.GetNumberOfComponentsPerPixel()} component(s)")
    affine = itk_affine(image.GetSpacing(), image.GetDirection(), image.GetOrigin())
    lps = sitk.GetArrayFromImage(image).transpose(3, 2, 1, 0)  # (3, i, j, k)
    if not np.isfinite(lps).all():
        raise VolumeError(f"{what} {path}: contains non-finite displacements")
    ras = lps * np.array([-1.0, -1.0, 1.0]).reshape(3, 1, 1, 1)
    voxels = np.tensordot(np.linalg.inv(affine[:3, :3]), ras, axes=1)
    return voxels.astype(np.float32), affine


def normalize_intensity(
    data: np.ndarray, lower_pct: float = 1.0, upper_pct: float = 99.0
) -> np.ndarray:
    """Robust min-max scaling to [0, 1]: the two percentiles map to 0 and 1, then clip.

    Returns float32. A constant image (equal percentiles) gives zeros.
    """
    if not 0.0 <= lower_pct < upper_pct <= 100.0:
        raise ValueError(
            f"normalize_intensity: need 0 <= lower_pct < upper_pct <= 100, got {lower_pct}, {upper_pct}"
        )
    data = np.asarray(data, dtype=np.float32)
    if data.size == 0:
        return data.copy()
    lo, hi = (float(v) for v in np.percentile(data, [lower_pct, upper_pct]))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise VolumeError("normalize_intensity: data contains NaN or Inf")
    if hi <= lo:
        return np.zeros_like(data)
    # One float32 output buffer, scaled and clipped in place.
    out = np.subtract(data, np.float32(lo), dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write a file whole or not at all (temporary name in the same folder, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file whole or not at all (UTF-8; see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextmanager
def staged_folder(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A hidden folder beside ``out`` to write into; on success it becomes ``out``, whole.

    ``out`` is checked first (:func:`spikereg.options.check_out_folder`): an
    existing non-empty folder is refused unless ``overwrite``, which replaces
    it as a unit (:func:`replace_folder`), so results of two runs never sit side
    by side. On an exception (or Ctrl-C) the staging folder is deleted and
    ``out`` is left as it was, so readers never see a half-written set of outputs.
    """
    out = Path(out)
    check_out_folder(out, overwrite=overwrite)
    staging = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir(parents=True)
    try:
        yield staging
        replace_folder(staging, out, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(new: Path, out: Path, *, overwrite: bool = False) -> None:
    """Rename the finished folder ``new`` to ``out``; an old ``out`` is renamed aside first, then deleted.

    Each step is one rename on one file system, so ``out`` is at every moment
    the old folder, briefly absent, or the new one -- never a mix. An empty
    ``out`` (e.g. made by hand beforehand) is simply replaced.
    """
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(new, out)
        return
    if not overwrite:  # something appeared in out while this run worked
        raise OptionError(f"--out {out}: the folder exists and is not empty; give a new folder, or --overwrite "
                          "to replace it whole")
    old = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old"
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)  # put the old results back rather than leave none
        raise
    shutil.rmtree(old, ignore_errors=True)
