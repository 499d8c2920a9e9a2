"""The netx HDF5 file: the one module that reads it (h5py only, no torch, no Lava).

The file format is what SLAYER's ``export_hdf5`` writes and
``lava.lib.dl.netx.hdf5.Network`` reads: a root group ``layer`` with groups
``"0"``, ``"1"``, ... each holding a ``type`` dataset (``b'input'``, ``b'conv'``,
``b'dense'``, ``b'flatten'``, ...), a ``shape`` (neurons in ``(C, H, W)`` order for
conv layers, ``(N,)`` for dense), the synapse parameters (``weight``, ``stride``,
``padding``, ...) and a ``neuron/`` group (``vThMant``, ``iDecay``, ``vDecay``,
``type``, ...). SpikeReg's metadata (patch size, time steps, readout scale)
rides along as the JSON root attribute :data:`METADATA_ATTR`, which netx ignores.

:func:`read_netx` reads a whole file once into a :class:`NetxFile`: its root
attributes and every group and dataset, as a :class:`Group` tree of numpy
arrays that the network loader, the Lava runtime, the chip mapping and the
spike counter all read; a run shares one. :func:`load_model` is the same for
an exported SpikeReg model, with its checks (:class:`ModelFileError`), and
:func:`read_metadata` reads only the metadata. The exporter that writes the
file is :meth:`spikereg.networks.snn.SpikingRegNet.export_hdf5`; :func:`compress_file`
rewrites what an exporter wrote with its large datasets gzip-compressed.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from spikereg.errors import SpikeRegError

METADATA_ATTR = "spikereg"  # root attribute of the netx file (JSON); netx ignores it

#: Layer types ``lava.lib.dl.netx.hdf5.Network`` builds (lava-dl 0.6.0).
NETX_LOADABLE_TYPES: tuple[str, ...] = ("input", "conv", "dense", "dense_rec", "dense_comp", "flatten")
#: Layer types netx recognises but cannot build (it raises NotImplementedError).
NETX_UNSUPPORTED_TYPES: tuple[str, ...] = ("pool", "convT", "unpool", "average", "concat")


class ModelFileError(SpikeRegError, ValueError):
    """A file that is not an exported SpikeReg netx network."""


class NetxOpenError(SpikeRegError, OSError):
    """h5py could not open the file at all (truncated or corrupt); ``detail`` is h5py's message."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# -- the file in memory ----------------------------------------------------------------


class _Unreadable:
    """A dataset h5py could not read: the error is raised again wherever it is looked up."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Group(dict):
    """An HDF5 group read into memory: name -> :class:`Group`, or a numpy array (a dataset).

    As in h5py, a path with ``/`` reaches into subgroups (``layer["neuron/vThMant"]``,
    ``"neuron/type" in layer``), iteration gives the names in h5py's order, and
    ``attrs`` holds the group's attributes (read for the root only). A dataset h5py
    could not read raises its error when it is looked up, as h5py does when it is read.
    """

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.attrs: dict[str, Any] = dict(attrs or {})

    def _node(self, key: str) -> Any:
        node: Any = self
        for part in str(key).strip("/").split("/"):
            if not isinstance(node, Group) or not dict.__contains__(node, part):
                raise KeyError(key)
            node = dict.__getitem__(node, part)
        return node

    def __getitem__(self, key: str) -> Any:
        node = self._node(key)
        if isinstance(node, _Unreadable):
            raise copy.copy(node.error)
        return node

    def __contains__(self, key: object) -> bool:
        try:
            self._node(str(key))
        except KeyError:
            return False
        return True

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (self[name] for name in self)

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        return ((name, self[name]) for name in self)


def is_group(node: Any) -> bool:
    return isinstance(node, Group)


def is_dataset(node: Any) -> bool:
    return isinstance(node, np.ndarray)


@dataclass
class NetxFile:
    """A netx file read whole: ``root`` (the ``layer`` groups and the root attributes) and where it came from."""

    path: Path
    root: Group

    @property
    def attrs(self) -> dict[str, Any]:
        return self.root.attrs

    @property
    def layers(self) -> Group:
        return self.root["layer"]

    @cached_property
    def metadata(self) -> dict:
        """SpikeReg's metadata (the JSON root attribute); :func:`load_model` has checked it is there."""
        return json.loads(self.attrs[METADATA_ATTR])


def _read_group(group: h5py.Group, into: Group) -> Group:
    for name in group:
        node = group[name]
        if isinstance(node, h5py.Group):
            dict.__setitem__(into, name, _read_group(node, Group()))
            continue
        try:
            value: Any = np.asarray(node[()])
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
            value = _Unreadable(error)
        dict.__setitem__(into, name, value)
    return into


def is_hdf5(path: str | Path) -> bool:
    return h5py.is_hdf5(path)


def read_netx(path: str | Path) -> NetxFile:
    """The whole file at ``path``, read once.

    Raises :class:`NetxOpenError` where h5py cannot open it, and h5py's own
    ``OSError``, ``RuntimeError`` or ``KeyError`` where a group cannot be read
    (``ValueError`` and ``TypeError`` as ``OSError``); a dataset that cannot be
    read raises only when it is looked up.
    """
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise NetxOpenError(f"{path}: cannot open HDF5 file (truncated or corrupt?): {error}", str(error)) from None
    with handle:
        try:
            root = _read_group(handle, Group({name: handle.attrs[name] for name in handle.attrs}))
        except (ValueError, TypeError) as error:
            raise OSError(str(error)) from None
    return NetxFile(path, root)


# -- a SpikeReg model -------------------------------------------------------------------


def layer_type(group) -> str | None:
    """A netx layer's ``type`` (SLAYER writes ``[b'conv']``), or None where there is none."""
    if not isinstance(group, (h5py.Group, Group)) or "type" not in group:
        return None
    kind = group["type"][()]
    if isinstance(kind, np.ndarray):
        kind = kind.reshape(-1)[0] if kind.size else b""
    return kind.decode("ascii", "replace") if isinstance(kind, bytes) else str(kind)


def _check_layer_types(layers, path: Path) -> None:
    """Refuse now a layer stock netx cannot build (it would raise deep inside Lava later)."""
    if not isinstance(layers, (h5py.Group, Group)):
        raise ModelFileError(f"model {path}: 'layer' is not a group, so it is not a netx network")
    for name in sorted(layers, key=lambda n: int(n) if n.isdigit() else -1):
        kind = layer_type(layers[name])
        if kind not in NETX_LOADABLE_TYPES:
            raise ModelFileError(
                f"model {path}: layer {name} has type {kind!r}, which stock netx cannot load "
                f"(it loads {', '.join(NETX_LOADABLE_TYPES)})"
            )


def _check_model(root, attrs, path: Path) -> None:
    if "layer" not in root:
        raise ModelFileError(f"model {path}: HDF5 file has no 'layer' group, so it is not a netx network")
    if METADATA_ATTR not in attrs:
        raise ModelFileError(
            f"model {path}: netx file without SpikeReg metadata; export it with 'spikereg export'"
        )
    _check_layer_types(root["layer"], path)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ModelFileError(f"model {path}: file not found")
    if not h5py.is_hdf5(path):
        raise ModelFileError(f"model {path}: not an HDF5 file (expected a netx network from 'spikereg export')")


def _unreadable(path: Path, error: BaseException) -> ModelFileError:
    return ModelFileError(f"model {path}: unreadable HDF5 file, truncated or corrupt? ({error})")


def read_metadata(path: str | Path) -> dict:
    """The SpikeReg metadata of an exported netx file, with clear errors for anything else.

    Reads the metadata and the layer types only; :func:`load_model` reads the whole model.
    """
    path = Path(path)
    _check_file(path)
    try:
        with h5py.File(path, "r") as handle:
            _check_model(handle, handle.attrs, path)
            meta = json.loads(handle.attrs[METADATA_ATTR])
            if meta.get("format") == "spikereg-graph/1" and meta.get("model", {}).get("architecture") != "unet":
                # a bare graph (lava_export.graph_file): no registration model to drive it
                raise ModelFileError(f"model {path}: a graph netx file without a registration model (exported "
                                     "from a bare SpikingGraph); 'spikereg export' of a U-Net checkpoint writes one "
                                     "that runs")
            return meta
    except (OSError, KeyError) as error:
        raise _unreadable(path, error) from None


def load_model(source: str | Path | NetxFile) -> NetxFile:
    """An exported SpikeReg model read whole, checked as :func:`read_metadata` checks it.

    ``source`` may be a :class:`NetxFile` already read (it is checked and returned).
    """
    if isinstance(source, NetxFile):
        model, path = source, source.path
    else:
        path, model = Path(source), None
        _check_file(path)
    try:
        model = model or read_netx(path)
        _check_model(model.root, model.attrs, path)
        model.metadata  # parsed now: a malformed attribute fails here
    except (OSError, RuntimeError, KeyError) as error:
        raise _unreadable(path, error) from None
    return model


def spike_exp_of(model: NetxFile) -> int:
    """The netx ``spike_exp`` an exported SDNN file was built for (files before ``model.spike_exp``: 6)."""
    meta = model.metadata if METADATA_ATTR in model.attrs else {}
    return int(meta.get("model", {}).get("spike_exp", 6))


def is_graded(model: NetxFile) -> bool:
    """True for a netx file of sigma-delta (SDNN) layers: graded spikes, no reset."""
    for name in model.layers:
        layer = model.layers[name]
        if isinstance(layer, Group) and "neuron/type" in layer:
            kind = np.asarray(layer["neuron/type"][()]).reshape(-1)[0]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "SDNN":
                return True
    return False


def netx_text(value: Any) -> str:
    """Decode a netx string dataset value: bytes in a (1,) array, a scalar, or str."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("ascii", errors="replace")
    return str(value).strip("\x00").strip()


# Graph files (lava_export.graph_file writes them): netx layer groups plus which layer feeds which.
GRAPH_FORMAT = "spikereg-graph/1"


class GraphFileError(SpikeRegError, ValueError):
    """A file that is not a valid SpikeReg graph netx file."""


@dataclass(frozen=True)
class GraphEdge:
    """One edge as read from a graph file."""

    index: int
    source: int
    destination: int
    kind: str
    delay: int
    primary: bool
    group: str  # HDF5 path of the group holding the weight and geometry


def _graph_edge_type(group) -> str:
    value = np.asarray(group["type"][()]).reshape(-1)[0]
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def is_graph_file(path: str | Path) -> bool:
    with h5py.File(path, "r") as handle:
        return "graph" in handle and handle["graph"].attrs.get("format") == GRAPH_FORMAT


def read_edges(path: str | Path) -> tuple[list[str], list[GraphEdge]]:
    """The node names and the edges of a graph file, checked for consistency."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise GraphFileError(f"model {path}: not an HDF5 file")
    with h5py.File(path, "r") as handle:
        if "layer" not in handle or "graph" not in handle:
            raise GraphFileError(f"model {path}: no 'layer' and 'graph' groups, so it is not a graph netx file")
        if handle["graph"].attrs.get("format") != GRAPH_FORMAT:
            raise GraphFileError(f"model {path}: graph format {handle['graph'].attrs.get('format')!r}, "
                                 f"expected {GRAPH_FORMAT!r}")
        names = [n.decode("ascii") for n in handle["graph/names"][()]]
        layers = len(handle["layer"])
        if layers != len(names):
            raise GraphFileError(f"model {path}: {layers} layers but {len(names)} node names")
        edges = []
        for k in sorted(handle["graph/edge"], key=int):
            group = handle[f"graph/edge/{k}"]
            src, dst = int(group["source"][()]), int(group["destination"][()])
            delay, primary = int(group["delay"][()]), bool(group["primary"][()])
            if not 0 <= src < dst < layers:
                raise GraphFileError(f"model {path}: edge {k} {src} -> {dst} does not go forward between layers")
            if delay < 0:
                raise GraphFileError(f"model {path}: edge {k} has delay {delay} < 0")
            edges.append(GraphEdge(int(k), src, dst, _graph_edge_type(group), delay, primary,
                                   f"layer/{dst}" if primary else f"graph/edge/{k}"))
        for dst in range(1, layers):
            mine = [e for e in edges if e.destination == dst]
            if sum(e.primary for e in mine) != 1:
                raise GraphFileError(f"model {path}: layer {dst} must have exactly one primary edge, "
                                     f"has {sum(e.primary for e in mine)}")
    return names, edges


def chain_edges(path: str | Path) -> tuple[list[str], list[GraphEdge]]:
    """A sequential netx file of conv layers read as a graph: edge ``i-1 -> i`` into every layer, primary, no delay.

    So a chain can be built by the same graph builder as a U-Net (its synapses
    as sparse lists, :class:`lava_export.graph_builder.LavaGraph`). Files with
    other layer types (dense, flatten) are refused by name.
    """
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise GraphFileError(f"model {path}: not an HDF5 file")
    with h5py.File(path, "r") as handle:
        if "layer" not in handle:
            raise GraphFileError(f"model {path}: no 'layer' group, so it is not a netx file")
        layers = handle["layer"]
        kinds = [layer_type(layers[str(i)]) for i in range(len(layers))]
    if not kinds or kinds[0] != "input" or any(kind != "conv" for kind in kinds[1:]):
        raise GraphFileError(f"model {path}: layers {kinds}; a chain is built as a graph when it is an input "
                             "layer and conv layers only")
    names = ["input"] + [f"conv{i}" for i in range(1, len(kinds))]
    edges = [GraphEdge(i - 1, i - 1, i, "conv", 0, True, f"layer/{i}") for i in range(1, len(kinds))]
    return names, edges


def graph_edges(path: str | Path) -> tuple[list[str], list[GraphEdge]]:
    """The nodes and edges of a graph file (:func:`read_edges`) or of a sequential chain (:func:`chain_edges`)."""
    return read_edges(path) if is_graph_file(path) else chain_edges(path)


COMPRESS_ABOVE = 4096  # bytes: datasets this large are stored gzip-compressed (the weights; the rest as written)


def compress_file(path: str | Path) -> None:
    """Rewrite the netx file at ``path`` with its large datasets gzip-compressed (HDF5's own filter, lossless).

    SLAYER's ``export_hdf5`` stores each weight whole and uncompressed, and a
    depth-folded weight is mostly the zero blocks of folding (a 32^3 U-Net's file
    is ~200 MB, ~4 MB compressed). h5py decompresses on read, so stock netx,
    Lava and every reader here read the same arrays. Every group, attribute,
    dtype and value is kept; the file is replaced only once the copy is whole.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.compress.tmp")

    def copy_attrs(source, target) -> None:
        for key, value in source.attrs.items():
            target.attrs[key] = value

    try:
        with h5py.File(path, "r") as source, h5py.File(tmp, "w") as target:
            copy_attrs(source, target)

            def copy(name: str, node) -> None:
                if isinstance(node, h5py.Group):
                    copy_attrs(node, target.require_group(name))
                elif node.shape and node.nbytes > COMPRESS_ABOVE:  # (a scalar cannot be chunked)
                    data = target.create_dataset(name, data=node[()], dtype=node.dtype, compression="gzip",
                                                 compression_opts=4, shuffle=True)
                    copy_attrs(node, data)
                else:
                    source.copy(node, target, name=name)

            source.visititems(copy)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
