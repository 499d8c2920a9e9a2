"""The registration U-Net exported and run: proven in range, verified on Lava from rest, torch == sim.

A tiny U-Net (two levels, patch 8) converted from a twin into the chip's
proven range, exported with ``export_unet`` (Lava fixed point against
SLAYER's one pass, every patch from rest, on real anatomy and the stress
patches), then registered on a real-anatomy pair by the torch and the sim
backends: the same field, bit for bit. A corrupted skip weight, a wrong skip
delay and a network not proven in range are refused.
"""
import shutil

import h5py
import numpy as np
import pytest
import torch

from lava_export.graph_verify import GraphVerificationError, export_unet, verification_patches, verify_from_rest
from spikereg.config import load_config
from spikereg.data import load_mni
from spikereg.data.deform import random_ddf, warp
from spikereg.networks.graph_convert import convert_twin
from spikereg.networks.graph_model import GraphRegNet
from spikereg.networks.graph_twin import GraphTwin
from spikereg.registration.backends import GraphLavaBackend, GraphTorchBackend, open_backend
from spikereg.registration.register import register

TINY = ["model.architecture=unet", "model.patch_size=8", "model.channels=[4, 6]", "model.strides=[]",
        "model.spike_code=delta", "model.neuron.type=sdnn", "model.neuron.threshold=0.015625",
        "model.spike_exp=0", "model.max_displacement=2.0", "run.patch_stride=8", "model.encoding=intensity",
        "model.readout_bias=0.5"]  # a biased readout, as configs/unet_2mm.yaml
SPACING = 4.0


@pytest.fixture(scope="module")
def tiny_unet():
    model = load_config(None, TINY).model
    torch.manual_seed(0)
    twin = GraphTwin(model)
    t1 = torch.as_tensor(np.asarray(load_mni("t1", SPACING).data, dtype=np.float32))
    fixed = torch.stack([t1[12:20, 16:24, 14:22], t1[20:28, 24:32, 20:28], t1[16:24, 30:38, 18:26]])[:, None]
    moving = torch.roll(fixed, 1, dims=-1)
    return convert_twin(twin, fixed, moving).net


@pytest.fixture(scope="module")
def exported(tiny_unet, tmp_path_factory):
    out = tmp_path_factory.mktemp("unet") / "unet.net"
    result = export_unet(tiny_unet, out, spacing=SPACING, run_defaults={"iterations": 1, "patch_stride": 8},
                         verify_patches=1)
    return out, result


def test_export_is_proven_and_verified_from_rest(exported):
    out, result = exported
    assert out.is_file() and out.with_name("unet.verify.json").is_file()
    assert result.matched and result.provably_in_range
    assert result.patches == 10 and "saturated" in result.kinds  # one template patch and the stress kinds
    assert max(result.max_error) == 0.0 and not any(result.stray_messages)
    assert result.messages_lava == result.messages_slayer and sum(result.messages_lava) > 0


def corrupted_copy(path, tmp_path, edit):
    copy = tmp_path / "edited.net"
    shutil.copy(path, copy)
    with h5py.File(copy, "r+") as handle:
        edit(handle)
    return copy


def skip_edge(handle, destination_name):
    names = [n.decode() for n in handle["graph/names"][()]]
    for key in handle["graph/edge"]:
        group = handle[f"graph/edge/{key}"]
        if names[int(group["destination"][()])] == destination_name and int(group["delay"][()]) > 0:
            return group
    raise AssertionError("no skip edge")


def test_a_corrupted_skip_weight_fails_verification(exported, tiny_unet, tmp_path):
    out, _ = exported

    def edit(handle):  # dec1's skip is its primary edge: the weight lives in the layer group
        names = [n.decode() for n in handle["graph/names"][()]]
        weight = handle[f"layer/{names.index('dec1')}/weight"]
        weight[0, 0, 1, 1] = weight[0, 0, 1, 1] + 40
    copy = corrupted_copy(out, tmp_path, edit)
    fixed, moving, kinds = verification_patches(tiny_unet, SPACING, 1)
    result = verify_from_rest(tiny_unet, copy, fixed, moving, kinds)
    assert not result.matched and result.max_error[tiny_unet.index["dec1"]] > 0


def test_a_wrong_skip_delay_fails_verification(exported, tiny_unet, tmp_path):
    out, _ = exported
    copy = corrupted_copy(out, tmp_path, lambda handle: skip_edge(handle, "dec1")["delay"].write_direct(
        np.array(0, dtype=np.int64)))
    fixed, moving, kinds = verification_patches(tiny_unet, SPACING, 1)
    result = verify_from_rest(tiny_unet, copy, fixed, moving, kinds)
    assert not result.matched and result.stray_messages[tiny_unet.index["dec1"]] > 0


def test_a_network_not_proven_in_range_is_refused(tmp_path):
    model = load_config(None, TINY).model
    net = GraphRegNet(model)  # plain ReLU nodes, no saturation: the worst case compounds
    with torch.no_grad():
        for name, value in net.named_parameters():
            if name.endswith("original"):
                value.normal_(0.0, 2.0)
    out = tmp_path / "unproven.net"
    with pytest.raises(GraphVerificationError, match="not proven in the chip's range"):
        export_unet(net, out, spacing=SPACING, verify_patches=1)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_torch_and_sim_register_the_same_field_bit_for_bit(exported):
    out, _ = exported
    t1 = np.asarray(load_mni("t1", SPACING).data, dtype=np.float32)[10:34, 14:38, 12:36]
    ddf = random_ddf(t1.shape, 1.5, 8, np.random.default_rng(0))
    moving = warp(t1, ddf)
    fields, spikes = {}, {}
    for backend in ("torch", "sim"):
        with open_backend(out, backend=backend, batch_size=4) as engine:
            assert isinstance(engine, GraphTorchBackend if backend == "torch" else GraphLavaBackend)
            result = register(t1, moving, engine, iterations=1, patch_stride=8)
            fields[backend] = result.ddf
            spikes[backend] = np.asarray(engine.stats.layer_spikes)
        assert spikes[backend].sum() > 0
    assert np.array_equal(fields["torch"], fields["sim"])
    assert np.array_equal(spikes["torch"], spikes["sim"])  # every layer's graded spikes, as the report counts them
    assert np.abs(fields["torch"]).max() > 0


def test_numbers_the_chip_cannot_hold_are_refused_in_layers_and_edges(exported, tiny_unet, tmp_path, profile_writer):
    """As a chain's export: a profile whose weight registers are too narrow refuses the export, nothing written;
    and a skip edge's own weight (outside every layer group) is checked as a layer's is."""
    from lava_export.netx import check_precision
    from spikereg.hardware import MappingError

    narrow = profile_writer(tmp_path, "loihi2", "narrow", {"weight_bits": 2})  # even weights in [-4, 2]
    out = tmp_path / "out" / "unet.net"
    with pytest.raises(MappingError, match=r"unet\.net: layer 1 \(conv\): weight .* weight_bits 2"):
        export_unet(tiny_unet, out, spacing=SPACING, verify_patches=0, profile=narrow)
    assert not list(out.parent.iterdir())

    source, _ = exported
    check_precision(source, "loihi2")  # the exported file fits Loihi 2

    def edit(handle):
        weight = skip_edge(handle, "dec2")["weight"]
        changed = np.array(weight[()])
        changed.reshape(-1)[0] = 3  # odd
        weight[...] = changed
    copy = corrupted_copy(source, tmp_path, edit)
    with pytest.raises(MappingError, match=r"edited\.net: edge \d+: weight 3 at \(0, 0, 0, 0(, 0)?\) does not fit"):
        check_precision(copy, "loihi2")
