"""Datasets of registration pairs in DeepReg's folder layouts, NIfTI or HDF5.

Layouts (https://deepreg.readthedocs.io, "Dataset loader"), in ``root`` or
``root/<split>`` (train, val, test):

* **paired**: ``fixed_images/`` and ``moving_images/`` with matching file
  names, optional ``fixed_labels/``, ``moving_labels/`` and (SpikeReg's
  addition, what ``spikereg data synth`` writes) ``ddfs/``, the ground-truth
  field with ``warp(moving, ddf) == fixed``;
* **unpaired**: ``images/`` and optional ``labels/``; every ordered pair of
  two different images is a pair;
* **grouped**: ``images/<group>/`` (and optional ``labels/<group>/``); every
  ordered pair of two different images of one group is a pair.

Each folder may instead be one HDF5 file of the same name (``fixed_images.h5``,
``images.h5``, ...) holding one dataset per image (grouped: one HDF5 group per
group); matching keys play the part of matching file names. HDF5 carries no
affine unless a dataset has an ``affine`` attribute (4x4); otherwise the
identity (1 mm voxels) is used.

Images must be 3-D and finite; a pair's moving image (and labels) may lie on
any grid that overlaps the fixed image's in world space, and is resampled onto
the fixed grid (:func:`load_pair`, :mod:`spikereg.data.world`); a
ground-truth field has shape (3, D, H, W) on the fixed image's grid (NIfTI:
:func:`spikereg.data.io.save_ddf`'s layout). Labels are 3-D integer label maps
(0 background), or DeepReg's multi-label arrays (D, H, W, L) of binary masks,
which are read as the label map with label k+1 for channel k
(:func:`label_map_from_channels`). Every violation, an empty folder or a
missing counterpart is one :class:`DatasetError` line naming the file.

:class:`PairFiles` is also what a pairs CSV row becomes (``spikereg run
--pairs``, :func:`spikereg.registration.cohort.read_pairs`), so a cohort's
pairs are loaded and checked by the same :func:`load_pair`.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Iterator, Mapping, Union

import numpy as np

from .io import (
    AFFINE_TOLERANCE_MM,
    Volume,
    VolumeError,
    check_affine,
    check_declared_size,
    integer_labels,
    load_ddf,
    load_volume,
    open_image,
    read_float32,
    refuse_blank,
)
from .world import check_overlap, resample_like, same_grid

NIFTI_SUFFIX = ".nii.gz"
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
H5_SUFFIX = ".h5"

FIXED_IMAGES, MOVING_IMAGES = "fixed_images", "moving_images"
FIXED_LABELS, MOVING_LABELS, DDFS = "fixed_labels", "moving_labels", "ddfs"
IMAGES, LABELS = "images", "labels"


class DatasetError(VolumeError):
    """A dataset folder or file that does not follow the layout, or holds bad data (one line)."""


@dataclass(frozen=True)
class H5Key:
    """One dataset (array) inside an HDF5 file."""

    file: Path
    key: str

    def __str__(self) -> str:
        return f"{self.file}[{self.key}]"


Source = Union[Path, H5Key]


@dataclass(frozen=True)
class PairFiles:
    """Where one pair's volumes are: NIfTI paths or HDF5 keys; labels and ground truth optional.

    One type for every source of pairs: a dataset folder (:func:`load_dataset`),
    ``spikereg data synth``'s output and a row of a pairs CSV; :func:`load_pair`
    reads and checks any of them.
    """

    name: str
    fixed: Source
    moving: Source
    fixed_labels: Source | None = None
    moving_labels: Source | None = None
    ddf: Source | None = None

    @classmethod
    def paired(cls, folder: Path, name: str, suffix: str = NIFTI_SUFFIX) -> "PairFiles":
        """All five files of pair ``name`` in a paired-layout NIfTI folder."""
        folder = Path(folder)
        return cls(name, *(folder / sub / f"{name}{suffix}"
                           for sub in (FIXED_IMAGES, MOVING_IMAGES, FIXED_LABELS, MOVING_LABELS, DDFS)))


@dataclass
class Pair:
    """A loaded pair: volumes on one grid; ddf (3, D, H, W) voxels or None."""

    name: str
    fixed: Volume
    moving: Volume
    fixed_labels: Volume | None = None
    moving_labels: Volume | None = None
    ddf: np.ndarray | None = None


# ----------------------------------------------------------------------------- reading one volume

def _read_h5(source: H5Key, what: str, limit_gb: float | None = None,
             volumes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(float32 array, 4x4 affine) of one HDF5 dataset, or a DatasetError naming it."""
    import h5py

    try:
        with h5py.File(source.file, "r") as h5:
            if source.key not in h5 or not isinstance(h5[source.key], h5py.Dataset):
                raise DatasetError(f"{what} {source}: no such dataset in the file")
            dataset = h5[source.key]
            # as for NIfTI headers: the declared size is checked before the data is read
            check_declared_size(dataset.shape, dataset.dtype, source, what, limit_gb, volumes)
            data = np.asarray(dataset[()], dtype=np.float32)
            affine = dataset.attrs.get("affine")
    except DatasetError:
        raise
    except Exception as exc:  # OSError for non-HDF5 or truncated files, TypeError for odd dtypes
        raise DatasetError(f"{what} {source}: cannot be read as HDF5 ({' '.join(str(exc).split())})") from None
    if affine is None:
        affine = np.eye(4)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DatasetError(f"{what} {source}: the 'affine' attribute is not an invertible 4x4 transform")
    return data, affine


def _check_finite(data: np.ndarray, source: Source, what: str) -> None:
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(data)))
        raise DatasetError(f"{what} {source}: contains non-finite voxels "
                           f"({n_nan} NaN, {int(data.size - finite.sum()) - n_nan} Inf)")


def _is_channel_stack(shape: tuple[int, ...]) -> bool:
    """A 4-D shape whose last axis holds more than one channel: (D, H, W, L), L > 1."""
    return len(shape) == 4 and shape[3] > 1


def label_map_from_channels(channels: np.ndarray, source: Source, what: str) -> np.ndarray:
    """DeepReg's multi-label array (D, H, W, L) of binary masks as a label map (D, H, W), float32.

    DeepReg stores an image's L labels as one binary mask per channel, shape
    ``(dim1, dim2, dim3, num_labels)``, values in [0, 1], "one-hot encoding ...
    such that each class has its own binary label" (DeepReg docs, "Dataset
    Loader", Label: https://deepreg.readthedocs.io/en/latest/docs/dataset_loader.html,
    docs/source/docs/dataset_loader.md in DeepRegNet/DeepReg). Channel k becomes
    label k + 1, voxels with no channel set are 0 (background). DeepReg does not
    forbid masks that overlap; where channels overlap, a voxel takes the label of
    its first set channel (argmax over channels, + 1), so a label map cannot say
    that such a voxel also belongs to the later labels. Soft labels (values
    strictly between 0 and 1, which DeepReg also accepts) are refused: threshold
    them first.
    """
    binary = (channels == 0) | (channels == 1)
    if not binary.all():
        odd = channels[~binary]
        raise DatasetError(f"{what} {source}: a 4-D label array {channels.shape} must hold one binary (0/1) mask "
                           f"per label on its last axis; {odd.size} values are neither 0 nor 1 (e.g. {odd[0]:g}); "
                           "threshold soft labels, or store a 3-D label map")
    masks = channels.astype(bool)
    return np.where(masks.any(axis=-1), np.argmax(masks, axis=-1) + 1, 0).astype(np.float32)


def _load_nifti_labels(path: Path, what: str, limit_gb: float | None = None, integers: bool = True) -> Volume:
    """A label map from a NIfTI file: 3-D as :func:`load_volume` reads it, or 4-D binary masks."""
    path, img = open_image(path, what)  # header only: a 3-D map is then read by load_volume
    shape = tuple(int(s) for s in img.shape)
    if not _is_channel_stack(shape):
        volume = load_volume(path, what=what, limit_gb=limit_gb)
        if integers:
            volume.data = integer_labels(volume.data, path, what)
        return volume
    if min(shape) < 1:
        raise DatasetError(f"{what} {path}: volume has an empty axis (shape {shape})")
    affine = check_affine(img.affine, path, what)
    check_declared_size(shape, img.get_data_dtype(), path, what, limit_gb)
    channels = read_float32(img, path, what)
    return Volume(data=label_map_from_channels(channels, path, what), affine=affine, path=path)


def load_source(source: Source, what: str, *, labels: bool = False, limit_gb: float | None = None,
                integers: bool = True) -> Volume:
    """A 3-D volume from a NIfTI path or an HDF5 key (trailing singleton axes squeezed).

    With ``labels=True`` a 4-D array (D, H, W, L) of L binary masks, DeepReg's
    multi-label layout, is also accepted and turned into a label map
    (:func:`label_map_from_channels`); images must be 3-D. A 3-D label map must
    hold integers (:func:`~spikereg.data.io.integer_labels`; ``integers=False``
    leaves that to the caller, as :func:`load_pair` does once the grid is
    checked). ``limit_gb``
    bounds the declared size, checked before reading
    (:func:`~spikereg.data.io.check_declared_size`).
    """
    if isinstance(source, Path):
        return _load_nifti_labels(source, what, limit_gb, integers) if labels else load_volume(
            source, what=what, limit_gb=limit_gb)
    data, affine = _read_h5(source, what, limit_gb)
    shape = data.shape
    if labels and _is_channel_stack(shape) and min(shape) >= 1:
        _check_finite(data, source, what)
        return Volume(data=label_map_from_channels(data, source, what), affine=affine, path=None)
    if data.ndim < 3 or any(s != 1 for s in shape[3:]):
        raise DatasetError(f"{what} {source}: not a 3-D volume (shape {shape})")
    data = data.reshape(shape[:3])
    if min(data.shape) < 1:
        raise DatasetError(f"{what} {source}: volume has an empty axis (shape {shape})")
    _check_finite(data, source, what)
    if labels and integers:
        data = integer_labels(data, source, what)
    return Volume(data=data, affine=affine, path=None)


def load_ddf_source(source: Source, what: str = "ground-truth ddf",
                    limit_gb: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ddf (3, D, H, W) voxels, affine) from a NIfTI file (save_ddf layout) or an HDF5 key.

    HDF5 fields may be stored (3, D, H, W) or (D, H, W, 3).
    """
    if isinstance(source, Path):
        return load_ddf(source, what=what, limit_gb=limit_gb)
    data, affine = _read_h5(source, what, limit_gb, volumes=3)  # the limit is per volume; a field holds three
    if data.ndim == 4 and data.shape[-1] == 3 and data.shape[0] != 3:
        data = np.moveaxis(data, -1, 0)
    if data.ndim != 4 or data.shape[0] != 3:
        raise DatasetError(f"{what} {source}: expected shape (3, D, H, W) or (D, H, W, 3), got {data.shape}")
    _check_finite(data, source, what)
    return np.ascontiguousarray(data), affine


def _same_grid(volume: Volume, reference: Volume, source: Source, what: str, ref_name: str) -> None:
    if volume.shape != reference.shape:
        raise DatasetError(f"{what} {source}: shape {volume.shape} differs from the {ref_name}'s {reference.shape}")
    diff = float(np.max(np.abs(volume.affine - reference.affine)))
    if diff > AFFINE_TOLERANCE_MM:
        raise DatasetError(f"{what} {source}: affine differs from the {ref_name}'s "
                           f"(largest difference {diff:.4g} mm)")


# How load_pair's messages name each file of a pair, by PairFiles field.
ROLE_NAMES = {"fixed": "fixed image", "moving": "moving image", "fixed_labels": "fixed labels",
              "moving_labels": "moving labels", "ddf": "ground-truth ddf"}


def load_pair(files: PairFiles, names: Mapping[str, str] | None = None, *, limit_gb: float | None = None,
              resample: bool = True) -> Pair:
    """Load and check one pair; every volume on the fixed grid (``resample``), labels checked against their image.

    The moving image may lie on any grid (shape, orientation, spacing): it is
    resampled onto the fixed image's grid in world coordinates
    (:func:`spikereg.data.world.resample_like`, linear), and so are labels
    (nearest neighbour, straight from their own grid). Only volumes that do
    not overlap in world space are refused (:class:`~spikereg.data.world.NoOverlapError`,
    with the overlap): the moving image and the fixed one, and a labels file
    and its own image. ``resample=False`` leaves the moving image and its
    labels on their own grids (``spikereg run`` warps them from there, in one
    interpolation); fixed labels are always brought onto the fixed grid. A
    ground-truth ddf must lie on the fixed grid.

    ``names`` overrides, by field, how a message names the offending file
    (default :data:`ROLE_NAMES`); the command line passes its options, so that
    ``spikereg run`` says ``--moving-labels L.nii.gz: ...``. A constant (or
    blank) fixed or moving image is refused: there is nothing to register, and
    the network would still return a confident field. ``limit_gb`` bounds each
    file's declared size before it is read (None: the default ceiling).
    """
    what = {**ROLE_NAMES, **(names or {})}
    fixed = load_source(files.fixed, what["fixed"], limit_gb=limit_gb)
    moving = load_source(files.moving, what["moving"], limit_gb=limit_gb)
    moving_on_fixed = same_grid(moving, fixed)
    if not moving_on_fixed:
        check_overlap(moving, fixed, what["moving"], ROLE_NAMES["fixed"], source=files.moving,
                      reference_source=files.fixed)
    # content after form: a file on the wrong grid is reported as that, whatever it holds
    refuse_blank(fixed.data, files.fixed, what["fixed"])
    refuse_blank(moving.data, files.moving, what["moving"])
    grids = {"fixed": (fixed.shape, fixed.affine), "moving": (moving.shape, moving.affine)}  # as in the files
    if resample and not moving_on_fixed:
        moving = resample_like(moving, fixed, order=1)
    pair = Pair(files.name, fixed, moving)
    for role in ("fixed", "moving"):
        source = getattr(files, f"{role}_labels")
        if source is not None:
            labels = load_source(source, what[f"{role}_labels"], labels=True, limit_gb=limit_gb, integers=False)
            if not same_grid(labels, grids[role]):
                check_overlap(labels, grids[role], what[f"{role}_labels"], ROLE_NAMES[role], source=source,
                              reference_source=getattr(files, role))
            labels.data = integer_labels(labels.data, source, what[f"{role}_labels"])
            if (role == "fixed" or resample) and not same_grid(labels, fixed):
                labels = resample_like(labels, fixed, order=0)
            setattr(pair, f"{role}_labels", labels)
    if files.ddf is not None:
        ddf, affine = load_ddf_source(files.ddf, what["ddf"], limit_gb)
        _same_grid(Volume(ddf[0], affine), fixed, files.ddf, what["ddf"], ROLE_NAMES["fixed"])
        pair.ddf = ddf
    return pair


# ----------------------------------------------------------------------------- scanning a folder

def _stem(path: Path) -> str | None:
    """File name without its NIfTI suffix, or None for anything that is not a NIfTI file."""
    for suffix in _NIFTI_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix) and not path.name.startswith("."):
            return path.name[: -len(suffix)]
    return None


def _nifti_files(folder: Path) -> dict[str, Path]:
    """{name: path} of the NIfTI files in ``folder``; a DatasetError when there are none."""
    files = {}
    for path in sorted(folder.iterdir()):
        name = _stem(path)
        if name is not None and path.is_file():
            if name in files:
                raise DatasetError(f"{path}: same name as {files[name]} (both .nii and .nii.gz)")
            files[name] = path
    if not files:
        raise DatasetError(f"{folder}: empty folder, no NIfTI files (.nii or .nii.gz)")
    return files


def _h5_keys(file: Path, group: str | None = None) -> dict[str, H5Key]:
    """{key: H5Key} of the datasets in ``file`` (or in one of its groups); a DatasetError when there are none."""
    import h5py

    try:
        with h5py.File(file, "r") as h5:
            node = h5 if group is None else h5[group]
            names = sorted(k for k, v in node.items() if isinstance(v, h5py.Dataset))
    except Exception as exc:
        raise DatasetError(f"{file}: cannot be read as HDF5 ({' '.join(str(exc).split())})") from None
    if not names:
        raise DatasetError(f"{file}{f'[{group}]' if group else ''}: no datasets in the HDF5 file")
    return {name: H5Key(file, name if group is None else f"{group}/{name}") for name in names}


def _h5_groups(file: Path) -> list[str]:
    import h5py

    try:
        with h5py.File(file, "r") as h5:
            return sorted(k for k, v in h5.items() if isinstance(v, h5py.Group))
    except Exception as exc:
        raise DatasetError(f"{file}: cannot be read as HDF5 ({' '.join(str(exc).split())})") from None


def _find(folder: Path, kind: str) -> tuple[str, Path] | None:
    """("nifti", folder/kind) or ("h5", folder/kind.h5) when one exists; both is ambiguous."""
    directory, h5 = folder / kind, folder / f"{kind}{H5_SUFFIX}"
    if directory.is_dir() and h5.is_file():
        raise DatasetError(f"{folder}: both {kind}/ and {kind}{H5_SUFFIX} exist; keep one")
    if directory.is_dir():
        return "nifti", directory
    if h5.is_file():
        return "h5", h5
    return None


def _entries(found: tuple[str, Path]) -> dict[str, Source]:
    fmt, where = found
    return _nifti_files(where) if fmt == "nifti" else _h5_keys(where)


def _matching(reference: dict[str, Source], other: dict[str, Source], ref_what: str, what: str) -> None:
    """Every entry of ``reference`` has a counterpart in ``other`` and the other way round."""
    for name, source in reference.items():
        if name not in other:
            raise DatasetError(f"{ref_what} {source}: no {what} of the same name")
    for name, source in other.items():
        if name not in reference:
            raise DatasetError(f"{what} {source}: no {ref_what} of the same name")


def _paired(folder: Path) -> tuple[str, list[PairFiles]]:
    fixed_found, moving_found = _find(folder, FIXED_IMAGES), _find(folder, MOVING_IMAGES)
    if moving_found is None:
        raise DatasetError(f"{folder}: has {FIXED_IMAGES} but no {MOVING_IMAGES}/ (or {MOVING_IMAGES}.h5)")
    fixed, moving = _entries(fixed_found), _entries(moving_found)
    _matching(fixed, moving, "fixed image", "moving image")
    optional = {}
    for kind, what in ((FIXED_LABELS, "fixed labels"), (MOVING_LABELS, "moving labels"), (DDFS, "ground-truth ddf")):
        found = _find(folder, kind)
        if found is not None:
            optional[kind] = _entries(found)
            _matching(fixed, optional[kind], "fixed image", what)
    pairs = [PairFiles(name, fixed[name], moving[name],
                       *(optional[k][name] if k in optional else None for k in (FIXED_LABELS, MOVING_LABELS, DDFS)))
             for name in fixed]
    return fixed_found[0], pairs


def _all_pairs(images: dict[str, Source], labels: dict[str, Source] | None, prefix: str = "") -> list[PairFiles]:
    """Every ordered pair (fixed, moving) of two different images."""
    return [PairFiles(f"{prefix}{m}_to_{f}", images[f], images[m],
                      labels[f] if labels else None, labels[m] if labels else None)
            for f, m in permutations(images, 2)]


def _unpaired_or_grouped(folder: Path, found: tuple[str, Path]) -> tuple[str, str, list[PairFiles]]:
    fmt, where = found
    labels_found = _find(folder, LABELS)
    if fmt == "nifti":
        groups = sorted(p.name for p in where.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        groups = _h5_groups(where)
    if not groups:  # unpaired
        images = _entries(found)
        labels = _entries(labels_found) if labels_found else None
        if labels is not None:
            _matching(images, labels, "image", "label map")
        pairs = _all_pairs(images, labels)
        if not pairs:
            raise DatasetError(f"{where}: an unpaired dataset needs at least two images, found {len(images)}")
        return "unpaired", fmt, pairs
    pairs = []
    for group in groups:
        if fmt == "nifti":
            images = _nifti_files(where / group)
            labels = _nifti_files(labels_found[1] / group) if labels_found and (labels_found[1] / group).is_dir() \
                else None
        else:
            images = _h5_keys(where, group)
            labels = _h5_keys(labels_found[1], group) if labels_found and group in _h5_groups(labels_found[1]) \
                else None
        if labels_found and labels is None:
            raise DatasetError(f"{labels_found[1]}: no labels for group {group!r} of {where}")
        if labels is not None:
            _matching(images, labels, "image", "label map")
        pairs += _all_pairs(images, labels, prefix=f"{group}_")
    if not pairs:
        raise DatasetError(f"{where}: no group holds two images, so there is no pair to register")
    return "grouped", fmt, pairs


@dataclass
class Dataset:
    """The pairs of one dataset folder; ``load(i)`` reads and checks pair i."""

    root: Path
    layout: str  # "paired", "unpaired" or "grouped"
    format: str  # "nifti" or "h5"
    files: list[PairFiles]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[PairFiles]:
        return iter(self.files)

    def load(self, index: int) -> Pair:
        return load_pair(self.files[index])


def load_dataset(root: str | Path, split: str | None = None) -> Dataset:
    """Scan a DeepReg-layout dataset in ``root`` (or ``root/split``); see the module docstring.

    Only the layout is checked here (folders, names, counterparts); the voxels
    are read and checked by :meth:`Dataset.load`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--data {root}: no such folder")
    folder = root
    if split is not None:
        folder = root / split
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise DatasetError(f"--split {split}: {folder} does not exist"
                               + (f" (splits here: {', '.join(present)})" if present else ""))
    if _find(folder, FIXED_IMAGES) is not None:
        fmt, files = _paired(folder)
        return Dataset(folder, "paired", fmt, files)
    found = _find(folder, IMAGES)
    if found is not None:
        layout, fmt, files = _unpaired_or_grouped(folder, found)
        return Dataset(folder, layout, fmt, files)
    raise DatasetError(
        f"{folder}: not a DeepReg dataset: expected {FIXED_IMAGES}/ and {MOVING_IMAGES}/ (paired) or "
        f"{IMAGES}/ (unpaired; grouped with one subfolder per group), or the same names as .h5 files"
    )
