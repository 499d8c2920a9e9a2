"""benchmarks/accuracy.py on a U-Net: the twin row through AnnBackend with a GraphTwin, the SNN rows on the graph
file (torch and Lava), --recipe, --csv, --merge and --write into a section of its own."""
import shutil

import accuracy
import numpy as np
import pytest
import sections
import torch
from accuracy_csv import LAVA, TORCH

from spikereg.config import load_config
from spikereg.data import load_mni
from spikereg.networks.ann import AnnTwin
from spikereg.pretrained import DEMO_CHECKPOINT, DEMO_MODEL
from spikereg.registration.register import register

HEADING = "## Registration accuracy: the tiny U-Net"


@pytest.mark.parametrize("kind", ["graph", "chain"])
def test_the_twin_backend_takes_its_grid_from_the_twin(kind, tiny_unet):
    """A GraphTwin predicts a displacement per voxel (reduction 1), an AnnTwin control points; either registers."""
    torch.manual_seed(0)
    twin = tiny_unet.twin if kind == "graph" else AnnTwin(load_config(None, ["model.patch_size=8"]).model).eval()
    backend = accuracy.AnnBackend(twin)
    assert (backend.patch_size, backend.reduction) == (8, 1 if kind == "graph" else 4)
    assert backend.chunk_size == 64 * 16**3 // 8**3  # as many voxels per pass as 64 patches of 16^3
    t1 = load_mni("t1", 4.0).data[8:32, 12:36, 10:34]
    patches = torch.as_tensor(np.stack([t1[:8, :8, :8], t1[8:16, 8:16, 8:16], t1[16:, 16:, 16:]]))[:, None]
    moved = torch.roll(patches, 1, dims=-1)
    grid = 8 // backend.reduction
    controls = backend.predict(patches, moved)
    assert controls.shape == (3, 3, grid, grid, grid)
    with torch.no_grad():
        assert np.array_equal(controls, twin.predict(patches, moved).numpy())
    ddf = register(t1, np.roll(t1, 1, axis=-1), backend, iterations=1, patch_stride=8).ddf
    assert ddf.shape == (3, 24, 24, 24) and np.isfinite(ddf).all() and np.abs(ddf).max() > 0


def test_a_model_file_and_a_checkpoint_of_other_networks_are_refused(tiny_unet):
    path, checkpoint = accuracy.model_files(tiny_unet.path, tiny_unet.checkpoint)
    assert (path, checkpoint) == (tiny_unet.path, tiny_unet.checkpoint)
    with pytest.raises(ValueError, match="not the same network .*architecture chain vs unet"):
        accuracy.model_files(tiny_unet.path, DEMO_CHECKPOINT)
    with pytest.raises(ValueError, match="not the same network .*architecture unet vs chain"):
        accuracy.model_files(DEMO_MODEL, tiny_unet.checkpoint)
    assert accuracy.model_files("demo", None) == (DEMO_MODEL, DEMO_CHECKPOINT)  # a shipped name brings its own
    assert accuracy.model_files(tiny_unet.path, None) == (tiny_unet.path, None)
    with pytest.raises(ValueError, match="needs --checkpoint.*the twin row"):
        accuracy.model_files(tiny_unet.path, None, "the twin row")


def test_a_unet_table_goes_into_its_own_section(tiny_unet, tmp_path, monkeypatch, capsys):
    """Twin, torch and Lava rows on one pair drawn by --recipe; --write and --merge replace only --section."""
    benchmarks = tmp_path / "BENCHMARKS.md"
    shutil.copy(sections.BENCHMARKS, benchmarks)
    chain_section = sections.read_section(accuracy.SECTION, benchmarks)
    monkeypatch.setattr(accuracy, "write_section", lambda h, s: sections.write_section(h, s, benchmarks))
    csv = tmp_path / "unet.csv"
    run = ["--checkpoint", str(tiny_unet.checkpoint), "--model", str(tiny_unet.path), "--recipe",
           str(tiny_unet.recipe), "--pairs", "1", "--lava-pairs", "1", "--skip", "demons", "ants", "--csv", str(csv),
           "--section", HEADING]
    assert accuracy.main(run + ["--write"]) == 0
    table = capsys.readouterr().out
    for method in ("identity", "ANN twin", TORCH, LAVA):
        assert f"| {method} | 1 |" in table, method
    assert "Lava simulator vs SLAYER on the same pairs (1 pair): largest field difference 0 voxels" in table
    written = sections.read_section(HEADING, benchmarks)
    assert "1 pairs drawn as training draws them for" in written and str(tiny_unet.path) in written
    means = accuracy.written_means(HEADING, benchmarks)
    assert set(means) == {"identity", "ANN twin", TORCH, LAVA} and means[TORCH]["epe_vox"] >= 0
    assert sections.read_section(accuracy.SECTION, benchmarks) == chain_section  # the chain's table stays

    assert accuracy.main(["--merge", str(csv), "--section", HEADING, "--write"]) == 0
    text = benchmarks.read_text()
    assert text.count(HEADING + "\n") == 1 and "--merge" in sections.read_section(HEADING, benchmarks)
    assert accuracy.written_means(HEADING, benchmarks) == means
    with pytest.raises(SystemExit):  # a section is a '## ' heading, nothing else
        accuracy.main(["--merge", str(csv), "--section", "Registration accuracy"])
