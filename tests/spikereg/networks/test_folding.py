"""Depth folding maps a 3-D convolution exactly onto Lava's 2-D one."""
import pytest
import torch
import torch.nn.functional as F

from spikereg.networks.folding import DepthFold, fold_volume, unfold_volume


@pytest.mark.parametrize("depth,kernel,stride,padding", [(8, 3, 1, 1), (16, 3, 2, 1), (7, 3, 2, 0), (6, 5, 1, 2)])
def test_folded_2d_conv_equals_3d_conv(depth, kernel, stride, padding):
    torch.manual_seed(0)
    c_in, c_out, size = 3, 5, 9
    x = torch.randn(2, c_in, depth, size, size)
    k3 = torch.randn(c_out, c_in, kernel, kernel, kernel)
    expected = F.conv3d(x, k3, stride=stride, padding=padding)
    fold = DepthFold(depth, kernel, stride, padding)
    got = F.conv2d(fold_volume(x), fold.fold_weight(k3), stride=stride, padding=padding)
    assert fold.depth_out == expected.shape[2]
    torch.testing.assert_close(unfold_volume(got, c_out), expected, rtol=1e-5, atol=1e-4)


def test_unfold_weight_inverts_fold_weight():
    fold = DepthFold(8, 3, 2, 1)
    k3 = torch.randn(4, 2, 3, 3, 3)
    torch.testing.assert_close(fold.unfold_weight(fold.fold_weight(k3), 4, 2), k3)


def test_fold_volume_layout_is_depth_major():
    x = torch.arange(2 * 3).reshape(1, 2, 3, 1, 1).float()  # C=2, D=3
    folded = fold_volume(x)
    assert folded.flatten().tolist() == [0, 3, 1, 4, 2, 5]  # feature d*C + c
    torch.testing.assert_close(unfold_volume(folded, 2), x)


def test_structural_zeros_counted():
    fold = DepthFold(16, 3, 2, 1)
    band = fold.band()
    assert band.sum() == 8 * 3 - 1  # one tap falls on padding
    assert fold.structural_zero_fraction() == pytest.approx(1 - 23 / (8 * 16 * 3))
