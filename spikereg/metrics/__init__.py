"""Registration metrics on numpy volumes, in the field's usual definitions.

Label overlap (:mod:`.overlap`): per-label Dice and 95th-percentile Hausdorff
distance in mm (MONAI's ``compute_dice`` and ``compute_hausdorff_distance``).
Fields (:mod:`.displacement`): end-point error against a ground-truth field
in voxels or mm, the standard deviation of the log Jacobian determinant
(SDlogJ) and the % of voxels whose Jacobian determinant is <= 0 (folding).
Images (:mod:`.similarity`): global normalized cross-correlation.

Fields are (3, D, H, W) in voxels along the array axes (see
:mod:`spikereg.data.deform`); masks are boolean (D, H, W) arrays.
"""
from .displacement import end_point_error, log_jacobian_std, nonpositive_jacobian_percent
from .overlap import dice, hausdorff95, label_values
from .similarity import ncc

__all__ = [
    "dice",
    "end_point_error",
    "hausdorff95",
    "label_values",
    "log_jacobian_std",
    "ncc",
    "nonpositive_jacobian_percent",
]
