"""Patches from rest on Lava: each equals SLAYER on that patch alone, bit for bit, at every layer and step.

A tiny SDNN U-Net graph (:class:`~lava_export.graph_builder.LavaGraph`) and
a tiny SDNN chain on stock netx (:class:`~lava_export.runner.LavaNetwork`)
run several different real-anatomy patches, each held for a window and each
from rest (:mod:`lava_export.rest`); SLAYER runs each patch alone, a fresh
forward pass. Lava's step ``t + 1`` is SLAYER's ``t`` (the host's delta
encoder). The same patches streamed without the reset differ: the reset does
something. Real Lava, fixed point, tiny shapes.
"""
import numpy as np
import pytest
import torch

from lava_export import rest
from lava_export.graph_builder import LavaGraph
from lava_export.graph_file import export_graph
from lava_export.graph_verify import template_frames
from lava_export.runner import LavaNetwork, from_lava, run_config
from spikereg import compat
from spikereg.networks.graph_topology import UNetConfig, chain_topology
from spikereg.networks.unet import SpikingGraph, SpikingUNet

WINDOW = 8
PATCHES = 3


def alone(net, levels: torch.Tensor, window: int = WINDOW) -> list[np.ndarray]:
    """Every node's output on one patch ``(C, H, W)`` held ``window`` steps: SLAYER from rest, a fresh pass."""
    held = levels[None, ..., None].expand(1, *levels.shape, window).contiguous()
    with torch.no_grad():
        return [o[0].double().numpy() for o in net.node_outputs(held)]


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    net = SpikingUNet(UNetConfig())
    path = tmp_path_factory.mktemp("rest") / "unet.net"
    export_graph(net, path)
    levels = template_frames(net, PATCHES, WINDOW, stress=False)[..., 0]  # (P, C, H, W) graded levels
    return net, path, levels


@pytest.mark.parametrize("rest_by", ["models", "vars"])
@pytest.mark.parametrize("window", [WINDOW, 3])  # 3: patches cut short, messages still in flight at the reset
def test_unet_patches_from_rest_equal_slayer_on_each_patch_alone(unet, rest_by, window):
    net, path, levels = unet
    with LavaGraph(path) as graph:
        run = graph.run_patches(levels.numpy(), window, rest_by=rest_by)
    assert run.window == window and run.time_steps == PATCHES * window
    lengths = [net.path_lengths[n.name] for n in net.nodes]
    for k in range(PATCHES):
        slayer = alone(net, levels[k], window)
        for name, values, reference, length in zip(run.names, run.values, slayer, lengths):
            lava = values[k]
            assert lava.shape == reference.shape, name
            assert not lava[..., 0].any(), name  # SLAYER's step -1
            np.testing.assert_array_equal(lava[..., 1:], reference[..., :-1], err_msg=f"patch {k}, {name}")
            # from rest, held input, aligned paths: one message per neuron at most, all on one step
            assert np.count_nonzero(lava, axis=-1).max() == (1 if length + 1 < window else 0), name
            busy = np.flatnonzero(np.abs(lava).reshape(-1, window).sum(axis=0))
            assert busy.tolist() == ([length + 1] if length + 1 < window else []), name
    if rest_by == "vars":
        assert run.reset_seconds > 0


def test_the_reset_does_something_a_plain_stream_differs(unet):
    """Streamed back to back without the reset, only the first patch (which starts from rest) agrees."""
    _, path, levels = unet
    with LavaGraph(path) as graph:
        rested = graph.run_patches(levels.numpy(), WINDOW)
    stream = np.repeat(np.moveaxis(levels.numpy(), 0, -1), WINDOW, axis=-1)  # patch k in [k*W, (k+1)*W)
    with LavaGraph(path) as graph:
        plain = graph.run(stream)
    for name, per_patch, streamed in zip(rested.names, rested.values, plain.values):
        np.testing.assert_array_equal(per_patch[0], streamed[..., :WINDOW], err_msg=name)
        for k in range(1, PATCHES):
            assert not np.array_equal(per_patch[k], streamed[..., k * WINDOW:(k + 1) * WINDOW]), (name, k)


def test_state_vars_cover_every_var_a_run_changes(unet, monkeypatch):
    """After a patch, every Var that differs from its init is one the table lists as state.

    A window of 3 steps ends while the messages of layers 2 steps deep are in their connections' buffers.
    """
    _, path, levels = unet
    changed: set[tuple[str, str]] = set()
    reset = rest.reset_state_vars

    def record_then_reset(processes):
        for process in processes:
            for var in process.vars:
                if not isinstance(var.init, np.ndarray) and not np.isscalar(var.init):
                    continue  # a sparse weight matrix: a parameter (Sparse's model never writes it back)
                if not np.array_equal(var.get(), rest.rest_value(var)):
                    changed.add((type(process).__name__, var.name))
        return reset(processes)

    monkeypatch.setattr(rest, "reset_state_vars", record_then_reset)
    with LavaGraph(path) as graph:
        graph.run_patches(levels[:2].numpy(), 3, rest_by="vars")
    assert changed, "the patch changed nothing"
    assert all(name in rest.STATE_VARS.get(kind, ()) for kind, name in changed), changed
    assert {("SigmaDelta", "sigma"), ("SigmaDelta", "act"), ("DeltaEncoder", "act"), ("Conv", "a_buf"),
            ("Sparse", "a_buff")} <= changed


def test_a_process_whose_state_is_unknown_is_refused():
    source = compat.import_lava("lava.proc.io.source")
    ring = source.RingBuffer(data=np.zeros((2, 3)))
    with pytest.raises(rest.RestError, match="RingBuffer: which of its Vars are state is not known"):
        rest.state_var_names(ring)
    with pytest.raises(rest.RestError, match="RingBuffer"):
        rest.rest_every([ring], WINDOW, run_config("sim"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    config = UNetConfig(align_delays=False)
    net = SpikingGraph(config, *chain_topology(config, [4]))
    path = tmp_path_factory.mktemp("rest") / "chain.net"
    export_graph(net, path)  # a chain graph file is a sequential netx file
    frames = template_frames(net, PATCHES, WINDOW, stress=False)  # (P, C, H, W, WINDOW) held levels
    return net, path, frames


def test_chain_patches_from_rest_equal_slayer_on_each_patch_alone(chain):
    """Stock netx, from rest: every layer per patch, twice on one compiled network; the readout is its value."""
    net, path, frames = chain
    with LavaNetwork(path, window=WINDOW, from_rest=True) as lava:
        runs = [lava.run(frames.numpy(), keep_layers=True) for _ in range(2)]
        assert not lava.has_run  # at rest after every window: nothing for a caller to rebuild
    for run in runs:
        assert run.time_steps == PATCHES * WINDOW  # no drain
        for k in range(PATCHES):
            slayer = alone(net, frames[k, ..., 0])
            window = slice(k * WINDOW, (k + 1) * WINDOW)
            for layer, (values, reference) in enumerate(zip(run.layer_values, slayer)):
                lava = from_lava(values[..., window]).astype(np.float64)
                assert not lava[..., 0].any()
                np.testing.assert_array_equal(lava[..., 1:], reference[..., :-1], err_msg=f"patch {k}, layer {layer}")
                assert run.layer_spikes[layer, k] == np.count_nonzero(reference[..., :-1]) > 0
            np.testing.assert_array_equal(run.readout[k], from_lava(run.layer_values[-1][..., window]))
            np.testing.assert_array_equal(run.readout[k].sum(axis=-1).astype(np.float64),
                                          slayer[-1].sum(axis=-1))


def test_chain_plain_stream_differs_and_from_rest_is_refused_where_it_cannot_hold(chain, tmp_path):
    net, path, frames = chain
    with LavaNetwork(path, window=WINDOW, from_rest=True) as lava:
        rested = lava.run(frames.numpy(), keep_layers=True)
    with LavaNetwork(path, window=WINDOW) as lava:
        plain = lava.run(frames.numpy(), keep_layers=True)
    encoder = slice(WINDOW, 2 * WINDOW)  # patch 1's window at the encoder: levels from rest, changes in a stream
    assert not np.array_equal(rested.layer_values[0][..., encoder], plain.layer_values[0][..., encoder])
    assert not np.array_equal(rested.readout[1:], plain.readout[1:])

    with LavaNetwork(path, window=3, from_rest=True) as lava, pytest.raises(ValueError, match="ends before it"):
        lava.run(frames[..., :3].numpy())  # the readout answers on the window's 4th step
    cuba = SpikingGraph(UNetConfig(neuron="cuba", align_delays=False),
                        *chain_topology(UNetConfig(neuron="cuba"), [4]))
    export_graph(cuba, tmp_path / "cuba.net")
    with pytest.raises(ValueError, match="CUBA network starts every window from rest already"):
        LavaNetwork(tmp_path / "cuba.net", window=WINDOW, from_rest=True)
