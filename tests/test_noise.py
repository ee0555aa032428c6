"""Noise models: statistics, reproducibility from a seed, numpy/tf agreement, flag errors."""
import numpy as np
import pytest
import tensorflow as tf

from data.errors import DataError
from data.noise import add_noise, add_noise_tf, parse_noise


def test_gaussian_var_matches_skimage_and_quantises_like_the_authors():
    from skimage.util import random_noise

    clean = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    noisy = add_noise(clean, parse_noise("gaussian_var", "0.02"), seed=5)
    reference = (random_noise(clean / 255.0, mode="gaussian", var=0.02, rng=np.random.default_rng(5)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(noisy, reference / np.float32(255))


def test_gaussian_var_variance_before_clipping():
    # Mid-grey keeps clipping negligible: the empirical variance is the requested one.
    clean = np.full((256, 256, 3), 128, np.uint8)
    noisy = add_noise(clean, parse_noise("gaussian_var", 0.01), seed=1)
    residual = noisy - 128 / 255.0 + 0.5 / 255  # undo the cast's mean truncation
    assert abs(residual.var() - 0.01) < 0.0005


@pytest.mark.parametrize("model,level,std", [("sigma", 25, 25 / 255), ("poisson_gaussian", "0.005,0.0005", np.sqrt(0.005 * 0.5 + 0.0005))])
def test_additive_models_have_the_requested_std(model, level, std):
    clean = np.full((200, 200, 3), 0.5, np.float32)
    noisy = add_noise(clean, parse_noise(model, level), seed=2)
    assert abs((noisy - clean).std() - std) < 0.03 * std
    assert abs((noisy - clean).mean()) < 0.01 * std + 1e-3


def test_same_seed_same_noise_other_seed_other_noise():
    clean = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cfg = parse_noise("sigma", 15)
    np.testing.assert_array_equal(add_noise(clean, cfg, (7, 3)), add_noise(clean, cfg, (7, 3)))
    assert not np.array_equal(add_noise(clean, cfg, (7, 3)), add_noise(clean, cfg, (7, 4)))


def test_tf_noise_is_reproducible_and_has_the_same_statistics():
    clean = tf.fill([128, 128, 3], 0.5)
    cfg = parse_noise("gaussian_var", 0.02)
    a = add_noise_tf(clean, cfg, [1, 2]).numpy()
    np.testing.assert_array_equal(a, add_noise_tf(clean, cfg, [1, 2]).numpy())
    assert abs((a - 0.5 + 0.5 / 255).std() - np.sqrt(0.02)) < 0.005
    np.testing.assert_array_equal(np.round(a * 255), a * 255)  # quantised like the numpy path


def test_none_returns_the_clean_image():
    clean = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(add_noise(clean, parse_noise("none"), 0), clean / 255.0, atol=1e-7)


def test_bad_flags_are_named():
    with pytest.raises(DataError, match="--noise: unknown noise model 'speckle'"):
        parse_noise("speckle")
    with pytest.raises(DataError, match="--noise_level"):
        parse_noise("poisson_gaussian", "0.1")
    with pytest.raises(DataError, match="--noise_level"):
        parse_noise("sigma", "abc")
