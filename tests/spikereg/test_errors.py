"""One error base: every error class of spikereg and lava_export is a SpikeRegError, and the CLI prints it as one line.

The classes are found by importing every module of both packages, so a new
error class that forgets the base fails here.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import typer

import lava_export
import spikereg
from spikereg.errors import SpikeRegError


def error_classes() -> dict[str, type]:
    """``module.Name`` -> class, for every Exception subclass defined in spikereg or lava_export."""
    found = {}
    for package in (spikereg, lava_export):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__":  # running it would start the command line
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module.__name__
                        and obj is not SpikeRegError):
                    found[f"{module.__name__}.{name}"] = obj
    return found


ERRORS = error_classes()


def test_the_walk_finds_the_known_errors() -> None:
    names = {cls.__name__ for cls in ERRORS.values()}
    assert {"ConfigError", "VolumeError", "ModelFileError", "VerificationError", "BackendUnavailable",
            "ReportError", "ProfileError", "MappingError", "RangeError", "RangeOverflowError",
            "RegistrationFailedError", "OptionError", "CohortError", "CountError", "MemoryBudgetError"} <= names


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_error_class_is_a_spikereg_error(name: str) -> None:
    assert issubclass(ERRORS[name], SpikeRegError), f"{name} does not derive from spikereg.errors.SpikeRegError"


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_the_cli_turns_every_error_into_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from spikereg.cli import _cli_errors

    with pytest.raises(typer.Exit) as raised:
        with _cli_errors():
            raise ERRORS[name]("first line names the file\nsecond line is not printed")
    assert raised.value.exit_code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: first line names the file"]


def test_the_old_bases_still_catch_them() -> None:
    from lava_export.verify import VerificationError
    from spikereg.config import ConfigError

    assert issubclass(ConfigError, ValueError) and issubclass(VerificationError, RuntimeError)


# -- one real command per family --------------------------------------------------------


def test_one_line_per_family_from_real_commands(cli, tmp_path) -> None:
    text = tmp_path / "not_netx.net"
    text.write_text("not an HDF5 file")
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("model:\n  no_such_key: 1\n")
    image = tmp_path / "image.nii.gz"
    image.write_text("not a NIfTI file")

    cases = [  # (arguments, what the line must say)
        (["map", text], "not an HDF5 file"),  # MappingError
        (["map", text, "--profile", "nosuch"], "unknown hardware profile 'nosuch'"),  # ProfileError
        (["train", "--config", bad_config, "--out", tmp_path / "train"], "no_such_key"),  # ConfigError
        (["report", tmp_path], "report.json"),  # ReportError
        (["warp", "--image", image, "--ddf", image, "--out", tmp_path / "w.nii.gz"], "image.nii.gz"),  # VolumeError
        (["train", "--out", tmp_path / "train"], "train needs --config FILE"),  # a plain ValueError
    ]
    for args, says in cases:
        line = cli.one_error_line(*args)
        assert says in line, (args, line)
