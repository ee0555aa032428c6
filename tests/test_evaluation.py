"""Metrics against independent computations, and the table printer."""
import math

import numpy as np
import pytest

from evaluation import batch_psnr, format_table, mean_scores, psnr, score_images, ssim, uqi


def _pair(seed=0, shape=(48, 40, 3)):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, shape, dtype=np.uint8)
    test = np.clip(clean + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)
    return clean, test


def test_psnr_known_value():
    clean = np.zeros((10, 10, 3), np.uint8)
    test = np.full((10, 10, 3), 10, np.uint8)  # mse 100 -> 10 log10(255^2 / 100)
    assert psnr(clean, test) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(clean, clean) == math.inf


def test_psnr_rounds_float_images_like_a_saved_png():
    clean, test = _pair()
    assert psnr(clean / 255.0, test / 255.0) == pytest.approx(psnr(clean, test))


def test_ssim_known_values_and_channels():
    """Constant images have no variance, so SSIM reduces to its luminance term (2ab + C1) / (a^2 + b^2 + C1)."""
    a, b = np.full((32, 32, 1), 100, np.uint8), np.full((32, 32, 1), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    assert ssim(a, a) == pytest.approx(1.0)
    clean, test = _pair(1)
    assert 0 < ssim(clean, test) < 1
    # colour SSIM is the mean over the channels, each scored as a grey image
    assert ssim(clean, test) == pytest.approx(np.mean([ssim(clean[..., i:i + 1], test[..., i:i + 1]) for i in range(3)]))


def test_batch_psnr_is_per_image_on_float_data():
    clean = np.zeros((3, 4, 4, 1))
    test = clean + np.array([0.1, 0.01, 0.0])[:, None, None, None]  # mse 1e-2, 1e-4, 0
    np.testing.assert_allclose(batch_psnr(clean, test), [20.0, 40.0, np.inf])
    assert batch_psnr(clean, test * 255, data_range=255.0)[0] == pytest.approx(20.0)


def test_uqi_is_sewars_index_computed_directly():
    """sewar's UQI (the one the RSE-RL authors report) mixes window means with the
    window size N, so it is not the textbook Wang-Bovik index; we keep sewar's for
    comparability and check it here against a direct windowed computation."""
    clean, test = _pair(2, (32, 32))
    x, y = clean.astype(np.float64), test.astype(np.float64)
    from numpy.lib.stride_tricks import sliding_window_view as windows

    # sewar: uniform_filter (size 8, windows i-4..i+3), crop 4 each side = valid windows but the last.
    wx, wy = windows(x, (8, 8))[:-1, :-1], windows(y, (8, 8))[:-1, :-1]
    mx, my, mxy = wx.mean((-1, -2)), wy.mean((-1, -2)), (wx * wy).mean((-1, -2))
    mxx, myy, n = (wx * wx).mean((-1, -2)), (wy * wy).mean((-1, -2)), 64
    q = 4 * (n * mxy - mx * my) * mx * my / ((n * (mxx + myy) - (mx**2 + my**2)) * (mx**2 + my**2))
    assert uqi(clean, test) == pytest.approx(q.mean(), rel=1e-9)
    assert uqi(clean, clean) == pytest.approx(1.0)
    assert uqi(clean, test) > uqi(clean, 255 - test)


def test_score_images_per_image_and_mean():
    pairs = [_pair(s, (24 + 8 * s, 32, 3)) for s in range(3)]
    scores = score_images([c for c, _ in pairs], [t for _, t in pairs])
    assert set(scores) == {"psnr", "ssim", "uqi"} and scores["psnr"].shape == (3,)
    assert scores["psnr"][1] == pytest.approx(psnr(*pairs[1]))
    assert mean_scores(scores)["psnr"] == pytest.approx(np.mean([psnr(c, t) for c, t in pairs]))


def test_format_table_aligns_rows():
    text = format_table([{"stage": "noisy", "psnr": 17.9}, {"stage": "VAE + agent", "psnr": 28.12345}], title="T")
    lines = text.splitlines()
    assert lines[0] == "T" and "28.123" in lines[-1] and lines[-1].startswith("VAE + agent")
    assert len({len(line) for line in lines[1:]}) == 1
