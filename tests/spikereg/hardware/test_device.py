"""Device baselines: the energy arithmetic of counter readings, the measured profile, refusals."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spikereg.hardware import PROFILE_DIR, DeviceProfile, ProfileError, load_profile, parse_profile
from spikereg.hardware.device import (
    DeviceError,
    Reading,
    best_batch,
    device_profile_names,
    energy_j,
    idle_power_w,
    measured_profile,
    write_profile,
)


def readings() -> dict[int, Reading]:
    # batch 1: 2,000 J over 10 s (200 W) for 1e12 MACs; batch 32: 600 J over 2 s (300 W) for the same MACs
    return {1: Reading(start_mj=5_000_000, end_mj=7_000_000, seconds=10.0, idle_w=60.0, macs=10**12, patches=100),
            32: Reading(start_mj=0, end_mj=600_000, seconds=2.0, idle_w=60.0, macs=10**12, patches=100)}


def test_energy_from_counter_idle_and_seconds() -> None:
    r = readings()[1]
    assert r.total_j == pytest.approx(2000.0)
    assert r.idle_j == pytest.approx(600.0)  # 60 W x 10 s
    assert r.dynamic_j == pytest.approx(1400.0)
    assert (r.power_w, r.macs_per_s, r.patches_per_s) == pytest.approx((200.0, 1e11, 10.0))
    # a window shorter than the counter's noise: dynamic never below 0
    assert Reading(0, 100, 1.0, 60.0).dynamic_j == 0.0


def test_readings_that_cannot_be_energy_are_refused() -> None:
    with pytest.raises(DeviceError, match="ran backwards"):
        Reading(start_mj=10, end_mj=5, seconds=1.0, idle_w=1.0)
    with pytest.raises(DeviceError, match="more than 0 s"):
        Reading(start_mj=0, end_mj=5, seconds=0.0, idle_w=1.0)
    with pytest.raises(DeviceError, match="no idle power samples"):
        idle_power_w([])


def test_idle_power_and_best_batch() -> None:
    assert idle_power_w([59_000, 61_000]) == pytest.approx(60.0)  # NVML reports mW
    assert best_batch(readings()) == 32  # 600 J against 2,000 J for the same MACs


def measured(tmp_path: Path) -> Path:
    snn = Reading(start_mj=0, end_mj=3_000_000, seconds=20.0, idle_w=60.0, patches=100)
    data = measured_profile(name="gpu_measured", device="NVIDIA Test GPU", driver="999.1", date="2026-12-03",
                            command="python benchmarks/gpu_energy.py", workload="sdnn-2mm twin, 2 mm",
                            readings=readings(), idle_w=60.0, idle_seconds=10, snn=snn)
    return write_profile(tmp_path / "gpu_measured.yaml", data)


def test_a_measured_profile_writes_loads_and_gives_its_energy(tmp_path: Path) -> None:
    profile = load_profile(measured(tmp_path))
    assert isinstance(profile, DeviceProfile) and profile.measured
    assert all(f.kind == "measured" for f in profile.figures().values())
    for figure in profile.figures().values():  # the source is the measurement: command, device, driver, date
        assert "benchmarks/gpu_energy.py" in figure.source and "NVIDIA Test GPU" in figure.source
        assert "driver 999.1" in figure.source and "2026-12-03" in figure.source
    assert profile.best_batch.value == 32
    # at the best batch: 300 W, 5e11 MAC/s: 1e12 MACs take 2 s, 600 J, of which idle 120 J
    assert energy_j(profile, 10**12) == pytest.approx((600.0, 120.0, 2.0))
    assert energy_j(profile, 10**12, batch1=True) == pytest.approx((2000.0, 600.0, 10.0))
    assert profile.snn_power_w.value == pytest.approx(150.0)
    assert not (tmp_path / ".gpu_measured.yaml.tmp").exists()


def test_a_profile_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    data = measured_profile(name="gpu_measured", device="GPU", driver="1", date="d", command="c", workload="w",
                            readings=readings(), idle_w=60.0, idle_seconds=10)
    data["power_w"]["unit"] = "mW"
    with pytest.raises(ProfileError, match="power_w.unit"):
        write_profile(tmp_path / "gpu_measured.yaml", data)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DeviceError, match="batch size 1"):
        measured_profile(name="x", device="GPU", driver="1", date="d", command="c", workload="w",
                         readings={32: readings()[32]}, idle_w=60.0, idle_seconds=10)


def test_a_figure_without_its_source_is_refused(tmp_path: Path) -> None:
    path = measured(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["power_w"]["source"]
    bad = tmp_path / "nosource.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    message = str(info.value)
    assert str(bad) in message and "'power_w.source'" in message and "cite its source" in message
    assert "\n" not in message
    # an optional figure is checked the same way when it is given
    data = yaml.safe_load(path.read_text())
    data["idle_power_w"]["source"] = "  "
    with pytest.raises(ProfileError, match=r"x.yaml: field 'idle_power_w.source'"):
        parse_profile(data, "x.yaml")
    # and so is a neuromorphic profile's schedule figure
    loihi2 = yaml.safe_load((PROFILE_DIR / "loihi2.yaml").read_text())
    del loihi2["time_per_synop_ns"]["source"]
    with pytest.raises(ProfileError, match=r"l2.yaml: missing field 'time_per_synop_ns.source'"):
        parse_profile(loihi2, "l2.yaml")


def test_unknown_kinds_and_the_lower_bound_kind() -> None:
    gpu = load_profile("gpu")
    assert gpu.energy_per_mac_pj.kind == "lower-bound"
    assert gpu.process_node_nm.kind == "specified"


def test_device_profile_names_measured_first(tmp_path: Path) -> None:
    measured(tmp_path)
    (tmp_path / "jetson.yaml").write_text(yaml.safe_dump({"name": "jetson", "category": "device"}))
    (tmp_path / "loihi9.yaml").write_text(yaml.safe_dump({"name": "loihi9", "category": "neuromorphic"}))
    assert device_profile_names(tmp_path) == ("gpu_measured", "jetson")
    assert device_profile_names(tmp_path / "none") == ()
    assert "jetson_orin_nano" in device_profile_names()  # shipped; no measured profile ships yet
    assert not any(name.startswith("gpu_measured") for name in device_profile_names())


def test_the_shipped_jetson_row_is_an_estimate_from_its_data_sheet() -> None:
    jetson = load_profile("jetson_orin_nano")
    assert isinstance(jetson, DeviceProfile) and not jetson.measured
    assert jetson.power_w.kind == "estimated" and "Data Sheet" in jetson.power_w.source.title()
    # 15 W at 6.4e11 MAC/s: 1e12 MACs take 1.5625 s, 23.4375 J, no idle figure
    assert energy_j(jetson, 10**12) == pytest.approx((23.4375, 0.0, 1.5625))
