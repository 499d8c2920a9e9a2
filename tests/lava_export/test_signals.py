"""A real ``spikereg run --backend sim`` stopped by signals: it always ends, and leaves nothing behind.

Each test starts the command in its own session (as a terminal or a batch
system would), waits until Lava's workers run, signals it, and then checks
the exit code, the one line on stderr, that no process of the session
survives, that the shared-memory segments its processes mapped are gone, and
that no output folder (nor a hidden staging folder) exists.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikereg import compat

LAVA_PROCESSES = 10  # the demo model runs 11 workers, plus the shared-memory server and resource tracker


@pytest.fixture(scope="module")
def pair(cli, tmp_path_factory) -> tuple[Path, Path]:
    """A real-anatomy pair at the demo model's 4 mm (a registration of about 10 s on Lava)."""
    root = tmp_path_factory.mktemp("signals_data")
    result = cli.invoke("data", "synth", "--out", root, "--pairs", 1, "--spacing", 4, "--split", "0,0,1",
                        "--seed", 99, "--max-displacement", 3, "--noise-std", 0.02)
    assert result.exit_code == 0, result.output
    return root / "test" / "fixed_images" / "pair_000.nii.gz", root / "test" / "moving_images" / "pair_000.nii.gz"


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, ppid, pgrp, session, ...), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
                pids.append(int(entry))
    return pids


def _mapped_segments(pids: list[int]) -> set[str]:
    """Names of the /dev/shm segments these processes have mapped."""
    names = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names.update(line.split("/dev/shm/", 1)[1].split()[0] for line in maps.splitlines() if "/dev/shm/" in line)
    return names


class Run:
    """``spikereg run --backend sim --model demo`` in its own session, stderr in a file."""

    def __init__(self, pair: tuple[Path, Path], tmp_path: Path) -> None:
        self.tmp_path, self.out = tmp_path, tmp_path / "out"
        self.stderr_path = tmp_path / "stderr.txt"
        fixed, moving = pair
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spikereg", "run", "--backend", "sim", "--model", "demo",
                 "--fixed", str(fixed), "--moving", str(moving), "--out", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        self.pid = self.process.pid
        self.segments: set[str] = set()

    def wait_for_lava(self, timeout: float = 60.0) -> None:
        """Until Lava's workers run (and the first patches stream), noting the segments they map."""
        deadline = time.monotonic() + timeout
        while len(_session(self.pid)) < LAVA_PROCESSES + 1:
            assert self.process.poll() is None, self.stderr()
            assert time.monotonic() < deadline, "Lava's workers never started"
            time.sleep(0.1)
        time.sleep(1.0)
        self.segments = _mapped_segments(_session(self.pid))
        assert self.segments, "the workers map no shared memory: nothing to check"
        assert self.process.poll() is None, "the run ended before it was signalled"

    def workers(self) -> list[int]:
        """The main process's children that are Lava's (not Python's resource tracker), oldest first."""
        children = []
        for pid in _session(self.pid):
            fields = _stat(pid)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if fields else b""
            if fields and int(fields[1]) == self.pid and b"resource_tracker" not in cmdline:
                children.append((int(fields[19]), pid))  # starttime (field 22), pid
        return [pid for _, pid in sorted(children)]

    def signal(self, signum: int, group: bool) -> None:
        (os.killpg if group else os.kill)(self.pid, signum)

    def finish(self, timeout: float) -> int:
        """The exit code, within ``timeout`` seconds; the whole session is killed if it hangs."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
            pytest.fail(f"the run did not end within {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def assert_nothing_left(self, timeout: float = 10.0) -> None:
        """No process of the session, none of its segments, no output folder, no staging folder."""
        deadline = time.monotonic() + timeout
        while (_session(self.pid) or self._segments_left()) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = _session(self.pid)
        for pid in survivors:  # never leave them to the next test
            os.kill(pid, signal.SIGKILL)
        assert not survivors, f"processes of the run survived: {survivors}"
        assert not self._segments_left(), f"shared memory left: {sorted(self._segments_left())}"
        assert not self.out.exists()
        assert sorted(p.name for p in self.tmp_path.iterdir()) == ["stderr.txt"]  # no .out.*.partial

    def _segments_left(self) -> set[str]:
        return {name for name in self.segments if os.path.exists(f"/dev/shm/{name}")}

    def assert_one_line(self, name: str) -> None:
        """Exactly one message: the interrupted line, last; besides it only the progress bar's final state."""
        text = self.stderr()
        assert "Traceback" not in text and "Exception ignored" not in text, text
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines[-1] == f"interrupted ({name}): Lava stopped, no outputs written", text
        assert all("━" in line for line in lines[:-1]), text  # rich's bar, printed once when it stops


@pytest.mark.parametrize("name, group, code", [
    ("SIGINT", True, 130),  # Ctrl-C in a terminal: the whole foreground process group
    ("SIGTERM", False, 143),  # timeout, SLURM, systemd, kill: the main process
    ("SIGTERM", True, 143),  # systemd's and SLURM's stop of every process of the job
    ("SIGHUP", True, 129),  # the terminal closed
])
def test_a_stop_signal_stops_lava_and_leaves_nothing(pair, tmp_path, name, group, code):
    run = Run(pair, tmp_path)
    run.wait_for_lava()
    run.signal(getattr(signal, name), group)
    assert run.finish(timeout=20) == code
    run.assert_one_line(name)
    run.assert_nothing_left()


def test_a_stop_whose_lava_stop_hangs_kills_the_workers(pair, tmp_path):
    """A worker died (SIGKILL, as the OOM killer does): Lava's own stop would wait for it forever."""
    run = Run(pair, tmp_path)
    run.wait_for_lava()
    os.kill(run.workers()[-1], signal.SIGKILL)
    time.sleep(0.5)
    start = time.monotonic()
    run.signal(signal.SIGTERM, group=False)
    assert run.finish(timeout=compat.LAVA_STOP_SECONDS + 20) == 143
    assert time.monotonic() - start < compat.LAVA_STOP_SECONDS + 10
    run.assert_one_line("SIGTERM")
    run.assert_nothing_left()


def test_workers_do_not_outlive_a_killed_main_process(pair, tmp_path):
    """SIGKILL cannot be handled: the kernel ends the workers (PR_SET_PDEATHSIG), Python's resource tracker the
    segments."""
    run = Run(pair, tmp_path)
    run.wait_for_lava()
    run.signal(signal.SIGKILL, group=False)
    assert run.finish(timeout=20) == -signal.SIGKILL
    run.assert_nothing_left()
