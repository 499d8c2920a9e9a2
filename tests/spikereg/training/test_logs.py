"""train_log.csv and TensorBoard: the fallback without tensorboard, and rows trimmed on resume."""
import sys

import pytest

from spikereg.training.logs import TrainLog


def rows(path):
    return [line.split(",")[0] for line in path.read_text().splitlines()]


def test_without_tensorboard_the_csv_log_still_works(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        log = TrainLog(tmp_path, ["displacement"], enabled=True, tensorboard=True)
    log.row(1, loss=0.5, val_error_voxels=0.25, loss_displacement=0.5)
    log.scalars(1, {"train/loss": 0.5})  # nowhere to go, and no error
    log.close()
    assert (tmp_path / "train_log.csv").read_text().splitlines()[1].startswith("1,0.50000,0.2500,")
    assert not (tmp_path / "tensorboard").exists()


def test_resume_drops_rows_after_the_checkpoint_and_appends(tmp_path):
    log = TrainLog(tmp_path, [], enabled=True, tensorboard=False)
    for step in ("ann", 0, 2, 4):  # 4 was logged, but the run died before last.pt held it
        log.row(step, loss=0.1)
    log.close()
    log = TrainLog(tmp_path, [], enabled=True, tensorboard=False, resume_step=2)
    log.row(4, loss=0.2)
    log.close()
    assert rows(tmp_path / "train_log.csv") == ["step", "ann", "0", "2", "4"]
    assert (tmp_path / "train_log.csv").read_text().splitlines()[-1].startswith("4,0.20000")


def test_other_ranks_write_nothing(tmp_path):
    log = TrainLog(tmp_path, [], enabled=False, tensorboard=True)
    log.row(1, loss=0.1)
    log.scalars(1, {"train/loss": 0.1})
    log.close()
    assert list(tmp_path.iterdir()) == []
