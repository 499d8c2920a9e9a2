"""Each loss term on cases with known answers, through the objective the trainer uses."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spikereg.config import LossConfig, TrainConfig
from spikereg.data.deform import warp_torch
from spikereg.losses import RegistrationLoss, dense_field, displacement_loss, layer_rates, spike_rate_loss
from spikereg.registration.patches import upsample

P, R = 16, 4  # patch side, control cell (grid 4^3)


def objective(**weights):
    base = {name: 0.0 for name in vars(LossConfig())}
    return RegistrationLoss(TrainConfig(loss=LossConfig(**(base | weights))), max_displacement=3.0, reduction=R)


def smooth_image(seed, batch=2):
    """Smooth random texture in [0, 1] (every LNCC window has variance)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, 6, 6, 6, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(P, P, P), mode="trilinear", align_corners=True)


def make_batch(fixed, moving, **labels):
    return SimpleNamespace(fixed=fixed, moving=moving, target=torch.zeros(len(fixed), 3, 4, 4, 4), **labels)


def zero_controls(n=2):
    return torch.zeros(n, 3, P // R, P // R, P // R)


def test_dense_field_is_the_pipelines_upsampling():
    controls = torch.randn(1, 3, 4, 4, 4)
    assert torch.allclose(dense_field(controls, R)[0], torch.from_numpy(upsample(controls[0].numpy(), R, (P, P, P))))


def test_lncc_of_an_image_with_itself_is_minus_one_and_worse_with_noise():
    image = smooth_image(0)
    loss = objective(lncc=1.0)
    same = loss.terms(zero_controls(), [], make_batch(image, image))["lncc"]
    noisy = loss.terms(zero_controls(), [], make_batch(image, torch.rand_like(image)))["lncc"]
    assert float(same) == pytest.approx(-1.0, abs=1e-3)
    assert float(noisy) > -0.5


def test_mutual_information_with_itself_beats_noise():
    image = smooth_image(1)
    loss = objective(mi=1.0)
    same = float(loss.terms(zero_controls(), [], make_batch(image, image))["mi"])
    noise = float(loss.terms(zero_controls(), [], make_batch(image, torch.rand_like(image)))["mi"])
    assert same < noise < 0  # the term is -MI: lower is more shared information


def test_image_terms_see_the_moving_patch_warped_by_the_predicted_field():
    """moving is fixed shifted by one voxel; the field that undoes it makes the match exact inside."""
    volume = smooth_image(2, batch=1)
    fixed, moving = volume[..., 1:-1, :, :], volume[..., :-2, :, :]  # moving(x) = fixed(x - 1) along axis 0
    fixed = torch.nn.functional.pad(fixed, (0, 0, 0, 0, 1, 1), mode="replicate")
    moving = torch.nn.functional.pad(moving, (0, 0, 0, 0, 1, 1), mode="replicate")
    shift = zero_controls(1)
    shift[:, 0] = 1.0  # warped(x) = moving(x + 1) = fixed(x)
    inside = np.s_[..., 2:-2, :, :]
    assert torch.allclose(warp_torch(moving, dense_field(shift, R))[inside], fixed[inside], atol=1e-5)
    loss = objective(mse=1.0, lncc=1.0)
    unregistered = loss.terms(zero_controls(1), [], make_batch(fixed, moving))
    registered = loss.terms(shift, [], make_batch(fixed, moving))
    assert float(registered["mse"]) < float(unregistered["mse"]) / 4
    assert float(registered["lncc"]) < float(unregistered["lncc"])


def test_regularisers_are_zero_for_zero_and_constant_fields_and_positive_otherwise():
    loss = objective(bending=1.0, diffusion=1.0)
    image = smooth_image(3)
    batch = make_batch(image, image)
    for controls in (zero_controls(), torch.full((2, 3, 4, 4, 4), 0.7)):
        terms = loss.terms(controls, [], batch)
        assert float(terms["bending"]) == pytest.approx(0.0, abs=1e-10)
        assert float(terms["diffusion"]) == pytest.approx(0.0, abs=1e-10)
    rough = loss.terms(torch.randn(2, 3, 4, 4, 4), [], batch)
    assert float(rough["bending"]) > 1e-4 and float(rough["diffusion"]) > 1e-4


def test_regularisers_on_polynomial_fields_give_their_derivatives():
    """u_0 = a x^2: bending sees (2a)^2; u_0 = b x: diffusion sees b^2 (means over the 3 channels)."""
    loss = objective(bending=1.0, diffusion=1.0)
    x = torch.arange(P, dtype=torch.float64).view(1, 1, P, 1, 1).expand(1, 1, P, P, P)
    quadratic = torch.cat([0.05 * x**2, torch.zeros_like(x), torch.zeros_like(x)], dim=1)
    linear = torch.cat([0.3 * x, torch.zeros_like(x), torch.zeros_like(x)], dim=1)
    assert float(loss.bending(quadratic)) == pytest.approx((2 * 0.05) ** 2 / 3, rel=1e-9)
    assert float(loss.bending(linear)) == pytest.approx(0.0, abs=1e-20)
    assert float(loss.diffusion(linear)) == pytest.approx(0.3**2 / 3, rel=1e-9)


def test_dice_of_identical_labels_is_zero_and_of_shifted_labels_is_not():
    labels = torch.zeros(2, 1, P, P, P)
    labels[:, :, 4:12, 4:12, 2:8] = 1
    labels[:, :, 4:12, 4:12, 8:14] = 2
    image = smooth_image(4)
    loss = objective(dice=1.0)
    same = loss.terms(zero_controls(), [], make_batch(image, image, fixed_labels=labels, moving_labels=labels))
    assert float(same["dice"]) == pytest.approx(0.0, abs=1e-4)
    shifted = torch.roll(labels, 3, dims=4)
    moved = loss.terms(zero_controls(), [], make_batch(image, image, fixed_labels=labels, moving_labels=shifted))
    assert float(moved["dice"]) > 0.2
    with pytest.raises(ValueError, match="needs label maps"):
        loss.terms(zero_controls(), [], make_batch(image, image, fixed_labels=None, moving_labels=None))


def test_spike_rate_term_is_zero_at_the_target_and_squared_distance_elsewhere():
    at_target = [torch.full((2, 6, 4, 4, 8), 0.1), torch.full((2, 3, 2, 2, 8), 0.1)]
    assert float(spike_rate_loss(layer_rates(at_target), 0.1)) == pytest.approx(0.0, abs=1e-12)
    off = [torch.full((2, 6, 4, 4, 8), 0.3), torch.zeros(2, 3, 2, 2, 8)]  # +0.2 and -0.1 from the target
    assert float(spike_rate_loss(layer_rates(off), 0.1)) == pytest.approx((0.04 + 0.01) / 2)
    spikes = (torch.rand(3, 4, 4, 4, 10) < 0.25).float()
    assert torch.allclose(layer_rates([spikes])[0], spikes.mean(dim=(1, 2, 3, 4)))


def test_displacement_loss_is_zero_on_target_and_clamps_to_the_readout_range():
    target = torch.rand(2, 3, 4, 4, 4) * 4 - 2
    assert float(displacement_loss(target, target, 3.0)) == 0.0
    far = torch.full((1, 3, 4, 4, 4), 10.0)  # beyond the readout: counts as 3 voxels
    assert float(displacement_loss(torch.full_like(far, 3.0), far, 3.0)) == 0.0


def test_total_is_the_weighted_sum_and_splits_exactly_over_batch_shares():
    """Every term is a mean over samples: what torchrun's data-parallel training relies on."""
    labels = (smooth_image(5, batch=3) * 3).floor().clamp(max=2)
    batch = make_batch(smooth_image(6, batch=3), smooth_image(7, batch=3), fixed_labels=labels,
                       moving_labels=torch.roll(labels, 1, dims=2))
    batch.target = torch.randn(3, 3, 4, 4, 4)
    controls = torch.randn(3, 3, 4, 4, 4) * 0.5
    rates = [torch.rand(3), torch.rand(3)]
    weights = dict(displacement=1.0, mse=2.0, lncc=0.5, mi=0.25, dice=1.5, bending=0.1, diffusion=0.2, spike_rate=3.0)
    loss = objective(**weights)
    total, terms = loss(controls, rates, batch)
    assert set(terms) == set(weights)
    assert float(total) == pytest.approx(sum(weights[k] * float(v) for k, v in terms.items()), rel=1e-6)
    parts = []
    for share in (slice(0, 2), slice(2, 3)):
        part = SimpleNamespace(**{k: v[share] for k, v in vars(batch).items()})
        parts.append(loss(controls[share], [r[share] for r in rates], part)[0] * (share.stop - share.start) / 3)
    assert float(sum(parts)) == pytest.approx(float(total), rel=1e-5)


def test_summed_input_range_loss_is_zero_within_range_and_matches_hand_values():
    from spikereg.losses import summed_input_range_loss

    within = [torch.tensor([[4.0, -4.0, 1.0, -2.0]]), torch.tensor([[0.5, -0.25]])]
    assert float(summed_input_range_loss(within)) == 0.0
    # layer 1: peak 2, x = -6 -> relu(3 - 1)^2 = 4 over 4 values -> 1; layer 2 within -> 0; mean 0.5
    beyond = [torch.tensor([[2.0, -6.0, 0.0, 1.0]]), torch.tensor([[1.0, -1.0]])]
    assert float(summed_input_range_loss(beyond)) == pytest.approx(0.5)
    # scale-free: the same network scaled has the same penalty, and its gradient pulls the negative up
    scaled = [(10 * x).requires_grad_() for x in beyond]
    loss = summed_input_range_loss(scaled)
    assert float(loss.detach()) == pytest.approx(0.5)
    loss.backward()
    assert scaled[0].grad[0, 1] < 0 and scaled[0].grad[0, 0] == 0


def test_summed_input_bound_loss_is_zero_within_the_bound_and_matches_hand_values():
    from spikereg.losses import summed_input_bound_loss

    within = [torch.tensor([[16.0, -16.0], [3.0, 0.0]]), torch.tensor([[-15.9], [2.0]])]
    assert float(summed_input_bound_loss(within, 16.0)) == 0.0
    # layer 1: sample 0's largest |x| is 32 -> (32/16 - 1)^2 = 1, sample 1 within -> mean 0.5;
    # layer 2: sample 1 at -24 -> 0.25, mean 0.125; over layers 0.3125
    beyond = [torch.tensor([[32.0, 1.0], [3.0, 0.0]]), torch.tensor([[1.0], [-24.0]])]
    assert float(summed_input_bound_loss(beyond, 16.0)) == pytest.approx(0.3125)
    grads = [x.clone().requires_grad_() for x in beyond]
    summed_input_bound_loss(grads, 16.0).backward()
    assert grads[0].grad[0, 0] > 0 and grads[1].grad[1, 0] < 0  # pulls each peak back towards the bound
    assert grads[0].grad[0, 1] == 0 and grads[0].grad[1].abs().sum() == 0  # and nothing else
