"""Training a U-Net: twin, conversion into the proven range, fine-tuning that stays there, and its checkpoint."""
import torch

from spikereg.config import load_config
from spikereg.networks.graph_bounds import graph_worst_case_table
from spikereg.networks.graph_model import GraphRegNet
from spikereg.training.trainer import load_checkpoint, load_twin, train

TINY_UNET = ["model.architecture=unet", "model.patch_size=16", "model.channels=[4, 8]", "model.strides=[]",
             "model.spike_code=delta", "model.neuron.type=sdnn", "model.neuron.threshold=0.015625",
             "model.spike_exp=0", "model.max_displacement=4.0", "run.patch_stride=12", "data.spacing=4.0",
             "data.pairs=4", "train.ann_steps=6", "train.steps=4", "train.batch_size=4", "train.checkpoint_every=2",
             "train.ann_range_weight=0.1", "train.learning_rate=0.01", "train.tensorboard=false"]


def test_unet_trains_converts_and_stays_proven(tmp_path):
    config = load_config(None, TINY_UNET)
    best = train(config, tmp_path / "run")
    net, saved = load_checkpoint(best)
    assert isinstance(net, GraphRegNet)
    assert saved.model.spike_exp == 0 and len(saved.model.clamp) == len(net.nodes) - 2
    assert saved.model.readout_gain != 1.0  # conversion scaled the nodes and wrote the gain
    # a large learning rate pushes the weights; the projection after every step keeps the proof
    assert all(row.ok for row in graph_worst_case_table(net))
    twin = load_twin(best)
    assert twin is not None and twin.config.architecture == "unet"
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 4
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert rows[1].startswith("ann,") and rows[-1].startswith("4,")
