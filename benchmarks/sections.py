"""Writing one benchmark's section of BENCHMARKS.md, leaving every other section as it is.

Each benchmark owns one ``## Heading`` section; ``--write`` replaces that section
(from its heading to the next ``## ``) or appends it, and writes the whole file
atomically, since other benchmarks may be reading or writing their sections.
"""
from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
PREAMBLE = ("# Benchmarks\n\nMeasured numbers, each section with the command that produced it, "
            "the machine and the date.\n")


def write_section(heading: str, section: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the section that starts with the line ``heading`` by ``section``."""
    from spikereg.data.io import write_text_atomic

    text = path.read_text() if path.is_file() else PREAMBLE
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    write_text_atomic(path, new)
