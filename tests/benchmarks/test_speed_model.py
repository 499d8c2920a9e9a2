"""benchmarks/speed.py with --model: which model and checkpoint it times, the children on a U-Net graph file (torch
run on the model's working grid, Lava sampled on that grid, torch's profile), and a section that names the model."""
from types import SimpleNamespace

import pytest
import sections
import speed
import speed_render

from spikereg.pretrained import DEMO_CHECKPOINT, DEMO_MODEL

HEADING = "## Speed and memory: the tiny U-Net"


def test_the_model_option_resolves_names_and_files(tiny_unet):
    assert speed.model_options("demo", None, []) == (DEMO_MODEL, DEMO_CHECKPOINT)
    assert speed.model_options(str(tiny_unet.path), str(tiny_unet.checkpoint), []) == (
        tiny_unet.path, tiny_unet.checkpoint)
    with pytest.raises(ValueError, match="needs --checkpoint.*or --skip train"):  # the training row's recipe
        speed.model_options(str(tiny_unet.path), None, [])
    assert speed.model_options(str(tiny_unet.path), None, ["train"]) == (tiny_unet.path, None)
    with pytest.raises(ValueError, match="not the same network"):
        speed.model_options(str(tiny_unet.path), str(DEMO_CHECKPOINT), [])
    with pytest.raises(ValueError, match="not a shipped model name"):
        speed.model_options("no-such-model", None, [])
    described = speed.describe_model(str(tiny_unet.path), tiny_unet.path, tiny_unet.checkpoint)
    assert described["graph"] and (described["patch_size"], described["spacing_mm"]) == (8, 4.0)
    assert (described["iterations"], described["patch_stride"]) == (1, 8)
    demo = speed.describe_model("demo", DEMO_MODEL, DEMO_CHECKPOINT)
    assert (demo["name"], demo["graph"], described["name"]) == ("demo", False, None)  # a shipped name is shown


def test_a_unet_is_timed_on_its_working_grid_and_the_section_says_which_model(tiny_unet, tmp_path, monkeypatch,
                                                                              capsys):
    folder, shape = speed.make_pairs(tmp_path, [8.0])[8.0]
    memory = {"maxrss_bytes": 1e9, "tree_pss_bytes": 1e9}
    run = speed.child_registration(folder, tmp_path / "run", tiny_unet.path, "torch")
    assert run["working_grid"] and run["grid_spacing"][0] == 4.0 and run["iterations"] == 1
    assert run["patches"] == run["iterations"] * 7 * 8 * 6  # 8^3 patches, stride 8, over the 4 mm grid 50x58x48
    sim = speed.child_sim(folder, tmp_path, 2, tiny_unet.path)
    assert sim["same_as_torch"] and sim["grid_shape"] == run["grid_shape"] and sim["patches_per_iteration"] == 336
    # the start-up (build, compile, a first patch) timed apart from the sample's two patches on the running network
    assert sim["startup"] > sim["compile"] > 0 and sim["per_patch"] == sim["run"] / 2 and sim["steps"] > 0
    profile = speed.profile_torch(1, tiny_unet.path, voxels=8 * 8**3)
    assert profile["patches"] == 8 and [label.split(" (")[0] for label, _ in profile["parts"]][2:4] == [
        "convolutions", "upsampling"]
    described = speed.describe_model(str(tiny_unet.path), tiny_unet.path, tiny_unet.checkpoint)
    measured = {"model": described, "shapes": {"8.0": list(shape)}, "conv": [], "torch_profile": profile,
                "runs": [[8.0, "torch", {**run, **memory}], [8.0, "sim-sampled", {**sim, **memory}]]}
    benchmarks = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(speed_render, "write_section", lambda h, s: sections.write_section(h, s, benchmarks))
    args = SimpleNamespace(threads=1, section=HEADING, write=True)
    assert speed.render(args, "benchmarks/speed.py --model U.net", measured, [1.0, 1.0], "today") == 0
    section = sections.read_section(HEADING, benchmarks)
    assert section == capsys.readouterr().out.strip() + "\n" and section.startswith(HEADING)
    assert f"with the model `{described['file']}` (a spiking U-Net, graph file" in section
    assert "registered on the model's 4 mm working grid (50x58x48)" in section
    assert "336 patches (1 iteration x 336)" in section and "x 336 patches + start-up" in section
    assert "a first patch; timed apart) + torch's host time" in section
    assert "SLAYER's sigma-delta neuron on the one step from rest" in section


def test_the_lava_extrapolation_counts_every_level_of_a_native_run(tiny_unet, tmp_path):
    """A 2 mm brain and a 4 mm model: the run registers at 4 mm, then on the 2 mm voxels; the sampled Lava row
    extrapolates over the patches of both levels, as many as the torch run registered."""
    folder, _ = speed.make_pairs(tmp_path, [2.0])[2.0]
    run = speed.child_registration(folder, tmp_path / "run", tiny_unet.path, "torch")
    assert not run["working_grid"] and run["grid_shape"] == list(speed.load_pair(folder)[0].shape)
    sim = speed.child_sim(folder, tmp_path, 2, tiny_unet.path)
    assert sim["patches_per_iteration"] * run["iterations"] == run["patches"]
