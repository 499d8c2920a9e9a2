"""YAML config loading, overrides and validation."""
from pathlib import Path

import pytest

from spikereg.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    for path in CONFIGS.glob("*.yaml"):
        load_config(path)


def test_overrides_apply_with_types(tmp_path):
    config = load_config(write(tmp_path, "train:\n  steps: 5\n"), ["train.learning_rate=0.1", "model.channels=[4, 4]"])
    assert config.train.steps == 5 and config.train.learning_rate == 0.1 and config.model.channels == [4, 4]


@pytest.mark.parametrize("text,match", [
    ("train:\n  stepz: 5\n", "unknown key 'train.stepz'"),
    ("model:\n  time_steps: twelve\n", "'model.time_steps' must be int"),
    ("model:\n  channels: 8\n", "'model.channels' must be a list"),
    ("model:\n  patch_size: 18\n", "multiple of the product of model.strides"),
    ("train:\n  steps: 0\n", "'train.steps' must be positive"),
    ("train: [1, 2\n", "not valid YAML"),
])
def test_bad_configs_name_file_and_key(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.steps"])


def test_configs_merge_in_order_key_by_key(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  steps: 5\n  batch_size: 4\n  loss:\n    lncc: 1.0\nmodel:\n  channels: [4, 8]\n")
    override = tmp_path / "override.yaml"
    override.write_text("train:\n  steps: 7\n  loss:\n    bending: 0.5\nmodel:\n  channels: [2]\n  strides: [2]\n")
    config = load_config([base, override], ["train.loss.lncc=2"])
    assert config.train.steps == 7 and config.train.batch_size == 4  # later wins, the rest is kept
    assert config.train.loss.lncc == 2.0 and config.train.loss.bending == 0.5 and config.train.loss.displacement == 1.0
    assert config.model.channels == [2]  # lists are replaced, not merged
    override.write_text("train:\n  optimiser: sgd\n")
    with pytest.raises(ConfigError, match="unknown key 'train.optimiser'") as error:
        load_config([base, override])
    assert str(override) in str(error.value) and str(base) not in str(error.value)  # names the file at fault


def test_bad_override_names_the_override():
    with pytest.raises(ConfigError, match=r"override 'train.loss.lnc=1': unknown key 'train.loss.lnc'"):
        load_config(None, ["train.loss.lnc=1"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, ["model.channels=[4"])


@pytest.mark.parametrize("override,match", [
    ("train.optimizer=adamax", "'train.optimizer' must be one of adam, adamw, sgd"),
    ("train.scheduler=linear", "'train.scheduler' must be one of cosine, step, none"),
    ("train.device=tpu", "'train.device' must be one of cpu, cuda, auto"),
    ("train.loss.lncc=-1", "'train.loss.lncc' must be >= 0"),
    ("train.loss.displacement=0", "every train.loss weight is 0"),
    ("train.target_spike_rate=1.5", "'train.target_spike_rate' must be in"),
    ("train.lncc_kernel_size=4", "'train.lncc_kernel_size' must be odd"),
    ("train.mi_bins=1", "'train.mi_bins' must be at least 2"),
    ("train.learning_rate=0", "'train.learning_rate' must be positive"),
    ("train.loss={lncc: one}", "'train.loss.lncc' must be float"),
    ("data.deformation=affine", "'data.deformation' must be one of bspline, diffeomorphic"),
    ("data.bias_field=-0.1", "'data.bias_field' must be >= 0"),
])
def test_new_train_keys_are_validated(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_defaults_of_new_keys_are_the_shipped_models_training():
    """The shipped checkpoint's config (written before these keys existed) loads as supervised Adam + cosine."""
    import torch

    from spikereg.config import config_from_dict

    state = torch.load(CONFIGS.parent / "spikereg" / "pretrained" / "demo.pt", map_location="cpu", weights_only=False)
    assert "loss" not in state["config"]["train"]
    train = config_from_dict(state["config"]).train
    assert (train.optimizer, train.scheduler, train.weight_decay, train.device) == ("adam", "cosine", 0.0, "cpu")
    assert {k: v for k, v in vars(train.loss).items() if v} == {"displacement": 1.0}


def test_config_knows_the_generators_deformations():
    from spikereg.config import DEFORMATIONS
    from spikereg.data.synth import DEFORMATIONS as GENERATED

    assert DEFORMATIONS == GENERATED
