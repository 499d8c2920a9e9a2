"""A tiny spiking U-Net for the benchmarks' U-Net paths: its graph file, its checkpoint with the ANN twin.

Built in seconds, as ``spikereg train`` would leave it after conversion (no
training): a random ``GraphTwin`` converted into the chip's proven range
(``convert_twin``), exported with ``export_unet`` (proven, not verified: the
export's own tests verify it), and a checkpoint holding the converted U-Net,
its config and the twin. Patches of 8^3 at 4 mm, so that a whole brain at 8 mm
(25x29x24 voxels, on the model's 4 mm working grid where ``spikereg run``
registers) is a few dozen patches.
"""
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their sibling modules by name

SPACING = 4.0
TINY_UNET = ["model.architecture=unet", "model.patch_size=8", "model.channels=[4, 6]", "model.strides=[]",
             "model.spike_code=delta", "model.neuron.type=sdnn", "model.neuron.threshold=0.015625",
             "model.spike_exp=0", "model.max_displacement=2.0", "model.encoding=intensity",
             f"data.spacing={SPACING}", "run.iterations=1", "run.patch_stride=8"]


@dataclass
class TinyUNet:
    path: Path  # the graph file
    checkpoint: Path
    twin: torch.nn.Module  # the GraphTwin the checkpoint stores
    recipe: Path  # its config as YAML, at 8 mm: pairs of a few dozen patches


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory) -> TinyUNet:
    from lava_export.graph_verify import export_unet
    from spikereg.config import load_config, save_config
    from spikereg.data import load_mni
    from spikereg.networks.graph_convert import convert_twin
    from spikereg.networks.graph_topology import edge_key
    from spikereg.networks.graph_twin import GraphTwin
    from spikereg.training.trainer import StoredTwin, save_checkpoint

    folder = tmp_path_factory.mktemp("tiny_unet")
    config = load_config(None, TINY_UNET)
    torch.manual_seed(0)
    twin = GraphTwin(config.model).eval()
    # every 8^3 patch of the 4 mm brain, against itself shifted by a voxel
    t1 = torch.as_tensor(np.asarray(load_mni("t1", SPACING).data, dtype=np.float32))[:48, :56, :40]
    fixed = t1.reshape(6, 8, 7, 8, 5, 8).permute(0, 2, 4, 1, 3, 5).reshape(-1, 1, 8, 8, 8)
    moving = torch.roll(fixed, 1, dims=-1)
    with torch.no_grad():  # a readout of at most 0.1 voxel on them: runs that pass spikereg run's verdict
        largest = float(twin.predict(fixed, moving).abs().max())
        for e in twin.into[twin.nodes[-1].name]:
            twin.kernels[edge_key(twin.edges[e])] *= 0.1 / largest
    net = convert_twin(twin, fixed, moving).net
    config = replace(config, model=net.model)  # clamp and readout gain, as training writes them after conversion
    path = folder / "unet.net"
    export_unet(net, path, spacing=SPACING, run_defaults={"iterations": 1, "patch_stride": 8}, verify_patches=0)
    checkpoint = folder / "best.pt"
    save_checkpoint(checkpoint, net, config, 0, 1.0, twin=StoredTwin(twin.state_dict(), 1.0))
    recipe = folder / "recipe.yaml"
    save_config(replace(config, data=replace(config.data, spacing=8.0, pairs=2)), recipe)
    return TinyUNet(path, checkpoint, twin, recipe)
