"""The Lava runtime is stopped on errors and Ctrl-C, mid-stream, without hanging."""
import numpy as np
import pytest
import torch

from lava_export.runner import LavaNetwork


def test_interrupt_mid_stream_stops_lava(tiny_export):
    net, path = tiny_export
    p = net.config.patch_size
    with torch.no_grad():
        spikes = net.encode(torch.rand(4, 1, p, p, p), torch.rand(4, 1, p, p, p))[..., : net.window].numpy()

    def interrupt(done, steps, total):
        raise KeyboardInterrupt

    lava = LavaNetwork(path, window=net.window, patches_per_chunk=1)
    with pytest.raises(KeyboardInterrupt):
        with lava:
            lava.run(spikes, progress=interrupt)
    assert not lava._started  # stopped, and the test did not hang


def test_wrong_patch_shape_is_refused_before_lava_runs(tiny_export):
    net, path = tiny_export
    wrong = np.zeros((2, 3, net.config.patch_size, net.config.patch_size, net.window), np.float32)
    with LavaNetwork(path, window=net.window) as lava:
        with pytest.raises(ValueError, match="network's input is"):
            lava.run(wrong)
        assert not lava._started
