"""``spikereg report DIR`` writes report.md and a self-contained report.html whose every image is real.

The run folder is built from real parts: the MNI T1 at 8 mm warped by a random
smooth field (NIfTI files as ``spikereg run`` writes them), a raster saved with
the library's writer, and an energy section computed by ``energy_report`` on the
hand-built network of conftest.py.
"""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spikereg.data import load_mni, random_ddf, save_ddf, save_volume, warp
from spikereg.hardware.energy import energy_report
from spikereg.registration.counts import Raster, save_raster
from spikereg.registration.run_report import write_report
from spikereg.report.html import FIGURES_DIR, write_pages
from spikereg.report.summary import ReportError


@pytest.fixture(scope="module")
def anatomy(tmp_path_factory):
    """fixed, moving NIfTI files and the field between them, on the 8 mm MNI grid."""
    folder = tmp_path_factory.mktemp("anatomy")
    fixed = load_mni("t1", 8.0)
    ddf = random_ddf(fixed.shape, 2.0, 4, np.random.default_rng(5))
    save_volume(folder / "fixed.nii.gz", fixed.data, fixed.affine)
    save_volume(folder / "moving.nii.gz", warp(fixed.data, ddf), fixed.affine)
    return folder, fixed, ddf


@pytest.fixture
def run_folder(tmp_path, anatomy, run_report, two_layer_net, toy_chip, toy_gpu) -> Path:
    source, fixed, ddf = anatomy
    out = tmp_path / "run"
    out.mkdir()
    save_ddf(out / "ddf.nii.gz", -ddf, fixed.affine)
    save_volume(out / "warped.nii.gz", fixed.data, fixed.affine)
    report = run_report(
        inputs={"fixed": str(source / "fixed.nii.gz"), "moving": str(source / "moving.nii.gz"),
                "model": str(two_layer_net)},
        outputs={"ddf": "ddf.nii.gz", "warped": "warped.nii.gz"},
        time_steps_per_patch=4,
        spikes_per_step=[[[0, 3, 5, 2, 0, 4, 6, 1, 0, 0], [0, 0, 1, 2, 1, 0, 1, 2, 0, 0]]],
    )
    report["energy"] = energy_report(report, two_layer_net, profiles=(toy_chip, toy_gpu))
    write_report(out, report)
    rng = np.random.default_rng(0)
    save_raster(out / "raster.npz", Raster({"input": rng.random((4, 16)) < 0.3, "layer 1": rng.random((4, 32)) < 0.1,
                                            "layer 2": rng.random((4, 3)) < 0.2}, patch=0, origin=[0, 0, 0]))
    return out


def _verify_png(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.verify()  # raises on a truncated or corrupt file


def test_report_html_is_self_contained_and_every_image_is_valid(run_folder: Path) -> None:
    pages = write_pages(run_folder)
    page = (run_folder / "report.html").read_text()
    # nothing is fetched from anywhere: no links, scripts, style sheets, fonts or remote images
    assert not re.search(r"https?://|<script|<link|@import|url\(|<iframe", page, re.IGNORECASE)
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        _verify_png(base64.b64decode(source.split(",", 1)[1]))
    # report.md links the same figures by relative path; each exists and opens
    markdown = (run_folder / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(sources) == len(pages.figures)
    for link in links:
        assert link.startswith(f"{FIGURES_DIR}/")
        _verify_png((run_folder / link).read_bytes())
    names = {Path(link).stem for link in links}
    assert {"spike_rate", "spikes_over_time", "raster", "energy_breakdown", "snn_vs_ann", "slices",
            "checkerboard", "deformation_grid", "jacobian"} <= names
    assert pages.notes == []
    # the tables carry the run's numbers
    assert "0.9705" not in page and "0.5000 -&gt; 0.6000" in page and "toychip" in page
    assert not list(run_folder.glob(".*"))  # no staging or temporary files left behind


def test_pages_name_what_they_cannot_show(run_folder: Path) -> None:
    (run_folder / "ddf.nii.gz").unlink()
    (run_folder / "raster.npz").unlink()
    pages = write_pages(run_folder)
    text = " ".join(pages.notes)
    assert "raster.npz" in text and "ddf.nii.gz" in text
    names = {p.stem for p in (run_folder / FIGURES_DIR).iterdir()}
    assert "slices" not in names and "raster" not in names and "spike_rate" in names
    assert "ddf.nii.gz" in (run_folder / "report.md").read_text()


def test_a_missing_or_malformed_report_is_one_clear_error(cli, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"no report.json"):
        write_pages(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"report.json: malformed JSON"):
        write_pages(tmp_path)
    result = cli.invoke("report", str(tmp_path))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "malformed JSON" in lines[0]
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "report.html").exists()


def test_cli_report_prints_the_summary_and_writes_the_pages(cli, run_folder: Path) -> None:
    result = cli.invoke("report", str(run_folder))
    assert result.exit_code == 0, result.output
    assert "NCC" in result.output and "report.html" in result.output
    assert (run_folder / "report.html").is_file() and (run_folder / "report.md").is_file()
    report = json.loads((run_folder / "report.json").read_text())
    assert report["backend"] == "sim"  # report.json itself is left as the run wrote it


def test_a_real_run_writes_counts_and_a_raster_that_the_report_draws(tiny_export, anatomy, tmp_path: Path) -> None:
    """spikereg run's library call on the torch backend: counts and raster.npz in the folder, drawn by the report."""
    from spikereg.data import load_volume
    from spikereg.netx_file import read_metadata
    from spikereg.registration.counts import load_raster
    from spikereg.registration.pipeline import run_registration

    _, model = tiny_export
    source, _, _ = anatomy
    out = tmp_path / "run"
    report = run_registration(load_volume(source / "fixed.nii.gz"), load_volume(source / "moving.nii.gz"), model,
                              read_metadata(model), out, backend="torch", iterations=2)
    counts = report["counts"]
    assert [it["label"] for it in counts["iterations"]] == ["iteration 1/2", "iteration 2/2"]
    assert [row["spikes"] for row in counts["layers"]] == [row["spikes"] for row in report["layers"]]
    assert counts["input_spikes"] == report["input_spikes"]
    assert sum(it["patches"] for it in counts["iterations"]) == 2 * report["patches_per_iteration"]
    assert report["energy"]["counts"]["synops"] == counts["synops"] > 0
    raster = load_raster(out / "raster.npz")
    assert list(raster.layers) == ["input"] + [f"layer {i}" for i in range(1, len(counts["layers"]) + 1)]
    assert raster.layers["input"].any()  # a patch with brain, not an empty corner
    pages = write_pages(out)
    assert pages.notes == [] and (out / FIGURES_DIR / "raster.png").is_file()
    assert (out / FIGURES_DIR / "per_step.png").is_file()


def test_mean_patch_window_folds_each_call_from_the_step_a_layer_answers() -> None:
    from spikereg.report.figures import mean_patch_window

    # two backend calls, window 4; layer 2 answers one step later than layer 1 (the drain steps are left over)
    first = [[1, 2, 3, 4, 5, 6, 7, 8, 0], [0, 1, 1, 1, 1, 3, 3, 3, 3]]
    second = [[9, 9, 9, 9, 0], [0, 5, 5, 5, 5]]
    mean = mean_patch_window([first, second], 4)
    np.testing.assert_allclose(mean[0], [(1 + 5 + 9) / 3, (2 + 6 + 9) / 3, (3 + 7 + 9) / 3, (4 + 8 + 9) / 3])
    np.testing.assert_allclose(mean[1], [3, 3, 3, 3])
