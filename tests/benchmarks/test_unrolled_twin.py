"""benchmarks/unrolled_twin.py: the field after its passes is the pipeline's composition, trainable end to end;
the script trains a stored twin a few steps and writes a checkpoint twin_checkpoints.py reads."""
import math

import torch
import unrolled_twin

from spikereg.data.deform import compose_torch, warp_torch
from spikereg.training.trainer import load_twin


def test_two_passes_compose_the_residual_on_the_warped_moving_image_as_register_does(tiny_unet):
    twin = tiny_unet.twin.eval()
    torch.manual_seed(0)
    fixed, moving = torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8)
    first = twin.predict(fixed, moving)
    assert torch.equal(unrolled_twin.unrolled_field(twin, fixed, moving, 1), first)
    second = twin.predict(fixed, warp_torch(moving, first))
    expected = compose_torch(first, second)  # register(): ddf = compose(ddf, residual)
    assert torch.allclose(unrolled_twin.unrolled_field(twin, fixed, moving, 2), expected)
    assert not torch.allclose(expected, first + second)  # the order matters: not a plain sum


def test_a_few_steps_write_a_twin_checkpoint_with_the_input_s_config(tiny_unet, tmp_path):
    out = tmp_path / "unrolled.pt"
    assert unrolled_twin.main([str(tiny_unet.checkpoint), "--passes", "2", "--steps", "2", "--crop", "16",
                               "--batch-size", "2", "--threads", "1", "--out", str(out)]) == 0
    twin = load_twin(out)
    before = load_twin(tiny_unet.checkpoint)
    assert math.isnan(twin.val_error_voxels)
    changed = [name for name, value in twin.state_dict().items() if not torch.equal(value, before.state_dict()[name])]
    assert changed  # trained: its kernels moved
    stored, original = torch.load(out, weights_only=True), torch.load(tiny_unet.checkpoint, weights_only=True)
    assert stored["config"] == original["config"]
