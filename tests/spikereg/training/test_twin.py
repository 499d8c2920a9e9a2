"""The ANN twin kept in checkpoints; train.steps 0 (the SNN is the converted twin, not fine-tuned)."""
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spikereg.cli import app
from spikereg.config import ConfigError, load_config, save_config
from spikereg.data.sampling import PatchSampler, synthetic_pairs
from spikereg.training import trainer
from spikereg.training.trainer import load_checkpoint, load_twin, retrain_twin, train

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
    from spikereg.pretrained import DEMO_CHECKPOINT

    assert load_twin(DEMO_CHECKPOINT) is None  # the shipped model predates stored twins
    net, config = load_checkpoint(DEMO_CHECKPOINT)
    assert config.train.ann_steps == 2000 and net.config == config.model
    with pytest.raises(ValueError, match="not a SpikeReg checkpoint"):
        load_twin(Path(__file__))


def test_steps_0_needs_an_ann_twin(tmp_path):
    with pytest.raises(ConfigError, match=r"'train.steps' must be positive, or 0 with train.ann_steps > 0"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.steps=0", "train.ann_steps=0"])
    with pytest.raises(ConfigError, match="'train.steps' must be positive"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.steps=-1"])
    assert load_config(ROOT / "configs" / "demo.yaml", ["train.steps=0"]).train.steps == 0  # demo has a twin


def test_sdnn_conversion_balances_the_weights_and_lava_agrees(tiny_config, tmp_path, monkeypatch):
    """An SDNN starts from its twin's kernels rescaled to the 8-bit range; the readout gain decodes them back."""
    from dataclasses import replace

    from lava_export.netx import export_netx

    trained = []
    real_pretrain = trainer.pretrain_twin
    monkeypatch.setattr(trainer, "pretrain_twin", lambda *a, **k: trained.append(real_pretrain(*a, **k)) or trained[-1])
    config = replace(tiny_config, model=replace(
        tiny_config.model, spike_code="delta", spike_exp=0,  # the chip's: its range leaves the weights their levels
        neuron=replace(tiny_config.model.neuron, type="sdnn", threshold=1 / 64)),
        train=replace(tiny_config.train, steps=0, tensorboard=False))
    out = tmp_path / "sdnn"
    best = train(config, out)
    net, saved = load_checkpoint(best)
    twin = trained[0].eval()
    pairs = synthetic_pairs(config, config.data.pairs + 2, config.train.seed)[:config.data.pairs]
    calibration = PatchSampler(pairs, config.model.patch_size, 2, None).sample(
        trainer.CALIBRATION_PATCHES, rng=np.random.default_rng(config.train.seed + 2))
    kernels, gain = twin.balanced_kernels(calibration.fixed, calibration.moving, spike_exp=0)
    assert saved.model.readout_gain == pytest.approx(gain) and gain > 1
    assert load_config(out / "config.yaml").model.readout_gain == pytest.approx(gain)  # the resolved config too
    snn = net.state_dict()
    for name, kernel in twin.snn_state(kernels).items():
        assert torch.equal(snn[name], kernel), name
    patches = held_out_patches(tiny_config)
    with torch.no_grad():
        ann, spiking = twin.predict(patches.fixed, patches.moving), net.predict(patches.fixed, patches.moving)
    # Within a quarter of the field's spread: 8-bit weights and sigma-delta thresholds apart, the same network.
    assert float((ann - spiking).abs().mean()) < 0.25 * float(ann.abs().mean())
    result = export_netx(net, tmp_path / "sdnn.net", spacing=config.data.spacing, verify_patches=1, profile=None,
                         range_mode="guarded")
    assert result.passed


def test_twin_from_starts_the_snn_from_a_stored_twin_without_pretraining(tiny_config, tiny_checkpoint, tmp_path,
                                                                         monkeypatch):
    from dataclasses import replace

    def no_pretraining(*args, **kwargs):
        raise AssertionError("train.twin_from must not pre-train a twin")

    monkeypatch.setattr(trainer, "pretrain_twin", no_pretraining)
    stored = load_twin(tiny_checkpoint)
    source = tmp_path / "earlier_run.pt"
    shutil.copy(tiny_checkpoint, source)
    config = replace(tiny_config, train=replace(tiny_config.train, twin_from=str(source), ann_steps=0,
                                                steps=0, tensorboard=False))
    best = train(config, tmp_path / "reused")
    source.unlink()  # the checkpoint records where its twin came from; it must load without that file
    net, _ = load_checkpoint(best)
    for name, kernel in stored.snn_state().items():  # CUBA: the kernels as they are
        assert torch.equal(net.state_dict()[name], kernel), name
    again = load_twin(best)
    assert all(torch.equal(a, b) for a, b in zip(again.kernels, stored.kernels))
    # same twin, same held-out patches
    assert again.val_error_voxels == pytest.approx(stored.val_error_voxels, abs=1e-4)

    other = replace(config, model=replace(config.model, channels=[6]))
    with pytest.raises(ValueError,
                       match=r"train.twin_from .*: its twin has another topology \(model.channels \[4\] vs \[6\]\)"):
        train(replace(other, train=replace(other.train, twin_from=str(tiny_checkpoint))), tmp_path / "other")
    with pytest.raises(ConfigError, match=r"'train.twin_from' .*missing.pt: file not found"):
        load_config(ROOT / "configs" / "demo.yaml", [f"train.twin_from={tmp_path / 'missing.pt'}"])
    with pytest.raises(ValueError, match="holds no ANN twin"):
        train(replace(config, train=replace(config.train, twin_from=str(ROOT / "spikereg/pretrained/demo.pt"))),
              tmp_path / "none")


def test_twin_init_trains_the_stored_twin_further_and_is_checked(tiny_config, tiny_checkpoint, tmp_path):
    from dataclasses import replace

    stored = load_twin(tiny_checkpoint)
    pairs = synthetic_pairs(tiny_config, 2, seed=7)
    sampler = PatchSampler(pairs, tiny_config.model.patch_size, 2, np.random.default_rng(3))
    # one step at a vanishing rate: the twin is (all but) the stored one, not a fresh random draw
    train_cfg = replace(tiny_config.train, ann_steps=1, ann_learning_rate=1e-9, twin_init=str(tiny_checkpoint))
    continued = trainer.pretrain_twin(replace(tiny_config, train=train_cfg), sampler)
    for mine, theirs in zip(continued.kernels, stored.kernels):
        assert torch.allclose(mine.detach(), theirs, atol=1e-6)
    fresh = trainer.pretrain_twin(replace(tiny_config, train=replace(train_cfg, twin_init="")), sampler)
    assert not all(torch.allclose(a.detach(), b, atol=1e-3) for a, b in zip(fresh.kernels, stored.kernels))
    # trained for real, it moves away from the stored twin
    moved = trainer.pretrain_twin(replace(tiny_config, train=replace(train_cfg, ann_steps=3, ann_learning_rate=1e-2)),
                                  sampler)
    assert not all(torch.equal(a.detach(), b) for a, b in zip(moved.kernels, stored.kernels))

    with pytest.raises(ConfigError, match=r"'train.twin_init' .*missing.pt: file not found"):
        load_config(ROOT / "configs" / "demo.yaml", [f"train.twin_init={tmp_path / 'missing.pt'}"])
    with pytest.raises(ConfigError, match=r"'train.twin_init' trains the stored twin further: it needs "
                                          r"train.ann_steps > 0, got 0"):
        load_config(ROOT / "configs" / "demo.yaml", [f"train.twin_init={tiny_checkpoint}", "train.ann_steps=0"])
    with pytest.raises(ConfigError, match="exclude each other"):
        load_config(ROOT / "configs" / "demo.yaml", [f"train.twin_init={tiny_checkpoint}", "train.ann_steps=5",
                                                     f"train.twin_from={tiny_checkpoint}"])
    other = replace(tiny_config, model=replace(tiny_config.model, channels=[6]),
                    train=replace(train_cfg, tensorboard=False))
    with pytest.raises(ValueError, match=r"train.twin_init .*: its twin has another topology"):
        train(other, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValueError, match=r"train.twin_init .*holds no ANN twin"):
        trainer.pretrain_twin(replace(tiny_config, train=replace(
            train_cfg, twin_init=str(ROOT / "spikereg/pretrained/demo.pt"))), sampler)


def test_a_stored_twin_can_be_named_as_a_shipped_model(tmp_path, monkeypatch):
    """configs/sdnn_2mm_varied.yaml starts from `twin_init: sdnn-2mm`: the name resolves to the packaged checkpoint
    from any working folder (a wheel has no spikereg/pretrained/ beside the user's files)."""
    from spikereg.pretrained import SHIPPED

    monkeypatch.chdir(tmp_path)
    config = load_config("sdnn_2mm_varied")
    assert config.train.twin_init == "sdnn-2mm"
    twin = trainer.twin_for(config, "twin_init")
    stored = load_twin(SHIPPED["sdnn-2mm"].checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(twin.kernels, stored.kernels))
    with pytest.raises(ConfigError, match=r"'train.twin_init' sdnn-3mm: file not found \(nor a shipped model's name"):
        load_config("sdnn_2mm_varied", ["train.twin_init=sdnn-3mm"])


def test_the_default_model_was_trained_by_its_shipped_config():
    """`sdnn-2mm-mixed`'s checkpoint holds the recipe configs/sdnn_2mm_mixed.yaml says (README reproduces it with
    train.twin_from), so the config file and the shipped model cannot drift apart."""
    from dataclasses import asdict

    from spikereg.pretrained import DEFAULT_CHECKPOINT, DEFAULT_NAME

    assert DEFAULT_NAME == "sdnn-2mm-mixed"
    _, shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    config = load_config("sdnn_2mm_mixed")
    assert asdict(shipped.data) == asdict(config.data)
    assert shipped.data.plain_fraction == 0.5 and shipped.data.synth_fraction > 0
    assert shipped.train.finetune_pairs == "template" and shipped.train.steps == config.train.steps
    skip = {"readout_gain"}  # written by conversion
    assert {k: v for k, v in asdict(shipped.model).items() if k not in skip} == {
        k: v for k, v in asdict(config.model).items() if k not in skip}
    assert asdict(shipped.run) == asdict(config.run)


def test_finetune_pairs_template_trains_the_twin_on_the_data_keys_and_the_snn_on_the_template_recipe(
        tiny_config, tmp_path, monkeypatch):
    from dataclasses import replace

    from spikereg.data import warp
    from spikereg.data.sampling import template_recipe

    def exact(pairs: list) -> list:  # without noise a template-recipe pair is fixed = warp(moving, ddf)
        return [np.allclose(warp(p.moving, p.ddf), p.fixed, atol=1e-5) for p in pairs]

    varied = replace(tiny_config.data, noise_std=0.0, gamma_std=0.3, bias_field=0.3)
    config = replace(tiny_config, data=varied, train=replace(tiny_config.train, finetune_pairs="template",
                                                             tensorboard=False))
    streams = []
    real_pretrain = trainer.pretrain_twin
    monkeypatch.setattr(trainer, "pretrain_twin", lambda c, sampler, *a, **k: streams.append(sampler) or
                        real_pretrain(c, sampler, *a, **k))
    first = train(config, tmp_path / "first")
    assert not any(exact(streams[0].pairs))  # the twin: the data keys' variety

    def weights(out: str, data, finetune_pairs: str) -> dict:
        again = replace(config, data=data, train=replace(config.train, twin_from=str(first), ann_steps=0,
                                                         finetune_pairs=finetune_pairs))
        return load_checkpoint(train(again, tmp_path / out))[0].state_dict()

    # From the same twin, fine-tuning on the template recipe is fine-tuning with the data keys set to it...
    ours, theirs = weights("ours", varied, "template"), weights("theirs", template_recipe(varied), "data")
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    # ... and not fine-tuning on the data keys themselves.
    other = weights("other", varied, "data")
    assert not all(torch.equal(ours[name], other[name]) for name in ours)
    with pytest.raises(ConfigError, match="'train.finetune_pairs' must be one of data, template, got 'plain'"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.finetune_pairs=plain"])
