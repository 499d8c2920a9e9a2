"""Writing one benchmark's section of BENCHMARKS.md, leaving every other section as it is.

Each benchmark owns one ``## Heading`` section; ``--write`` replaces that section
(from its heading to the next ``## ``) or appends it, and writes the whole file
atomically, since other benchmarks may be reading or writing their sections.
A benchmark's ``--section`` names another heading, so that a second model's run
(e.g. the U-Net's) gets a section of its own beside the shipped model's.
"""
from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
PREAMBLE = ("# Benchmarks\n\nMeasured numbers, each section with the command that produced it, "
            "the machine and the date.\n")


def heading(text: str) -> str:
    """``--section``'s value, checked: a ``## `` heading (what :func:`write_section` finds and ends sections at)."""
    import argparse

    if not text.startswith("## ") or "\n" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a section heading is one line starting with '## '")
    return text


def _span(lines: list[str], heading: str) -> tuple[int, int] | None:
    """(first, end) line of the section ``heading``: its heading line up to the next ``## `` or the end."""
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def read_section(heading: str, path: Path = BENCHMARKS) -> str | None:
    """The section that starts with the line ``heading``, or None where there is none."""
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    span = _span(lines, heading)
    return None if span is None else "".join(lines[span[0]:span[1]])


def write_section(heading: str, section: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the section that starts with the line ``heading`` by ``section``."""
    from spikereg.data.io import write_text_atomic

    text = path.read_text() if path.is_file() else PREAMBLE
    lines = text.splitlines(keepends=True)
    span = _span(lines, heading)
    if span is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        start, end = span
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    write_text_atomic(path, new)
