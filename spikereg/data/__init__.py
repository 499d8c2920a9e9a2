"""Image data for SpikeReg: NIfTI I/O, the MNI template, displacement fields, synthetic pairs, datasets.

Displacement fields everywhere are (3, D, H, W) arrays in voxel units along
the array axes, and warp(image, ddf)(x) = image(x + ddf(x)).
"""
from .deform import (
    compose,
    compose_torch,
    integrate_velocity,
    invert,
    jacobian_determinant,
    random_ddf,
    random_diffeomorphic_ddf,
    smooth_random_field,
    warp,
    warp_file,
    warp_torch,
)
from .io import (
    Volume,
    VolumeError,
    check_pair,
    load_ddf,
    load_itk_displacement,
    load_volume,
    normalize_intensity,
    save_ddf,
    save_itk_displacement,
    save_volume,
)
from .loaders import Dataset, DatasetError, H5Key, Pair, PairFiles, load_dataset, load_pair, load_source
from .synth import SyntheticPair, change_intensity, make_pair, split_sizes, write_dataset
from .template import TEMPLATE_FILES, TemplateNotFoundError, load_mni, template_dir, tissue_labels

__all__ = [
    "TEMPLATE_FILES",
    "Dataset",
    "DatasetError",
    "H5Key",
    "Pair",
    "PairFiles",
    "SyntheticPair",
    "TemplateNotFoundError",
    "Volume",
    "VolumeError",
    "change_intensity",
    "check_pair",
    "compose",
    "compose_torch",
    "integrate_velocity",
    "invert",
    "jacobian_determinant",
    "load_dataset",
    "load_ddf",
    "load_itk_displacement",
    "load_mni",
    "load_pair",
    "load_source",
    "load_volume",
    "make_pair",
    "normalize_intensity",
    "random_ddf",
    "random_diffeomorphic_ddf",
    "save_ddf",
    "save_itk_displacement",
    "save_volume",
    "smooth_random_field",
    "split_sizes",
    "template_dir",
    "tissue_labels",
    "warp",
    "warp_file",
    "warp_torch",
    "write_dataset",
]
