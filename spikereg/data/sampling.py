"""Training data as the trainer draws it: synthetic real-anatomy pairs, and random brain patches from them.

:func:`synthetic_pairs` makes the pairs of a config's ``data`` keys (the MNI
ICBM152 T1 warped by random smooth fields whose ground truth is kept,
:mod:`spikereg.data.synth`); :class:`PatchSampler` cuts random brain patches
from them, each with its control-grid target (the ground-truth field averaged
over each control cell). Training, export's verification and the benchmarks
draw their patches here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from spikereg.config import Config, DataConfig
from spikereg.data.synth import make_pair, tissue_classes_from_template
from spikereg.data.template import load_mni, tissue_labels

BRAIN_FRACTION = 0.15  # a training patch must be at least this much brain (mean intensity)
# ... or, in an image where no patch is (SynthMorph-style images with dark classes: seen with 32^3
# patches), at least this share of its brightest patch's mean
RELATIVE_BRAIN_FRACTION = 0.3


@dataclass
class PatchBatch:
    fixed: torch.Tensor  # (N, 1, P, P, P)
    moving: torch.Tensor
    target: torch.Tensor  # (N, 3, g, g, g) ground-truth displacement per control cell, voxels
    fixed_labels: torch.Tensor | None = None  # (N, 1, P, P, P) class indices, where the pairs have labels
    moving_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.fixed)

    def to(self, device: torch.device) -> "PatchBatch":
        moved = {name: None if value is None else value.to(device) for name, value in vars(self).items()}
        return PatchBatch(**moved)


class PatchSampler:
    """Random brain patches, with control-grid targets, from a set of synthetic pairs."""

    def __init__(self, pairs: list, patch: int, reduction: int, rng: np.random.Generator) -> None:
        self.pairs, self.patch, self.reduction, self.rng = pairs, patch, reduction, rng
        self.origins = [self._brain_origins(pair.fixed) for pair in pairs]

    def _brain_origins(self, image: np.ndarray) -> np.ndarray:
        """Origins of all patches (every voxel) whose mean intensity says they hold brain."""
        p = self.patch
        # Box sums from a summed-area table: the mean of every p^3 patch at once.
        table = np.pad(image.astype(np.float64), ((1, 0), (1, 0), (1, 0))).cumsum(0).cumsum(1).cumsum(2)
        sums = (table[p:, p:, p:] - table[:-p, p:, p:] - table[p:, :-p, p:] - table[p:, p:, :-p]
                + table[:-p, :-p, p:] + table[:-p, p:, :-p] + table[p:, :-p, :-p] - table[:-p, :-p, :-p])
        means = sums / p**3
        origins = np.argwhere(means >= BRAIN_FRACTION)
        if not len(origins) and means.max() > 0:  # a dark synthesized image: brain relative to its brightest patch
            origins = np.argwhere(means >= RELATIVE_BRAIN_FRACTION * means.max())
        return origins

    def sample(self, count: int, share: slice | None = None, rng: np.random.Generator | None = None) -> PatchBatch:
        """``count`` random patches; with ``share``, only those patches are cut.

        The random draws are the same whatever ``share`` is, so processes that
        each take a share of one sample see together exactly the whole sample.
        ``rng`` draws instead of the sampler's own stream (which it leaves as it is).
        """
        p = self.patch
        rng = rng or self.rng
        chosen = []
        for _ in range(count):
            index = int(rng.integers(len(self.pairs)))
            z, y, x = self.origins[index][int(rng.integers(len(self.origins[index])))]
            chosen.append((self.pairs[index], np.s_[z:z + p, y:y + p, x:x + p]))
        chosen = chosen[share] if share is not None else chosen
        to = lambda arrays: torch.from_numpy(np.stack(arrays))  # noqa: E731
        batch = PatchBatch(
            fixed=to([pair.fixed[cut] for pair, cut in chosen])[:, None],
            moving=to([pair.moving[cut] for pair, cut in chosen])[:, None],
            target=F.avg_pool3d(to([pair.ddf[(slice(None),) + cut] for pair, cut in chosen]), self.reduction),
        )
        if all(pair.fixed_labels is not None for pair, _ in chosen):
            batch.fixed_labels = to([pair.fixed_labels[cut] for pair, cut in chosen])[:, None]
            batch.moving_labels = to([pair.moving_labels[cut] for pair, cut in chosen])[:, None]
        return batch


def template_recipe(data: DataConfig) -> DataConfig:
    """``data`` without its inter-subject variety: the T1 itself (no synthesized scans), no contrast or
    bias change, no coarse field or affine residual; spacing, fine fields, noise and pair count kept."""
    return replace(data, synth_fraction=0.0, plain_fraction=0.0, gamma_std=0.0, bias_field=0.0,
                   coarse_displacement=0.0, affine_rotation=0.0, affine_scale=0.0, affine_shift=0.0)


def finetuning_config(config: Config) -> Config:
    """The config whose ``data`` makes the pairs the converted SNN is calibrated and fine-tuned on
    (``train.finetune_pairs``)."""
    return config if config.train.finetune_pairs == "data" else replace(config, data=template_recipe(config.data))


def synthetic_pairs(config: Config, count: int, seed: int, labels: bool = False) -> list:
    """``count`` training pairs at the configured spacing, magnitudes varied per pair.

    ``labels`` adds tissue label maps (warped by the same fields; the images
    and random draws are the same either way).
    """
    data = config.data
    rng = np.random.default_rng(seed)
    base = load_mni("t1", data.spacing).data
    base_labels = tissue_labels(data.spacing).data if labels else None
    tissue = None
    if data.synth_fraction > 0:
        tissue = tissue_classes_from_template(base, load_mni("gm", data.spacing).data,
                                              load_mni("wm", data.spacing).data)
    plain_recipe = template_recipe(data)  # a data.plain_fraction pair: the variety's keys at 0
    pairs = []
    for _ in range(count):
        scale = float(rng.uniform(0.25, 1.0))
        # Extra draws only for options in use, so configs without them get the pairs they always had.
        coarse = float(rng.uniform(0.0, 1.0)) if data.coarse_displacement > 0 else 0.0
        synthesized = data.synth_fraction > 0 and float(rng.uniform()) < data.synth_fraction
        recipe = plain_recipe if data.plain_fraction > 0 and float(rng.uniform()) < data.plain_fraction else data
        pairs.append(make_pair(
            base, rng,
            max_displacement=data.max_displacement * scale,
            control_spacing=data.control_spacing,
            noise_std=data.noise_std,
            base_labels=base_labels,
            deformation=data.deformation,
            bias_field=recipe.bias_field,
            gamma_std=recipe.gamma_std,
            coarse_displacement=recipe.coarse_displacement * coarse,
            coarse_control_spacing=data.coarse_control_spacing,
            affine=(recipe.affine_rotation, recipe.affine_scale, recipe.affine_shift),
            tissue=tissue if synthesized and recipe.synth_fraction > 0 else None,
            contrast_jitter=data.contrast_jitter,
        ))
    return pairs
