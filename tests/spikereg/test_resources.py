"""Shipped configs and hardware profiles resolve by name, from the checkout and from an installed package's layout."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spikereg import resources
from spikereg.config import CONFIG_DIR, ConfigError, load_config, resolve_config, shipped_configs
from spikereg.errors import SpikeRegError
from spikereg.hardware import PROFILE_DIR, available_profiles

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_uses_the_top_level_folders():
    assert CONFIG_DIR == ROOT / "configs" and PROFILE_DIR == ROOT / "hardware_profiles"
    assert shipped_configs() == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    assert "demo" in shipped_configs() and "loihi2" in available_profiles()


def test_a_named_config_is_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # from any folder
    assert resolve_config("demo") == CONFIG_DIR / "demo.yaml"
    assert load_config("demo") == load_config(ROOT / "configs" / "demo.yaml")
    assert load_config(["demo"], ["train.steps=7"]).train.steps == 7


def test_an_existing_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("demo").write_text("train:\n  steps: 5\n")
    assert resolve_config("demo") == Path("demo")
    assert load_config("demo").train.steps == 5
    Path("demo").unlink()
    Path("demo").mkdir()  # a folder is no config: the name still means the shipped one
    assert resolve_config("demo") == CONFIG_DIR / "demo.yaml"


def test_an_unknown_name_lists_the_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
    assert {"accurate", "demo", "sdnn_2mm"} <= set(names)
    with pytest.raises(ConfigError, match="config 'dem': no such file, and not a shipped config name "
                                          + re.escape(f"(shipped: {', '.join(names)})")) as error:
        load_config("dem")
    assert isinstance(error.value, SpikeRegError)
    for path_like in ("dem.yaml", "sub/demo", tmp_path / "demo.yml"):  # meant as a file: not looked up by name
        with pytest.raises(ConfigError, match="file not found"):
            load_config(path_like)


def test_the_cli_takes_a_config_name(cli, tmp_path):
    line = cli.one_error_line("train", "--config", "nosuch", "--out", tmp_path / "run")
    assert "not a shipped config name" in line and "demo" in line


def test_shipped_dir_prefers_the_package_folder(tmp_path, monkeypatch):
    package = tmp_path / "site" / "spikereg"
    (package / "configs").mkdir(parents=True)
    monkeypatch.setattr(resources, "PACKAGE_DIR", package)
    assert resources.shipped_dir("configs") == package / "configs"  # a wheel install
    assert resources.shipped_dir("hardware_profiles") == tmp_path / "site" / "hardware_profiles"  # a checkout


def test_names_resolve_in_an_installed_layout(tmp_path):
    """The package copied as a wheel lays it out (data folders inside it), imported away from the checkout."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "spikereg", site / "spikereg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", site / "spikereg" / "configs")
    shutil.copytree(ROOT / "hardware_profiles", site / "spikereg" / "hardware_profiles")
    work = tmp_path / "work"
    work.mkdir()
    code = ("import spikereg, spikereg.config as c, spikereg.hardware as h; "
            "print(spikereg.__file__); print(c.resolve_config('demo')); print(c.load_config('demo').train.steps); "
            "print(h.PROFILE_DIR); print(h.load_profile('loihi2').name)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    module, config, steps, profiles, name = out.stdout.split()
    assert Path(module).parent == site / "spikereg"
    assert Path(config) == site / "spikereg" / "configs" / "demo.yaml" and steps == "1000"
    assert Path(profiles) == site / "spikereg" / "hardware_profiles" and name == "loihi2"


def test_pyproject_lists_every_package():
    """pyproject.toml lists its packages (two are mapped folders); a new subpackage must be added there."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("spikereg", "lava_export")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    mapped = setuptools["package-dir"]
    assert mapped == {"spikereg.hardware_profiles": "hardware_profiles", "spikereg.configs": "configs"}
    assert set(setuptools["packages"]) == found | set(mapped)
