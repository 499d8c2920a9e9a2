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
