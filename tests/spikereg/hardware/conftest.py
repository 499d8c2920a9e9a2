"""Fixtures shared by the hardware tests."""
from pathlib import Path

import pytest
import torch

from lava_export.graph_file import export_graph
from spikereg.networks.graph_topology import UNetConfig
from spikereg.networks.unet import SpikingUNet


@pytest.fixture(scope="module")
def hand_unet(tmp_path_factory) -> Path:
    """The hand-counted U-Net: a 4^3 patch, one channel everywhere, every 3-D kernel 0.5 except two taps of
    input->enc1: its centre 0 and its corner (0, 0, 0) 1e-4, below half an 8-bit step, which quantizes to 0."""
    net = SpikingUNet(UNetConfig(patch_size=4, in_channels=1, channels=(1, 1), out_channels=1))
    with torch.no_grad():
        for edge in net.edges:
            kernel = net.edge_synapse(edge).parametrizations.weight.original
            kernel.fill_(0.5)
            if edge.name == "input->enc1":
                kernel[0, 0, 1, 1, 1] = 0.0
                kernel[0, 0, 0, 0, 0] = 1e-4
    path = tmp_path_factory.mktemp("hand") / "hand.net"
    export_graph(net, path, extra={"model": {"patch_size": 4}, "window": 8})
    return path
