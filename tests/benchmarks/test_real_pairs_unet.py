"""benchmarks/real_pairs.py with a U-Net: the ANN twin row (twin_field) on a GraphTwin, through the run's own
input path and settings; a model file without its checkpoint, or a folder holding another model's rows, refused."""
import json
from pathlib import Path

import numpy as np
import pytest
import real_pairs

from spikereg.data import Volume, load_mni
from spikereg.netx_file import read_metadata
from spikereg.registration.pipeline import run_registration


@pytest.mark.parametrize("spacing, kind, levels", [(8.0, "working", 1), (2.0, "native", 2)])
def test_the_twin_row_runs_a_graph_twin_on_the_run_s_grid_and_levels(tiny_unet, tmp_path, monkeypatch, spacing, kind,
                                                                      levels):
    """A pair registered as `spikereg run --backend torch` does it -- 8 mm: on the 4 mm model's working grid; 2 mm:
    at 4 mm, then on the pair's own voxels -- then the twin with that run's report: on the same grid, with the same
    levels, a field on the fixed grid as the SNN's."""
    import spikereg.registration.register as register_module

    template = load_mni("t1", spacing)
    box = tuple(slice(0, min(n, 48)) for n in template.shape)  # a 2 mm brain's corner: a test-sized pair
    fixed = Volume(np.ascontiguousarray(template.data[box]), template.affine, tmp_path / "fixed.nii.gz")
    moving = Volume(np.roll(fixed.data, 1, axis=0), template.affine, tmp_path / "moving.nii.gz")
    meta = read_metadata(tiny_unet.path)
    report = run_registration(fixed, moving, tiny_unet.path, meta, tmp_path / "run", backend="torch")
    registered_on = report["grids"]["registered_on"]
    assert registered_on["kind"] == kind and report["pyramid"] == levels
    seen = []
    original = register_module.register

    def register(fixed_grid, moving_grid, backend, **options):
        seen.append((fixed_grid.shape, options["pyramid"]))
        return original(fixed_grid, moving_grid, backend, **options)

    monkeypatch.setattr(register_module, "register", register)
    ddf = real_pairs.twin_field(tiny_unet.twin, meta, fixed, moving, None, report)
    assert seen == [(tuple(registered_on["shape"]), levels)]
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
    retrained = tmp_path / "retrained.pt"  # the same name and path, other weights: another model's rows
    retrained.write_bytes(Path(tiny_unet.checkpoint).read_bytes())
    again = tmp_path / "again"
    again.mkdir()
    real_pairs.claim_folder(again, "sdnn-2mm", retrained)
    retrained.write_bytes(retrained.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="holds the rows of"):
        real_pairs.claim_folder(again, "sdnn-2mm", retrained)
