"""Shared fixtures: the command line run in process, a tiny network trained for a few SLAYER steps, its netx export."""
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from spikereg.config import load_config
from spikereg.hardware import PROFILE_DIR

# Plain progress lines (where stderr is not a terminal, as under pytest) would come between a
# command's output and its one error line on a slow machine: off for the suite and the commands
# it starts; tests/spikereg/test_cli.py turns them on where it tests them.
os.environ["SPIKEREG_PROGRESS_SECONDS"] = "0"

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "model.patch_size=8", "model.channels=[4]", "model.strides=[2]", "model.time_steps=5",
    "data.spacing=8.0", "data.pairs=2", "train.steps=3", "train.batch_size=2",
    "train.checkpoint_every=3", "train.ann_steps=3", "run.patch_stride=4",
]


class CommandLine:
    """``spikereg`` run in this process through typer's CliRunner; arguments may be paths or numbers."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def invoke(self, *args):
        """The ``click.testing.Result`` of ``spikereg ARGS...``."""
        from spikereg.cli import app  # imported on first use: most test files never run the CLI

        return self.runner.invoke(app, [str(a) for a in args])

    def one_error_line(self, *args) -> str:
        """``spikereg ARGS...`` on bad input: exit code 1 and exactly one ``error:`` line, which is returned."""
        result = self.invoke(*args)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
        return lines[0]


@pytest.fixture(scope="session")
def cli() -> CommandLine:
    """The command line, for tests of what users type: ``cli.invoke(...)``, ``cli.one_error_line(...)``."""
    return CommandLine()


@pytest.fixture(scope="session")
def tiny_config():
    return load_config(ROOT / "configs" / "demo.yaml", TINY)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_config, tmp_path_factory):
    from spikereg.training.trainer import train

    return train(tiny_config, tmp_path_factory.mktemp("tiny_train"))


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    """(net, path) of the tiny network exported (and verified) to netx."""
    from lava_export.netx import export_netx
    from spikereg.training.trainer import load_checkpoint

    net, config = load_checkpoint(tiny_checkpoint)
    path = tmp_path_factory.mktemp("tiny_export") / "tiny.net"
    export_netx(net, path, spacing=config.data.spacing, verify_patches=2)
    return net, path


def profile_copy(tmp_path: Path, base: str, name: str, values: dict[str, Any],
                 kinds: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A shipped profile renamed, some figure values (and kinds) changed, ``drop`` left out, written to tmp_path."""
    data = yaml.safe_load((PROFILE_DIR / f"{base}.yaml").read_text())
    data["name"] = name
    for key in drop:
        data.pop(key, None)
    for key, value in values.items():
        data[key]["value"] = value
    for key, kind in (kinds or {}).items():
        data[key]["kind"] = kind
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def profile_writer():
    """:func:`profile_copy`, for tests that make their own profiles."""
    return profile_copy
