"""Intensities that differ between scanners: percentile normalisation, histogram matching, N4 bias correction.

* **Percentile normalisation** (always on, :func:`normalize`): the images'
  ``lower``/``upper`` percentiles (default 1st and 99th) map to 0 and 1, then
  clip -- what the network was trained on, robust to a few hot voxels.
  :func:`spikereg.registration.register.register` applies it to both images
  of every registration (``spikereg run --percentiles``).
* **Histogram matching** (``--histogram-match``, :func:`match_histogram`): the
  moving image's intensities remapped so that its histogram matches the
  fixed image's (SimpleITK ``HistogramMatchingImageFilter``, mean-intensity
  threshold so that background is left out).
* **N4 bias correction** (``--n4``, :func:`n4_correct`): the slow
  multiplicative bias of an MR coil divided out (SimpleITK
  ``N4BiasFieldCorrectionImageFilter``), estimated on an image shrunk to about
  :data:`N4_SPACING_MM` voxels within an Otsu head mask, then applied at full
  resolution.

Histogram matching and N4 change only the images the registration reads; the
warped output is the moving image as it was given.
"""
from __future__ import annotations

import numpy as np

from spikereg.data.itk import to_sitk

from .io import Volume, normalize_intensity

DEFAULT_PERCENTILES = (1.0, 99.0)
HISTOGRAM_LEVELS = 256
MATCH_POINTS = 16
N4_SPACING_MM = 4.0
N4_ITERATIONS = (20, 10)


def normalize(data: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """Robust min-max scaling: the two percentiles map to 0 and 1, then clip (float32)."""
    lower, upper = percentiles
    return normalize_intensity(data, lower, upper)


def parse_percentiles(text: str, option: str = "--percentiles") -> tuple[float, float]:
    """``"1,99"`` as (1.0, 99.0); a ValueError naming the option unless 0 <= lower < upper <= 100."""
    try:
        lower, upper = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} {text}: expected two numbers LOWER,UPPER (percentiles), e.g. 1,99") from None
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"{option} {text}: need 0 <= LOWER < UPPER <= 100")
    return lower, upper


def match_histogram(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """``moving``'s intensities remapped so that its histogram matches ``fixed``'s (SimpleITK), float32."""
    import SimpleITK as sitk

    matcher = sitk.HistogramMatchingImageFilter()
    matcher.SetNumberOfHistogramLevels(HISTOGRAM_LEVELS)
    matcher.SetNumberOfMatchPoints(MATCH_POINTS)
    matcher.ThresholdAtMeanIntensityOn()
    out = matcher.Execute(sitk.GetImageFromArray(np.asarray(moving, dtype=np.float32)),
                          sitk.GetImageFromArray(np.asarray(fixed, dtype=np.float32)))
    return sitk.GetArrayFromImage(out).astype(np.float32, copy=False)


def n4_correct(volume: Volume) -> np.ndarray:
    """``volume``'s voxels with N4's bias field divided out (float32, same shape).

    The field is fitted on the image shrunk to about :data:`N4_SPACING_MM`
    voxels, within an Otsu mask, and evaluated at full resolution
    (``GetLogBiasFieldAsImage``). Intensities are shifted to be positive first
    (N4 works on logarithms) and shifted back.
    """
    import SimpleITK as sitk

    data = np.asarray(volume.data, dtype=np.float32)
    offset = float(data.min())
    shifted = Volume(data=data - offset + 1.0, affine=volume.affine)
    image = to_sitk(shifted)
    shrink = max(1, int(round(N4_SPACING_MM / min(volume.spacing))))
    shrink = min(shrink, max(1, min(volume.shape) // 8))
    small = sitk.Shrink(image, [shrink] * 3)
    mask = sitk.OtsuThreshold(small, 0, 1, 200)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(N4_ITERATIONS))
    corrector.Execute(small, mask)
    log_bias = corrector.GetLogBiasFieldAsImage(image)
    bias = np.exp(sitk.GetArrayFromImage(log_bias).transpose(2, 1, 0))
    return (shifted.data / bias + offset - 1.0).astype(np.float32)


def prepare(fixed: Volume, moving: Volume, *, histogram_match: bool = False, n4: bool = False
            ) -> tuple[Volume, Volume, dict]:
    """The fixed and moving images the registration reads (N4 on both, then histogram matching), and what was done."""
    done = {"histogram_match": bool(histogram_match), "n4": bool(n4)}
    if not (histogram_match or n4):
        return fixed, moving, done
    fixed_data, moving_data = fixed.data, moving.data
    if n4:
        fixed_data, moving_data = n4_correct(fixed), n4_correct(moving)
    if histogram_match:
        moving_data = match_histogram(moving_data, fixed_data)
    return (Volume(data=fixed_data, affine=fixed.affine, path=fixed.path),
            Volume(data=moving_data, affine=moving.affine, path=moving.path), done)
