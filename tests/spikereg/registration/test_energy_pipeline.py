"""``run_registration`` puts the input spikes and the energy section into report.json.

Lava is replaced by a stand-in backend with fixed spike counts (the real run is
covered by tests/spikereg/test_cli.py); the model file is conftest.py's
hand-built network, so the expected counts are those of test_energy.py.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from spikereg.config import ModelConfig
from spikereg.data import Volume
from spikereg.hardware import ProfileError
from spikereg.registration import backends, pipeline
from spikereg.registration.register import BackendStats

TWIN = ModelConfig(patch_size=4, encoding="intensity", channels=[4], strides=[2], kernel_size=3)


from spikereg.registration.range_guard import RangeGuard  # noqa: E402


class StandInLava:
    """Per patch: 40 input spikes, 20 + 7 layer spikes over 10 steps; zero displacements."""

    started = 0

    def __init__(self, model_path, backend="sim", precision="fixed", range_stop=True) -> None:
        StandInLava.started += 1
        self.model = model_path  # the file as open_backend read it (spikereg.netx_file.NetxFile)
        self.guard = RangeGuard(proven=True, worst_case=[], limit=None)
        self.name, self.patch_size, self.reduction = backend, 4, 2
        self.codec = SimpleNamespace(window=8)
        self.stats = BackendStats(layer_neurons=[32, 3])

    def __enter__(self) -> "StandInLava":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def reset(self) -> None:
        pass

    def predict(self, fixed, moving, progress=None) -> np.ndarray:
        n = len(fixed)
        self.stats.input_spikes = getattr(self.stats, "input_spikes", 0) + 40 * n
        self.stats.add(np.array([20, 7]) * n, 10 * n, n, 0.0)
        return np.zeros((n, 3, 2, 2, 2), np.float32)


@pytest.fixture
def model(tmp_path: Path, net_writer) -> Path:
    return net_writer(tmp_path / "two.net", {"model": asdict(TWIN)})


def _volume(tmp_path: Path, name: str, seed: int) -> Volume:
    return Volume(np.random.default_rng(seed).random((4, 4, 4)), np.eye(4), tmp_path / name)


def test_report_json_has_input_spikes_and_energy(tmp_path: Path, model: Path, monkeypatch) -> None:
    monkeypatch.setattr(backends, "LavaBackend", StandInLava)
    out = tmp_path / "run"
    pipeline.run_registration(_volume(tmp_path, "f.nii.gz", 0), _volume(tmp_path, "m.nii.gz", 1), model,
                              {"model": {"patch_size": 4, "max_displacement": 3.0}, "reduction": 2}, out,
                              iterations=2, patch_stride=4)
    report = json.loads((out / "report.json").read_text())
    # one 4^3 patch per iteration, two iterations
    assert report["input_spikes"] == 80 and report["time_steps"] == 20
    counts = report["energy"]["counts"]
    assert (counts["patches"], counts["synops"], counts["neuron_updates"]) == (2, 2 * 560, 35 * 20)
    assert set(report["energy"]["neuromorphic"]) == {"loihi2", "loihi2_pilotnet_step", "loihi2_sequential", "loihi1"}
    assert set(report["energy"]["neuromorphic"]["loihi2"]["snn_over_ann"]) == {"jetson_orin_nano", "gpu", "cpu"}


def test_a_profile_that_cannot_load_stops_the_run_before_it_starts(tmp_path: Path, model: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(backends, "LavaBackend", StandInLava)
    monkeypatch.setattr(pipeline, "DEFAULT_PROFILES", ("loihi2", "nochip"))
    StandInLava.started = 0
    out = tmp_path / "run"
    with pytest.raises(ProfileError, match=r"unknown hardware profile 'nochip'"):
        pipeline.run_registration(_volume(tmp_path, "f.nii.gz", 0), _volume(tmp_path, "m.nii.gz", 1), model,
                                  {"model": {"patch_size": 4, "max_displacement": 3.0}, "reduction": 2}, out,
                                  iterations=1, patch_stride=4)
    assert StandInLava.started == 0 and not out.exists()
