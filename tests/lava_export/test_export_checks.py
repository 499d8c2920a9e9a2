"""What export refuses, and what the commands say about files that are not SpikeReg netx networks.

* a weight changed in the file makes Lava differ from SLAYER, and verification sees it;
* an export whose file differs from the network raises and leaves nothing behind;
* a network that does not fit the hardware profile (cores, fan-in, weight,
  threshold bits) is refused, naming the limit, and leaves nothing behind;
* truncated, foreign and unloadable netx files, and unknown profiles, give one
  error line and exit code 1 from ``spikereg map`` / ``run`` / ``export``.

All of it runs the real Lava runtime and the stock netx loader on the tiny network.
"""
import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest
import yaml

from lava_export.netx import export_netx, sidecar
from lava_export.verify import VerificationError, sample_patches, verify
from spikereg.hardware import PROFILE_DIR, MappingError, available_profiles, map_network
from spikereg.training.trainer import load_checkpoint


def leftovers(folder, model):
    """Anything the failed export left that could pass for a model: the file itself or a temp file."""
    return [p.name for p in folder.iterdir() if p.name == model.name or p.name.endswith(".tmp")]


def flip_largest_weight(path) -> tuple:
    """Negate the largest-magnitude weight of the first conv layer (netx layer 1) in place.

    The largest weight is the one most likely to move a neuron across its
    threshold; -256 has no 8-bit negative, so it becomes 254 instead.
    """
    with h5py.File(path, "r+") as handle:
        dataset = handle["layer/1/weight"]
        weight = dataset[()]
        index = np.unravel_index(np.argmax(np.abs(weight)), weight.shape)
        weight[index] = -weight[index] if weight[index] != -256 else 254
        dataset[...] = weight
    return index


@pytest.fixture()
def fresh_net(tiny_checkpoint):
    """The tiny network loaded anew, so a test may alter it without touching the shared fixture."""
    return load_checkpoint(tiny_checkpoint)


# -- verification catches a file that differs from the network ------------------------


def test_a_flipped_weight_in_the_file_makes_verification_fail(fresh_net, tmp_path):
    net, config = fresh_net
    path = tmp_path / "plain.net"
    assert export_netx(net, path, spacing=config.data.spacing, verify_patches=0) is None
    assert not sidecar(path, "verify").exists()
    fixed, moving = sample_patches(net, config.data.spacing, 2)

    before = verify(net, path, fixed, moving)
    assert before.exact and before.layer_spikes_slayer[0] > 0, "the patches must make layer 1 spike"

    # A copy: netx keeps the file it loaded open for reading, which h5py would not reopen for writing.
    corrupted = tmp_path / "corrupted.net"
    shutil.copy(path, corrupted)
    flip_largest_weight(corrupted)
    after = verify(net, corrupted, fixed, moving)
    assert not after.exact
    assert after.layer_mismatched_patches[0] > 0  # the corrupted layer itself spikes differently


def test_export_whose_file_differs_from_the_network_raises_and_leaves_no_model(fresh_net, tmp_path):
    net, config = fresh_net
    write = net.export_hdf5

    def faulty_export(path, extra=None):
        # A writer bug in miniature: the file no longer holds the network's weights.
        write(path, extra)
        flip_largest_weight(path)

    net.export_hdf5 = faulty_export
    out = tmp_path / "model.net"
    with pytest.raises(VerificationError, match=r"model\.net: Lava differs from SLAYER"):
        export_netx(net, out, spacing=config.data.spacing, verify_patches=2)
    assert leftovers(tmp_path, out) == []
    assert not sidecar(out, "map").exists()
    report = json.loads(sidecar(out, "verify").read_text())  # kept: it explains the refusal
    assert report["exact"] is False


# -- the hardware profile -------------------------------------------------------------


def test_export_writes_the_mapping_of_the_model_it_wrote(tiny_export):
    _, path = tiny_export
    written = json.loads(sidecar(path, "map").read_text())
    assert written == map_network(path, "loihi2").to_dict()  # path included: the output, not the temp file
    assert written["fits_one_chip"] and written["problems"] == []


def small_profile(tmp_path, field: str, value: int):
    data = yaml.safe_load((PROFILE_DIR / "loihi2.yaml").read_text())
    data["name"] = "smallchip"
    data[field]["value"] = value
    path = tmp_path / "smallchip.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("field, value, expected", [
    # the tiny network needs one core per conv layer, 2 in all
    ("cores_per_chip", 1, ["network needs 2 cores", "smallchip has 1 per chip"]),
    # a layer-1 neuron reads (input channels x patch depth) x 3 x 3 = hundreds of synapses
    ("max_fan_in", 64, ["layer 1 (conv)", "smallchip max_fan_in 64"]),
    # 1 bit + sign holds only -2 and 0; trained weights take more values than that
    ("weight_bits", 1, ["layer 1 (conv)", "weight_bits 1", "[-2, 0]"]),
    # vThMant = threshold x 64; a 1-bit threshold holds 0 and 1 only
    ("threshold_bits", 1, ["layer 1 (conv)", "vThMant", "threshold_bits 1"]),
])
def test_export_refuses_a_network_the_profile_cannot_hold(fresh_net, tmp_path, field, value, expected):
    net, config = fresh_net
    out = tmp_path / "model.net"
    with pytest.raises(MappingError) as raised:
        export_netx(net, out, spacing=config.data.spacing, verify_patches=0,
                    profile=small_profile(tmp_path, field, value))
    message = str(raised.value)
    assert "\n" not in message and str(out) in message and ".tmp" not in message
    for text in expected:
        assert text in message
    assert leftovers(tmp_path, out) == [] and not sidecar(out, "map").exists()


# -- files that are not SpikeReg netx networks ----------------------------------------


@pytest.fixture()
def bad_models(tiny_export, tmp_path):
    """A truncated netx file, an HDF5 file that is no netx network, one with a pool layer."""
    _, good = tiny_export
    truncated = tmp_path / "truncated.net"
    truncated.write_bytes(good.read_bytes()[:100])
    foreign = tmp_path / "foreign.net"
    with h5py.File(foreign, "w") as handle:
        handle.create_dataset("data", data=np.random.default_rng(0).random((4, 4)))
    pooled = tmp_path / "pooled.net"
    shutil.copy(good, pooled)
    with h5py.File(pooled, "r+") as handle:
        del handle["layer/2/type"]
        handle["layer/2"].create_dataset("type", (1,), "S10", [b"pool"])
    return {"truncated": (truncated, "truncated or corrupt"),
            "foreign": (foreign, "'layer'"),
            "pooled": (pooled, "'pool'")}


@pytest.fixture()
def tiny_pair(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for name in ("fixed", "moving"):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((12, 12, 12)).astype(np.float32), np.eye(4)), path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("kind", ["truncated", "foreign", "pooled"])
def test_map_and_run_give_one_line_for_a_bad_model_file(cli, bad_models, tiny_pair, tmp_path, kind):
    model, says = bad_models[kind]
    line = cli.one_error_line("map", model)
    assert model.name in line and says in line

    fixed, moving = tiny_pair
    out = tmp_path / "out"
    line = cli.one_error_line("run", "--model", model, "--fixed", fixed, "--moving", moving, "--out", out)
    assert model.name in line and says in line
    assert not out.exists()


# -- profiles on the command line -----------------------------------------------------


def test_unknown_profile_is_one_line_listing_the_available_ones(cli, tiny_export, tiny_checkpoint, tmp_path):
    _, model = tiny_export
    listed = ", ".join(available_profiles())
    out = tmp_path / "m.net"
    for command in (["export", tiny_checkpoint, "--no-verify", "--out", out, "--profile", "nosuch"],
                    ["map", model, "--profile", "nosuch"]):
        line = cli.one_error_line(*command)
        assert "unknown hardware profile 'nosuch'" in line and listed in line
    assert not out.exists()
    line = cli.one_error_line("export", tiny_checkpoint, "--no-verify", "--out", out, "--profile", "cpu")
    assert "neuromorphic" in line and not out.exists()


def test_export_command_prints_the_mapping_and_profile_none_skips_it(cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "m.net"
    result = cli.invoke("export", tiny_checkpoint, "--no-verify", "--out", out)
    assert result.exit_code == 0, result.output
    mapping = json.loads(sidecar(out, "map").read_text())
    assert mapping["profile_name"] == "loihi2"
    assert f"{mapping['cores']} cores of 128 per chip -> 1 chip(s): fits on one chip" in result.output

    result = cli.invoke("export", tiny_checkpoint, "--no-verify", "--out", out, "--profile", "none")
    assert result.exit_code == 0, result.output
    assert out.is_file() and not sidecar(out, "map").exists()  # no stale mapping of the last export
    assert "cores" not in result.output
