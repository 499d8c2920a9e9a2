"""The one place where SpikeReg works around Lava's packaging.

Lava (``lava-nc`` 0.10.0) and lava-dl 0.6.0 are archived upstream and declare
Python < 3.11. On Python 3.11 with a CPU build of torch two things break; both
are fixed here at import time, without touching files in site-packages, and
each fix switches itself off where its problem is absent (a fixed Lava
release, an older Python, a working torchvision):

1. ``lava/magma/compiler/var_model.py`` gives dataclass fields the mutable
   default ``ByteEncoder()``. Python 3.11 rejects unhashable dataclass
   defaults (``ValueError: mutable default ... use default_factory``), so
   ``import lava.magma.compiler`` fails and nothing can run. The fix rewrites
   those defaults to ``field(default_factory=ByteEncoder)`` in the module's
   source as it is loaded -- the change Lava itself would make.
2. ``lava.lib.dl.slayer`` imports its ``object_detection`` subpackage, which
   imports torchvision and OpenCV. The torchvision wheels on the package
   index are CUDA builds that fail to load beside a CPU torch
   (``operator torchvision::nms does not exist``). Registration needs nothing
   from object detection, so when torchvision cannot be imported that
   subpackage is replaced by a stub module that raises a clear ImportError on
   first use.

Every SpikeReg module imports Lava through :func:`import_lava`,
:func:`slayer` or :func:`netx`, which install the fixes first.

A third switch is about speed, not packaging (:func:`use_lava_torch_conv`):

3. Lava's conv process model (``lava/proc/conv/utils.py``) has a torch path
   (one ``torch.nn.functional.conv2d`` per step) but lava-nc 0.10.0 turns it
   off -- ``TORCH_IS_AVAILABLE = False``, its torch import commented out, with
   the note "It is known that torch calls inside Lava PyProcess hangs." -- so
   every step runs ``conv_scipy``: one scipy ``convolve2d`` per (input,
   output) feature pair (shipped model, 2 mm brain: 4.5 s per patch instead
   of 0.07 s, BENCHMARKS.md "Speed and memory"). SpikeReg's Lava runner turns the
   torch path back on for the simulator's fixed-point models by replacing
   ``lava.proc.conv.utils.conv`` (what the conv model calls every step) with
   :func:`torch_conv`, which keeps Lava's results bit for bit:

   * **The hang.** Lava forks a process per process model. torch's intra-op
     thread pool (OpenMP) does not survive ``fork``: a child that enters a
     parallel region the parent had already started waits forever on threads
     that do not exist in it. :func:`torch_conv` therefore makes torch
     single-threaded in each forked process it runs in, once, before its first
     convolution (``torch.set_num_threads(1)``: ATen and oneDNN then run the
     convolution inline, no pool is touched). Tested by running the simulator
     several times in one process after the parent used multi-threaded torch.
   * **Exactness.** The fixed-point model's weights and spikes are integers;
     float32 ``conv2d`` returns the exact integer sums only while every
     partial sum stays below ``2**24``. A partial sum of one output is at
     most its kernel's sum of ``|weight|`` (never more than max ``|weight|``
     x fan-in) times the largest input magnitude. The runner checks this
     bound for each network when it is built, with input magnitude 1 for
     binary spikes (:func:`torch_conv_is_exact`); a network that could exceed
     it runs on ``conv_scipy`` (float64, exact to ``2**53``), with one
     warning. Graded (SDNN) spikes are bounded only by their 24-bit messages,
     so for them :func:`torch_conv` checks the bound on every step's actual
     input as well and sums a step that could exceed it in float64 (exact to
     ``2**53``, as ``conv_scipy`` is; on the shipped SDNN nearly every busy
     step needs it, and ``conv_scipy`` there made a step 31 ms instead of
     2.4 ms). Beyond ``2**53`` it takes ``conv_scipy``.
     Float-valued (``floating_pt``) weights always take ``conv_scipy``.
   * **Once per kernel.** The float32 kernel and its bound are made once per
     weight array and reused on every step while that array lives with the
     same values (an in-place ``Var.set`` or a new array makes them afresh).
   * **Silent steps.** A step whose input is all zero gives an all-zero
     output, exactly, whatever the (integer) weights: :func:`torch_conv`
     returns zeros of the output's shape and dtype before anything else (no
     kernel lookup, which compares the weights, no float work). From rest with
     held inputs a sigma-delta layer sends on one step of a patch's window,
     so nearly every conv step is silent.
   * **The risk** is a torch or Lava release that changes any of this; every
     export's verification (SLAYER vs Lava, spike for spike) runs through the
     same path and catches it.
   * **Opt out** with the environment variable ``SPIKEREG_LAVA_TORCH_CONV=0``
     (Lava's own ``conv_scipy`` everywhere).

Two more are about stopping (:func:`lava_workers_follow_parent`, :func:`stop_lava`):

4. **Lava's workers and signals.** Lava forks one worker per process model and
   runtime service (``message_infrastructure/multiprocessing.py``,
   ``SystemProcess``), plus a ``SharedMemoryManager`` server that owns the
   channels' ``/dev/shm`` segments. The workers share the terminal's process
   group and keep Python's default handlers, so Ctrl-C kills every one of them
   with a ``KeyboardInterrupt`` traceback; the main process then stops the
   runtime by sending into channels nobody reads any more and waits forever
   (measured: blocked in ``Injector.send`` of the drain, a dozen tracebacks, a
   second Ctrl-C does nothing). And nothing ties a worker to its parent: a
   SIGTERM or SIGKILL to the main process left 12-13 workers (450-520 MB
   each) under PID 1, with their segments. So each worker (and the manager
   server) ignores SIGINT, SIGTERM and SIGHUP -- the main process coordinates
   the stop -- and asks the kernel to SIGKILL it when its parent dies
   (``prctl(PR_SET_PDEATHSIG)``, Linux); the signals are blocked across the
   fork so none lands before that is in place. Segments of a killed run are
   then unlinked by Python's resource tracker once the last worker is gone;
   the tracker is started with the signals blocked too, as a SIGHUP to the
   process group would otherwise kill it (it ignores only SIGINT and SIGTERM).
5. **A stop that always ends.** Lava's ``Runtime.stop`` waits without a
   timeout for every runtime service's answer, and ``MultiProcessing.stop``
   joins every worker; a worker that died or never started makes either wait
   forever. :func:`stop_lava` runs Lava's own stop in a helper thread for at
   most :data:`LAVA_STOP_SECONDS`; where it blocks, fails, or a further signal
   interrupts the wait, it kills the remaining workers, shuts the shared-memory
   manager down (which unlinks its segments, else they are unlinked here) and
   marks the runtime stopped so that Lava's ``__del__`` does not wait again.

And one for Python 3.12 and 3.13, whose torch here comes from PyPI as a CUDA build
(:func:`quiet_cuda_home_warning`):

6. **torch's CUDA_HOME warning.** lava-dl's SLAYER imports
   ``torch.utils.cpp_extension``, which, in a CUDA build of torch on a machine
   with ``nvcc`` but no GPU, logs ``No CUDA runtime is found, using
   CUDA_HOME=...`` at import: one stray line in every command's stderr. A
   logging filter drops that record only.

And one for numpy 2 (Python 3.13 here: numpy 1.x has no wheels for it), :func:`fix_reshape_port`:

7. **np.reshape(newshape=...)**. Lava's ``ReshapePort`` (a port's
   ``reshape``/``flatten``: netx's conv -> flatten -> dense) calls
   ``np.reshape(..., newshape=...)``, which newer numpy 2 rejects; the worker
   that receives through it dies and the run waits forever. Where numpy takes
   ``shape=`` (>= 2.1) the port's two transforms use it.

And a second switch about speed, :func:`skip_silent_sparse`:

8. **Sparse connections on silent steps.** Lava's bit-accurate ``Sparse``
   model multiplies its whole weight matrix by the step's input every step,
   also when the input is all zeros (then the product is zero). A from-rest
   U-Net sends each unit's one graded spike in one step of its window, so
   its identity relays (delay buffers) and its upsampling matrices multiply
   zeros on nearly every step: 95 of 244 ms per step for a 32^3 U-Net. With
   the switch, a silent step's product is the zero vector itself, no float
   work -- the model's output is unchanged, bit for bit (tested).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import signal
import sys
import threading
import types
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from spikereg.interrupts import deferred

VAR_MODEL = "lava.magma.compiler.var_model"
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"

# ``x: ByteEncoder = ByteEncoder()``, one field a line, as in lava-nc 0.10.0
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.M)


def needs_dataclass_fix(source: str) -> bool:
    """True when ``source`` has the ByteEncoder defaults that Python >= 3.11 rejects."""
    return sys.version_info >= (3, 11) and bool(_MUTABLE_DEFAULT.search(source))


def fix_dataclass_defaults(source: str) -> str:
    """Return ``source`` with ``ByteEncoder()`` field defaults made ``default_factory``."""
    return _MUTABLE_DEFAULT.sub(
        r"\1__import__('dataclasses').field(default_factory=ByteEncoder)", source
    )


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads Lava's var_model from its own file, with the defaults fixed."""

    def get_data(self, path: str) -> bytes:  # noqa: D401 - loader protocol
        data = super().get_data(path)
        if path.endswith(".py"):
            source = data.decode("utf-8")
            if needs_dataclass_fix(source):
                return fix_dataclass_defaults(source).encode("utf-8")
        return data

    def path_stats(self, path: str) -> dict:
        # Keep the patched module out of Lava's own __pycache__ (it may be read-only
        # and must stay the unpatched byte code for anyone importing Lava without us).
        raise OSError("no bytecode cache for patched module")


def torchvision_works() -> bool:
    """True when torchvision imports (its CUDA wheels fail beside a CPU torch)."""
    if "torchvision" in sys.modules:
        return True
    try:
        importlib.import_module("torchvision")
    except Exception:  # RuntimeError "operator torchvision::nms does not exist", ImportError
        return False
    return True


class _ObjectDetectionStub(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"{OBJECT_DETECTION}.{name} needs a working torchvision, which this "
            "environment lacks; SpikeReg does not use lava-dl's object detection."
        )


class _LavaFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that applies the two fixes to exactly two modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == VAR_MODEL:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or not spec.origin:
                return None
            with open(spec.origin, encoding="utf-8") as handle:
                if not needs_dataclass_fix(handle.read()):
                    return None  # a fixed Lava release: leave it alone
            loader = _PatchedSourceLoader(fullname, spec.origin)
            return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)
        if fullname == OBJECT_DETECTION and not torchvision_works():
            return importlib.machinery.ModuleSpec(fullname, _StubLoader())
        return None


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = _ObjectDetectionStub(spec.name)
        module.__path__ = []  # a package, so ``from . import object_detection`` works
        return module

    def exec_module(self, module):
        return None


_FINDER = _LavaFinder()


# -- a CUDA torch on a machine without a GPU (fix 6) -------------------------------------

CPP_EXTENSION_LOGGER = "torch.utils.cpp_extension"
NO_CUDA_RUNTIME = "No CUDA runtime is found"


class _NoCudaRuntimeFilter(logging.Filter):
    """Drops torch's "No CUDA runtime is found, using CUDA_HOME=..." record, and nothing else (fix 6)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NO_CUDA_RUNTIME)


_NO_CUDA_FILTER = _NoCudaRuntimeFilter()


def quiet_cuda_home_warning() -> None:
    """Keep torch's CUDA_HOME warning out of every command's output (idempotent; fix 6).

    lava-dl's SLAYER imports ``torch.utils.cpp_extension`` when it is imported
    (for CUDA kernels it compiles on first use on a GPU, which SpikeReg never
    asks for), and that module, loaded from a CUDA build of torch on a machine
    with an ``nvcc`` but no GPU, logs ``No CUDA runtime is found, using
    CUDA_HOME='/usr/local'`` at import. PyPI's torch for Python 3.12 and 3.13
    is such a build (only 3.11 has a CPU wheel here), so every command printed
    that line to stderr, e.g. before ``interrupted (SIGINT): ...``. The
    logger exists before torch does, so the filter is in place in time.
    """
    logger = logging.getLogger(CPP_EXTENSION_LOGGER)
    if _NO_CUDA_FILTER not in logger.filters:
        logger.addFilter(_NO_CUDA_FILTER)


def install() -> None:
    """Install the import fixes (idempotent). Must run before Lava is imported."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    quiet_cuda_home_warning()


def import_lava(name: str) -> types.ModuleType:
    """Import a Lava module (e.g. ``lava.magma.core.run_configs``) with the fixes in place."""
    install()
    module = importlib.import_module(name)
    fix_reshape_port()
    return module


def process_models(process: Any) -> list[type]:
    """The process models lava-nc finds for ``process`` (what a run config's ``select`` chooses among).

    Lava has no public call for this: its compiler finds them with the private
    ``ProcGroupDiGraphs._find_proc_models`` (lava-nc 0.10.0). Needed to subclass
    the model a run would pick (:func:`lava_export.rest.rest_every`); kept here
    so that a Lava release that renames it breaks one function, with a test.
    """
    graphs = import_lava("lava.magma.compiler.compiler_graphs")
    return list(graphs.ProcGroupDiGraphs._find_proc_models(process))


# -- numpy 2: np.reshape(newshape=...) (fix 7) -------------------------------------------

LAVA_PORTS = "lava.magma.core.process.ports.ports"


def numpy_reshape_takes_shape() -> bool:
    """True on numpy >= 2.1, whose ``np.reshape`` takes ``shape=`` (and deprecates, later removes, ``newshape=``)."""
    try:
        np.reshape(np.zeros(1), shape=(1,))
    except TypeError:
        return False
    return True


def fix_reshape_port() -> bool:
    """Make Lava's ``ReshapePort`` call ``np.reshape(shape=...)`` where numpy has it (fix 7; idempotent).

    lava-nc 0.10.0's ``ReshapePort`` (``lava/magma/core/process/ports/ports.py``:
    ``OutPort.reshape``/``flatten``, which netx uses between a conv and a dense
    layer) builds its transforms as ``functools.partial(np.reshape,
    newshape=...)``. numpy 2.1 deprecated ``newshape`` and the numpy 2 that
    Python 3.13 gets (no numpy 1.x wheels) rejects it: ``TypeError: reshape()
    got an unexpected keyword argument 'newshape'`` in the receiving worker,
    which dies, and the main process then waits for its output forever. The
    same transforms with ``shape=`` (numpy >= 2.1) are what Lava would write.
    Applied only where numpy takes ``shape=``, once the ports module is
    loaded (every Lava network imports it); returns True when the class is fixed.
    """
    ports = sys.modules.get(LAVA_PORTS)
    if ports is None or not numpy_reshape_takes_shape():
        return False
    reshape_port = ports.ReshapePort
    if getattr(reshape_port, "_spikereg_reshape_fixed", False):
        return True
    import functools

    def get_transform_func_fwd(self) -> functools.partial:
        return functools.partial(np.reshape, shape=self.shape)

    def get_transform_func_bwd(self) -> functools.partial:
        return functools.partial(np.reshape, shape=self.old_shape)

    reshape_port.get_transform_func_fwd = get_transform_func_fwd
    reshape_port.get_transform_func_bwd = get_transform_func_bwd
    reshape_port._spikereg_reshape_fixed = True
    return True


def slayer() -> types.ModuleType:
    """``lava.lib.dl.slayer``."""
    return import_lava("lava.lib.dl.slayer")


def netx() -> types.ModuleType:
    """``lava.lib.dl.netx``."""
    return import_lava("lava.lib.dl.netx")


# -- Lava's conv on torch (fix 3) ------------------------------------------------------

LAVA_CONV = "lava.proc.conv.utils"
TORCH_CONV_ENV = "SPIKEREG_LAVA_TORCH_CONV"  # "0" (or "false", "no", "off"): always conv_scipy
FLOAT32_EXACT = 1 << 24  # integers up to this magnitude are exact in float32
FLOAT64_EXACT = 1 << 53  # ... and in float64

_conv_state = {"enabled": False, "pid": None, "warned": False}
_IMPORT_PID = os.getpid()  # a process with another pid is a fork (Lava's process models) or a later spawn


def torch_conv_wanted() -> bool:
    """False when the user opted out with ``SPIKEREG_LAVA_TORCH_CONV=0``."""
    return os.environ.get(TORCH_CONV_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def conv_sum_bound(weight: np.ndarray, max_input: float = 1.0) -> float:
    """Largest magnitude any partial sum of a Lava conv with ``weight`` can reach.

    ``weight`` is Lava's ``(out, kx, ky, in)`` kernel; the bound is the largest
    sum of ``|weight|`` over one output's kernel (at most max ``|weight|`` x
    fan-in) times ``max_input``, the largest input magnitude (1 for binary spikes).
    """
    weight = np.asarray(weight)
    per_output = np.abs(weight.astype(np.float64)).reshape(weight.shape[0], -1).sum(axis=1)
    return float(per_output.max(initial=0.0)) * float(max_input)


def torch_conv_is_exact(weight: np.ndarray, max_input: float = 1.0) -> bool:
    """True when float32 ``conv2d`` gives this integer conv's sums exactly (all partial sums < 2**24)."""
    weight = np.asarray(weight)
    integral = weight.dtype.kind in "iub" or bool(np.all(np.round(weight) == weight))
    return integral and conv_sum_bound(weight, max_input) < FLOAT32_EXACT


@dataclass
class _Kernel:
    """What :func:`torch_conv` derives from one weight array, kept while the array lives and is unchanged.

    Lava's conv model hands the same ``weight`` array to every step; converting
    it (flip, transpose, float32 copy) every step cost 40-300 us of each conv
    step on the shipped model's layers. The entry belongs to the array object
    (``ref``) *and* to its values (``values``): Lava's ``Var.set`` writes a new
    weight into the same array in place, and the id of a freed array can be
    reused, so either way a stale bound or kernel is never served. Comparing
    the values costs a tenth of the conversion or less (3-13 us per step).
    """

    ref: weakref.ref  # the array this entry was made from
    values: np.ndarray  # a copy of its values then
    bound: float  # conv_sum_bound(values): the exactness check's sum |w|
    tensor: Any = None  # the float32 torch kernel (out, in, y, x), flipped; made on first use
    tensor64: Any = None  # the same in float64, for graded steps past float32's exact range


_kernels: dict[int, _Kernel] = {}  # id(weight) -> its entry; dropped when the array is freed


def _kernel(weight: np.ndarray) -> _Kernel:
    """The cached :class:`_Kernel` of ``weight``, made afresh for a new array or changed values."""
    key = id(weight)
    entry = _kernels.get(key)
    if entry is not None and entry.ref() is weight and entry.values.shape == weight.shape \
            and entry.values.dtype == weight.dtype and np.array_equal(entry.values, weight):
        return entry

    def forget(ref: weakref.ref, key: int = key) -> None:
        if key in _kernels and _kernels[key].ref is ref:  # not an entry a reused id made since
            del _kernels[key]

    entry = _kernels[key] = _Kernel(weakref.ref(weight, forget), weight.copy(), conv_sum_bound(weight))
    return entry


def _torch_kernel(entry: _Kernel, torch: Any) -> Any:
    if entry.tensor is None:
        # torch correlates, so the kernel is flipped to make it the convolution conv_scipy computes;
        # (out, x, y, in) -> NCHW's (out, in, y, x) with H = x: see torch_conv.
        entry.tensor = torch.from_numpy(
            np.ascontiguousarray(entry.values[:, ::-1, ::-1].transpose(0, 3, 2, 1), dtype=np.float32))
    return entry.tensor


def _single_threaded_torch():
    """torch, made single-threaded once in a forked process (see the module docstring: the hang).

    The process that imported this module keeps its threads: its pool is intact.
    """
    import torch

    if os.getpid() != _IMPORT_PID and _conv_state["pid"] != os.getpid():
        torch.set_num_threads(1)
        _conv_state["pid"] = os.getpid()
    return torch


def torch_conv(input_, weight, kernel_size, stride, padding, dilation, groups):
    """Drop-in for ``lava.proc.conv.utils.conv``: torch's conv2d where it is exact, else ``conv_scipy``.

    Same arguments and result as Lava's (``input_`` ``(x, y, in)``, ``weight``
    ``(out, kx, ky, in)``, XY order, result in ``weight``'s dtype).
    """
    utils = sys.modules[LAVA_CONV]
    if weight.dtype.kind not in "iu" or input_.dtype.kind not in "iub":
        return utils.conv_scipy(input_, weight, kernel_size, stride, padding, dilation, groups).astype(weight.dtype)
    if not input_.any():  # a silent step: the sum of nothing is exactly zero (module docstring, fix 3)
        return np.zeros(utils.output_shape(input_.shape, weight.shape[0], kernel_size, stride, padding, dilation),
                        dtype=weight.dtype)
    peak = int(np.abs(input_).max()) if input_.dtype.kind != "b" else 1
    kernel = _kernel(weight)
    if peak * kernel.bound >= FLOAT64_EXACT:
        return utils.conv_scipy(input_, weight, kernel_size, stride, padding, dilation, groups).astype(weight.dtype)
    torch = _single_threaded_torch()
    w = _torch_kernel(kernel, torch)
    # Graded steps past float32's exact integers sum in float64, exact to 2**53 as conv_scipy is
    # (and 5-10x faster than its one convolve2d per channel pair).
    wide = peak * kernel.bound >= FLOAT32_EXACT
    dtype = np.float64 if wide else np.float32
    if wide:
        if kernel.tensor64 is None:
            kernel.tensor64 = w.double()
        w = kernel.tensor64
    with torch.inference_mode():
        # Lava's torch branch, verbatim in effect: NCHW with H = x, W = y (the kernel likewise,
        # flipped once in _torch_kernel).
        x = torch.from_numpy(np.ascontiguousarray(input_.transpose(2, 1, 0), dtype=dtype))[None]
        out = torch.nn.functional.conv2d(x, w, stride=tuple(int(s) for s in stride[::-1]),
                                         padding=tuple(int(p) for p in padding[::-1]),
                                         dilation=tuple(int(d) for d in dilation[::-1]), groups=int(groups))
    return out[0].numpy().transpose(2, 1, 0).astype(weight.dtype)


def use_lava_torch_conv(enabled: bool = True, reason: str | None = None) -> bool:
    """Make Lava's conv model run on :func:`torch_conv` (or, ``enabled=False``, its own ``conv_scipy``).

    Call before the network is compiled: Lava's forked process models inherit
    the choice. ``SPIKEREG_LAVA_TORCH_CONV=0`` always wins (returns False).
    ``reason`` (why torch is refused) is warned once per process. Returns
    whether the torch path is now on.
    """
    utils = import_lava(LAVA_CONV)
    original = getattr(utils, "_spikereg_original_conv", None)
    if original is None:
        original = utils._spikereg_original_conv = utils.conv
    enabled = enabled and torch_conv_wanted()
    utils.conv = torch_conv if enabled else original
    _conv_state["enabled"] = enabled
    if reason and not _conv_state["warned"]:
        _conv_state["warned"] = True
        warnings.warn(f"Lava conv runs on conv_scipy (slow): {reason}", RuntimeWarning, stacklevel=2)
    return enabled


def lava_torch_conv_active() -> bool:
    """True while Lava's conv model runs on :func:`torch_conv`."""
    utils = sys.modules.get(LAVA_CONV)
    return utils is not None and utils.conv is torch_conv



# -- Lava's workers follow their parent (fix 4) and a stop that always ends (fix 5) -----

LAVA_MULTIPROCESSING = "lava.magma.runtime.message_infrastructure.multiprocessing"
LAVA_SHARED_MEMORY = "lava.magma.runtime.message_infrastructure.shared_memory_manager"
WORKER_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
LAVA_STOP_SECONDS = 5.0  # Lava's own stop, with the drain of a half-run chunk, takes well under a second


def _die_with_parent(parent_pid: int) -> None:
    """In a forked Lava worker: ignore the stop signals, die with the parent (see fix 4)."""
    for signum in WORKER_IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_IGNORED_SIGNALS)  # blocked across the fork
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)


def _fork_with_signals_blocked(start: Callable[[], Any]) -> Any:
    """Run ``start`` (a fork) with the stop signals blocked and deferred.

    Blocked in this thread, so the child starts with them blocked and never
    runs the parent's handlers; deferred (:func:`spikereg.interrupts.deferred`),
    because another thread of the parent may take the signal and the main
    thread then runs the handler inside an at-fork hook, which drops what it
    raises (measured: the run went on and ended with exit 0). The signal is
    raised when ``start`` is done, its process registered where Lava stops it.
    """
    with deferred():
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_IGNORED_SIGNALS)
        try:
            result = start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return result


def lava_workers_follow_parent() -> None:
    """Make Lava's forked workers and shared-memory server ignore stop signals and die with their parent.

    Idempotent; call before a network is compiled (the runtime forks then).
    """
    mp_module = import_lava(LAVA_MULTIPROCESSING)
    system_process, infrastructure = mp_module.SystemProcess, mp_module.MultiProcessing
    if not getattr(system_process, "_spikereg_follows_parent", False):
        run, build_actor = system_process.run, infrastructure.build_actor

        def run_following_parent(self, _run=run):
            _die_with_parent(self._parent_pid)
            return _run(self)

        def build_actor_with_signals_blocked(self, *args, _build=build_actor, **kwargs):
            # build_actor forks the worker and adds it to the actors Lava (and end_lava) stop:
            # a deferred signal is raised only once it is there.
            return _fork_with_signals_blocked(lambda: _build(self, *args, **kwargs))

        system_process.run = run_following_parent
        infrastructure.build_actor = build_actor_with_signals_blocked
        system_process._spikereg_follows_parent = True
    manager = import_lava(LAVA_SHARED_MEMORY).SharedMemoryManager
    if not getattr(manager, "_spikereg_follows_parent", False):
        init = manager.__init__

        def init_manager(self, _init=init):
            # multiprocessing's SharedMemoryManager() starts Python's resource tracker (a
            # fork+exec'd child that unlinks the segments of dead processes). It ignores SIGINT
            # and SIGTERM but dies of a SIGHUP to the group; started with the signals blocked it
            # keeps SIGHUP blocked (the mask survives exec). A tracker already running is left alone.
            _fork_with_signals_blocked(lambda: _init(self))

        def start_manager(self):
            # multiprocessing's manager server already ignores SIGINT; the initializer does the rest.
            _fork_with_signals_blocked(lambda: self._manager.start(initializer=_die_with_parent,
                                                                   initargs=(os.getpid(),)))

        manager.__init__ = init_manager
        manager.start = start_manager
        manager._spikereg_follows_parent = True


def lava_workers(runtime: Any) -> list:
    """The worker processes (``multiprocessing.Process``) a Lava runtime forked, empty before it built any."""
    infrastructure = getattr(runtime, "_messaging_infrastructure", None)
    return list(infrastructure.actors) if infrastructure is not None else []


def _alive(actor: Any) -> bool:
    try:
        return actor.is_alive()
    except ValueError:  # closed: Lava's SystemProcess.join joined and closed it
        return False


def end_lava(runtime: Any) -> None:
    """End a Lava runtime whose own stop did not: kill its workers, free its shared memory.

    Safe on a runtime that was never initialized, partly initialized or already stopped.
    """
    if runtime is None:
        return
    # Lava's Runtime.__del__ (and each Process's) call stop() again: with the flags down
    # it no longer waits for answers from workers that are gone.
    runtime._is_running = runtime._is_started = False
    infrastructure = getattr(runtime, "_messaging_infrastructure", None)
    if infrastructure is None:
        return
    mine = [a for a in infrastructure.actors if getattr(a, "_parent_pid", None) == os.getpid()]
    for actor in mine:
        if _alive(actor):
            actor.kill()
    for actor in mine:
        try:
            actor.join()  # Lava's SystemProcess.join: reaps and closes it
        except (ValueError, OSError):
            pass
    smm = infrastructure.smm
    handles = list(getattr(smm, "_shared_memory_handles", [])) if smm is not None else []
    if smm is not None:
        try:
            smm.shutdown()  # the manager server unlinks every segment it tracks (kills itself after 1 s if stuck)
        except Exception:
            pass
    for handle in handles:  # a manager that was gone unlinked nothing
        if os.path.exists(os.path.join("/dev/shm", handle.name.lstrip("/"))):
            try:
                handle.unlink()
            except OSError:
                pass
    watchdog = getattr(runtime, "_watchdog_manager", None)
    if watchdog is not None:
        try:
            watchdog.stop()
        except Exception:
            pass


def stop_lava(runtime: Any, stop: Callable[[], None], timeout: float = LAVA_STOP_SECONDS) -> bool:
    """Run Lava's own ``stop`` (and whatever must precede it) for at most ``timeout`` seconds (fix 5).

    Where it blocks, raises, leaves a worker alive, or a signal interrupts the
    wait (re-raised after), :func:`end_lava` ends the runtime. Returns True
    when Lava stopped by itself. ``stop``'s own exception is re-raised when it ended in time (one it
    hits after the timeout, while :func:`end_lava` ends its workers, is not).
    """
    if runtime is not None and not runtime._is_started:
        # Interrupted while Lava built its workers: its stop would join workers that wait for a
        # first command forever (MultiProcessing.stop), so end them at once.
        end_lava(runtime)
        return False
    done = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            stop()
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)
        finally:
            done.set()

    # A daemon thread: if Lava's stop never returns, it must not keep the interpreter alive.
    threading.Thread(target=target, name="lava-stop", daemon=True).start()
    try:
        finished = done.wait(timeout)
    except BaseException:  # a second Ctrl-C or SIGTERM: no more waiting
        end_lava(runtime)
        raise
    # Only a stop that ended in time reports its own error: past the timeout, end_lava kills and
    # joins the workers while Lava's stop may still be joining them in the helper thread (measured on
    # a loaded machine, Python 3.12: its join returned on a reaped pid and close() raised "Cannot
    # close a process while it is still running"), a consequence of ending it, not news.
    errors = list(failure) if finished else []  # a copy: the helper may still append to failure
    clean = finished and not errors and not any(_alive(a) for a in lava_workers(runtime))
    if not clean:
        end_lava(runtime)
    if errors and isinstance(errors[0], Exception):
        raise errors[0]
    return clean


install()


# -- Sparse connections on silent steps (fix 8) --------------------------------------------

LAVA_SPARSE = "lava.proc.sparse.models"


def skip_silent_sparse(enabled: bool = True) -> bool:
    """Make Lava's bit-accurate ``Sparse`` model skip the matrix product on an all-zero input step.

    Call before the network is compiled: Lava's forked process models inherit
    it. Returns whether the skip is now on.
    """
    models = import_lava(LAVA_SPARSE)
    model = models.AbstractPySparseModelBitAcc
    original = model.__dict__.get("_spikereg_original_run_spk") or model.run_spk
    model._spikereg_original_run_spk = original
    if not enabled:
        model.run_spk = original
        return False

    def run_spk(self, _original=original):
        # Lava's own step (lava-nc 0.10.0, AbstractPySparseModelBitAcc.run_spk) with one branch added.
        # (Its PyInPortVectorDense.peek consumes the step's input, so the input is taken with recv here
        # and the product written out rather than delegated.)
        if not self.weights_set or self.num_message_bits.item() <= 0:
            return _original(self)  # the first step scales the weights; binary input: as Lava does it
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if not np.any(s_in):
            self.a_buff = np.zeros_like(self.a_buff)
            return
        a_accum = self.weights.dot(s_in)
        self.a_buff = (np.left_shift(a_accum, self.weight_exp) if self.weight_exp > 0
                       else np.right_shift(a_accum, -self.weight_exp))

    run_spk._spikereg_silent_skip = True
    model.run_spk = run_spk
    return True
