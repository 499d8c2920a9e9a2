"""Build and run a graph netx file (:mod:`lava_export.graph_file`) on Lava, with lava-nc's own processes.

For every layer group ``i >= 1`` one neuron population: the process and
parameters netx itself would make of that group
(``netx.hdf5.Network.get_neuron_params``; sigma-delta: ``lava.proc.sdn.SigmaDelta``
with the file's ``vThMant``, ``spike_exp``, ``state_exp`` 6). Layer 0, the
sigma-delta input layer, is Lava's host-side ``io.encoder.DeltaEncoder`` with
that layer's threshold, as :mod:`lava_export.runner` does.

For every edge one connection process into the destination's ``a_in``; a
Lava InPort sums what several OutPorts send, so a decoder over
``concat(skip, up)`` is two connections into one population:

* ``conv``: ``lava.proc.conv.Conv`` with the weight transformed exactly as
  ``netx.hdf5.Network.create_conv`` transforms a conv layer's (flipped kernel,
  ``(out, x, y, in)``), stride/padding/dilation reversed to (x, y); or, with
  ``synapses="sparse"``, ``lava.proc.sparse.Sparse`` holding only the
  nonzero synapses (:func:`conv_matrix`): the zero depth blocks of depth
  folding are not there at all, so a chip stores and reads only what the
  edge needs (same arithmetic, verified equal);
* ``convT`` (upsampling): ``lava.proc.sparse.Sparse`` holding the transposed
  convolution as the integer matrix it is (built index by index, in Lava's
  ``(x, y, f)`` C order), between the flattened source and the reshaped
  destination; no zero-stuffed input needed;
* ``delay`` ``d > 0``: a chain of ``d`` identity ``Sparse`` relays before the
  connection. Every Lava connection process sends what it computed in the
  step before (its ``a_buf``), so each relay adds exactly one step: a chain
  of ``d`` relays plus the connection itself is ``1 + d`` steps, the edge's
  delay in SLAYER (:class:`~spikereg.networks.unet.SpikingUNet`).

A sequential netx file of conv layers (a chain, as stock netx loads it) is
built the same way, edge ``i-1 -> i`` into every layer
(:func:`spikereg.netx_file.chain_edges`): that is how a chain runs with sparse
synapses.

A neuron process computes in the step it receives, so a node answers one step
after its sources, as a SLAYER block with ``delay_shift`` does; the host's
delta encoder adds one step in front of everything (the runner's
``first_lag``).

:meth:`LavaGraph.run` streams one long input through the graph;
:meth:`LavaGraph.run_patches` runs a batch of patches each from rest
(:mod:`lava_export.rest`), as SLAYER runs each patch alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.sparse import csr_matrix

from lava_export import rest
from lava_export.graph_file import GraphEdge
from lava_export.runner import GRADED_INPUT_SCALE, STREAM_BUFFER, from_lava, run_config, stop_runtime, to_lava
from spikereg import compat
from spikereg.errors import SpikeRegError
from spikereg.hardware.rules import SYNAPSE_BUILDS
from spikereg.networks.snn import graded_spike_scale
from spikereg.netx_file import graph_edges, read_netx, spike_exp_of

MESSAGE_BITS = 16  # graded spikes between sigma-delta layers (netx's default for SDNN)
#: The most synapses one edge may hold as a Sparse on Lava's simulator: building the matrix takes
#: about 40 bytes a synapse for a moment (a 32^3 U-Net's edges hold up to hundreds of millions)
SPARSE_SIMULATOR_LIMIT = 50_000_000


class GraphBuildError(SpikeRegError, ValueError):
    """A graph file Lava cannot be built from."""


def conv_weight_for_lava(weight: np.ndarray) -> np.ndarray:
    """A SLAYER conv export's weight ``(out, in, H, W)`` as netx hands it to Lava's Conv: ``(out, x, y, in)``."""
    weight = np.asarray(weight)[:, :, ::-1, ::-1]
    return weight.reshape(weight.shape[:4]).transpose((0, 3, 2, 1))


def _xy(value) -> np.ndarray:
    """(H, W) -> (x, y) as netx's ``expand`` does."""
    value = np.asarray(value)
    return np.array([value, value]) if value.ndim == 0 else value[::-1].copy()


def _pairs(value) -> tuple[int, int]:
    return tuple(int(v) for v in np.broadcast_to(np.asarray(value), (2,)))


def _tap_matrix(weight_index: tuple, value: np.ndarray, out_hw: tuple, in_hw: tuple, out_pos: tuple,
                in_pos: tuple, channels: tuple) -> csr_matrix:
    """The sparse matrix of a convolution given, for each nonzero tap, the output and input positions it joins.

    ``out_pos``/``in_pos``: ``(h, w)`` arrays broadcasting to (positions, taps); rows index the
    output, columns the input, both flattened in Lava's ``(x, y, f)`` C order.
    """
    (y_out, x_out), (y_in, x_in) = out_hw, in_hw
    (oh, ow), (ih, iw) = out_pos, in_pos
    o, c = weight_index
    f_out, f_in = channels
    keep = (oh >= 0) & (oh < y_out) & (ow >= 0) & (ow < x_out) & (ih >= 0) & (ih < y_in) & (iw >= 0) & (iw < x_in)
    rows = np.broadcast_to((ow * y_out + oh) * f_out + o, keep.shape)[keep]
    cols = np.broadcast_to((iw * y_in + ih) * f_in + c, keep.shape)[keep]
    vals = np.broadcast_to(value, keep.shape)[keep]
    matrix = csr_matrix((vals, (rows, cols)), shape=(x_out * y_out * f_out, x_in * y_in * f_in))
    matrix.sum_duplicates()
    return matrix


def conv_matrix(weight: np.ndarray, in_shape: tuple, out_shape: tuple, stride, padding, dilation,
                groups: int = 1) -> csr_matrix:
    """A 2-D convolution ``weight`` ``(C_out, C_in / groups, k_h, k_w)`` as a sparse integer matrix, zeros left out.

    torch's ``conv2d`` (SLAYER's): ``out[o, oh, ow] += in[c, oh*s_h - p_h + a*d_h, ow*s_w - p_w + b*d_w]
    * weight[o, c - g*C_in/groups, a, b]`` with ``g`` the group of ``o``. One entry per nonzero
    weight and output position whose input lies inside (padding connects to nothing), so a
    depth-folded 3-D kernel's zero depth blocks take no synapse: what a chip that stores a
    synapse list holds. Lava's ``Conv`` holds the weight whole instead.
    """
    weight = np.asarray(weight)
    c_out, c_in_group, k_h, k_w = weight.shape
    (x_in, y_in, f_in), (x_out, y_out, f_out) = in_shape, out_shape
    if f_out != c_out or f_in != c_in_group * groups or c_out % groups:
        raise GraphBuildError(f"conv weight {weight.shape} (groups {groups}) does not join {in_shape} to {out_shape}")
    (s_h, s_w), (p_h, p_w), (d_h, d_w) = _pairs(stride), _pairs(padding), _pairs(dilation)
    o, cl, a, b = np.nonzero(weight)
    c = (o // (c_out // groups)) * c_in_group + cl
    oh, ow = (v.reshape(-1, 1) for v in np.meshgrid(np.arange(y_out), np.arange(x_out), indexing="ij"))
    ih, iw = oh * s_h - p_h + a * d_h, ow * s_w - p_w + b * d_w
    return _tap_matrix((o, c), weight[o, cl, a, b], (y_out, x_out), (y_in, x_in), (oh, ow), (ih, iw),
                       (f_out, f_in))


def conv_transpose_matrix(weight: np.ndarray, in_shape: tuple, out_shape: tuple, stride, padding) -> csr_matrix:
    """The 2-D transposed convolution ``weight`` ``(C_in, C_out, k_h, k_w)`` as a sparse integer matrix.

    Rows index the output, columns the input, both flattened in Lava's
    ``(x, y, f)`` C order; ``out[o, ih*s_h - p_h + a, iw*s_w - p_w + b] +=
    in[c, ih, iw] * weight[c, o, a, b]`` (torch's ``conv_transpose2d``).
    """
    weight = np.asarray(weight)
    c_in, c_out, k_h, k_w = weight.shape
    (x_in, y_in, f_in), (x_out, y_out, f_out) = in_shape, out_shape
    if f_in != c_in or f_out != c_out:
        raise GraphBuildError(f"convT weight {weight.shape} does not join {in_shape} to {out_shape}")
    (s_h, s_w), (p_h, p_w) = _pairs(stride), _pairs(padding)
    # one column per nonzero weight (a folded kernel is mostly the zeros of its depth band), one row per
    # input position: the work and memory go with the matrix's entries, not with C_in x C_out
    c, o, a, b = np.nonzero(weight)
    ih, iw = (v.reshape(-1, 1) for v in np.meshgrid(np.arange(y_in), np.arange(x_in), indexing="ij"))
    oh, ow = ih * s_h - p_h + a, iw * s_w - p_w + b
    return _tap_matrix((o, c), weight[c, o, a, b], (y_out, x_out), (y_in, x_in), (oh, ow), (ih, iw),
                       (f_out, f_in))


@dataclass
class GraphRun:
    """Every node's graded output at every step of one stream, or of each patch (SLAYER units and layout)."""

    # per layer (the input's delta encoder first): a stream (*SLAYER shape, steps);
    # patches from rest (window set) (P, *SLAYER shape, window)
    values: list[np.ndarray]
    names: list[str]
    time_steps: int
    compile_seconds: float
    run_seconds: float
    window: int | None = None  # patches from rest: steps per patch
    reset_seconds: float = 0.0  # patches from rest by "vars": Var.set between patches

    @property
    def messages(self) -> list[int]:
        """Graded spikes each layer sent over the stream (nonzero values; a layer not kept: its counts)."""
        return [int(v.sum()) if v.dtype.kind == "i" else int(np.count_nonzero(v)) for v in self.values]


class LavaGraph:
    """A graph netx file built as a Lava process graph. Use as a context manager; stops Lava on exit."""

    def __init__(self, path: str | Path, window: int | None = None, precision: str = "fixed",
                 synapses: str = "conv") -> None:
        self.path = Path(path)
        if precision != "fixed":
            raise GraphBuildError("graph files run on Lava's fixed-point models only (--precision fixed)")
        if synapses not in SYNAPSE_BUILDS:  # "conv": Lava's Conv, the folded weight whole; "sparse": conv_matrix
            raise GraphBuildError(f"synapses {synapses!r}: choose {' or '.join(SYNAPSE_BUILDS)}")
        self.precision = precision
        self.window = window
        self.synapses = synapses
        self.names, self.edges = graph_edges(self.path)
        with h5py.File(self.path, "r") as handle:
            self.graded = "neuron" in handle["layer/0"]
        if not self.graded and not window:
            raise GraphBuildError(f"model {self.path}: a CUBA graph resets every window; give its window")
        self.path_lengths = self._path_lengths()
        self.spike_exp = spike_exp_of(read_netx(self.path))
        self.spike_scale = graded_spike_scale(self.spike_exp)
        self.encoder = None
        self.neurons: list = []  # per layer >= 1
        self.connections: dict[int, list] = {}  # edge index -> its processes, relays first
        self._injector = None
        self._extractors: list = []
        self._anchor = None
        self._run_cfg = None
        self.rest_window: int | None = None  # built to return to rest every this many steps
        self._started = False
        self._built = False

    def __enter__(self) -> "LavaGraph":
        return self

    def __exit__(self, exc_type, error, traceback) -> None:
        stop_runtime(self, error)

    def stop(self) -> bool:
        if not self._started:
            return False
        self._started = False
        compat.stop_lava(self._anchor.runtime, self._anchor.stop)
        return True

    def _path_lengths(self) -> list[int]:
        """Steps from the input to each layer (each edge: 1 + its delay); CUBA needs every path equal."""
        length = [0] * len(self.names)
        for dst in range(1, len(self.names)):
            arriving = {length[e.source] + 1 + e.delay for e in self.edges if e.destination == dst}
            if len(arriving) > 1 and not self.graded:
                raise GraphBuildError(f"model {self.path}: paths into layer {dst} ({self.names[dst]}) take "
                                      f"{sorted(arriving)} steps; a CUBA graph's per-window resets need them equal")
            length[dst] = max(arriving)
        return length

    @property
    def message_bits(self) -> int:
        return MESSAGE_BITS if self.graded else 0

    # -- building --------------------------------------------------------------
    def build(self, rest_window: int | None = None) -> None:
        """Make every process and connect them (no compilation yet).

        ``rest_window``: every process returns to rest on the first step of
        every ``rest_window`` steps (:func:`lava_export.rest.rest_every`).
        """
        netx = compat.netx()
        network = netx.hdf5.Network
        sdn = compat.import_lava("lava.proc.sdn.process")
        conv_mod = compat.import_lava("lava.proc.conv.process")
        sparse_mod = compat.import_lava("lava.proc.sparse.process")
        encoder_mod = compat.import_lava("lava.proc.io.encoder")
        injector_mod = compat.import_lava("lava.proc.io.injector")
        extractor_mod = compat.import_lava("lava.proc.io.extractor")
        compat.lava_workers_follow_parent()
        compat.use_lava_torch_conv(True)  # graded inputs: checked step by step inside (compat.torch_conv)
        compat.skip_silent_sparse(True)  # relays and upsampling matrices multiply zeros on most steps
        shapes, outs = [], []
        with h5py.File(self.path, "r") as handle:
            layers = handle["layer"]
            first = netx.utils.NetDict(f=layers["0"])
            if first["type"] != "input":
                raise GraphBuildError(f"model {self.path}: layer 0 must be an input layer")
            shape0 = tuple(int(v) for v in first["shape"][::-1])
            self._injector = injector_mod.Injector(shape=shape0, buffer_size=STREAM_BUFFER)
            if self.graded:
                vth = int(np.asarray(first["neuron"]["vThMant"]))
                self.encoder = encoder_mod.DeltaEncoder(shape=shape0, vth=vth, spike_exp=self.spike_exp,
                                                        compression=encoder_mod.Compression.DENSE)
                self._injector.out_port.connect(self.encoder.a_in)
                outs.append(self.encoder.s_out)
            else:  # binary spikes straight from the host
                outs.append(self._injector.out_port)
            shapes.append(shape0)
            for index in range(1, len(layers)):
                layer = netx.utils.NetDict(f=layers[str(index)])
                if layer["type"] != "conv":
                    raise GraphBuildError(f"model {self.path}: layer {index} has type {layer['type']!r}; "
                                          "graph files hold conv layers")
                shape = tuple(int(v) for v in layer["shape"][::-1])  # WHC (x, y, f)
                # netx's own neuron of the group; CUBA: reset every window, staggered by the layer's
                # path length as netx staggers a chain's layers (offset l for layer l)
                reset = dict(reset_interval=self.window, reset_offset=self.path_lengths[index]) \
                    if not self.graded else {}
                params = network.get_neuron_params(layer["neuron"], spike_exp=self.spike_exp, **reset)
                process = params.pop("neuron_proc")
                bias_key = params.pop("bias_key", "bias")
                params.pop("num_message_bits", None)
                if (process is sdn.SigmaDelta) != self.graded or process.__name__ not in ("SigmaDelta", "LIFReset"):
                    raise GraphBuildError(f"model {self.path}: layer {index}: a {process.__name__} neuron; graph "
                                          "files hold sigma-delta (SDNN) or CUBA layers, one kind throughout")
                if "bias" in layer.keys():
                    bias = np.asarray(layer["bias"])
                    params[bias_key] = (bias if bias.shape == shape else np.broadcast_to(bias, shape)).astype(np.int32)
                neuron = process(shape=shape, **params)
                self.neurons.append(neuron)
                shapes.append(shape)
                outs.append(neuron.s_out)
            for edge in self.edges:
                self.connections[edge.index] = self._connect(edge, handle[edge.group], shapes, outs,
                                                             conv_mod, sparse_mod)
        self._extractors = [extractor_mod.Extractor(shape=tuple(port.shape), buffer_size=STREAM_BUFFER)
                            for port in outs]
        for port, extractor in zip(outs, self._extractors):
            port.connect(extractor.in_port)
        self._anchor = self.neurons[0]
        self._shapes = shapes
        self._run_cfg = run_config("sim", self.precision)
        if rest_window:
            rest.rest_every(self.processes, rest_window, self._run_cfg)
        self.rest_window = rest_window
        self._built = True

    @property
    def layer_sizes(self) -> list[int]:
        """Neurons per layer, the input's delta encoder first (once built)."""
        return [int(np.prod(shape)) for shape in self._shapes]

    @property
    def processes(self) -> list:
        """Every leaf process of the built graph (host I/O included)."""
        return rest.leaf_processes(self._anchor)

    def _connect(self, edge: GraphEdge, group: h5py.Group, shapes, outs, conv_mod, sparse_mod) -> list:
        source, shape_in, shape_out = outs[edge.source], shapes[edge.source], shapes[edge.destination]
        target = self.neurons[edge.destination - 1].a_in
        processes = []
        flat_in = int(np.prod(shape_in))
        identity = csr_matrix((np.ones(flat_in, dtype=np.int32), (np.arange(flat_in), np.arange(flat_in))),
                              shape=(flat_in, flat_in))
        for _ in range(edge.delay):  # one step each
            relay = sparse_mod.Sparse(weights=identity, num_message_bits=self.message_bits)
            source.flatten().connect(relay.s_in)
            source = relay.a_out.reshape(shape_in)
            processes.append(relay)
        weight = np.asarray(group["weight"][()])
        if edge.kind == "conv" and self.synapses == "sparse":
            outputs = int(np.prod(shape_out[:2]))
            bound = np.count_nonzero(weight) * outputs  # every nonzero tap at every output position
            if bound > SPARSE_SIMULATOR_LIMIT:
                raise GraphBuildError(f"model {self.path}: edge {edge.index} ({self.names[edge.source]} -> "
                                      f"{self.names[edge.destination]}) would hold up to {bound:,} sparse synapses, "
                                      f"more than Lava's simulator builds here ({SPARSE_SIMULATOR_LIMIT:,}); "
                                      "build it with synapses='conv' (spikereg run --synapses conv: the same "
                                      "arithmetic)")
            matrix = conv_matrix(weight.reshape(weight.shape[:4]), shape_in, shape_out, group["stride"][()],
                                 group["padding"][()], group["dilation"][()], int(np.asarray(group["groups"][()])))
            synapse = sparse_mod.Sparse(weights=matrix, num_message_bits=self.message_bits)
            source.flatten().connect(synapse.s_in)
            synapse.a_out.reshape(shape_out).connect(target)
        elif edge.kind == "conv":
            groups = int(np.asarray(group["groups"][()]))
            synapse = conv_mod.Conv(input_shape=shape_in, weight=conv_weight_for_lava(weight),
                                    stride=_xy(group["stride"][()]), padding=_xy(group["padding"][()]),
                                    dilation=_xy(group["dilation"][()]), groups=groups,
                                    num_message_bits=self.message_bits)
            if tuple(synapse.output_shape) != tuple(shape_out):
                raise GraphBuildError(f"model {self.path}: edge {edge.index} ({edge.source} -> {edge.destination}) "
                                      f"gives {tuple(synapse.output_shape)}, layer {edge.destination} is {shape_out}")
            source.connect(synapse.s_in)
            synapse.a_out.connect(target)
        elif edge.kind == "convT":
            matrix = conv_transpose_matrix(weight, shape_in, shape_out, group["stride"][()], group["padding"][()])
            synapse = sparse_mod.Sparse(weights=matrix, num_message_bits=self.message_bits)
            source.flatten().connect(synapse.s_in)
            synapse.a_out.reshape(shape_out).connect(target)
        else:
            raise GraphBuildError(f"model {self.path}: edge {edge.index} has type {edge.kind!r} (conv, convT)")
        processes.append(synapse)
        return processes

    # -- running ---------------------------------------------------------------
    def run(self, stream: np.ndarray, chunk: int = 64) -> GraphRun:
        """Stream graded input levels ``(*input SLAYER shape, steps)`` (SLAYER units) through the graph.

        Returns every layer's output at every step (the input's delta encoder
        first), in SLAYER's units and layout. Lava's layer ``l`` at step
        ``t + 1`` is SLAYER's at step ``t`` (the host's delta encoder).
        """
        if not self._built:
            self.build()
        total = stream.shape[-1]
        values, compile_seconds, run_seconds, _ = self._stream(lambda t: stream[..., t], total, chunk)
        return GraphRun(values=[from_lava(np.moveaxis(v, 0, -1)) for v in values], names=self.names,
                        time_steps=total, compile_seconds=compile_seconds, run_seconds=run_seconds)

    def run_patches(self, frames: np.ndarray, window: int, rest_by: str = "models", keep=None,
                    stop: bool = True) -> GraphRun:
        """Run each patch of ``frames`` ``(P, *input SLAYER shape)`` (graded levels) from rest, held ``window`` steps.

        Returns every layer's output per patch, ``(P, *SLAYER shape, window)``
        (the input's delta encoder first), in SLAYER's units. Step ``t + 1`` of
        a patch is SLAYER's step ``t`` on that patch alone from rest (the
        host's delta encoder adds one step; step 0 is SLAYER's step -1), so a
        layer whose longest path is ``L`` answers at step ``L + 1``, and the
        window must exceed the readout's ``L + 1`` for it to answer at all.

        ``rest_by``: ``"models"`` (every process returns to rest itself on each
        window's first step, one stream, no pause: :func:`lava_export.rest.rest_every`)
        or ``"vars"`` (Lava's API: pause after each window, ``Var.set`` every
        state Var; slow, :func:`lava_export.rest.reset_state_vars`). Both are
        exact; a graph runs one way only. ``keep`` and ``stop``: :meth:`_stream` (a layer not
        kept gives its graded spikes per patch and step, ``(P, window)``; with ``stop`` False
        the network stays compiled for the next call, by ``"models"`` only).
        """
        if not self.graded:
            raise GraphBuildError(f"model {self.path}: a CUBA graph resets every window already (run)")
        if rest_by not in ("models", "vars"):
            raise ValueError(f"rest_by {rest_by!r}: choose models or vars")
        if window < 2:
            raise ValueError(f"window {window}: a patch needs at least 2 steps (the host's encoder adds one)")
        if not self._built:
            self.build(rest_window=window if rest_by == "models" else None)
        if self.rest_window != (window if rest_by == "models" else None):
            built = f"to rest every {self.rest_window} steps" if self.rest_window else "without resting models"
            raise GraphBuildError(f"model {self.path}: built {built}; asked for patches of {window} steps "
                                  f"from rest by {rest_by}")
        count = len(frames)
        between = None
        chunk = max(1, 64 // window) * window
        if rest_by == "vars":
            processes = self.processes
            chunk = window  # one blocking window per patch, then the reset

            def between(step: int) -> None:
                if step < count * window:
                    rest.reset_state_vars(processes)

        if not stop and rest_by != "models":
            raise ValueError("stop=False keeps the network for the next call: rest_by models only")
        values, compile_seconds, run_seconds, reset_seconds = self._stream(
            lambda t: frames[t // window], count * window, chunk, between, keep=keep, stop=stop)
        # (P*window, x, y, f) -> (P, f, y, x, window): SLAYER's layout, a view; counts (P, window)
        per_patch = [np.transpose(v.reshape(count, window, *v.shape[1:]), (0, 4, 3, 2, 1)) if v.ndim > 1
                     else v.reshape(count, window) for v in values]
        return GraphRun(values=per_patch, names=self.names, time_steps=count * window,
                        compile_seconds=compile_seconds, run_seconds=run_seconds, window=window,
                        reset_seconds=reset_seconds)

    def _stream(self, frame_at, total: int, chunk: int, between=None, keep=None, stop: bool = True
                ) -> tuple[list, float, float, float]:
        """Send ``frame_at(t)`` (SLAYER layout, no time axis) for ``total`` steps in runs of ``chunk``.

        Returns every layer's values (Lava layout, SLAYER units, ``(total, *shape)``: a step's
        frame is one contiguous block), the seconds to compile (with the first chunk's start), to
        run and in ``between(step)``, which is called after each chunk with the steps done.
        ``keep`` (layer indices; None: all) are the layers whose values are kept; the others
        give their graded spikes per step instead (``(total,)`` counts: a 32^3 U-Net's every
        value at every step would not fit in memory). ``stop``: stop Lava at the end (else it
        stays paused, and the next call goes on from the step it reached: a network that
        returns to rest every window keeps its windows aligned across calls).
        """
        conditions = compat.import_lava("lava.magma.core.run_conditions")
        kept = range(len(self._shapes)) if keep is None else set(keep)
        values = [np.zeros((total,) + tuple(s), dtype=np.float64) if i in kept else np.zeros(total, dtype=np.int64)
                  for i, s in enumerate(self._shapes)]
        compile_seconds = run_seconds = between_seconds = 0.0
        step = 0
        scale = GRADED_INPUT_SCALE if self.graded else 1
        first_run = not self._started
        try:
            while step < total:
                steps = min(chunk, total - step)
                tick = time.perf_counter()
                self._started = True
                self._anchor.run(condition=conditions.RunSteps(num_steps=steps, blocking=False),
                                 run_cfg=self._run_cfg)
                if first_run and not compile_seconds:
                    compile_seconds = time.perf_counter() - tick
                    tick = time.perf_counter()
                for t in range(step, step + steps):
                    frame = frame_at(t)
                    self._injector.send(to_lava(frame[..., None])[..., 0] * scale)
                    for index, (store, extractor) in enumerate(zip(values, self._extractors)):
                        if index in kept:
                            store[t] = extractor.receive()
                        else:
                            store[t] = np.count_nonzero(extractor.receive())
                self._anchor.wait()
                run_seconds += time.perf_counter() - tick
                step += steps
                if between is not None:
                    tick = time.perf_counter()
                    between(step)
                    between_seconds += time.perf_counter() - tick
        except BaseException:
            self.stop()
            raise
        if stop:
            self.stop()
        if self.graded:
            for index in kept:
                values[index] /= self.spike_scale
        return values, compile_seconds, run_seconds, between_seconds
