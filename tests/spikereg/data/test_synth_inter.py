"""Inter-subject synthesis: coarse fields, affine residuals, images synthesized from tissue maps."""
from __future__ import annotations

import numpy as np
import pytest

from spikereg.config import Config, ConfigError, load_config
from spikereg.data import make_pair, warp
from spikereg.data.synth import random_affine_ddf, synthesize_image, tissue_classes_from_template

SHAPE = (24, 28, 20)


def _tissue() -> np.ndarray:
    grids = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in SHAPE), indexing="ij")
    r = np.sqrt(sum(g * g for g in grids))
    t1 = np.clip(1.2 - r, 0, 1).astype(np.float32)
    wm = np.clip(1 - abs(r - 0.3) / 0.2, 0, 1).astype(np.float32)
    gm = np.clip(1 - abs(r - 0.65) / 0.2, 0, 1).astype(np.float32)
    return t1, gm, wm


def test_affine_field_is_the_affine_it_draws() -> None:
    rng = np.random.default_rng(3)
    ddf = random_affine_ddf(SHAPE, rng, rotation=0.0, scale=0.0, shift=2.0)
    # A pure shift: one vector everywhere, each component within +-2.
    flat = ddf.reshape(3, -1)
    np.testing.assert_allclose(flat, flat[:, :1].repeat(flat.shape[1], 1), atol=1e-6)
    assert np.all(np.abs(flat[:, 0]) <= 2.0) and np.abs(flat[:, 0]).max() > 0.1
    # A rotation keeps lengths: |x + d(x) - c| == |x - c| about the centre.
    ddf = random_affine_ddf(SHAPE, np.random.default_rng(4), rotation=10.0)
    centre = (np.asarray(SHAPE) - 1) / 2
    grid = np.indices(SHAPE, dtype=np.float64).reshape(3, -1) - centre[:, None]
    moved = grid + ddf.reshape(3, -1)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=0), np.linalg.norm(grid, axis=0), rtol=1e-5, atol=1e-4)
    assert np.abs(ddf).max() > 0.5  # it did rotate


def test_tissue_classes_sum_to_one_and_synthesis_follows_the_classes() -> None:
    t1, gm, wm = _tissue()
    tissue = tissue_classes_from_template(t1, gm, wm)
    assert tissue.shape == (4, *SHAPE)
    np.testing.assert_allclose(tissue.sum(0)[t1 > 0.02], 1.0, atol=1e-5)  # inside the brain
    means = np.array([0.0, 0.2, 0.9, 0.5])
    image = synthesize_image(tissue, means, np.random.default_rng(0), noise=0.0, blur=0.0)
    pure = tissue.max(0) > 0.999
    expected = means[tissue.argmax(0)]
    np.testing.assert_allclose(image[pure], expected[pure], atol=1e-5)
    assert image.min() >= 0 and image.max() <= 1


def test_synthesized_pair_is_registered_by_its_field_and_shares_a_contrast() -> None:
    t1, gm, wm = _tissue()
    tissue = tissue_classes_from_template(t1, gm, wm)
    pair = make_pair(t1, np.random.default_rng(1), max_displacement=2.0, control_spacing=6,
                     coarse_displacement=4.0, coarse_control_spacing=12, affine=(2.0, 0.02, 1.0),
                     tissue=tissue, contrast_jitter=0.0)
    peak = float(np.sqrt((pair.ddf ** 2).sum(0)).max())
    assert peak > 2.5  # fine (2) + coarse (4) + affine: more than the fine field alone
    assert not np.allclose(pair.moving, t1, atol=0.05)  # synthesized, not the T1
    # With no jitter both scans share one contrast, so the field registers them (up to voxel noise and blur).
    before = float(np.mean((pair.moving - pair.fixed) ** 2))
    after = float(np.mean((warp(pair.moving, pair.ddf) - pair.fixed) ** 2))
    assert after < 0.5 * before


def test_default_options_keep_the_pairs_they_always_gave() -> None:
    t1, _, _ = _tissue()
    a = make_pair(t1, np.random.default_rng(7), max_displacement=2.0, control_spacing=6)
    b = make_pair(t1, np.random.default_rng(7), max_displacement=2.0, control_spacing=6,
                  coarse_displacement=0.0, affine=(0.0, 0.0, 0.0), tissue=None)
    np.testing.assert_array_equal(a.fixed, b.fixed)
    np.testing.assert_array_equal(a.ddf, b.ddf)


@pytest.mark.parametrize("key, value, words", [
    ("synth_fraction", 1.5, "data.synth_fraction"),
    ("plain_fraction", -0.1, "data.plain_fraction"),
    ("coarse_displacement", -1.0, "data.coarse_displacement"),
    ("coarse_control_spacing", 0, "data.coarse_control_spacing"),
    ("affine_scale", 0.7, "data.affine_scale"),
])
def test_config_refuses_bad_inter_subject_options(tmp_path, key, value, words) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"data:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=words):
        load_config(path)


def test_inter_subject_config_loads() -> None:
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[3] / "configs" / "sdnn_2mm_inter.yaml")
    assert isinstance(config, Config)
    assert config.data.synth_fraction == 0.5 and config.data.coarse_displacement == 6.0
