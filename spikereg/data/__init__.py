"""Image data for SpikeReg: NIfTI I/O, the MNI template, displacement fields, synthetic pairs.

Displacement fields everywhere are (3, D, H, W) arrays in voxel units along
the array axes, and warp(image, ddf)(x) = image(x + ddf(x)).
"""
from .deform import (
    compose,
    compose_torch,
    invert,
    jacobian_determinant,
    random_ddf,
    warp,
    warp_torch,
)
from .io import (
    Volume,
    VolumeError,
    check_pair,
    load_ddf,
    load_volume,
    normalize_intensity,
    save_ddf,
    save_volume,
)
from .synth import SyntheticPair, make_pair, write_pairs
from .template import TEMPLATE_FILES, TemplateNotFoundError, load_mni, template_dir, tissue_labels

__all__ = [
    "TEMPLATE_FILES",
    "SyntheticPair",
    "TemplateNotFoundError",
    "Volume",
    "VolumeError",
    "check_pair",
    "compose",
    "compose_torch",
    "invert",
    "jacobian_determinant",
    "load_ddf",
    "load_mni",
    "load_volume",
    "make_pair",
    "normalize_intensity",
    "random_ddf",
    "save_ddf",
    "save_volume",
    "template_dir",
    "tissue_labels",
    "warp",
    "warp_torch",
]
