"""Stop signals as exceptions, so that every ``with`` block and ``finally`` unwinds.

Python turns SIGINT into ``KeyboardInterrupt``, but SIGTERM (``timeout``,
SLURM, systemd) and SIGHUP (a closed terminal) end the process at once: Lava's
runtime is never stopped and staged outputs are never removed. Inside
:func:`stop_signals_raise` all three raise :class:`Interrupted`, a
``KeyboardInterrupt``, so the code that already cleans up after Ctrl-C does so
for each of them. What the unwinding did is collected as notes on the
exception (:func:`note`) and read back as one line (:func:`describe`).
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REDELIVER_SECONDS = 0.01  # see _redeliver


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


_state = {"defer": 0, "pending": None}  # inside deferred(): the signal that arrived, raised at its end


def _raise(signum: int, frame) -> None:
    if _state["defer"]:
        if _state["pending"] is None:
            _state["pending"] = signum
        return
    raise Interrupted(signum)


def _redeliver(unraisable) -> None:
    """``sys.unraisablehook``: an :class:`Interrupted` raised where Python drops exceptions comes again.

    Python drops (and prints) what is raised in ``__del__``, weakref callbacks
    and at-fork hooks -- the handler can run in any of them. The signal is sent
    again a moment later, from a timer thread (sent from here, the handler
    would run, and be dropped, inside this hook), and raises in the code that
    runs then.
    """
    if isinstance(unraisable.exc_value, Interrupted):
        timer = threading.Timer(REDELIVER_SECONDS, os.kill, args=(os.getpid(), unraisable.exc_value.signum))
        timer.daemon = True
        timer.start()
        return
    _state["unraisablehook"](unraisable)


@contextmanager
def deferred() -> Iterator[None]:
    """A stop signal arriving inside the block is raised as it ends (not inside, e.g. in the middle of a fork).

    Forking runs at-fork hooks, where a raised exception is dropped; a worker
    forked but not yet registered would be left for no one to stop.
    """
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
        if not _state["defer"] and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            raise Interrupted(signum)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside the block SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`; the old handlers come back after.

    Handlers can only be set in the main thread; elsewhere the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in STOP_SIGNALS}
    _state["unraisablehook"], sys.unraisablehook = sys.unraisablehook, _redeliver
    try:
        yield
    finally:
        sys.unraisablehook = _state.pop("unraisablehook")
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def signum_of(error: KeyboardInterrupt) -> int:
    """The signal behind ``error``: a plain ``KeyboardInterrupt`` is SIGINT's."""
    return getattr(error, "signum", int(signal.SIGINT))


def exit_code(error: KeyboardInterrupt) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (130, 143, 129)."""
    return 128 + signum_of(error)


def note(error: BaseException, text: str) -> None:
    """Record what was cleaned up on ``error`` (``BaseException.add_note``'s list, also on Python 3.10), once."""
    notes = getattr(error, "__notes__", None)
    if notes is None:
        notes = error.__notes__ = []
    if text not in notes:
        notes.append(text)


def on_interrupt_note(text: str) -> Callable:
    """Decorator: an interrupt (Ctrl-C, SIGTERM, SIGHUP) raised through the function gets the note ``text``."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except KeyboardInterrupt as error:
                note(error, text)
                raise
        return wrapper
    return decorate


def describe(error: KeyboardInterrupt) -> str:
    """One line: ``interrupted (SIGTERM): Lava stopped, no outputs written``."""
    notes = getattr(error, "__notes__", None) or []
    line = f"interrupted ({signal.Signals(signum_of(error)).name})"
    return line + (": " + ", ".join(notes) if notes else "")
