"""A netx file's layers as the chip mapping reads them: every failure names the file, layer and dataset.

The reading half of :mod:`spikereg.hardware.mapping`: the file itself is read
once by :mod:`spikereg.netx_file`; :func:`read_network` turns what cannot be
read into one :class:`MappingError`, and :class:`NetxLayer` reads a layer's
datasets as the numbers, integers and shapes the mapping counts with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from spikereg.errors import SpikeRegError
from spikereg.netx_file import Group, NetxFile, NetxOpenError, is_dataset, is_hdf5, read_netx


class MappingError(SpikeRegError, ValueError):
    """A netx file that cannot be mapped, or a network that exceeds a chip's limits."""


class NetxLayer:
    """Reads one ``layer/<i>`` group; every failure names the file, layer and dataset."""

    def __init__(self, group: Group, path: Path, index: int, kind: str) -> None:
        self.group = group
        self.path = path
        self.index = index
        self.kind = kind

    def error(self, message: str) -> MappingError:
        return MappingError(f"{self.path}: layer {self.index} ({self.kind}): {message}")

    def has(self, name: str) -> bool:
        return name in self.group

    def array(self, name: str) -> np.ndarray:
        if name not in self.group:
            raise self.error(f"missing dataset {name!r}")
        try:
            node = self.group[name]  # a dataset h5py could not read raises its error here
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
            raise self.error(f"cannot read dataset {name!r} (truncated or corrupt file?): {err}") from None
        if not is_dataset(node):
            raise self.error(f"{name!r} is a group, expected a dataset")
        return np.asarray(node[()])

    def numbers(self, name: str) -> np.ndarray:
        data = self.array(name)
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
            raise self.error(f"dataset {name!r} holds {data.dtype}, expected numbers")
        return data

    def ints(self, name: str) -> tuple[int, ...]:
        data = self.numbers(name).reshape(-1)
        if data.size == 0 or not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise self.error(f"dataset {name!r} must hold integers, got {data.tolist()}")
        return tuple(int(v) for v in data)

    def scalar_int(self, name: str) -> int:
        values = self.ints(name)
        if len(values) != 1:
            raise self.error(f"dataset {name!r} must be one integer, got {list(values)}")
        return values[0]

    def pair(self, name: str) -> tuple[int, int]:
        """A conv parameter as (height, width): SLAYER writes a scalar or (h, w)."""
        values = self.ints(name)
        if len(values) == 1:
            return values[0], values[0]
        if len(values) == 2:
            return values[0], values[1]
        raise self.error(f"dataset {name!r} must be one or two integers (h, w), got {list(values)}")

    def shape(self) -> tuple[int, ...]:
        shape = self.ints("shape")
        if any(s <= 0 for s in shape):
            raise self.error(f"dataset 'shape' must hold positive sizes, got {list(shape)}")
        return shape


def read_network(path: Union[str, Path]) -> NetxFile:
    """The netx file at ``path`` read whole (:func:`spikereg.netx_file.read_netx`); a :class:`MappingError`
    for a file that is missing, not HDF5, or cannot be opened or read."""
    path = Path(path)
    if not path.exists():
        raise MappingError(f"{path}: network file not found")
    if path.is_dir():
        raise MappingError(f"{path}: is a directory, expected a netx HDF5 file")
    if not is_hdf5(path):
        raise MappingError(
            f"{path}: not an HDF5 file (no HDF5 signature); expected a lava-dl netx export"
        )
    try:
        return read_netx(path)
    except NetxOpenError as err:
        raise MappingError(f"{path}: cannot open HDF5 file (truncated or corrupt?): {err.detail}") from None
    except (OSError, RuntimeError, KeyError) as err:
        raise unreadable(path, err) from None


def unreadable(path: Path, err: BaseException) -> MappingError:
    # h5py reports damaged object headers, B-trees and heaps this way.
    detail = err.args[0] if isinstance(err, KeyError) and err.args else err
    return MappingError(f"{path}: cannot read HDF5 file (corrupt?): {detail}")


def layer_indices(layers: Group, path: Path) -> list[int]:
    names = list(layers.keys())
    if not names:
        raise MappingError(f"{path}: not a netx network: the 'layer' group is empty")
    if not all(n.isdigit() for n in names):
        bad = [n for n in names if not n.isdigit()]
        raise MappingError(
            f"{path}: not a netx network: 'layer' holds groups named {bad}, expected '0', '1', ..."
        )
    indices = sorted(int(n) for n in names)
    if indices != list(range(len(indices))):
        raise MappingError(
            f"{path}: not a netx network: layer groups must be numbered 0..{len(indices) - 1} "
            f"without gaps (netx reads them in order), found {indices}"
        )
    return indices
