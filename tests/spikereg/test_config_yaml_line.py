"""A malformed YAML config names the line (and column) where yaml found the problem (issue 14)."""
import pytest

from spikereg.config import ConfigError, load_config


@pytest.mark.parametrize("text, where", [
    ("model:\n  time_steps: 12\n  channels: [8, 16\ntrain:\n  steps: 3\n", "line 4 column 6"),
    ("train:\n  steps: 3\n   batch_size: 2\n", "line 3 column 14"),
    ("model:\n\ttime_steps: 12\n", "line 2 column 1"),
])
def test_malformed_yaml_names_the_line(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^config {path}: not valid YAML, {where} \(") as error:
        load_config(path)
    assert "\n" not in str(error.value)


def test_malformed_yaml_names_the_line_on_the_command_line(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  channels: [8, 16\n")
    line = cli.one_error_line("train", "--config", path, "--out", tmp_path / "run")
    assert f"config {path}: not valid YAML, line 3" in line
    assert not (tmp_path / "run").exists()
