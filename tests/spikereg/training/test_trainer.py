"""Training: resume equals an uninterrupted run; logs, checkpoints; the train command's bad inputs."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from spikereg.config import load_config, save_config
from spikereg.training.trainer import train

ROOT = Path(__file__).resolve().parents[3]

# The shared tiny network, with image, regulariser and spike-rate terms, AdamW, the cosine schedule
# and uneven checkpoints, so that resuming has optimiser, schedule and random state to get right.
RESUME = ["train.steps=5", "train.checkpoint_every=2", "train.ann_steps=2", "train.loss.lncc=0.5",
          "train.loss.bending=0.1", "train.loss.spike_rate=1.0", "train.optimizer=adamw",
          "train.weight_decay=0.01"]


def log_rows(folder: Path) -> list[dict]:
    with (folder / "train_log.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def scalar_steps(folder: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_resumed_run_equals_an_uninterrupted_one(cli, tiny_config, tmp_path):
    save_config(tiny_config, tmp_path / "tiny.yaml")
    config = load_config(tmp_path / "tiny.yaml", RESUME)
    whole = tmp_path / "whole"
    train(config, whole)

    broken = tmp_path / "broken"

    def interrupt(step, total, row):
        if step == 3:  # after step 3, whose checkpoint (every 2 steps) was never written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, broken, progress=interrupt)
    assert torch.load(broken / "checkpoints" / "last.pt", weights_only=False)["step"] == 2
    result = cli.invoke("train", "--resume", broken)  # the CLI path: config from the run's own checkpoint
    assert result.exit_code == 0, result.output

    for name in ("last.pt", "best.pt"):
        a = torch.load(whole / "checkpoints" / name, weights_only=False)
        b = torch.load(broken / "checkpoints" / name, weights_only=False)
        assert a["step"] == b["step"] and a["val_error_voxels"] == b["val_error_voxels"]
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), f"{name}: {key} differs after resume"
        # the ANN twin, trained before step 1, is carried over by the resumed run's checkpoints
        assert a["twin_val_error_voxels"] == b["twin_val_error_voxels"]
        assert a["twin_state"].keys() == b["twin_state"].keys()
        assert all(torch.equal(value, b["twin_state"][key]) for key, value in a["twin_state"].items())
    opt_a = torch.load(whole / "checkpoints" / "last.pt", weights_only=False)["training_state"]["optimizer"]
    opt_b = torch.load(broken / "checkpoints" / "last.pt", weights_only=False)["training_state"]["optimizer"]
    for index, state in opt_a["state"].items():
        assert all(torch.equal(state[k], opt_b["state"][index][k]) for k in state)
    assert log_rows(whole) == log_rows(broken)
    assert [row["step"] for row in log_rows(broken)] == ["ann", "0", "2", "4", "5"]
    assert {"loss_lncc", "loss_bending", "loss_spike_rate", "learning_rate"} <= set(log_rows(broken)[0])
    # TensorBoard: every step once, the interrupted attempt's step 3 replaced by the resumed one.
    assert scalar_steps(whole, "train/loss") == scalar_steps(broken, "train/loss") == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="config differs"):
        train(load_config(tmp_path / "tiny.yaml", RESUME + ["train.learning_rate=0.5"]), broken, resume=True)


def test_train_bad_inputs_give_one_line_and_no_outputs(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 5\n")
    out = tmp_path / "out"
    line = cli.one_error_line("train", "--config", ROOT / "configs" / "demo.yaml", "--config", bad,
                              "--out", out)
    assert "unknown key 'train.stepz'" in line and str(bad) in line
    assert not out.exists()
    assert "train.optimizer" in cli.one_error_line("train", "--config", ROOT / "configs" / "demo.yaml",
                                                   "--set", "train.optimizer=adagrad", "--out", out)
    assert "--config" in cli.one_error_line("train", "--out", out)
    assert "no checkpoints/last.pt" in cli.one_error_line("train", "--resume", tmp_path)
    assert "keeps its own folder and config" in cli.one_error_line("train", "--resume", tmp_path,
                                                                   "--set", "train.steps=9")
    assert not out.exists()


def test_training_pairs_follow_the_data_keys(tiny_config):
    from dataclasses import replace

    from spikereg.data.sampling import synthetic_pairs

    plain = synthetic_pairs(tiny_config, 1, seed=4)[0]
    labelled = synthetic_pairs(tiny_config, 1, seed=4, labels=True)[0]
    assert (plain.fixed == labelled.fixed).all() and plain.fixed_labels is None
    assert set(np.unique(labelled.fixed_labels)) == {0.0, 1.0, 2.0}  # tissue labels: background, grey, white
    for change in ({"deformation": "diffeomorphic"}, {"bias_field": 0.3}, {"gamma_std": 0.2}):
        config = replace(tiny_config, data=replace(tiny_config.data, **change))
        assert not np.allclose(synthetic_pairs(config, 1, seed=4)[0].fixed, plain.fixed), change


def test_plain_fraction_keeps_that_share_of_pairs_on_the_template_recipe(tiny_config):
    from dataclasses import replace

    from spikereg.data import warp
    from spikereg.data.sampling import synthetic_pairs

    def exact(plain_fraction: float) -> list:
        # Without noise a template-recipe pair is fixed = warp(moving, ddf) exactly; a pair with its own
        # contrast, bias or synthesized scans is not.
        data = replace(tiny_config.data, noise_std=0.0, gamma_std=0.3, bias_field=0.3, synth_fraction=0.5,
                       plain_fraction=plain_fraction)
        pairs = synthetic_pairs(replace(tiny_config, data=data), 12, seed=5)
        return [np.allclose(warp(p.moving, p.ddf), p.fixed, atol=1e-5) for p in pairs]

    assert all(exact(1.0))
    assert not any(exact(0.0))
    assert 0 < sum(exact(0.5)) < 12

    def largest(plain_fraction: float) -> float:  # a template-recipe pair has the fine field alone
        data = replace(tiny_config.data, coarse_displacement=3 * tiny_config.data.max_displacement,
                       coarse_control_spacing=4, affine_shift=2.0, plain_fraction=plain_fraction)
        pairs = synthetic_pairs(replace(tiny_config, data=data), 6, seed=5)
        return max(float(np.linalg.norm(p.ddf, axis=0).max()) for p in pairs)

    assert largest(1.0) <= np.sqrt(3) * tiny_config.data.max_displacement < largest(0.0)


def test_ctrl_c_stops_training_with_a_resume_hint(tiny_config, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    save_config(tiny_config, tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "spikereg", "train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(out),
         "--set", "train.steps=100000", "--set", "train.checkpoint_every=1", "--set", "train.tensorboard=false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.pt").exists():
            assert process.poll() is None and time.monotonic() < deadline, "training never wrote last.pt"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert f"continue with: spikereg train --resume {out}" in output and "interrupted" in output
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] >= 1
