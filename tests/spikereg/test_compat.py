"""The Lava fixes in compat: each does its job, and nothing where its problem is absent."""
import importlib
import logging
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from spikereg import compat

BROKEN = textwrap.dedent("""
    from dataclasses import dataclass, InitVar

    @dataclass
    class ByteEncoder:
        base: int = 0

    @dataclass
    class CoreEncoder:
        x: ByteEncoder = ByteEncoder()
        y: ByteEncoder = ByteEncoder()
""")


def test_dataclass_fix_makes_the_lava_pattern_importable():
    if sys.version_info < (3, 11):
        pytest.skip("the mutable-default check only exists on Python >= 3.11")
    with pytest.raises(ValueError, match="mutable default"):
        exec(compile(BROKEN, "var_model", "exec"), {"__name__": "broken"})
    namespace = {"__name__": "fixed"}
    exec(compile(compat.fix_dataclass_defaults(BROKEN), "var_model", "exec"), namespace)
    first, second = namespace["CoreEncoder"](), namespace["CoreEncoder"]()
    assert first.x == namespace["ByteEncoder"]() and first.x is not second.x  # fresh default each time


def test_dataclass_fix_leaves_fixed_source_alone():
    fixed = BROKEN.replace("ByteEncoder()", "field(default_factory=ByteEncoder)")
    assert not compat.needs_dataclass_fix(fixed)
    assert compat.fix_dataclass_defaults(fixed) == fixed


def test_lava_compiler_imports_and_var_model_is_patched_in_memory_only():
    var_model = compat.import_lava("lava.magma.compiler.var_model")
    encoder = var_model.ChipEncoder()
    assert encoder.x is not var_model.ChipEncoder().x
    with open(var_model.__file__, encoding="utf-8") as handle:
        assert compat.needs_dataclass_fix(handle.read()) == (sys.version_info >= (3, 11)), \
            "site-packages must stay untouched"


def test_slayer_imports_without_torchvision_and_object_detection_fails_clearly():
    slayer = compat.slayer()
    assert hasattr(slayer.block.cuba, "Conv")
    if compat.torchvision_works():
        pytest.skip("torchvision works here: the stub is (correctly) not installed")
    with pytest.raises(ImportError, match="torchvision"):
        slayer.obd.YOLOBase  # noqa: B018


def test_without_compat_lava_fails_on_this_python():
    """The fixes are needed: plain imports break (if this starts passing, drop the fix)."""
    if sys.version_info < (3, 11):
        pytest.skip("Lava imports cleanly before Python 3.11")
    code = "import lava.magma.compiler.compiler"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "mutable default" in result.stderr
    if not compat.torchvision_works():
        result = subprocess.run([sys.executable, "-c", "import lava.lib.dl.slayer"], capture_output=True, text=True)
        assert result.returncode != 0


def test_finder_ignores_other_modules():
    assert compat._FINDER.find_spec("json") is None
    assert importlib.import_module("json")


# -- fix 6: torch's CUDA_HOME warning --------------------------------------------------------

def test_cuda_home_warning_is_dropped_and_nothing_else(caplog):
    compat.install()
    compat.install()  # idempotent
    logger = logging.getLogger(compat.CPP_EXTENSION_LOGGER)
    assert logger.filters.count(compat._NO_CUDA_FILTER) == 1
    with caplog.at_level(logging.WARNING, logger=compat.CPP_EXTENSION_LOGGER):
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        logger.warning("Error checking compiler version for %s", "c++")
    assert [record.getMessage() for record in caplog.records] == ["Error checking compiler version for c++"]


def test_importing_slayer_prints_no_cuda_home_warning():
    code = "import spikereg.compat as c; c.slayer(); c.netx()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert compat.NO_CUDA_RUNTIME not in result.stderr, result.stderr
    # the fix is needed where torch is a CUDA build on a machine without a GPU (PyPI's torch on 3.12/3.13 here)
    plain = subprocess.run([sys.executable, "-c", "import torch.utils.cpp_extension"], capture_output=True, text=True,
                           timeout=300)
    import torch
    from torch.utils import cpp_extension
    if torch.version.cuda and not torch.cuda.is_available() and cpp_extension.CUDA_HOME:
        assert compat.NO_CUDA_RUNTIME in plain.stderr, plain.stderr


# -- fix 7: np.reshape(newshape=...) under numpy 2 ---------------------------------------------

def test_reshape_port_transforms_work_on_this_numpy_without_warnings():
    ports = compat.import_lava(compat.LAVA_PORTS)
    port = ports.ReshapePort(new_shape=(2, 3), old_shape=(6,))
    data = np.arange(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy 2.1-2.3 only deprecate newshape=
        forward = port.get_transform_func_fwd()(data)
        assert forward.shape == (2, 3) and np.array_equal(port.get_transform_func_bwd()(forward), data)
    assert compat.fix_reshape_port() == compat.numpy_reshape_takes_shape()  # applied exactly where numpy has shape=
    assert getattr(ports.ReshapePort, "_spikereg_reshape_fixed", False) == compat.numpy_reshape_takes_shape()


def test_reshape_port_fix_is_needed_where_it_applies():
    """Lava's own transform, np.reshape(newshape=...), is deprecated or gone where the fix applies."""
    if not compat.numpy_reshape_takes_shape():
        assert np.reshape(np.arange(6), newshape=(2, 3)).shape == (2, 3)  # numpy < 2.1: Lava's call is fine
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises((TypeError, DeprecationWarning)):
            np.reshape(np.arange(6), newshape=(2, 3))


# -- fix 3: Lava's conv on torch ---------------------------------------------------------

CONV_CASES = [  # (in features, out features, kernel, stride, padding, dilation, groups)
    (6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (6, 4, (3, 3), (2, 2), (1, 1), (1, 1), 2),
    (5, 3, (3, 2), (2, 1), (0, 1), (2, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("graded", [False, True])
def test_torch_conv_equals_lavas_conv_scipy(case, graded):
    """Same integers as Lava's own conv, binary and graded inputs, odd strides, padding, dilation, groups."""
    utils = compat.import_lava(compat.LAVA_CONV)
    c_in, c_out, kernel, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(case) + graded)
    weight = rng.integers(-128, 128, size=(c_out, *kernel, c_in // groups)).astype(np.int32)
    spikes = rng.random((9, 7, c_in)) < 0.3
    input_ = (spikes * rng.integers(-(1 << 12), 1 << 12, size=spikes.shape)).astype(np.int32) if graded else spikes
    expected = utils.conv_scipy(input_, weight, kernel, stride, padding, dilation, groups).astype(np.int32)
    got = compat.torch_conv(input_, weight, kernel, stride, padding, dilation, groups)
    assert got.dtype == np.int32 and np.abs(expected).max() > 0
    np.testing.assert_array_equal(got, expected)
    silent = compat.torch_conv(np.zeros_like(input_), weight, kernel, stride, padding, dilation, groups)
    assert silent.shape == expected.shape and not silent.any()


@pytest.mark.parametrize("case", CONV_CASES)
def test_torch_conv_skips_a_silent_step_with_the_full_convs_result(case, monkeypatch):
    """An all-zero input step: zeros of the full conv's shape and dtype, with no kernel lookup and no float work."""
    utils = compat.import_lava(compat.LAVA_CONV)
    c_in, c_out, kernel, stride, padding, dilation, groups = case
    weight = np.random.default_rng(3).integers(-128, 128, size=(c_out, *kernel, c_in // groups)).astype(np.int32)
    for silent in (np.zeros((9, 7, c_in), dtype=bool), np.zeros((9, 7, c_in), dtype=np.int32)):
        expected = utils.conv_scipy(silent, weight, kernel, stride, padding, dilation, groups).astype(np.int32)
        with monkeypatch.context() as patch:
            patch.setattr(compat, "_kernel", lambda *a: pytest.fail("kernel looked up on a silent step"))
            patch.setattr(compat, "_single_threaded_torch", lambda: pytest.fail("torch ran on a silent step"))
            patch.setattr(utils, "conv_scipy", lambda *a: pytest.fail("conv_scipy ran on a silent step"))
            got = compat.torch_conv(silent, weight, kernel, stride, padding, dilation, groups)
        assert got.dtype == weight.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    one = np.zeros((9, 7, c_in), dtype=np.int32)
    one[4, 3, 0] = 5  # one message: the full conv runs again
    np.testing.assert_array_equal(compat.torch_conv(one, weight, kernel, stride, padding, dilation, groups),
                                  utils.conv_scipy(one, weight, kernel, stride, padding, dilation, groups))


def test_torch_conv_is_exact_only_below_float32s_integers(monkeypatch):
    utils = compat.import_lava(compat.LAVA_CONV)
    weight = np.full((1, 3, 3, 1), 127, dtype=np.int32)  # one output: sum |w| = 1143
    assert compat.conv_sum_bound(weight) == 1143
    assert compat.torch_conv_is_exact(weight, max_input=1)
    assert not compat.torch_conv_is_exact(weight, max_input=1 << 14)  # 1143 * 2**14 > 2**24
    assert not compat.torch_conv_is_exact(weight.astype(np.float64) + 0.5)  # not integers
    # an input that breaks the bound: float32 would round (2**24 + 1), the guard sums in float64
    input_ = np.zeros((3, 3, 1), dtype=np.int32)
    input_[0, 0, 0], input_[0, 1, 0] = 1 << 24, 1
    one = np.ones((1, 1, 1, 1), dtype=np.int32)
    two = np.ones((1, 1, 2, 1), dtype=np.int32)  # sums (1 << 24) + 1 along y
    expected = utils.conv_scipy(input_, two, (1, 2), (1, 1), (0, 0), (1, 1), 1)
    scipy = utils.conv_scipy
    with monkeypatch.context() as patch:  # torch in float64, not Lava's slow conv_scipy
        patch.setattr(utils, "conv_scipy", lambda *a: pytest.fail("conv_scipy called below 2**53"))
        got = compat.torch_conv(input_, two, (1, 2), (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_array_equal(got, expected)
    assert got[0, 0, 0] == (1 << 24) + 1
    np.testing.assert_array_equal(compat.torch_conv(input_, one, (1, 1), (1, 1), (0, 0), (1, 1), 1), input_)
    # past float64's exact integers (2**53) only conv_scipy is left
    huge = np.zeros((3, 3, 1), dtype=np.int64)
    huge[0, 0, 0], huge[0, 1, 0] = 1 << 53, 1
    calls = []
    monkeypatch.setattr(utils, "conv_scipy", lambda *a: calls.append(1) or scipy(*a))
    compat.torch_conv(huge, two.astype(np.int64), (1, 2), (1, 1), (0, 0), (1, 1), 1)
    assert calls == [1]


def test_torch_conv_kernel_cache_serves_only_the_array_and_values_it_was_made_from():
    """The float32 kernel and bound are made once per weight array, and made again when the values change.

    Lava's Var.set writes new weights into the same array in place; a cache keyed by the
    array alone would go on convolving with the old kernel (and trusting the old bound).
    """
    import gc

    utils = compat.import_lava(compat.LAVA_CONV)
    args = ((3, 3), (1, 1), (1, 1), (1, 1), 1)
    rng = np.random.default_rng(7)
    weight = rng.integers(-128, 128, size=(4, 3, 3, 6)).astype(np.int32)
    spikes = rng.random((9, 7, 6)) < 0.3

    def scipy(w, x=spikes):
        return utils.conv_scipy(x, w, *args).astype(np.int32)

    first = compat.torch_conv(spikes, weight, *args)
    kernel = compat._kernel(weight).tensor
    assert kernel is not None and np.abs(first).max() > 0
    np.testing.assert_array_equal(first, scipy(weight))
    np.testing.assert_array_equal(compat.torch_conv(spikes, weight, *args), first)
    assert compat._kernel(weight).tensor is kernel  # cached: the same tensor, not a new conversion

    weight[...] = -weight[:, ::-1]  # new values in the same array, as Var.set writes them
    np.testing.assert_array_equal(compat.torch_conv(spikes, weight, *args), scipy(weight))
    assert compat._kernel(weight).tensor is not kernel

    # in place beyond float32's exact integers: the bound is recomputed and float64 takes over
    one = np.ones((1, 1, 2, 1), dtype=np.int32)
    big = np.zeros((3, 3, 1), dtype=np.int32)
    big[0, 0, 0], big[0, 1, 0] = 1 << 12, 1
    assert compat._kernel(one).bound == 2
    one[0, 0, 1, 0] = 1 << 12  # sums (1 << 24) + 1: float32 would round it
    np.testing.assert_array_equal(compat.torch_conv(big, one, (1, 2), (1, 1), (0, 0), (1, 1), 1),
                                  utils.conv_scipy(big, one, (1, 2), (1, 1), (0, 0), (1, 1), 1))
    assert compat.torch_conv(big, one, (1, 2), (1, 1), (0, 0), (1, 1), 1)[0, 0, 0] == (1 << 24) + 1

    # a freed array's entry goes with it, so a new array (whatever its id) gets its own kernel
    key = id(weight)
    del weight
    gc.collect()
    assert key not in compat._kernels
    for seed in range(3):
        other = np.random.default_rng(seed).integers(-128, 128, size=(4, 3, 3, 6)).astype(np.int32)
        np.testing.assert_array_equal(compat.torch_conv(spikes, other, *args), scipy(other))
        del other


def test_opt_out_restores_lavas_conv(monkeypatch):
    utils = compat.import_lava(compat.LAVA_CONV)
    try:
        assert compat.use_lava_torch_conv(True) and compat.lava_torch_conv_active()
        monkeypatch.setenv(compat.TORCH_CONV_ENV, "0")
        assert not compat.use_lava_torch_conv(True)
        assert not compat.lava_torch_conv_active() and utils.conv is utils._spikereg_original_conv
    finally:
        monkeypatch.delenv(compat.TORCH_CONV_ENV)
        compat.use_lava_torch_conv(True)


def test_runner_falls_back_to_conv_scipy_for_a_network_beyond_the_bound(tiny_export, tmp_path):
    """A conv layer whose sums could pass 2**24 (weights scaled far beyond 8 bits) is not run on torch."""
    import shutil

    import h5py

    from lava_export.runner import LavaNetwork

    path = shutil.copy(tiny_export[1], tmp_path / "huge.net")
    with h5py.File(path, "r+") as handle:
        weight = handle["layer/1/weight"]
        weight[...] = np.where(weight[()] != 0, 1 << 20, 0)
    with LavaNetwork(tiny_export[1], window=8) as net:
        net._build(8)  # builds (and picks the conv path) without compiling
        assert compat.lava_torch_conv_active()
    compat._conv_state["warned"] = False
    with LavaNetwork(path, window=8) as net, pytest.warns(RuntimeWarning, match="partial sums could reach"):
        net._build(8)
    assert not compat.lava_torch_conv_active()


def test_sim_backend_on_torch_conv_equals_slayer_after_parent_used_threaded_torch(tiny_export):
    """The hang lava-nc disabled torch for: forked process models after the parent ran torch's thread pool.

    Runs the simulator three times in this process (each run forks fresh process
    models), each after multi-threaded torch work here; every run must finish
    and give SLAYER's spikes exactly.
    """
    import torch

    from spikereg.registration.backends import open_backend

    _, path = tiny_export
    generator = torch.Generator().manual_seed(5)
    with open_backend(path, "torch") as slayer:
        size = slayer.patch_size
        fixed = torch.rand((3, 1, size, size, size), generator=generator)
        moving = (fixed + 0.2 * torch.rand(fixed.shape, generator=generator)).clamp(0, 1)
        expected = slayer.predict(fixed, moving)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in range(3):
            torch.nn.functional.conv2d(torch.rand(1, 16, 96, 96), torch.rand(16, 16, 3, 3))  # wakes the pool
            with open_backend(path, "sim") as lava:
                got = lava.predict(fixed, moving)
                assert compat.lava_torch_conv_active()
                np.testing.assert_array_equal(got, expected)
                np.testing.assert_array_equal(lava.stats.layer_spikes, slayer.stats.layer_spikes)
    finally:
        torch.set_num_threads(threads)


# -- fixes 4 and 5: Lava's workers and its stop ---------------------------------------------------

def _tiny_spikes(net, count: int = 2) -> np.ndarray:
    import torch

    p = net.config.patch_size
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        fixed, moving = torch.rand(2, count, 1, p, p, p, generator=generator)
        return net.encode(fixed, moving)[..., : net.window].numpy()


def _live(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def _ignored_signals(pid: int) -> set[int]:
    with open(f"/proc/{pid}/status") as handle:
        mask = int(next(line for line in handle if line.startswith("SigIgn:")).split()[1], 16)
    return {signum for signum in range(1, 65) if mask >> (signum - 1) & 1}


def test_lava_workers_ignore_stop_signals_and_lavas_own_stop_ends_them(tiny_export):
    """The main process coordinates the stop: workers hit by Ctrl-C, SIGTERM or SIGHUP keep running."""
    import time

    from lava_export.runner import LavaNetwork

    net, path = tiny_export
    with LavaNetwork(path, window=net.window) as lava:
        lava.run(_tiny_spikes(net))
        workers = compat.lava_workers(lava._net.runtime)
        assert workers
        stops = {int(s) for s in compat.WORKER_IGNORED_SIGNALS}
        for worker in workers:
            assert stops <= _ignored_signals(worker.pid)
            for signum in compat.WORKER_IGNORED_SIGNALS:
                os.kill(worker.pid, signum)
        time.sleep(0.3)
        assert all(_live(w.pid) for w in workers)
        again = lava.run(_tiny_spikes(net))  # still a working network
        assert again.readout.shape[0] == 2
        pids = [w.pid for w in workers]
        start = time.monotonic()
    assert time.monotonic() - start < compat.LAVA_STOP_SECONDS  # Lava's own stop, no fallback
    assert not any(_live(pid) for pid in pids)


def test_lava_workers_die_with_their_parent(tiny_export, tmp_path):
    """SIGKILL to the process that runs Lava: its workers (PR_SET_PDEATHSIG) end too."""
    import time

    net, path = tiny_export
    spikes = tmp_path / "spikes.npy"
    np.save(spikes, _tiny_spikes(net))
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from lava_export.runner import LavaNetwork
        from spikereg import compat
        lava = LavaNetwork({str(path)!r}, window={net.window})
        lava.run(np.load({str(spikes)!r}))
        runtime = lava._net.runtime
        manager = runtime._messaging_infrastructure.smm._manager._process
        pids = [w.pid for w in compat.lava_workers(runtime)] + [manager.pid]
        print(" ".join(map(str, pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    pids = [int(pid) for pid in result.stdout.split()]
    assert len(pids) > 1
    deadline = time.monotonic() + 5
    while any(_live(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in pids if _live(pid)]
    for pid in survivors:
        os.kill(pid, 9)
    assert not survivors


def test_stop_lava_ends_a_runtime_whose_own_stop_hangs(tiny_export):
    """A worker died (killed, as the OOM killer does): Lava's stop waits for its answer forever; ours does not."""
    import signal
    import time

    from lava_export.runner import LavaNetwork

    net, path = tiny_export
    lava = LavaNetwork(path, window=net.window)
    try:
        lava.run(_tiny_spikes(net))
        runtime = lava._net.runtime
        pids = [w.pid for w in compat.lava_workers(runtime)]  # (Lava closes the process objects when it joins them)
        segments = [handle.name for handle in runtime._messaging_infrastructure.smm._shared_memory_handles]
        assert segments and all(os.path.exists(f"/dev/shm/{name}") for name in segments)
        os.kill(pids[-1], signal.SIGKILL)
        start = time.monotonic()
        assert lava.stop()
        elapsed = time.monotonic() - start
    finally:
        lava.stop()  # a runtime left running makes multiprocessing's exit wait for its workers forever
    assert compat.LAVA_STOP_SECONDS <= elapsed < compat.LAVA_STOP_SECONDS + 3
    assert not any(_live(pid) for pid in pids)
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in segments)
    assert not runtime._is_started  # Lava's __del__ will not wait for the dead workers again
    runtime.stop()  # what __del__ does: returns at once


def test_stop_lava_of_a_runtime_never_started_does_not_wait(tiny_export):
    """Interrupted while Lava built its workers: its own stop would join workers waiting for a first command."""
    import time

    from lava_export.runner import LavaNetwork

    net, path = tiny_export
    lava = LavaNetwork(path, window=net.window)
    lava._build(net.window)
    try:
        lava._net.create_runtime(run_cfg=lava._run_cfg)  # compiled, workers forked, never started
        runtime = lava._net.runtime
        pids = [w.pid for w in compat.lava_workers(runtime)]
        assert pids and all(_live(pid) for pid in pids)
        start = time.monotonic()
        assert not compat.stop_lava(runtime, lava._net.stop)
        assert time.monotonic() - start < 3
    finally:
        compat.end_lava(lava._net.runtime)
    assert not any(_live(pid) for pid in pids)


def test_stop_lava_does_not_raise_what_lavas_stop_hits_after_the_timeout(monkeypatch):
    """Past the timeout end_lava takes over: what Lava's stop hits meanwhile (workers end_lava reaped) is not raised."""
    import threading
    failed = threading.Event()

    def late_failing_stop():
        time.sleep(0.2)
        failed.set()
        raise ValueError("Cannot close a process while it is still running.")

    monkeypatch.setattr(compat, "end_lava", lambda runtime: failed.wait(10))  # the helper fails while we end it
    assert compat.stop_lava(None, late_failing_stop, timeout=0.05) is False
    with pytest.raises(ValueError, match="in time"):  # a stop that fails in time still raises its own error
        compat.stop_lava(None, lambda: (_ for _ in ()).throw(ValueError("in time")), timeout=5)


def test_process_models_lists_lavas_own_models_for_a_process():
    """lava_export.rest subclasses the model a run would pick; Lava finds them through a private call."""
    from spikereg import compat

    sdn = compat.import_lava("lava.proc.sdn.process")
    names = {model.__name__ for model in compat.process_models(sdn.SigmaDelta(shape=(2,), vth=1))}
    assert {"PySigmaDeltaModelFixed", "PySigmaDeltaModelFloat"} <= names


def test_silent_sparse_steps_skip_the_product_with_the_same_output():
    """Fix 8: an all-zero step gives Lava's Sparse model's own output (zeros) without the product."""
    import numpy as np
    from scipy.sparse import csr_matrix

    from spikereg import compat

    sparse = compat.import_lava("lava.proc.sparse.process")
    source_mod = compat.import_lava("lava.proc.io.source")
    sink_mod = compat.import_lava("lava.proc.io.sink")
    conditions = compat.import_lava("lava.magma.core.run_conditions")
    configs = compat.import_lava("lava.magma.core.run_configs")
    rng = np.random.default_rng(0)
    weights = csr_matrix(rng.integers(-20, 20, (5, 4)) * (rng.random((5, 4)) < 0.6))
    data = rng.integers(-64, 64, (4, 8)) * (rng.random((4, 8)) < 0.5)
    data[:, [1, 2, 5]] = 0  # silent steps between busy ones
    outputs = []
    for skip in (False, True):
        compat.skip_silent_sparse(skip)
        source = source_mod.RingBuffer(data=data)
        conn = sparse.Sparse(weights=weights, num_message_bits=16)
        sink = sink_mod.RingBuffer(shape=(5,), buffer=8)
        source.s_out.connect(conn.s_in)
        conn.a_out.connect(sink.a_in)
        try:
            conn.run(condition=conditions.RunSteps(num_steps=8), run_cfg=configs.Loihi2SimCfg(select_tag="fixed_pt"))
            outputs.append(sink.data.get().copy())
        finally:
            conn.stop()
    compat.skip_silent_sparse(False)
    assert np.array_equal(outputs[0], outputs[1])
    assert np.any(outputs[0]) and not np.any(outputs[0][:, 3])  # step 3 answers the silent step 2
