"""Checkpoints are read with torch's weights-only unpickler: a .pt whose pickle runs code is refused, unrun.

The malicious files here are real: each test first proves that an ordinary
``torch.load`` of its file does run the payload (creates the marker file),
then that SpikeReg's commands refuse the same file with one line and leave no
marker and no outputs.
"""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikereg.pretrained import SHIPPED
from spikereg.training.trainer import CHECKPOINT_FORMAT, load_checkpoint, load_twin

ROOT = Path(__file__).resolve().parents[3]


class _Shell:
    """Unpickling calls os.system: a shell command that writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > '{self.marker}'",)


class _Open:
    """Unpickling calls open(marker, "w"): creates the marker with no shell at all."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return io.open, (str(self.marker), "w")


PAYLOADS = {"os.system": _Shell, "io.open": _Open}


def malicious_checkpoint(path: Path, marker: Path, payload: str = "os.system") -> Path:
    """A file that looks like a SpikeReg checkpoint (the format tag is there) and runs PAYLOAD when unpickled."""
    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "state_dict": {}, "step": 1,
                "val_error_voxels": PAYLOADS[payload](marker)}, path)
    torch.load(path, weights_only=False)  # the payload is real: an unguarded load runs it...
    assert marker.is_file(), "the malicious checkpoint did not run its payload"
    marker.unlink()  # ...and the tests below check that SpikeReg's loads do not
    return path


def spikereg(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed command line, in its own process (what a user runs), with this checkout's code."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "spikereg", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def refused(done: subprocess.CompletedProcess, file: Path | str) -> str:
    """Exit 1, exactly one line on stderr, it names FILE and the refusal, no traceback; the line."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and str(file) in lines[0], lines[0]
    return lines[0]


REFUSAL = "not a SpikeReg checkpoint or it contains Python objects that SpikeReg refuses to unpickle"


# pickle names a function by its __module__: io.open is _io.open from Python 3.12 on
IO_OPEN = f"{io.open.__module__}.open"


@pytest.mark.parametrize("payload, named", [("os.system", "posix.system"), ("io.open", IO_OPEN)])
def test_export_refuses_a_checkpoint_whose_pickle_runs_code(tmp_path, payload, named):
    marker = tmp_path / "marker"
    evil = malicious_checkpoint(tmp_path / "evil.pt", marker, payload)
    out = tmp_path / "model.net"
    line = refused(spikereg("export", evil, "--out", out), evil)
    assert REFUSAL in line and f"it asks for {named}" in line
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt"]  # no model.net, no .map.json


def test_export_of_a_shipped_name_shadowed_by_a_malicious_file_here_refuses_it(tmp_path):
    """A path wins over a shipped name, so 'spikereg export demo' in a folder holding a file 'demo' reads it."""
    marker = tmp_path / "marker"
    malicious_checkpoint(tmp_path / "demo", marker)
    line = refused(spikereg("export", "demo", "--out", "out.net", cwd=tmp_path), "demo")
    assert REFUSAL in line
    assert not marker.exists() and not (tmp_path / "out.net").exists()


def test_train_resume_refuses_a_malicious_last_pt(tmp_path):
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    evil = malicious_checkpoint(run / "checkpoints" / "last.pt", marker)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert REFUSAL in refused(spikereg("train", "--resume", run), evil)
    assert not marker.exists()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing written into the run


def test_train_twin_from_refuses_a_malicious_checkpoint_before_making_the_output_folder(tmp_path):
    marker = tmp_path / "marker"
    evil = malicious_checkpoint(tmp_path / "evil.pt", marker)
    out = tmp_path / "out"
    line = refused(spikereg("train", "--config", ROOT / "configs" / "demo.yaml", "--set", f"train.twin_from={evil}",
                            "--set", "train.steps=1", "--out", out), evil)
    assert line.startswith(f"error: train.twin_from checkpoint {evil}: {REFUSAL}")
    assert not marker.exists() and not out.exists()


def _plain_pickle(path: Path, marker: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "x": _Shell(marker)}))  # not even a torch zip


@pytest.mark.parametrize("write, message", [
    (lambda path, marker: torch.save({"weights": torch.zeros(2)}, path), f"no {CHECKPOINT_FORMAT} format tag"),
    (lambda path, marker: path.write_bytes(b""), "unreadable as a torch file: EOFError"),
    (lambda path, marker: path.write_bytes(b"not a checkpoint at all"), REFUSAL),  # a pickle opcode torch refuses
    (_plain_pickle, REFUSAL),
    (lambda path, marker: torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "step": 1}, path),
     "entry 'state_dict' is missing (expected a dict of tensors)"),
    (lambda path, marker: torch.save({"format": CHECKPOINT_FORMAT, "config": "demo", "state_dict": {},
                                      "step": 1}, path), "entry 'config' is str, expected a dict"),
])
def test_files_that_are_not_checkpoints_are_one_line_naming_the_file(cli, tmp_path, write, message):
    marker = tmp_path / "marker"
    bad = tmp_path / "bad.pt"
    write(bad, marker)
    line = cli.one_error_line("export", bad, "--out", tmp_path / "model.net")
    assert f"checkpoint {bad}: " in line and message in line, line
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoints_load_weights_only_and_unchanged(name):
    """The shipped files hold only what the weights-only unpickler accepts: the same tensors, bit for bit."""
    path = SHIPPED[name].checkpoint
    safe, full = torch.load(path, weights_only=True), torch.load(path, weights_only=False)
    assert safe.keys() == full.keys() and safe["config"] == full["config"]
    for key in ("state_dict", "twin_state"):
        for entry, tensor in full.get(key, {}).items():
            assert torch.equal(safe[key][entry], tensor) and safe[key][entry].dtype == tensor.dtype, (key, entry)
    net, _ = load_checkpoint(path)
    assert all(torch.equal(value, full["state_dict"][key]) for key, value in net.state_dict().items())
    assert (load_twin(path) is None) == ("twin_state" not in full)


def test_checkpoints_written_by_train_load_weights_only(tiny_checkpoint):
    """best.pt and last.pt (optimiser, schedule, random streams) hold nothing the safe unpickler refuses."""
    for name in ("best.pt", "last.pt"):
        state = torch.load(tiny_checkpoint.parent / name, weights_only=True)
        assert state["format"] == CHECKPOINT_FORMAT
    state = torch.load(tiny_checkpoint.parent / "last.pt", weights_only=True)["training_state"]
    assert {"optimizer", "scheduler", "sampler_rng", "torch_rng"} <= set(state)
    load_checkpoint(tiny_checkpoint)
    assert load_twin(tiny_checkpoint) is not None


def test_no_module_unpickles_files():
    """Every read of a torch file is weights-only, no numpy load allows pickles, no plain pickle loads."""
    unsafe = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|pickle\.loads?\(|torch\.load\((?![^)]*"
                        r"weights_only\s*=\s*True)")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for folder in ("spikereg", "lava_export", "benchmarks") for path in (ROOT / folder).rglob("*.py")
             for number, line in enumerate(path.read_text().splitlines(), start=1) if unsafe.search(line)]
    assert not found, "\n".join(found)
