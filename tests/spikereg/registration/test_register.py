"""The host loop: chunked patches, the coarse-to-fine pyramid, and refusals before any work."""
import numpy as np
import pytest

from spikereg.data import load_mni, make_pair
from spikereg.registration.backends import open_backend
from spikereg.registration.patches import downsample, upsample_field
from spikereg.registration.register import ncc, pyramid_shapes, register


@pytest.fixture(scope="module")
def brain(tiny_export):
    """The whole 8 mm MNI T1 (about 25x29x24) and a copy warped by up to 2 voxels."""
    template = load_mni("t1", 8.0).data
    pair = make_pair(template, np.random.default_rng(5), max_displacement=2.0, control_spacing=4)
    return pair.fixed, pair.moving


def test_chunked_patches_give_the_same_field_as_one_chunk(tiny_export, brain):
    fixed, moving = brain
    fields = []
    for chunk in (7, 100_000):  # 7 does not divide the patch count: a short last chunk too
        with open_backend(tiny_export[1], "torch") as backend:
            backend.chunk_size = chunk
            fields.append(register(fixed, moving, backend, iterations=2, patch_stride=4).ddf)
    assert np.abs(fields[0]).max() > 0.05
    np.testing.assert_array_equal(fields[0], fields[1])


def test_pyramid_registers_coarse_then_fine(tiny_export, brain):
    fixed, moving = brain
    with open_backend(tiny_export[1], "torch") as backend:
        one = register(fixed, moving, backend, iterations=1, patch_stride=4, pyramid=1)
        patches_one = backend.stats.patches
        two = register(fixed, moving, backend, iterations=1, patch_stride=4, pyramid=2)
        patches_two = backend.stats.patches - patches_one
    assert two.levels == 2 and one.levels == 1
    half = tuple(-(-s // 2) for s in fixed.shape)
    coarse_patches = int(np.prod([max(1, -(-(s - 8) // 4) + 1) for s in half]))
    assert patches_two == one.patches_per_iteration + coarse_patches == two.patches
    assert two.ddf.shape == (3,) + fixed.shape and np.isfinite(two.ddf).all()
    assert not np.array_equal(one.ddf, two.ddf)  # the coarse level contributed
    assert ncc(fixed, two.warped) > ncc(fixed, moving)


def test_pyramid_resampling_keeps_a_constant_field_constant_and_doubles_it():
    shape = (9, 12, 7)
    assert downsample(np.ones(shape, np.float32)).shape == (5, 6, 4)
    np.testing.assert_allclose(downsample(np.ones(shape, np.float32)), 1.0)
    field = np.broadcast_to(np.array([1.0, -0.5, 2.0], np.float32)[:, None, None, None], (3, 5, 6, 4))
    fine = upsample_field(np.ascontiguousarray(field), shape)
    assert fine.shape == (3,) + shape
    for axis, value in enumerate([2.0, -1.0, 4.0]):
        np.testing.assert_allclose(fine[axis], value, atol=1e-6)


def test_a_pyramid_deeper_than_the_patch_allows_is_refused():
    assert pyramid_shapes((64, 64, 63), 3, 16) == [(64, 64, 63), (32, 32, 32), (16, 16, 16)]
    with pytest.raises(ValueError, match=r"--pyramid 4: .*8x8x8 voxels, smaller than the model.s "
                                         r"16-voxel patch; use --pyramid 3 or less"):
        pyramid_shapes((64, 64, 63), 4, 16)
    with pytest.raises(ValueError, match="--pyramid 0"):
        pyramid_shapes((64, 64, 64), 0, 16)


def test_a_stride_that_does_not_fit_the_model_is_refused(tiny_export, brain):
    with open_backend(tiny_export[1], "torch") as backend:
        for stride in (3, 12):  # not a multiple of the control spacing 2; larger than the patch 8
            with pytest.raises(ValueError, match=f"--patch-stride {stride}: must be a positive multiple of 2"):
                register(*brain, backend, iterations=1, patch_stride=stride)
        assert backend.stats.patches == 0


def test_smoothing_blurs_each_residual_and_zero_changes_nothing(tiny_export, brain):
    fixed, moving = brain
    with open_backend(tiny_export[1], "torch") as backend:
        plain = register(fixed, moving, backend, iterations=1, patch_stride=4).ddf
        zero = register(fixed, moving, backend, iterations=1, patch_stride=4, smoothing=0.0).ddf
        smooth = register(fixed, moving, backend, iterations=1, patch_stride=4, smoothing=1.5).ddf
    np.testing.assert_array_equal(plain, zero)
    from spikereg.registration.patches import smooth_field

    np.testing.assert_allclose(smooth, smooth_field(plain, 1.5), atol=1e-6)  # one iteration: the residual itself
    roughness = lambda ddf: float(np.abs(np.diff(ddf, axis=1)).mean())  # noqa: E731
    assert roughness(smooth) < 0.8 * roughness(plain)


def test_smoothing_defaults_to_the_models_and_negative_is_refused():
    from spikereg.config import ConfigError, load_config
    from spikereg.registration.pipeline import run_options

    meta = {"model": {"patch_size": 16}, "reduction": 4, "run": {"iterations": 8, "patch_stride": 12, "smoothing": 3.0}}
    assert run_options(meta, None, None) == (8, 12, 3.0)
    assert run_options(meta, 2, 8, 0.0) == (2, 8, 0.0)  # 0 given is 0, not the model's
    assert run_options({**meta, "run": {}}, None, None)[2] == 0.0  # models from before run.smoothing
    with pytest.raises(ValueError, match=r"--smoothing -1.0: must be >= 0"):
        run_options(meta, None, None, -1.0)
    with pytest.raises(ConfigError, match=r"'run.smoothing' must be >= 0"):
        load_config(None, ["run.smoothing=-0.5"])
