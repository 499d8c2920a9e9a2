"""Shared fixtures: a tiny network trained for a few SLAYER steps, and its netx export."""
from pathlib import Path

import pytest

from spikereg.config import load_config

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "model.patch_size=8", "model.channels=[4]", "model.strides=[2]", "model.time_steps=5",
    "data.spacing=8.0", "data.pairs=2", "train.steps=3", "train.batch_size=2",
    "train.checkpoint_every=3", "train.ann_steps=3", "run.patch_stride=4",
]


@pytest.fixture(scope="session")
def tiny_config():
    return load_config(ROOT / "configs" / "demo.yaml", TINY)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_config, tmp_path_factory):
    from spikereg.training.trainer import train

    return train(tiny_config, tmp_path_factory.mktemp("tiny_train"))


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    """(net, path) of the tiny network exported (and verified) to netx."""
    from lava_export.netx import export_netx
    from spikereg.training.trainer import load_checkpoint

    net, config = load_checkpoint(tiny_checkpoint)
    path = tmp_path_factory.mktemp("tiny_export") / "tiny.net"
    export_netx(net, path, spacing=config.data.spacing, verify_patches=2)
    return net, path
