"""Copies of a chain side by side on Lava, held levels and the shortened window from rest.

Every run here is compared with the plain run of the same patches on the
same file (real Lava, fixed point, a tiny SDNN chain on stock netx): the
readout, every layer's values at every step, the per-patch and per-step
message counts must be equal element for element. The plain run itself is
checked against SLAYER in test_rest.py.
"""
import h5py
import numpy as np
import pytest

from lava_export import copies as stacked
from lava_export.graph_file import export_graph
from lava_export.graph_verify import template_frames
from lava_export.runner import LavaNetwork
from spikereg.networks.graph_topology import UNetConfig, chain_topology
from spikereg.networks.unet import SpikingGraph
from spikereg.netx_file import read_netx

WINDOW = 8
PATCHES = 5


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    config = UNetConfig(align_delays=False)
    net = SpikingGraph(config, *chain_topology(config, [4]))
    path = tmp_path_factory.mktemp("copies") / "chain.net"
    export_graph(net, path)
    frames = template_frames(net, PATCHES, WINDOW, stress=False).numpy()  # (P, C, H, W, WINDOW) held levels
    with LavaNetwork(path, window=WINDOW, from_rest=True) as lava:
        plain = lava.run(frames, keep_layers=True)
    return path, frames, plain


def assert_same_run(run, plain):
    assert run.time_steps == plain.time_steps == PATCHES * WINDOW
    np.testing.assert_array_equal(run.readout, plain.readout)
    np.testing.assert_array_equal(run.layer_spikes, plain.layer_spikes)
    np.testing.assert_array_equal(run.step_spikes, plain.step_spikes)
    assert len(run.layer_values) == len(plain.layer_values)
    for layer, (got, want) in enumerate(zip(run.layer_values, plain.layer_values)):
        np.testing.assert_array_equal(got, want, err_msg=f"layer {layer}")


@pytest.mark.parametrize("copies", [2, 3, 5])  # 2 and 3 leave silent padding copies in the last window
def test_copies_side_by_side_give_the_plain_run(chain, copies):
    path, frames, plain = chain
    assert plain.layer_spikes.min() > 0  # every layer answers every patch: the comparison sees something
    with LavaNetwork(path, window=WINDOW, from_rest=True, copies=copies) as lava:
        first = lava.run(frames, keep_layers=True)
        again = lava.run(frames[::-1].copy())  # a second call on the compiled copies, another order
        assert lava.layer_sizes == [int(np.prod(v.shape[:-1])) for v in plain.layer_values]
    assert_same_run(first, plain)
    np.testing.assert_array_equal(again.readout, plain.readout[::-1])
    np.testing.assert_array_equal(again.layer_spikes, plain.layer_spikes[:, ::-1])


def test_held_levels_are_the_window_of_copies(chain):
    path, frames, plain = chain
    assert np.array_equal(frames, np.broadcast_to(frames[..., :1], frames.shape))  # the input is held
    with LavaNetwork(path, window=WINDOW, from_rest=True, copies=2) as lava:
        held = lava.run(frames[..., :1].copy(), keep_layers=True)
    assert_same_run(held, plain)
    with LavaNetwork(path, window=WINDOW) as lava, pytest.raises(ValueError, match="network window is 8$"):
        lava.run(frames[..., :1].copy())  # a stream has no held levels


def test_from_rest_runs_only_until_the_readout_answers(chain):
    path, frames, plain = chain
    with LavaNetwork(path, window=WINDOW, from_rest=True) as lava:
        lava.run(frames[:1])
        layers = len(lava.layers)
        assert lava.run_window == layers + 1 < WINDOW  # the encoder's step, one per layer, the readout's answer
        skipped = slice(lava.run_window, WINDOW)
    for values in plain.layer_values:  # what was skipped is zeros, as SLAYER computes (test_rest.py)
        per_patch = values.reshape(*values.shape[:-1], PATCHES, WINDOW)
        assert not per_patch[..., skipped].any()


def test_copies_file_repeats_each_layer_in_groups(chain, tmp_path):
    path, _, _ = chain
    model = read_netx(path)
    written = stacked.write_copies(model, 3, tmp_path / "three.net")
    with h5py.File(path) as one, h5py.File(written) as three:
        assert three["layer/0/shape"][0] == 3 * one["layer/0/shape"][0]
        for index in range(1, len(one["layer"])):
            a, b = one[f"layer/{index}"], three[f"layer/{index}"]
            assert b["groups"][()] == 3 * a["groups"][()]
            assert b["outChannels"][()] == 3 * a["outChannels"][()]
            np.testing.assert_array_equal(b["weight"][()], np.concatenate([a["weight"][()]] * 3))


def test_what_cannot_stack_is_named(chain, tmp_path):
    path, _, _ = chain
    copy = tmp_path / "dense.net"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "r+") as file:
        del file["layer/2/type"]
        file["layer/2/type"] = [b"dense"]
    reason = stacked.copy_blocker(read_netx(copy))
    assert reason == "layer 2 is 'dense': only input and conv layers stack as copies"
    with pytest.raises(ValueError, match="cannot run 4 copies side by side: layer 2 is 'dense'"):
        LavaNetwork(copy, window=WINDOW, from_rest=True, copies=4)
    with h5py.File(copy, "r+") as file:
        del file["layer/2/type"]
        file["layer/2/type"] = [b"conv"]
        del file["layer/1/neuron/vThMant"]
        file["layer/1/neuron/vThMant"] = np.ones(4, dtype=np.int64)
    assert stacked.copy_blocker(read_netx(copy)) == "layer 1's neuron has per-neuron vThMant"
    with pytest.raises(ValueError, match="stacked copies .* run patches from rest only"):
        LavaNetwork(path, window=WINDOW, copies=2)


def test_unstacking_puts_copies_back_in_patch_order():
    # 2 copies, 2 frames of 3 steps, 2 features each, 3 patches (one padding copy)
    window, copies, count = 3, 2, 3
    stacked_steps = np.zeros((1, copies * 2, 2 * window))
    for frame in range(2):
        for copy in range(copies):
            for t in range(window):
                stacked_steps[0, copy * 2:(copy + 1) * 2, frame * window + t] = 100 * (frame * copies + copy) + t
    out = stacked.unstack_steps(stacked_steps, copies, window, count)
    expected = np.array([100 * p + t for p in range(count) for t in range(window)], dtype=float)
    np.testing.assert_array_equal(out[0, 0], expected)
    np.testing.assert_array_equal(out[0, 1], expected)
    counts = np.arange(copies * 2 * window).reshape(1, copies, 2 * window)
    assert stacked.unstack_counts(counts, window, count).tolist() == [[0, 1, 2, 6, 7, 8, 3, 4, 5]]
    assert stacked.pad_windows(np.arange(6), 3, 5).tolist() == [0, 1, 2, 0, 0, 3, 4, 5, 0, 0]


def test_an_interrupted_run_of_copies_stops_lava(chain):
    path, frames, _ = chain

    def interrupt(done, steps, total):
        assert done == 2  # one window of two copies: two patches answered
        raise KeyboardInterrupt

    lava = LavaNetwork(path, window=WINDOW, from_rest=True, copies=2, patches_per_chunk=1)
    with pytest.raises(KeyboardInterrupt), lava:
        lava.run(frames, progress=interrupt)
    assert not lava._started  # stopped, and the test did not hang
