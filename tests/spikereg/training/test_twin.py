"""The ANN twin kept in checkpoints; train.steps 0 (the SNN is the converted twin, not fine-tuned)."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spikereg.cli import app
from spikereg.config import ConfigError, load_config, save_config
from spikereg.training import trainer
from spikereg.training.trainer import (PatchSampler, load_checkpoint, load_twin, retrain_twin, synthetic_pairs,
                                       train)

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def held_out_patches(config, count=8):
    pairs = synthetic_pairs(config, 2, seed=99)
    return PatchSampler(pairs, config.model.patch_size, 2, np.random.default_rng(5)).sample(count)


def test_steps_0_checkpoints_hold_the_converted_twin_and_export(tiny_config, tmp_path, monkeypatch):
    trained = []

    def keep_twin(*args, **kwargs):  # the real pre-training; only remembers the twin it returns
        trained.append(real_pretrain(*args, **kwargs))
        return trained[-1]

    real_pretrain = trainer.pretrain_twin
    monkeypatch.setattr(trainer, "pretrain_twin", keep_twin)
    save_config(tiny_config, tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(out),
                                 "--set", "train.steps=0", "--set", "train.tensorboard=false"])
    assert result.exit_code == 0, result.output
    assert len(trained) == 1
    twin = trained[0].eval()

    with (out / "train_log.csv").open() as handle:
        log = {row["step"]: row for row in csv.DictReader(handle)}
    assert list(log) == ["ann", "0"]
    best, last = (torch.load(out / "checkpoints" / name, weights_only=False) for name in ("best.pt", "last.pt"))
    for state in (best, last):
        assert state["step"] == 0
        assert f"{state['val_error_voxels']:.4f}" == log["0"]["val_error_voxels"]
        assert f"{state['twin_val_error_voxels']:.4f}" == log["ann"]["val_error_voxels"]
    assert "training_state" in last  # --resume finds a finished run, not a broken one

    # The stored twin is the trained one: same predictions; the SNN's kernels are the twin's.
    stored = load_twin(out / "checkpoints" / "best.pt")
    assert stored.val_error_voxels == best["twin_val_error_voxels"]
    patches = held_out_patches(tiny_config)
    with torch.no_grad():
        assert torch.equal(stored.predict(patches.fixed, patches.moving), twin.predict(patches.fixed, patches.moving))
    net, _ = load_checkpoint(out / "checkpoints" / "best.pt")
    snn = net.state_dict()
    for name, kernel in twin.snn_state().items():
        assert torch.equal(snn[name], kernel), name
    # Checkpoints written before twins were stored get the same twin back by replaying the run's start.
    replayed = retrain_twin(load_config(tmp_path / "tiny.yaml", ["train.steps=0"]))
    assert all(torch.equal(a, b) for a, b in zip(replayed.kernels, stored.kernels))

    model = tmp_path / "converted.net"
    result = runner.invoke(app, ["export", str(out / "checkpoints" / "best.pt"), "--to", "netx", "--out", str(model),
                                 "--verify-patches", "1", "--profile", "none"])
    assert result.exit_code == 0, result.output
    assert model.is_file()


def test_checkpoints_without_a_twin_load_as_before(tiny_config, tmp_path):
    from spikereg.pretrained import DEFAULT_CHECKPOINT

    assert load_twin(DEFAULT_CHECKPOINT) is None  # the shipped model predates stored twins
    net, config = load_checkpoint(DEFAULT_CHECKPOINT)
    assert config.train.ann_steps == 2000 and net.config == config.model
    with pytest.raises(ValueError, match="not a SpikeReg checkpoint"):
        load_twin(Path(__file__))


def test_steps_0_needs_an_ann_twin(tmp_path):
    with pytest.raises(ConfigError, match=r"'train.steps' must be positive, or 0 with train.ann_steps > 0"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.steps=0", "train.ann_steps=0"])
    with pytest.raises(ConfigError, match="'train.steps' must be positive"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.steps=-1"])
    assert load_config(ROOT / "configs" / "demo.yaml", ["train.steps=0"]).train.steps == 0  # demo has a twin
