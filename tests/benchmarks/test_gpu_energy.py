"""benchmarks/gpu_energy.py on CPU: batching, the timed windows from fed readings, no GPU -> nothing written.

No reading here stands in for a measurement anywhere: the profiles these tests
write go to tmp_path, and the shipped folder gets a measured profile only from
a run on a GPU.
"""
import importlib.util
from pathlib import Path

import pytest
import torch

from spikereg.config import ModelConfig
from spikereg.hardware.device import Reading, measured_profile, write_profile
from spikereg.networks.ann import AnnTwin

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_energy", ROOT / "benchmarks" / "gpu_energy.py")
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)


class FakeDevice:
    """A clock and an energy counter: work() takes 0.5 s at 200 W; at rest the device draws 60 W."""

    def __init__(self) -> None:
        self.t = 0.0
        self.mj = 1_000_000.0
        self.works = 0

    def clock(self) -> float:
        return self.t

    def energy_mj(self) -> float:
        return self.mj

    def power_mw(self) -> float:
        return 60_000.0

    def work(self) -> None:
        self.works += 1
        self.t += 0.5
        self.mj += 0.5 * 200.0 * 1000.0


def test_batches_cover_every_patch_once() -> None:
    assert [(s.start, s.stop) for s in gpu.batches(10, 4)] == [(0, 4), (4, 8), (8, 10)]
    assert [(s.start, s.stop) for s in gpu.batches(3, 512)] == [(0, 3)]
    assert list(gpu.batches(0, 8)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(gpu.batches(4, 0))


def test_measure_times_windows_long_enough_and_gives_energy_per_work() -> None:
    dev = FakeDevice()
    syncs = []
    reading = gpu.measure(dev.work, dev, idle_w=60.0, macs=10**9, patches=64, sync=lambda: syncs.append(1),
                          repeats=3, min_seconds=2.0, clock=dev.clock)
    # one warm-up, then 3 windows of ceil(2 / 0.5) = 4 works each
    assert dev.works == 1 + 3 * 4
    assert reading.seconds == pytest.approx(0.5)
    assert reading.total_j == pytest.approx(100.0)  # 0.5 s x 200 W
    assert reading.idle_j == pytest.approx(30.0)
    assert reading.dynamic_j == pytest.approx(70.0)
    assert (reading.power_w, reading.macs_per_s, reading.patches_per_s) == pytest.approx((200.0, 2e9, 128.0))
    assert len(syncs) >= 2 * 3  # synchronised before every counter read


def test_idle_samples() -> None:
    dev, slept = FakeDevice(), []
    samples = gpu.sample_idle(dev, 2.0, interval=0.5, sleep=slept.append)
    assert samples == [60_000.0] * 4 and slept == [0.5] * 4


def test_the_recorder_keeps_every_patch_and_answers_as_the_twin() -> None:
    config = ModelConfig(patch_size=8, encoding="intensity", channels=[4], strides=[2], kernel_size=3)
    twin = AnnTwin(config)
    rec = gpu.Recorder(twin, 8, 2, "cpu")
    fixed, moving = torch.rand(3, 1, 8, 8, 8), torch.rand(3, 1, 8, 8, 8)
    out = rec.predict(fixed, moving)
    assert out.shape[0] == 3 and len(rec.fixed) == 1 and torch.equal(rec.fixed[0], fixed)
    work = gpu.twin_work(twin, fixed, moving, batch=2)
    work()  # runs on CPU too


def test_fed_readings_make_a_profile_that_loads(tmp_path: Path) -> None:
    dev = FakeDevice()
    readings = {b: gpu.measure(dev.work, dev, idle_w=60.0, macs=10**9, patches=64, repeats=1, min_seconds=1.0,
                               clock=dev.clock) for b in (1, 8)}
    data = measured_profile(name="gpu_measured", device="fake", driver="0", date="today", command="test",
                            workload="w", readings=readings, idle_w=60.0, idle_seconds=2.0)
    path = write_profile(tmp_path / "gpu_measured.yaml", data)
    assert path.is_file()
    assert isinstance(readings[1], Reading)


def test_without_a_gpu_nothing_is_measured_or_written(tmp_path: Path, capsys) -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA GPU")
    except Exception:
        pass
    out = tmp_path / "gpu_measured.yaml"
    assert gpu.main(["--out", str(out)]) == 2
    assert not out.exists()
    assert "nothing measured, nothing written" in capsys.readouterr().err


class SteadyMeter:
    """A counter that grows with the wall clock at a constant 100 W (readings fed in; no device behind it)."""

    name, driver = "fed readings (test)", "none"

    def __init__(self) -> None:
        import time

        self._clock = time.perf_counter
        self._start = self._clock()

    def energy_mj(self) -> float:
        return (self._clock() - self._start) * 100.0 * 1000.0

    def power_mw(self) -> float:
        return 40_000.0


def test_the_whole_measurement_runs_on_cpu_with_fed_readings(tmp_path: Path) -> None:
    """Every step a GPU run takes (register, keep the patches, idle, each batch, the SNN, the profile),
    on CPU at 10 mm (8 patches a pass) with a meter fed by the test: the profile goes to tmp_path only."""
    import json

    from spikereg.hardware import DeviceProfile, load_profile

    out, record = tmp_path / "gpu_measured.yaml", tmp_path / "readings.json"
    args = gpu.build_parser().parse_args(["--spacing", "10", "--batches", "1", "4", "--repeats", "1",
                                          "--min-seconds", "0", "--idle-seconds", "0.2", "--rest-seconds", "0",
                                          "--out", str(out), "--json", str(record)])
    assert gpu.run(args, [], SteadyMeter(), "cpu", lambda: None) == 0
    profile = load_profile(out)
    assert isinstance(profile, DeviceProfile) and profile.measured
    assert profile.idle_power_w.value == pytest.approx(40.0)
    assert profile.power_w.value == pytest.approx(100.0, rel=0.05)  # the fed counter's 100 W
    assert profile.snn_patches_per_s is not None
    data = json.loads(record.read_text())
    assert data["patches"] > 0 and set(data["readings"]) == {"1", "4"}
    assert data["macs"] == data["patches"] * (data["macs"] // data["patches"])


def test_a_long_work_brings_its_own_short_warm_up() -> None:
    dev, warm = FakeDevice(), []
    reading = gpu.measure(dev.work, dev, idle_w=60.0, macs=0, patches=8, repeats=2, min_seconds=100.0,
                          clock=dev.clock, warmup=lambda: warm.append(1))
    assert warm == [1] and dev.works == 2  # once per window, however short min_seconds says it is
    assert reading.seconds == pytest.approx(0.5) and reading.total_j == pytest.approx(100.0)
