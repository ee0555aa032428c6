"""RGB <-> YUV matches OpenCV's BT.601 float conversion in numpy and TensorFlow."""
import cv2
import numpy as np
import tensorflow as tf

from data.color import rgb_to_yuv, yuv_to_rgb


def test_rgb_to_yuv_matches_opencv():
    x = np.random.default_rng(0).random((4, 23, 17, 3)).astype(np.float32)
    expected = np.stack([cv2.cvtColor(img, cv2.COLOR_RGB2YUV) for img in x])
    np.testing.assert_allclose(rgb_to_yuv(x), expected, atol=1e-6)
    np.testing.assert_allclose(rgb_to_yuv(tf.constant(x)).numpy(), expected, atol=1e-6)


def test_yuv_to_rgb_matches_opencv_and_round_trips():
    x = np.random.default_rng(1).random((2, 16, 16, 3)).astype(np.float32)
    yuv = rgb_to_yuv(x)
    expected = np.stack([cv2.cvtColor(img, cv2.COLOR_YUV2RGB) for img in yuv])
    np.testing.assert_allclose(yuv_to_rgb(yuv), expected, atol=1e-6)
    np.testing.assert_allclose(yuv_to_rgb(tf.constant(yuv)).numpy(), expected, atol=1e-6)
    # OpenCV's inverse constants are rounded: the round trip is good to well under 1/255.
    assert np.abs(yuv_to_rgb(yuv) - x).max() < 1e-3


def test_grey_maps_to_neutral_chroma():
    grey = np.full((1, 2, 2, 3), 0.3, np.float32)
    np.testing.assert_allclose(rgb_to_yuv(grey)[..., 1:], 0.5, atol=1e-6)
