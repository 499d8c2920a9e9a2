"""What the command line accepts: every numeric option's bounds, and where outputs may go.

One table, :data:`BOUNDS`, holds each option's bounds and meaning, so
``spikereg run``, ``evaluate``, ``warp``, ``train`` and ``data synth`` (and the
library functions behind them) refuse a bad value with the same message
format, ``--iterations 0: must be at least 1 (refinement iterations per
pyramid level)``. ``None`` for a value means "not given" (the model's default
is used), never 0: a given 0 is checked like any other number.

:func:`check_out_folder` and :func:`check_out_file` check an ``--out`` before
any work, so a bad destination fails in a second, not after the registration.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, NamedTuple

from spikereg.errors import SpikeRegError


class OptionError(SpikeRegError, ValueError):
    """A command-line option outside its bounds, or an --out that cannot be written (one line)."""


class Bound(NamedTuple):
    low: float | None  # smallest allowed value (None: no lower bound)
    high: float | None  # largest allowed value (None: no upper bound)
    meaning: str
    low_open: bool = False  # True: ``low`` itself is refused (a positive float)


BOUNDS: dict[str, Bound] = {
    # spikereg run / evaluate (and cohorts): the registration
    "--iterations": Bound(1, None, "refinement iterations per pyramid level"),
    "--patch-stride": Bound(1, None, "voxels between patch origins"),
    "--pyramid": Bound(1, None, "coarse-to-fine levels; 1 is full resolution only"),
    "--smoothing": Bound(0, None, "Gaussian sigma in voxels; 0 is no smoothing"),
    "--batch-size": Bound(1, None, "patches per forward pass"),
    "--memory-budget": Bound(0, None, "GB of peak memory", low_open=True),
    "--workers": Bound(1, None, "local Dask worker processes"),
    # spikereg export
    "--verify-patches": Bound(0, None, "patches run through SLAYER and Lava; 0 skips the check"),
    # spikereg data synth
    "--pairs": Bound(1, None, "pairs to write, over all splits"),
    "--spacing": Bound(0, None, "voxel size in mm", low_open=True),
    "--max-displacement": Bound(0, None, "largest ground-truth displacement in voxels"),
    "--control-spacing": Bound(1, None, "voxels between the random field's control points"),
    "--noise-std": Bound(0, None, "intensity noise, images in [0, 1]"),
    "--bias-field": Bound(0, None, "largest |log gain| of the bias field; 0 is none"),
    "--gamma-std": Bound(0, None, "spread of log gamma; 0 is no contrast change"),
}


def _rule(bound: Bound, integer: bool) -> str:
    parts = []
    if bound.low is not None:
        if bound.low_open:
            parts.append(f"greater than {bound.low:g}")
        elif integer:
            parts.append(f"at least {bound.low:g}")
        else:
            parts.append(f">= {bound.low:g}")
    if bound.high is not None:
        parts.append(f"at most {bound.high:g}")
    return " and ".join(parts) or "a finite number"


def check_bound(option: str, value: float | None) -> float | None:
    """``value`` unchanged if it is None or within ``BOUNDS[option]``; else an :class:`OptionError`."""
    if value is None:
        return None
    bound = BOUNDS[option]
    integer = isinstance(value, int) and not isinstance(value, bool)
    ok = math.isfinite(value)
    if ok and bound.low is not None:
        ok = value > bound.low if bound.low_open else value >= bound.low
    if ok and bound.high is not None:
        ok = value <= bound.high
    if not ok:
        raise OptionError(f"{option} {value}: must be {_rule(bound, integer)} ({bound.meaning})")
    return value


def check_bounds(values: Mapping[str, float | None]) -> None:
    """:func:`check_bound` on each ``{option: value}``, in order."""
    for option, value in values.items():
        check_bound(option, value)


# ----------------------------------------------------------------------------- where outputs go

def _writable_base(path: Path, option: str) -> None:
    """Refuse ``path`` when it cannot be created: its nearest existing ancestor must be a writable folder."""
    base = path.absolute().parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise OptionError(f"{option} {path}: cannot be created, {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OptionError(f"{option} {path}: cannot be created, no permission to write in {base}")


def folder_in_use(path: Path) -> bool:
    """True when ``path`` is a folder holding anything (hidden files included)."""
    return path.is_dir() and any(path.iterdir())


def check_out_folder(path: str | Path, option: str = "--out", *, overwrite: bool = False,
                     keep_existing: bool = False, hint: str = "") -> Path:
    """An output folder that can be written: not a file, its parent writable, and not in use.

    An existing non-empty folder is refused unless ``overwrite`` (the caller
    then replaces it as a unit) or ``keep_existing`` (the caller merges into
    it by design, as ``data synth`` replaces whole splits). ``hint`` ends the
    refusal of a folder in use (e.g. how to resume it).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"{option} {path}: is an existing file; give a folder (new, or one to replace with "
                          "--overwrite)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK) or not os.access(path.absolute().parent, os.W_OK | os.X_OK):
            raise OptionError(f"{option} {path}: no permission to write it")
        if not (overwrite or keep_existing) and folder_in_use(path):
            raise OptionError(f"{option} {path}: the folder exists and is not empty; "
                              + (hint or "give a new folder, or --overwrite to replace it whole"))
        return path
    _writable_base(path, option)
    return path


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """An output file that can be written: not a folder, and in (or creatable under) a writable folder.

    An existing file is allowed: single-file outputs are replaced atomically.
    """
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{option} {path}: is a folder; give a file name")
    if path.exists():
        if not os.access(path.absolute().parent, os.W_OK | os.X_OK):
            raise OptionError(f"{option} {path}: no permission to replace it")
        return path
    _writable_base(path, option)
    return path
