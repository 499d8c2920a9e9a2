"""Affine pre-alignment on the host, with SimpleITK's registration framework, before the spiking network.

Different people's scans, from different scanners, are not aligned: the
network corrects a few voxels, so the gross pose (position, rotation, size,
shear) is found first, by the registration method the field trusts
(SimpleITK's ``ImageRegistrationMethod``):

* a centre-of-mass start (``CenteredTransformInitializer``, MOMENTS);
* a 12-parameter ``AffineTransform`` about that centre;
* Mattes mutual information (:data:`HISTOGRAM_BINS` bins), a metric that holds
  across scanners and contrasts, on a fixed random sample of the voxels;
* three resolutions, coarse to fine, at about 8, 4 and 2 mm (:func:`levels`),
  each smoothed;
* regular-step gradient descent with physical-shift scales (a parameter's step
  is the millimetres it moves a voxel).

A failed or diverged optimisation (metric not better than doing nothing, not
finite, or a transform no anatomy needs: a reflection or a scale outside
:data:`SCALE_RANGE` on some axis) is an :class:`AffineError`, never a silent
bad result.

Conventions. nibabel's affines map voxels to RAS+ millimetres; ITK's physical
space is LPS+ (x and y negated). :func:`to_sitk` and :func:`from_sitk` convert
a volume with the right origin, spacing and direction; ITK transforms map
*fixed* physical points to *moving* ones (what ``sitk.Resample(moving, fixed,
transform)`` samples), and :func:`matrix_ras` gives the same map as a 4x4 in
RAS: moving world point = ``A @`` fixed world point. The transform is written
as an ITK ``.tfm`` file (:func:`save_transform`) that SimpleITK and ANTs read.
"""
from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikereg.data import Volume
from spikereg.data.itk import to_sitk
from spikereg.data.world import resample_like
from spikereg.errors import SpikeRegError

LPS4 = np.diag([-1.0, -1.0, 1.0, 1.0])
HISTOGRAM_BINS = 32
SAMPLING = 0.25  # fraction of the voxels the metric samples, at random (fixed seed)
SEED = 2026
LEVEL_SPACINGS_MM = (8.0, 4.0, 2.0)  # coarse to fine; finer scans are still aligned at 2 mm at most
LEARNING_RATE = 1.0
MIN_STEP = 1e-4
ITERATIONS = 200
SCALE_RANGE = (0.5, 2.0)
IDENTITY_TOLERANCE = 0.02  # an optimum this little worse (relative) than no transform: aligned already, identity kept


class AffineError(SpikeRegError, RuntimeError):
    """The affine pre-alignment failed, diverged, or was given a transform no anatomy needs (one line)."""


# ----------------------------------------------------------------------------- volumes and transforms

def matrix_lps(transform) -> np.ndarray:
    """The 4x4 matrix of a linear ITK transform (LPS, fixed -> moving points), probed; AffineError if not linear."""
    probes = np.vstack([np.zeros(3), np.eye(3) * 100.0])
    images = np.array([transform.TransformPoint([float(v) for v in p]) for p in probes])
    matrix = np.eye(4)
    matrix[:3, 3] = images[0]
    matrix[:3, :3] = (images[1:] - images[0]).T / 100.0
    check = np.array([37.0, -51.0, 23.0])
    if not np.allclose(transform.TransformPoint([float(v) for v in check]), matrix[:3, :3] @ check + matrix[:3, 3],
                       atol=1e-4):
        raise AffineError(f"--affine: the transform ({transform.GetName()}) is not affine; give a linear "
                          "(rigid, similarity or affine) ITK transform")
    return matrix


def matrix_ras(transform) -> np.ndarray:
    """The 4x4 RAS matrix A of an ITK transform: moving world point = A @ fixed world point (nibabel mm)."""
    return LPS4 @ matrix_lps(transform) @ LPS4


def transform_from_ras(matrix: np.ndarray):
    """An ITK ``AffineTransform`` (LPS) from a 4x4 RAS fixed -> moving matrix: :func:`matrix_ras`'s inverse."""
    import SimpleITK as sitk

    lps = LPS4 @ np.asarray(matrix, dtype=np.float64) @ LPS4
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in lps[:3, 3]])
    return transform


def save_transform(transform, path: Path) -> Path:
    """Write ``transform`` as an ITK transform file (``.tfm``: text, SimpleITK and ANTs read it)."""
    import SimpleITK as sitk

    sitk.WriteTransform(transform, str(path))
    return Path(path)


def read_transform(path: Path, option: str = "--affine"):
    """An ITK transform file (``.tfm``, ``.mat``, ``.txt``, ``.h5``) that SimpleITK reads, as an AffineTransform."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise AffineError(f"{option} {path}: no such file (give auto, none, or an ITK transform file .tfm/.mat)")
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "unreadable")
        raise AffineError(f"{option} {path}: SimpleITK cannot read it as a transform ({first.strip()})") from None
    return transform_from_ras(matrix_ras(transform))


def check_plausible(matrix: np.ndarray, what: str) -> None:
    """Refuse a RAS affine no head needs: not finite, a reflection, or an axis scaled outside SCALE_RANGE."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise AffineError(f"{what}: the transform is not finite")
    det = float(np.linalg.det(matrix[:3, :3]))
    scales = np.linalg.svd(matrix[:3, :3], compute_uv=False)
    low, high = SCALE_RANGE
    if det <= 0 or scales.min() < low or scales.max() > high:
        raise AffineError(f"{what}: implausible transform (determinant {det:.3g}, axis scales "
                          f"{scales.min():.3g} to {scales.max():.3g}; a head needs {low:g} to {high:g} and no "
                          "reflection); check the images, or give --affine none or a transform file")


# ----------------------------------------------------------------------------- the registration

def levels(spacing: tuple[float, ...], shape: tuple[int, ...]) -> tuple[list[int], list[float]]:
    """Shrink factors and smoothing sigmas (mm) of the resolution levels, coarse to fine.

    One level per :data:`LEVEL_SPACINGS_MM` entry that is at least the image's
    voxel size, the factor rounded, repeats dropped, and a level kept only if
    every axis keeps 8 voxels or more; sigma is half the level's spacing.
    """
    voxel = float(min(spacing))
    shrinks: list[int] = []
    for target in LEVEL_SPACINGS_MM:
        factor = max(1, int(round(target / voxel)))
        if min(shape) // factor < 8:
            continue
        if not shrinks or factor < shrinks[-1]:
            shrinks.append(factor)
    if not shrinks:
        shrinks = [1]
    return shrinks, [0.5 * factor * voxel if factor > 1 else 0.0 for factor in shrinks]


def coarsened(volume: Volume, spacing: float) -> Volume:
    """``volume`` on a grid of its own box and axes with voxels of at least ``spacing`` mm (anti-aliased)."""
    current = np.asarray(volume.spacing)
    if np.all(current >= 0.75 * spacing):
        return volume
    factor = np.maximum(spacing / current, 1.0)  # new voxel in old voxels, per axis
    shape = tuple(max(1, int(round(n / f))) for n, f in zip(volume.shape, factor))
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * factor
    affine[:3, 3] = volume.affine[:3, :3] @ ((factor - 1.0) / 2.0) + volume.affine[:3, 3]
    return resample_like(volume, (shape, affine))


def _one_thread(function):
    """Run ``function`` with SimpleITK on one thread, then restore its default.

    ITK's threaded registration sums in whatever order its threads finish: two
    runs of one pair then differ in the last bits of the affine, and so would
    the fields of ``--backend torch`` and ``--backend sim`` (measured on
    Colin27 -> MNI). One thread makes the affine, and every run, reproducible.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import SimpleITK as sitk

        threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            return function(*args, **kwargs)
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return wrapper


def _method(shrinks=None, sigmas=None):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    if shrinks is not None:
        method.SetShrinkFactorsPerLevel(shrinks)
        method.SetSmoothingSigmasPerLevel(sigmas)
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


@_one_thread
def mattes(fixed_image, moving_image, transform) -> float:
    """Mattes mutual information (ITK's sign: lower is better, 0 = none) of the pair under ``transform``."""
    method = _method()
    method.SetInitialTransform(transform)
    try:
        return float(method.MetricEvaluate(fixed_image, moving_image))
    except RuntimeError:  # too few samples map inside the moving image: nothing shared
        return 0.0


@dataclass
class AffineResult:
    """An affine pre-alignment: the ITK transform, its RAS matrix and how it scored."""

    transform: object  # sitk.AffineTransform, LPS, fixed -> moving points
    matrix: np.ndarray  # 4x4 RAS, moving world point = matrix @ fixed world point
    source: str  # "auto" or the file it was read from
    metric_before: float | None = None
    metric_after: float | None = None
    seconds: float = 0.0
    iterations: int | None = None
    stop: str = ""
    levels: list = field(default_factory=list)

    def section(self, ncc_before: float, ncc_after: float) -> dict:
        """report.json's ``affine`` key."""
        scales = np.linalg.svd(self.matrix[:3, :3], compute_uv=False)
        return {
            "source": self.source,
            "file": "affine.tfm",
            "matrix_ras": [[round(float(v), 6) for v in row] for row in self.matrix],
            "metric": {"name": "Mattes mutual information (lower is better)", "before": self.metric_before,
                       "after": self.metric_after},
            "ncc": {"before": ncc_before, "after": ncc_after},
            "determinant": float(np.linalg.det(self.matrix[:3, :3])),
            "axis_scales": [float(s) for s in scales],
            "iterations": self.iterations,
            "optimizer_stop": self.stop,
            "shrink_factors": self.levels,
            "seconds": self.seconds,
        }


@_one_thread
def estimate_affine(fixed: Volume, moving: Volume, *, what: str = "--affine auto") -> AffineResult:
    """The affine that maps the fixed image's world points onto the moving image's (see the module's notes).

    Raises :class:`AffineError` when the optimisation fails or diverges.
    """
    import SimpleITK as sitk

    start = time.perf_counter()
    # the finest level is at about the fixed spacing (2 mm at least): finer voxels cost time and change nothing
    finest = max(float(min(fixed.spacing)), LEVEL_SPACINGS_MM[-1])
    fixed_image, moving_image = to_sitk(coarsened(fixed, finest)), to_sitk(coarsened(moving, finest))
    before = mattes(fixed_image, moving_image, sitk.AffineTransform(3))
    try:
        initial = sitk.CenteredTransformInitializer(fixed_image, moving_image, sitk.AffineTransform(3),
                                                    sitk.CenteredTransformInitializerFilter.MOMENTS)
    except RuntimeError as exc:
        raise AffineError(f"{what}: the centre-of-mass start failed ({' '.join(str(exc).split())[:200]})") from None
    shrinks, sigmas = levels(fixed.spacing, fixed.shape)
    method = _method(shrinks, sigmas)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=LEARNING_RATE, minStep=MIN_STEP,
                                                   numberOfIterations=ITERATIONS, relaxationFactor=0.5,
                                                   gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(initial, inPlace=False)
    try:
        final = method.Execute(fixed_image, moving_image)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        if "outside moving image buffer" in text or "sufficiently overlap" in text:
            raise AffineError(f"{what}: the optimisation diverged (the moving image was moved out of the fixed "
                              "image's field of view); nothing was written (--affine none skips it, or give a "
                              "transform file)") from None
        text = re.sub(r"^.*?ITK ERROR: \w+\(0x[0-9a-f]+\): ", "", text)
        raise AffineError(f"{what}: the optimisation failed ({text[:200]})") from None
    transform = transform_from_ras(matrix_ras(final))  # one AffineTransform, centre folded in
    after = mattes(fixed_image, moving_image, transform)
    result = AffineResult(transform=transform, matrix=matrix_ras(transform), source="auto", metric_before=before,
                          metric_after=after, seconds=time.perf_counter() - start,
                          iterations=int(method.GetOptimizerIteration()),
                          stop=method.GetOptimizerStopConditionDescription(), levels=shrinks)
    if not np.isfinite(after):
        raise AffineError(f"{what}: the optimisation diverged (Mattes MI not finite); nothing was written")
    if before <= after <= before + IDENTITY_TOLERANCE * max(abs(before), 1e-3):
        # no better than no transform at all: the images are aligned already (e.g. the same image); keep the identity
        identity = sitk.AffineTransform(3)
        return AffineResult(transform=identity, matrix=np.eye(4), source="auto", metric_before=before,
                            metric_after=before, seconds=result.seconds, iterations=result.iterations,
                            stop=result.stop + " No better than the identity (already aligned): kept the identity.",
                            levels=shrinks)
    if after >= before:
        raise AffineError(f"{what}: the optimisation diverged (Mattes MI {before:.4f} before, {after:.4f} after, "
                          "lower is better); nothing was written (--affine none skips it, or give a transform file)")
    check_plausible(result.matrix, what)
    return result


def affine_stage(option: str | Path | None, fixed: Volume, moving: Volume) -> AffineResult | None:
    """``--affine``: None/"none" (no pre-alignment), "auto" (:func:`estimate_affine`) or an ITK transform file."""
    if option is None or str(option) == "none":
        return None
    if str(option) == "auto":
        return estimate_affine(fixed, moving)
    transform = read_transform(Path(option))
    matrix = matrix_ras(transform)
    check_plausible(matrix, f"--affine {option}")
    fixed_image, moving_image = to_sitk(fixed), to_sitk(moving)
    import SimpleITK as sitk

    return AffineResult(transform=transform, matrix=matrix, source=str(option),
                        metric_before=mattes(fixed_image, moving_image, sitk.AffineTransform(3)),
                        metric_after=mattes(fixed_image, moving_image, transform))
