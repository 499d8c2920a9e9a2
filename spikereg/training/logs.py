"""Training logs: ``train_log.csv`` (always) and TensorBoard event files (where installed).

Only the main process of a distributed run writes; the others get a
:class:`TrainLog` that does nothing.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from spikereg.data.io import write_text_atomic

COLUMNS = ["step", "loss", "val_error_voxels", "identity_error_voxels", "spike_rate", "seconds", "learning_rate"]


class TrainLog:
    """CSV rows at checkpoints; TensorBoard scalars every step (``<out>/tensorboard``)."""

    def __init__(self, out_dir: Path, terms: list[str], *, enabled: bool, tensorboard: bool,
                 resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.terms = terms
        self.columns = COLUMNS + [f"loss_{name}" for name in terms]
        self.writer = None
        self._file = None
        if not enabled:
            return
        path = out_dir / "train_log.csv"
        if resume_step is None:
            write_text_atomic(path, ",".join(self.columns) + "\n")
        else:
            _truncate(path, resume_step)
        self._file = path.open("a", newline="")
        self._csv = csv.writer(self._file)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed: logging to train_log.csv only "
                              "(pip install tensorboard, or set train.tensorboard=false)", stacklevel=2)
            else:
                # purge_step drops events a resumed run is about to write again.
                self.writer = SummaryWriter(str(out_dir / "tensorboard"),
                                            purge_step=None if resume_step is None else resume_step + 1)

    def row(self, step: int | str, **values) -> None:
        """One CSV row; missing values are empty, floats get 4-5 decimals as before."""
        if not self.enabled:
            return
        formats = {"loss": "{:.5f}", "seconds": "{:.1f}", "learning_rate": "{:.6g}"}
        cells = [step]
        for column in self.columns[1:]:
            value = values.get(column)
            if isinstance(value, float):
                value = formats.get(column, "{:.4f}").format(value)
            cells.append("" if value is None else value)
        self._csv.writerow(cells)
        self._file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._file is not None:
            self._file.close()


def _truncate(path: Path, step: int) -> None:
    """Keep the header, the reference rows and the rows up to ``step`` (rows after it will be redone)."""
    if not path.is_file():
        raise FileNotFoundError(f"resume: {path} is missing")
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:]
                        if not line.split(",", 1)[0].isdigit() or int(line.split(",", 1)[0]) <= step]
    write_text_atomic(path, "".join(kept))
