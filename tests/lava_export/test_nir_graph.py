"""export --to nir: the chip's CUBA network as a NIR graph, imported into snnTorch and run against SLAYER."""
import json

import numpy as np
import pytest

nir = pytest.importorskip("nir")
pytest.importorskip("snntorch")

from lava_export.nir_graph import AGREEMENT, STATE_QUANTUM, TIME_STEP, NirExportError, export_nir, verify_nir  # noqa: E402
from lava_export.verify import sample_patches  # noqa: E402
from spikereg.networks.snn import SpikingRegNet  # noqa: E402
from spikereg.pretrained import resolve_model  # noqa: E402


@pytest.fixture(scope="module")
def demo_nir(tmp_path_factory):
    out = tmp_path_factory.mktemp("nir") / "demo.nir"
    result = export_nir(resolve_model("demo"), out, verify_patches=4)
    return out, result


def test_the_graph_carries_the_chips_integers(demo_nir):
    out, _ = demo_nir
    graph = nir.read(str(out))
    net = SpikingRegNet.from_netx(resolve_model("demo"))
    convs = [graph.nodes[f"conv{i}"] for i in range(1, len(net.blocks) + 1)]
    for conv, block in zip(convs, net.blocks):
        mantissa = conv.weight * 64  # SLAYER's w_scale: the 8-bit weights netx hands to Lava
        assert np.array_equal(mantissa, np.round(mantissa))
        assert conv.weight.shape == tuple(block.synapse.weight.shape[:-1])
    cuba = graph.nodes["cuba1"]
    device = net.blocks[0].neuron.device_params
    # iDecay 4095 of 4096: dt / tau_syn is the fraction lost per step
    assert np.allclose(TIME_STEP / cuba.tau_syn, int(device["iDecay"]) / 4096)
    assert np.isinf(cuba.tau_mem).all() and int(device["vDecay"]) == 0  # integrate-and-fire: no voltage leak
    assert np.allclose(cuba.v_threshold, int(device["vThMant"]) / 64 + STATE_QUANTUM / 2)
    assert [edge for edge in graph.edges if edge[0] == "input"] == [("input", "conv1")]


def test_snntorch_runs_it_as_slayer_does_within_the_stated_tolerance(demo_nir):
    out, result = demo_nir
    assert result.passed and min(result.layer_agreement) >= AGREEMENT
    assert all(s > 0 for s in result.layer_spikes_slayer)  # the comparison saw spikes on every layer
    # the float dynamics keep the current the chip truncates: a few more spikes, never many fewer
    for theirs, ours in zip(result.layer_spikes_slayer, result.layer_spikes_nir):
        assert abs(ours - theirs) <= 0.05 * theirs
    stored = json.loads(out.with_name(out.name + ".verify.json").read_text())
    assert stored["passed"] and stored["layer_agreement"] == result.layer_agreement


def test_a_corrupted_weight_fails_verification(demo_nir):
    out, _ = demo_nir
    graph = nir.read(str(out))
    net = SpikingRegNet.from_netx(resolve_model("demo"))
    graph.nodes["conv2"].weight = -graph.nodes["conv2"].weight
    fixed, moving = sample_patches(net, 4.0, 2)
    result = verify_nir(graph, net, net.encode(fixed, moving))
    assert not result.passed and result.layer_agreement[1] < AGREEMENT


def test_sigma_delta_networks_are_refused(tmp_path):
    with pytest.raises(NirExportError, match="NIR has no sigma-delta neuron"):
        export_nir(resolve_model("sdnn-2mm"), tmp_path / "x.nir", verify_patches=0)
    assert not list(tmp_path.iterdir())


def test_the_cli_exports_a_checkpoint(cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "tiny.nir"
    result = cli.invoke("export", tiny_checkpoint, "--to", "nir", "--out", out, "--verify-patches", "2")
    assert result.exit_code == 0, result.output
    assert "verified in snntorch" in result.output
    graph = nir.read(str(out))
    assert isinstance(graph.nodes["cuba1"], nir.CubaLIF)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.nir", "tiny.nir.verify.json"]  # no temporaries


def test_the_cli_refuses_an_sdnn_checkpoint(cli, tmp_path):
    line = cli.one_error_line("export", "sdnn-2mm", "--to", "nir", "--out", tmp_path / "m.nir")
    assert "NIR has no sigma-delta neuron" in line
    assert not list(tmp_path.iterdir())

