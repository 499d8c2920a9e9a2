"""CUBA and SDNN networks with conv AND dense layers, on 3-D data through the depth folding.

Each network is built here from stock SLAYER blocks -- a folded 3-D conv, a
flatten, a dense readout -- exported with the blocks' own ``export_hdf5``,
loaded by stock ``netx.hdf5.Network`` and run on Lava's fixed-point models
(:func:`lava_export.verify.compare_on_lava`): CUBA must equal SLAYER spike for
spike, SDNN within the stated graded tolerance; a corrupted weight must fail.
Then the registration network itself with SDNN neurons goes through
``export_netx`` (profile check, verification, verify.json). Tiny sizes: Lava
costs tens of milliseconds per step.
"""
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from lava_export.chip import BackendUnavailable, loihi2_available
from lava_export.netx import export_netx, sidecar
from lava_export.runner import LavaNetwork
from lava_export.verify import SDNN_TOLERANCE, compare_on_lava
from spikereg import compat
from spikereg.config import load_config
from spikereg.hardware import MappingError, map_network
from spikereg.networks.encoding import hold_encode, latency_encode, next_power_of_two, rate_encode
from spikereg.networks.folding import DepthFold, FoldedKernel, fold_volume
from spikereg.networks.snn import SpikingRegNet

DEPTH, CHANNELS, FEATURES, OUTPUTS = 4, 2, 3, 5  # a 2 x 4^3 patch -> 3 x 2^3 -> dense 5


def folded_conv(kind, neuron: dict, **extra):
    """A stock SLAYER conv block running a 3-D 3^3 stride-2 conv through the depth folding."""
    fold = DepthFold(DEPTH, 3, 2, 1)
    block = kind.Conv(neuron, DEPTH * CHANNELS, fold.depth_out * FEATURES, 3, stride=2, padding=1, **extra)
    parametrize.register_parametrization(block.synapse, "weight", FoldedKernel(fold, FEATURES, CHANNELS))
    return block, fold.depth_out * FEATURES * (DEPTH // 2) ** 2


def build(neuron_type: str, seed: int = 0) -> list:
    """[SDNN: Input,] folded conv, flatten, dense -- with weights that make every layer active."""
    slayer = compat.slayer()
    torch.manual_seed(seed)
    if neuron_type == "cuba":
        kind, extra = slayer.block.cuba, {}
        neuron = dict(threshold=1.0, current_decay=0.25, voltage_decay=0.03, requires_grad=False)
        scale = (0.6, 0.5)
    else:
        kind, extra = slayer.block.sigma_delta, dict(delay_shift=True)  # one step per layer, as on the chip
        neuron = dict(threshold=1 / 32, activation=torch.nn.functional.relu, requires_grad=False)
        scale = (0.4, 0.3)
    conv, flat_size = folded_conv(kind, neuron, **extra)
    dense = kind.Dense(neuron, flat_size, OUTPUTS, **extra)
    with torch.no_grad():
        conv.synapse.parametrizations.weight.original.normal_(0.1, scale[0])
        dense.synapse.weight.normal_(0.1, scale[1])
    blocks = [conv, kind.Flatten(), dense]
    return ([kind.Input(neuron)] if neuron_type == "sdnn" else []) + [b.eval() for b in blocks]


def export(blocks: list, path) -> None:
    """The blocks' own export_hdf5, one netx layer each; CUBA gets an input layer that is a shape."""
    with torch.no_grad():  # SLAYER blocks learn their shapes from a forward pass
        x = torch.zeros(1, DEPTH * CHANNELS, DEPTH, DEPTH, 1)
        for block in blocks:
            x = block(x)
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        first = 0
        if not hasattr(blocks[0], "synapse"):  # SDNN: the input block exports itself
            blocks[0].export_hdf5(layers.create_group("0"))
            blocks, first = blocks[1:], 1
        else:
            layers.create_group("0").create_dataset("type", (1,), "S10", [b"input"])
            layers["0"].create_dataset("shape", data=np.array([DEPTH * CHANNELS, DEPTH, DEPTH]))
            first = 1
        for index, block in enumerate(blocks, start=first):
            block.export_hdf5(layers.create_group(str(index)))


def frames(code: str, patches: int, window: int, time_steps: int = 5) -> torch.Tensor:
    """``(P, D*C, H, W, window)`` input of random 3-D patches, folded, in the given code."""
    torch.manual_seed(3)
    values = torch.rand(patches, CHANNELS, DEPTH, DEPTH, DEPTH)
    if code == "rate":
        return fold_volume(rate_encode(values, time_steps, window))
    if code == "latency":
        return fold_volume(latency_encode(values, time_steps, window))
    return fold_volume(hold_encode(values, window))


def window_for(blocks) -> int:
    layers = len([b for b in blocks if type(b).__name__ != "Flatten"])
    return next_power_of_two(5 + layers)


@pytest.fixture(scope="module")
def sdnn_file(tmp_path_factory):
    blocks = build("sdnn")
    path = tmp_path_factory.mktemp("sdnn") / "sdnn.net"
    export(blocks, path)
    return blocks, path


@pytest.mark.parametrize("code", ["rate", "latency"])
def test_cuba_conv_flatten_dense_on_lava_equals_slayer(tmp_path, code):
    blocks = build("cuba")
    path = tmp_path / "cuba.net"
    export(blocks, path)
    with h5py.File(path, "r") as handle:
        assert [handle[f"layer/{i}/type"][0] for i in range(4)] == [b"input", b"conv", b"flatten", b"dense"]
    window = window_for(blocks)
    result = compare_on_lava(blocks, path, frames(code, 3, window), window)
    assert result.layer_spikes_slayer[0] > 0 and result.layer_spikes_slayer[-1] > 0, "silent layers prove nothing"
    assert result.exact and result.passed
    assert result.layer_spikes_lava == result.layer_spikes_slayer
    assert result.readout_elements == 3 * OUTPUTS * window  # dense readout (n, T) per patch


def test_cuba_on_lavas_floating_point_models_is_close_not_exact(tmp_path):
    """--precision float: netx's integer decays converted to fractions; float rounding may move a spike."""
    blocks = build("cuba")
    path = tmp_path / "cuba.net"
    export(blocks, path)
    window = window_for(blocks)
    result = compare_on_lava(blocks, path, frames("rate", 3, window), window, precision="float")
    assert result.precision == "float"
    for slayer, lava in zip(result.layer_spikes_slayer, result.layer_spikes_lava):
        assert slayer > 0 and abs(lava - slayer) <= 0.05 * slayer  # integer decays read as fractions: 10x off


def test_sdnn_on_floating_point_models_is_refused(sdnn_file):
    _, path = sdnn_file
    with pytest.raises(ValueError, match="--precision float: .* sigma-delta"):
        LavaNetwork(path, window=8, precision="float")


def test_sdnn_conv_flatten_dense_on_lava_within_tolerance(sdnn_file):
    blocks, path = sdnn_file
    with h5py.File(path, "r") as handle:
        assert [handle[f"layer/{i}/type"][0] for i in range(4)] == [b"input", b"conv", b"flatten", b"dense"]
        assert all(handle[f"layer/{i}/neuron/type"][()] == b"SDNN" for i in (0, 1, 3))
    window = window_for(blocks)
    result = compare_on_lava(blocks, path, frames("delta", 3, window), window)
    assert result.neuron == "sdnn" and result.tolerance == SDNN_TOLERANCE
    assert min(result.layer_spikes_slayer) > 0, "every layer must send graded spikes"
    assert result.passed, result.to_dict()
    assert result.max_graded_error <= SDNN_TOLERANCE and result.graded_values_compared > 0
    assert result.max_abs_value < 2.0**7  # the exact-float32 regime the tolerance derivation covers
    assert 0 < result.max_abs_spike <= 2 * result.max_abs_value  # a spike is a change between two values
    assert result.layer_spikes_lava == result.layer_spikes_slayer
    assert result.readout_elements == 3 * OUTPUTS  # one value per readout neuron and patch


def test_sdnn_corrupted_weight_fails_verification(sdnn_file, tmp_path):
    blocks, path = sdnn_file
    corrupted = tmp_path / "corrupted.net"
    shutil.copy(path, corrupted)
    with h5py.File(corrupted, "r+") as handle:  # the conv layer's largest weight, negated
        weight = handle["layer/1/weight"][()]
        index = np.unravel_index(np.argmax(np.abs(weight)), weight.shape)
        weight[index] = -weight[index] if weight[index] != -256 else 254
        handle["layer/1/weight"][...] = weight
    window = window_for(blocks)
    result = compare_on_lava(blocks, corrupted, frames("delta", 3, window), window)
    assert not result.passed
    assert result.max_graded_error > SDNN_TOLERANCE and result.graded_mismatches > 0


# -- the registration network with SDNN neurons ---------------------------------------------

SDNN_TINY = ["model.patch_size=8", "model.channels=[4]", "model.strides=[2]", "model.time_steps=5",
             "model.encoding=intensity", "model.neuron.type=sdnn", "model.spike_code=delta",
             "model.neuron.threshold=0.03125"]


def test_sdnn_registration_network_exports_verifies_and_streams(tmp_path):
    config = load_config(None, SDNN_TINY)
    torch.manual_seed(0)
    net = SpikingRegNet(config.model).eval()
    rest = tmp_path / "rest.net"  # the default: every patch from rest, verified that way
    export_netx(net, rest, spacing=8.0, verify_patches=2, range_mode="guarded")  # random: not proven
    written = json.loads(sidecar(rest, "verify").read_text())
    assert written["passed"] and "every patch from rest" in written["alignment"]
    out = tmp_path / "sdnn.net"  # --stream: patches back to back, as on a chip
    result = export_netx(net, out, spacing=8.0, verify_patches=2, range_mode="guarded", stream=True)
    written = json.loads(sidecar(out, "verify").read_text())
    assert written["passed"] and written["neuron"] == "sdnn" and written["tolerance"] == SDNN_TOLERANCE
    assert written["max_graded_error"] <= SDNN_TOLERANCE and "no reset" in written["alignment"]
    assert min(result.layer_spikes_lava) > 0
    # Streaming through the runner (as `spikereg run` does) gives the decoded field SLAYER
    # gives for each patch alone, up to the residues sigma-delta neurons carry between
    # patches: below the delta threshold, times the readout scale.
    torch.manual_seed(4)
    fixed, moving = torch.rand(3, 1, 8, 8, 8), torch.rand(3, 1, 8, 8, 8)
    with torch.no_grad():
        spikes = net.encode(fixed, moving)
        alone = net.decode(net.readout_window(net(spikes)))
    with LavaNetwork(out, window=net.window) as lava:
        streamed = net.decode(torch.from_numpy(lava.run(spikes[..., :net.window].numpy()).readout))
        # a second stream continues the first (no reset): its readout is re-based on what came before
        again = net.decode(torch.from_numpy(lava.run(spikes[:1, ..., :net.window].numpy()).readout))
    assert alone.abs().max() > 0
    scale = 2 * config.model.neuron.threshold * config.model.max_displacement
    assert (streamed - alone).abs().max() <= scale
    assert (again - alone[:1]).abs().max() <= scale


def test_sdnn_export_records_summed_inputs_against_lavas_24_bit_range(tmp_path):
    """Export measures every layer's summed input on many patches and records it beside the proven bound."""
    from lava_export.verify import RANGE_PATCHES, STRESS_KINDS
    from spikereg.networks.bounds import network_bounds, summed_input_limit

    config = load_config(None, SDNN_TINY)
    torch.manual_seed(0)
    net = SpikingRegNet(config.model).eval()
    written = export_netx(net, tmp_path / "ok.net", spacing=8.0, verify_patches=1, range_mode="guarded")
    assert written.range_patches == RANGE_PATCHES + len(STRESS_KINDS)
    assert written.summed_input_limit == summed_input_limit(6) == 32
    assert len(written.summed_input_peaks) == len(net.blocks)
    bounds = network_bounds(net)
    assert all(0 < peak <= bound.summed for peak, bound in zip(written.summed_input_peaks, bounds))
    report = json.loads(sidecar(tmp_path / "ok.net", "verify").read_text())
    assert report["provably_in_range"] is False and report["passed"]


def test_sdnn_file_without_its_sigma_delta_input_layer_is_refused(sdnn_file, tmp_path):
    _, path = sdnn_file
    broken = tmp_path / "no_input_neuron.net"
    shutil.copy(path, broken)
    with h5py.File(broken, "r+") as handle:
        del handle["layer/0/neuron"]
    with pytest.raises(ValueError, match="no_input_neuron.net: a sigma-delta .* needs a sigma-delta input layer"):
        LavaNetwork(broken, window=8)


def test_map_counts_the_sdnn_input_as_host_io_and_exactly_what_lava_builds_as_chip_layers(cli, sdnn_file):
    """On Loihi 2 the sigma-delta input is delta-encoded on the host and enters through embedded I/O.

    The mapping's host row must be the runner's host-side encoder, and its chip
    neurons the blocks netx builds with the input layer skipped, as the runner
    builds the network for both backends; energy charges neuron updates for the chip's only.
    """
    from spikereg.hardware.activity import activity, costs_from_mapping

    _, path = sdnn_file
    report = map_network(path, "loihi2")
    assert [(lm.type, lm.placement) for lm in report.layers] == [
        ("input", "host"), ("conv", "chip"), ("flatten", "chip"), ("dense", "chip")]
    host = report.layers[0]
    assert host.cores == 0 and report.cores == sum(lm.cores for lm in report.layers[1:]) > 0
    assert report.host_neurons == host.neurons > 0
    with LavaNetwork(path, window=8) as lava:
        lava._build(8)  # the processes, as `spikereg run --backend sim` builds them (nothing compiled)
        encoder, *chip = lava.layers
        assert type(encoder).__name__ == "DeltaEncoder"
        assert int(np.prod(encoder.s_out.shape)) == report.host_neurons
        assert [int(np.prod(layer.out.shape)) for layer in chip] == [
            lm.neurons for lm in report.layers if lm.neurons and lm.placement == "chip"]
        assert sum(int(np.prod(layer.out.shape)) for layer in chip) == report.total_neurons
    costs = costs_from_mapping(report)
    assert [c.on_chip for c in costs] == [False, True, True]  # one row per layer the run reports, encoder first
    counts = activity([5, 7, 3], 11, costs)
    assert counts.neurons == report.total_neurons and counts.layer_neurons == report.total_neurons + host.neurons

    result = cli.invoke("map", path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(json.dumps(report.to_dict()))
    assert "layer 0 (input): sigma-delta input, delta-encoded on the host" in report.notes[0]
    text = " ".join(cli.invoke("map", path).output.split())
    assert f"0 input {'x'.join(map(str, host.shape))} {host.neurons} 0 0 0 0.0 host" in text
    assert f"total {report.total_neurons} " in text  # the chip's neurons only
    assert f"host I/O: {host.neurons} neurons run on the host, not on neurocores" in text


def test_sdnn_is_refused_by_a_chip_without_graded_spikes(tmp_path):
    net = SpikingRegNet(load_config(None, SDNN_TINY).model)
    out = tmp_path / "sdnn.net"
    with pytest.raises(MappingError, match="graded"):
        export_netx(net, out, spacing=8.0, verify_patches=0, profile="loihi1")
    assert not out.exists()


def test_loihi2_backend_without_lava_loihi_stops_before_building(sdnn_file):
    if loihi2_available():
        pytest.skip("lava-loihi is installed here")
    _, path = sdnn_file
    with pytest.raises(BackendUnavailable, match="lava-loihi is not installed here.*--backend sim"):
        LavaNetwork(path, window=8, backend="loihi2")


def test_mistyped_loihi_generation_is_one_clear_error(monkeypatch):
    from lava_export.chip import use_loihi2_host

    monkeypatch.setenv("LOIHI_GEN", "N9")
    with pytest.raises(ValueError, match=r"LOIHI_GEN='N9': not a Loihi chip generation; choose one of .*N3B3"):
        use_loihi2_host()


def test_the_default_chain_with_sparse_synapses_equals_slayer_on_real_anatomy():
    """The shipped default built by the graph builder, each layer a Lava Sparse of its nonzero weights."""
    from lava_export.verify import compare_on_lava, sample_patches
    from spikereg.netx_file import load_model
    from spikereg.pretrained import DEFAULT_NAME, resolve_model

    path = resolve_model(DEFAULT_NAME)
    net = SpikingRegNet.from_netx(load_model(path)).eval()
    fixed, moving = sample_patches(net, 2.0, 3, seed=2)
    with torch.no_grad():
        frames = net.encode(fixed, moving)[..., : net.window]
    result = compare_on_lava(net.chip_layers, path, frames, net.window, synapses="sparse")
    assert result.passed and "sparse synapses" in result.alignment, result.to_dict()
    assert result.max_graded_error == 0.0 and min(result.layer_spikes_slayer) > 0
    assert result.layer_spikes_lava == result.layer_spikes_slayer
