"""A real package: the wheel, installed in a fresh venv as README's "Install from a wheel" says, works anywhere.

Builds the wheel from a copy of the sources, checks what it carries (the
shipped models, hardware profiles and named configs, lava_export), installs it
with the Makefile's pins (torch, numpy < 2 -- numpy 2 on 3.13 --, then the Lava wheels and nilearn
without dependencies) and runs ``spikereg models``, ``map sdnn-2mm --profile
loihi2``, ``train --config demo`` and ``run --model demo --backend sim`` in a
temporary folder outside the checkout, with no PYTHONPATH. It needs the package
index (PyPI or a local mirror) and takes a few minutes, most of it pip.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "spikereg", "lava_export", "configs", "hardware_profiles")


def makefile_pins() -> dict[str, list[str]]:
    """TORCH, LAVA and NILEARN as the Makefile installs them (one source for the pins)."""
    text = (ROOT / "Makefile").read_text()
    return {name: re.search(rf"^{name}\s*\??:?=\s*(.+)$", text, re.M).group(1).split()
            for name in ("TORCH", "LAVA", "NILEARN")}


def makefile_numpy() -> str:
    """The numpy requirement the Makefile picks for this Python: numpy 1.x, or 2 where 1.x has no wheels (3.13+)."""
    text = (ROOT / "Makefile").read_text()
    name = "NUMPY2" if sys.version_info >= (3, 13) else "NUMPY1"
    return re.search(rf"^{name}\s*:=\s*(.+)$", text, re.M).group(1).strip()


def sh(args: list, cwd: Path, timeout: float = 600) -> str:
    """Run ARGS in CWD with no PYTHONPATH (nothing from the checkout); its output, which must end in success."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_wheel_installs_and_runs_from_any_folder(tmp_path):
    try:
        check_wheel(tmp_path)
    finally:  # the venv is about 1.6 GB; pytest would keep the last three runs' folders
        shutil.rmtree(tmp_path / "venv", ignore_errors=True)


def check_wheel(tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(ROOT)
    # -- build, from a copy: no stale build/ of the checkout can leak into the wheel
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, src], tmp_path)
    (wheel,) = dist.glob("spikereg-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"spikereg/{folder}/{path.name}" for folder in ("configs", "hardware_profiles")
                for path in (ROOT / folder).glob("*.yaml")}  # the top-level folders, mapped into the package
    expected |= {path.relative_to(ROOT).as_posix() for path in (ROOT / "spikereg" / "pretrained").iterdir()
                 if path.suffix in (".net", ".pt", ".json")}
    expected |= {path.relative_to(ROOT).as_posix() for path in (ROOT / "lava_export").glob("*.py")}
    assert {"spikereg/configs/demo.yaml", "spikereg/hardware_profiles/loihi2.yaml", "spikereg/pretrained/demo.net",
            "spikereg/pretrained/sdnn_2mm.net", "lava_export/__init__.py"} <= expected
    assert expected <= names, f"not in {wheel.name}: {sorted(expected - names)}"

    # -- install as README says: the wheel with torch and numpy < 2, then Lava and nilearn without dependencies
    pins = makefile_pins()
    venv = tmp_path / "venv"
    sh([sys.executable, "-m", "venv", venv], tmp_path)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    sh(pip + [wheel, *pins["TORCH"], makefile_numpy()], tmp_path, timeout=1200)
    sh(pip + ["--no-deps", "--ignore-requires-python", *pins["LAVA"], *pins["NILEARN"]], tmp_path, timeout=600)

    # -- use it from a folder outside the checkout
    work = tmp_path / "work"
    work.mkdir()
    spikereg = venv / "bin" / "spikereg"
    site = Path(sh([venv / "bin" / "python", "-c", "import spikereg; print(spikereg.__file__)"], work).strip()).parent
    assert site.is_relative_to(venv), site  # the installed package, not the checkout

    models = {row["name"]: row for row in json.loads(sh([spikereg, "models", "--json"], work))}
    assert {"sdnn-2mm", "demo"} <= set(models)
    assert all(row["present"] and Path(row["netx"]).is_relative_to(site) for row in models.values()), models

    mapping = sh([spikereg, "map", "sdnn-2mm", "--profile", "loihi2"], work)
    assert "onto loihi2" in mapping and "cores/chip" in mapping and "fits on one chip" in mapping, mapping

    sh([spikereg, "data", "synth", "--out", "data", "--pairs", "1", "--spacing", "8", "--seed", "2026"], work)
    pair = work / "data" / "train"
    assert (pair / "fixed_images" / "pair_000.nii.gz").is_file()

    unknown = subprocess.run([spikereg, "train", "--config", "nosuch", "--out", "nosuch"], cwd=work,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 1 and "not a shipped config name (shipped: " in unknown.stderr, unknown.stderr
    assert "demo" in unknown.stderr
    # the demo config by name, made tiny: a few steps on 8 mm pairs
    sh([spikereg, "train", "--config", "demo", "--out", "train", "--set", "train.ann_steps=2", "--set", "train.steps=2",
        "--set", "train.batch_size=2", "--set", "train.checkpoint_every=2", "--set", "data.pairs=2",
        "--set", "data.spacing=8.0", "--set", "model.time_steps=4"], work, timeout=900)
    assert (work / "train" / "checkpoints" / "best.pt").is_file()
    assert "channels:\n  - 8\n  - 16" in (work / "train" / "config.yaml").read_text()  # demo's network

    sh([spikereg, "run", "--model", "demo", "--backend", "sim", "--iterations", "1",
        "--fixed", pair / "fixed_images" / "pair_000.nii.gz", "--moving", pair / "moving_images" / "pair_000.nii.gz",
        "--out", "run"], work, timeout=900)
    ddf = nib.load(work / "run" / "ddf.nii.gz")
    assert ddf.shape == nib.load(pair / "fixed_images" / "pair_000.nii.gz").shape + (1, 3)  # NIfTI's vector layout
