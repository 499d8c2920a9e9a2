"""Stop signals raise, so with blocks unwind: staged outputs are removed on SIGTERM and SIGHUP as on Ctrl-C."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from spikereg import interrupts
from spikereg.data.io import staged_folder


def _wait_for_signal() -> None:
    """Bytecode to run while a signal sent to this process arrives (it raises before the loop ends)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_raises_and_removes_the_staging_folder(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(interrupts.Interrupted) as caught:
        with interrupts.stop_signals_raise():
            with staged_folder(out) as staging:
                (staging / "ddf.nii.gz").write_bytes(b"half written")
                os.kill(os.getpid(), getattr(signal, name))
                _wait_for_signal()
    assert isinstance(caught.value, KeyboardInterrupt)
    assert interrupts.exit_code(caught.value) == 128 + getattr(signal, name)
    assert list(tmp_path.iterdir()) == []  # neither out nor the hidden .out.*.partial
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the old handlers are back


def test_deferred_raises_at_its_end_not_inside() -> None:
    reached = False
    with pytest.raises(interrupts.Interrupted):
        with interrupts.stop_signals_raise():
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(100):
                    time.sleep(0.001)
                reached = True
    assert reached


class _SignalsInDel:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler then runs inside __del__, which drops exceptions
        for _ in range(100):
            time.sleep(0.001)


def test_an_interrupt_dropped_by_python_is_delivered_again(capfd) -> None:
    with pytest.raises(interrupts.Interrupted):
        with interrupts.stop_signals_raise():
            _SignalsInDel()
            _wait_for_signal()
    assert "Exception ignored" not in capfd.readouterr().err


def test_one_line_names_the_signal_and_what_was_cleaned_up() -> None:
    error = interrupts.Interrupted(signal.SIGTERM)
    assert interrupts.describe(error) == "interrupted (SIGTERM)"
    interrupts.note(error, "Lava stopped")
    interrupts.note(error, "no outputs written")
    interrupts.note(error, "Lava stopped")
    assert interrupts.describe(error) == "interrupted (SIGTERM): Lava stopped, no outputs written"
    plain = KeyboardInterrupt()
    assert interrupts.describe(plain) == "interrupted (SIGINT)" and interrupts.exit_code(plain) == 130
