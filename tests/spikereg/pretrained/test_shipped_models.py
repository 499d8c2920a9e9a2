"""Shipped models by name: --model NAME or PATH, one clear line for unknown or uninstalled names, 'spikereg models'."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spikereg.pretrained import (
    DEFAULT_CHECKPOINT,
    DEFAULT_MODEL,
    DEMO_CHECKPOINT,
    DEMO_MODEL,
    SHIPPED,
    ModelNotFoundError,
    ShippedModel,
    resolve_checkpoint,
    resolve_model,
)


@pytest.fixture
def uninstalled(monkeypatch, tmp_path):
    """A registered shipped model whose files are not there (as sdnn-2mm is before it is trained)."""
    entry = ShippedModel(tmp_path / "absent.net", tmp_path / "absent.pt", "an absent model; configs/x.yaml, 3 mm")
    monkeypatch.setitem(SHIPPED, "absent-3mm", entry)
    return entry


def test_names_give_the_shipped_files():
    assert resolve_model("demo") == DEMO_MODEL and resolve_checkpoint("demo") == DEMO_CHECKPOINT
    assert SHIPPED["demo"].netx == DEMO_MODEL and SHIPPED["demo"].checkpoint == DEMO_CHECKPOINT
    # the default is the accurate model for different subjects (issues 3 and 16: `spikereg run` with no --model
    # runs the best one); the template-only and varied-only ones are shipped beside it, by name
    assert resolve_model("sdnn-2mm-mixed") == DEFAULT_MODEL
    assert resolve_checkpoint("sdnn-2mm-mixed") == DEFAULT_CHECKPOINT
    for other in ("sdnn-2mm", "sdnn-2mm-varied"):
        assert resolve_model(other) == DEFAULT_MODEL.with_name(other.replace("-", "_") + ".net")
        assert resolve_model(other) != DEFAULT_MODEL
    for name, entry in SHIPPED.items():  # every entry says which config made it and at what spacing
        assert "configs/" in entry.description and " mm" in entry.description, name
        assert entry.netx.parent == entry.checkpoint.parent == DEFAULT_MODEL.parent, name


def test_an_existing_path_is_used_as_is_even_where_it_looks_like_a_name(tmp_path, monkeypatch):
    model = tmp_path / "my.net"
    model.write_bytes(b"x")
    assert resolve_model(model) == model and resolve_model(str(model)) == model
    assert resolve_checkpoint(model) == model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_bytes(b"x")  # a file called demo in the working folder wins over the name
    assert resolve_model("demo") == Path("demo")


def test_unknown_value_names_itself_and_the_shipped_models(tmp_path):
    for resolve in (resolve_model, resolve_checkpoint):
        with pytest.raises(ModelNotFoundError) as error:
            resolve(tmp_path / "nope.net")
        assert isinstance(error.value, ValueError)
        message = str(error.value)
        assert "nope.net" in message and "no such file" in message
        assert all(name in message for name in SHIPPED)


def test_registered_name_without_its_files_says_which_file_is_missing(uninstalled):
    with pytest.raises(ModelNotFoundError, match="absent-3mm.*not installed.*absent.net.*configs/x.yaml"):
        resolve_model("absent-3mm")
    with pytest.raises(ModelNotFoundError, match="absent.pt"):
        resolve_checkpoint("absent-3mm")


def test_models_command_lists_demo_present_and_an_uninstalled_model(cli, uninstalled):
    result = cli.invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(SHIPPED)
    demo, best = rows["demo"], rows["sdnn-2mm-mixed"]
    assert demo["present"] and not demo["default"] and demo["netx"] == str(DEMO_MODEL)
    assert demo["netx_bytes"] == DEMO_MODEL.stat().st_size
    assert demo["checkpoint_bytes"] == DEMO_CHECKPOINT.stat().st_size
    assert best["present"] and best["default"] and best["netx"] == str(DEFAULT_MODEL)
    absent = rows["absent-3mm"]
    assert not absent["present"] and not absent["default"] and absent["netx_bytes"] is None

    table = cli.invoke("models")
    assert table.exit_code == 0, table.output
    assert "sdnn-2mm-mixed (default)" in table.output and "not installed" in table.output
    for other in ("sdnn-2mm", "sdnn-2mm-varied"):
        assert not rows[other]["default"] and rows[other]["present"]
    assert "models" in cli.invoke("--help").output


def test_bad_model_names_are_one_line_on_every_command(cli, uninstalled, tmp_path):
    files = ("--fixed", tmp_path / "f.nii.gz", "--moving", tmp_path / "m.nii.gz", "--out", tmp_path / "out")
    line = cli.one_error_line("run", "--backend", "torch", "--model", "nope", *files)
    assert "model nope" in line and "demo" in line and "sdnn-2mm" in line
    line = cli.one_error_line("run", "--backend", "torch", "--model", "absent-3mm", *files)
    assert "absent-3mm" in line and "absent.net" in line
    line = cli.one_error_line("map", "nope")
    assert "model nope" in line
    line = cli.one_error_line("export", "nope", "--out", tmp_path / "x.net", "--no-verify", "--profile", "none")
    assert "checkpoint nope" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.net").exists()


def test_run_with_the_demo_model_by_name(cli, tmp_path):
    from spikereg.data import load_mni, make_pair

    template = load_mni("t1", 4.0)
    pair = make_pair(template.data, np.random.default_rng(7), max_displacement=3.0, control_spacing=8,
                     noise_std=0.02)
    crop = np.s_[12:36, 16:40, 10:34]  # 24^3 voxels of brain: four patches of the demo model
    for name in ("fixed", "moving"):
        nib.save(nib.Nifti1Image(getattr(pair, name)[crop], template.affine), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "run"
    result = cli.invoke("run", "--backend", "torch", "--model", "demo", "--fixed", tmp_path / "fixed.nii.gz",
                        "--moving", tmp_path / "moving.nii.gz", "--out", out, "--iterations", "1")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["model"] == str(DEMO_MODEL)
    assert nib.load(out / "ddf.nii.gz").shape == (24, 24, 24, 1, 3)
