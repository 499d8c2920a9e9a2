"""Data-parallel training under torchrun matches one process; batch shares split the single-process batch."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikereg.config import save_config
from spikereg.data.sampling import PatchSampler
from spikereg.data.synth import SyntheticPair
from spikereg.training.distributed import Workers
from spikereg.training.trainer import train

# batch 3 over 2 processes: shares of 2 and 1, so the loss weighting by share size matters. Plain SGD
# with large rates (Adam would hide a wrongly scaled gradient): a gradient twice too large moves these
# weights by ~7e-3, far above the tolerance.
SETS = ["train.batch_size=3", "train.steps=4", "train.checkpoint_every=2", "train.ann_steps=2",
        "train.optimizer=sgd", "train.learning_rate=0.1", "train.ann_learning_rate=0.1"]


@pytest.mark.parametrize("count,world", [(8, 2), (3, 2), (7, 3), (1, 2)])
def test_shares_are_disjoint_contiguous_and_cover_the_batch(count, world):
    shares = [Workers(rank=r, world=world).share(count) for r in range(world)]
    covered = [i for share in shares for i in range(count)[share]]
    assert covered == list(range(count))
    sizes = [len(range(count)[share]) for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_each_share_is_its_part_of_the_single_process_batch():
    rng = np.random.default_rng(0)
    pairs = [SyntheticPair(fixed=rng.uniform(0.2, 1, (12, 12, 12)).astype(np.float32),
                           moving=rng.uniform(0.2, 1, (12, 12, 12)).astype(np.float32),
                           ddf=rng.normal(size=(3, 12, 12, 12)).astype(np.float32),
                           fixed_labels=None, moving_labels=None) for _ in range(2)]
    whole = PatchSampler(pairs, 8, 2, np.random.default_rng(5))
    split = [PatchSampler(pairs, 8, 2, np.random.default_rng(5)) for _ in range(2)]
    for _ in range(2):  # the random streams stay in step across draws
        batch = whole.sample(5)
        parts = [sampler.sample(5, Workers(rank=r, world=2).share(5)) for r, sampler in enumerate(split)]
        for name in ("fixed", "moving", "target"):
            assert torch.equal(getattr(batch, name), torch.cat([getattr(p, name) for p in parts]))


def test_torchrun_two_processes_match_one_process(tiny_config, tmp_path):
    config_path = tmp_path / "tiny.yaml"
    save_config(tiny_config, config_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "spikereg", "train", "--config", str(config_path), "--out", str(tmp_path / "two")]
    for item in SETS:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    from spikereg.config import load_config

    train(load_config(config_path, SETS), tmp_path / "one")
    two = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=False)
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=False)
    assert two["step"] == one["step"] == 4
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][key], value, rtol=0, atol=1e-5, msg=key)
    assert two["val_error_voxels"] == pytest.approx(one["val_error_voxels"], abs=1e-4)
    # Only rank 0 wrote: one log with one header and one row per checkpoint.
    rows = (tmp_path / "two" / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["step", "ann", "0", "2", "4"]


def test_cuda_without_a_gpu_is_one_clear_error():
    from spikereg.training.distributed import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="train.device 'cuda': torch sees no CUDA device"):
        resolve_device("cuda")
