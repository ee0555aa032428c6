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


def _lag1(residual: np.ndarray) -> float:
    """Mean of the horizontal and vertical lag-1 autocorrelations of (H, W, C) noise."""
    d = residual - residual.mean(axis=(0, 1))
    return float(0.5 * ((d[:, 1:] * d[:, :-1]).mean() + (d[1:] * d[:-1]).mean()) / d.var())


def test_camera_noise_on_flat_grey_has_the_documented_lag1_correlation():
    from data.noise import CAMERA_MEASURED_LAG1

    grey = np.full((256, 256, 3), 0.4)
    cfg = parse_noise("camera")
    numpy_noise = add_noise(grey, cfg, seed=(0, 1)) - 0.4
    tf_noise = add_noise_tf(tf.constant(grey, tf.float32), cfg, [0, 1]).numpy() - 0.4
    for residual in (numpy_noise, tf_noise):
        assert residual.std() > 5 / 255  # real noise, not rounding
        assert abs(_lag1(residual) - CAMERA_MEASURED_LAG1) < 0.1
    white = add_noise(grey, parse_noise("camera", "0.02,0.02,0.005,0,0"), seed=(0, 1)) - 0.4
    assert abs(_lag1(white)) < 0.03  # rho = 0: no spatial correlation, so the kernel is what makes it


def test_camera_noise_is_seeded_and_reproducible():
    clean = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    cfg = parse_noise("camera")
    np.testing.assert_array_equal(add_noise(clean, cfg, (3, 1)), add_noise(clean, cfg, (3, 1)))
    assert not np.array_equal(add_noise(clean, cfg, (3, 1)), add_noise(clean, cfg, (3, 2)))
    x = tf.constant(clean / 255.0, tf.float32)
    np.testing.assert_array_equal(add_noise_tf(x, cfg, [3, 1]).numpy(), add_noise_tf(x, cfg, [3, 1]).numpy())
    assert not np.array_equal(add_noise_tf(x, cfg, [3, 1]).numpy(), add_noise_tf(x, cfg, [3, 2]).numpy())
    out = add_noise(clean, cfg, 0)
    np.testing.assert_array_equal(np.round(out * 255), out * 255)  # 8-bit, like a camera's sRGB file


def test_camera_noise_follows_the_model_in_linear_light():
    # Fixed gain g: in linear light the noise variance is g * (x + r), and the 3-tap kernel keeps it
    # (unit energy), so at mid-grey the sRGB std is the tone curve's slope times sqrt(g (x + r)).
    from data.noise import linear_to_srgb, srgb_to_linear

    g, r, level = 0.004, 0.005, 0.5
    residual = add_noise(np.full((256, 256, 3), level), parse_noise("camera", f"{g},{g},{r},0.45,0.3"), 0) - level
    x = srgb_to_linear(np.array(level))
    slope = (linear_to_srgb(x + 1e-4) - linear_to_srgb(x - 1e-4)) / 2e-4
    assert residual.std() == pytest.approx(slope * np.sqrt(g * (x + r)), rel=0.05)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(np.linspace(0, 1, 11))), np.linspace(0, 1, 11), atol=1e-6)
    channels = np.corrcoef((residual - residual.mean()).reshape(-1, 3).T)[np.triu_indices(3, 1)]
    assert np.all(np.abs(channels - 0.3) < 0.05)


def test_strong_camera_noise_darkens_mid_tones_like_high_iso_shots():
    grey = np.full((200, 200, 3), 100 / 255)
    strong = add_noise(grey, parse_noise("camera", "0.06,0.06,0.005,0.45,0.3"), 0)
    weak = add_noise(grey, parse_noise("camera", "0.003,0.003,0.005,0.45,0.3"), 0)
    assert (strong.mean() - grey.mean()) * 255 < -3  # SIDD's ISO 3200 pairs: 6-10 grey levels darker
    assert abs(weak.mean() - grey.mean()) * 255 < 1


def test_camera_levels_are_checked():
    with pytest.raises(DataError, match="--noise_level: camera takes 5 value"):
        parse_noise("camera", "0.01,0.02")
    with pytest.raises(DataError, match="g_min <= g_max"):
        parse_noise("camera", "0.02,0.01,0.005,0.45,0.3")
    with pytest.raises(DataError, match="lag-1 autocorrelation must be at most 0.707"):
        parse_noise("camera", "0.01,0.02,0.005,0.8,0.3")
