"""Exact 3-D convolution on Lava's 2-D convolution, by folding depth into features.

Lava's ``Conv`` process (and so netx) is 2-D: ``(x, y, features)``. A 3-D
convolution over ``(depth, height, width)`` becomes an ordinary 2-D
convolution over ``(height, width)`` once depth is folded into the feature
axis:

* a tensor ``(C, D, H, W)`` is laid out as ``(D*C, H, W)`` with feature index
  ``d*C + c`` (depth-major, so a depth slice is one contiguous block);
* a 3-D kernel ``K`` of shape ``(C_out, C_in, k_d, k_h, k_w)`` with depth
  stride ``s`` and depth padding ``p`` becomes a 2-D kernel of shape
  ``(D_out*C_out, D_in*C_in, k_h, k_w)`` whose block ``(o, i)`` is
  ``K[:, :, i - o*s + p]`` where that index lies in ``[0, k_d)`` and zero
  elsewhere (a block-banded matrix).

Height and width keep their own stride and padding in the 2-D convolution.
The mapping is exact: the folded 2-D convolution computes bit for bit the same
sums as the 3-D one, so SLAYER trains the 3-D weights and the chip runs the
2-D ones. The price is synaptic memory: the zero blocks are stored on a chip
(``structural_zero_fraction`` says how much).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def strided_band(outer: int, inner: int, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """One-hot ``(outer, inner, kernel)``: entry ``[a, b, k]`` is 1 where ``b = a*stride - padding + k``.

    A conv's output depth ``a`` reads input depth ``b``; a transposed conv's input depth ``a`` writes output
    depth ``b``.
    """
    band = torch.zeros(outer, inner, kernel)
    for a in range(outer):
        for k in range(kernel):
            b = a * stride - padding + k
            if 0 <= b < inner:
                band[a, b, k] = 1.0
    return band


def fold_banded(band: torch.Tensor, kernel3d: torch.Tensor) -> torch.Tensor:
    """``kernel3d`` ``(a, b, k, k_h, k_w)`` over a one-hot ``band`` ``(A, B, k)`` -> the 2-D weight
    ``(A*a, B*b, k_h, k_w)`` whose block ``(x, y)`` is ``kernel3d[:, :, k]`` where ``band[x, y, k]`` is 1, zero
    elsewhere: a conv's fold (``A, B`` the output and input depths) and a transposed conv's (input, output)."""
    a, b, _, k_h, k_w = kernel3d.shape
    folded = torch.einsum("xyk,abkhw->xaybhw", band.to(kernel3d), kernel3d)
    return folded.reshape(band.shape[0] * a, band.shape[1] * b, k_h, k_w)


def unfold_banded(band: torch.Tensor, folded: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Least-squares inverse of :func:`fold_banded` (the mean over the band's copies of each tap)."""
    k_h, k_w = folded.shape[-2:]
    blocks = folded.reshape(band.shape[0], a, band.shape[1], b, k_h, k_w)
    band = band.to(folded)
    summed = torch.einsum("xyk,xaybhw->abkhw", band, blocks)
    return summed / band.sum(dim=(0, 1)).clamp(min=1.0).view(1, 1, -1, 1, 1)


@dataclass(frozen=True)
class DepthFold:
    """How one 3-D convolution folds its depth axis into 2-D features."""

    depth_in: int
    kernel: int
    stride: int
    padding: int

    @property
    def depth_out(self) -> int:
        return conv_out_size(self.depth_in, self.kernel, self.stride, self.padding)

    def band(self) -> torch.Tensor:
        """One-hot ``(D_out, D_in, k_d)``: entry ``[o, i, k]`` is 1 where ``i = o*s - p + k``."""
        return strided_band(self.depth_out, self.depth_in, self.kernel, self.stride, self.padding)

    def fold_weight(self, kernel3d: torch.Tensor) -> torch.Tensor:
        """``(C_out, C_in, k_d, k_h, k_w)`` -> ``(D_out*C_out, D_in*C_in, k_h, k_w)``."""
        return fold_banded(self.band(), kernel3d)

    def unfold_weight(self, folded: torch.Tensor, c_out: int, c_in: int) -> torch.Tensor:
        """Least-squares inverse of :meth:`fold_weight` (mean over the band's copies)."""
        return unfold_banded(self.band(), folded, c_out, c_in)

    def structural_zero_fraction(self) -> float:
        """Fraction of the folded kernel's depth blocks that are zero by construction."""
        band = self.band()
        return 1.0 - float(band.sum()) / float(self.depth_out * self.depth_in * self.kernel)


def fold_volume(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, D, H, W, ...)`` -> ``(N, D*C, H, W, ...)`` with feature index ``d*C + c``."""
    n, c, d = x.shape[:3]
    return x.transpose(1, 2).reshape(n, d * c, *x.shape[3:])


def unfold_volume(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Inverse of :func:`fold_volume`."""
    n, dc = x.shape[:2]
    return x.reshape(n, dc // channels, channels, *x.shape[2:]).transpose(1, 2)


class FoldedKernel(torch.nn.Module):
    """``torch.nn.utils.parametrize`` parametrization: a 3-D kernel seen as SLAYER's 2-D weight.

    SLAYER's conv synapse stores its weight as ``(out, in, k_h, k_w, 1)`` (its
    third spatial axis is time). With this parametrization the trainable
    tensor is the 3-D kernel and ``synapse.weight`` is its exact fold, so
    SLAYER's forward pass, quantization and ``export_hdf5`` all see the 2-D
    weight that netx and the chip will use.

    Saturated layers (``model.clamp``) are two populations of the same units:
    ``paired_out`` repeats the kernel for the second population (``relu(x - c)``),
    ``paired_in`` takes a saturated layer's two populations with ``K`` and ``-K``,
    so the layer sums ``K clamp(x, 0, c)``. The trainable kernel stays ``(c_out, c_in, ...)``.
    """

    out_axis, in_axis = 0, 1  # torch's conv weight is (out, in, ...)

    def __init__(self, fold: DepthFold | DepthFoldT, c_out: int, c_in: int, paired_out: bool = False,
                 paired_in: bool = False) -> None:
        super().__init__()
        self.fold = fold
        self.c_out = c_out
        self.c_in = c_in
        self.paired_out = paired_out
        self.paired_in = paired_in

    def populations(self, kernel3d: torch.Tensor) -> torch.Tensor:
        """The 3-D kernel over the populations the chip holds (pairs expanded)."""
        if self.paired_in:
            kernel3d = torch.cat([kernel3d, -kernel3d], dim=self.in_axis)
        if self.paired_out:
            kernel3d = torch.cat([kernel3d, kernel3d], dim=self.out_axis)
        return kernel3d

    def forward(self, kernel3d: torch.Tensor) -> torch.Tensor:
        return self.fold.fold_weight(self.populations(kernel3d)).unsqueeze(-1)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        held, kept = [0, 0], [0, 0]  # the populations' sizes along the kernel's first two axes, and the units'
        held[self.out_axis], kept[self.out_axis] = self.c_out * (2 if self.paired_out else 1), self.c_out
        held[self.in_axis], kept[self.in_axis] = self.c_in * (2 if self.paired_in else 1), self.c_in
        kernel3d = self.fold.unfold_weight(weight.squeeze(-1), *held)
        return kernel3d[:kept[0], :kept[1]]


class DepthFoldT:
    """How one 3-D *transposed* convolution folds its depth axis into 2-D features.

    A transposed conv with depth stride ``s``, padding ``p`` and kernel ``k``
    adds ``in[i] * K[k]`` into ``out[i*s - p + k]``. Folded, the 2-D transposed
    conv's weight ``(D_in*C_in, D_out*C_out, k_h, k_w)`` (torch's layout for
    ``conv_transpose``) has block ``(i, o)`` equal to ``K[:, :, o - i*s + p]``
    where that index lies in ``[0, k)``, zero elsewhere. Exact, like
    :class:`~spikereg.networks.folding.DepthFold`.
    """

    def __init__(self, depth_in: int, kernel: int, stride: int, padding: int = 0) -> None:
        self.depth_in, self.kernel, self.stride, self.padding = depth_in, kernel, stride, padding

    @property
    def depth_out(self) -> int:
        return (self.depth_in - 1) * self.stride - 2 * self.padding + self.kernel

    def band(self) -> torch.Tensor:
        """One-hot ``(D_in, D_out, k)``: entry ``[i, o, k]`` is 1 where ``o = i*s - p + k``."""
        return strided_band(self.depth_in, self.depth_out, self.kernel, self.stride, self.padding)

    def fold_weight(self, kernel3d: torch.Tensor) -> torch.Tensor:
        """``(C_in, C_out, k_d, k_h, k_w)`` -> ``(D_in*C_in, D_out*C_out, k_h, k_w)``."""
        return fold_banded(self.band(), kernel3d)

    def unfold_weight(self, folded: torch.Tensor, c_in: int, c_out: int) -> torch.Tensor:
        """Least-squares inverse of :meth:`fold_weight` (mean over the band's copies)."""
        return unfold_banded(self.band(), folded, c_in, c_out)


class FoldedKernelT(FoldedKernel):
    """Parametrization: a 3-D transposed kernel ``(C_in, C_out, k, k, k)`` seen as SLAYER's 2-D ConvT weight.

    As :class:`FoldedKernel` (the same arguments, pairs of saturated nodes alike) over a :class:`DepthFoldT`,
    in torch's transposed layout, input channels first.
    """

    out_axis, in_axis = 1, 0
