"""benchmarks/real_pairs.py with a U-Net: the ANN twin row (twin_field) on a GraphTwin, through the run's own
input path and settings; a model file without its checkpoint, or a folder holding another model's rows, refused."""
import json

import numpy as np
import pytest
import real_pairs

from spikereg.data import Volume, load_mni
from spikereg.netx_file import read_metadata
from spikereg.registration.pipeline import run_registration


def test_the_twin_row_runs_a_graph_twin_on_the_run_s_working_grid(tiny_unet, tmp_path):
    """An 8 mm pair, registered as `spikereg run --backend torch` does it (on the model's 4 mm working grid), then
    the twin with that run's report: a field on the fixed grid, as the SNN's."""
    template = load_mni("t1", 8.0)
    fixed = Volume(template.data, template.affine, tmp_path / "fixed.nii.gz")
    moving = Volume(np.roll(template.data, 1, axis=0), template.affine, tmp_path / "moving.nii.gz")
    meta = read_metadata(tiny_unet.path)
    report = run_registration(fixed, moving, tiny_unet.path, meta, tmp_path / "run", backend="torch")
    assert report["grids"]["registered_on"]["working_grid"]
    ddf = real_pairs.twin_field(tiny_unet.twin, meta, fixed, moving, None, report)
    snn = real_pairs.load_volume_ddf(tmp_path / "run" / "ddf.nii.gz")
    assert ddf.shape == snn.shape == (3, *fixed.shape) and np.isfinite(ddf).all() and np.abs(ddf).max() > 0


def test_a_model_file_needs_its_checkpoint_and_a_folder_of_its_own(tiny_unet, tmp_path, capsys):
    out = tmp_path / "rows"
    with pytest.raises(SystemExit):
        real_pairs.main(["--out", str(out), "--model", str(tiny_unet.path)])
    assert "needs --checkpoint" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "model.json").write_text(json.dumps({"model": "sdnn-2mm", "checkpoint": "elsewhere.pt"}))
    with pytest.raises(SystemExit):
        real_pairs.main(["--out", str(out), "--model", str(tiny_unet.path), "--checkpoint", str(tiny_unet.checkpoint),
                         "--section", "## Real pairs: the tiny U-Net"])
    assert "holds the rows of" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    for _ in range(2):  # the same model again: its own rows, kept
        real_pairs.claim_folder(mine, str(tiny_unet.path), tiny_unet.checkpoint)
    assert json.loads((mine / "model.json").read_text())["model"] == str(tiny_unet.path)
