"""RGB <-> YUV exactly as OpenCV's BT.601 float conversion, for numpy arrays and tf tensors.

The authors' code converted RGB data with a BGR->YUV call; we use the RGB one.
Float convention (OpenCV's): Y in [0, 1], U and V offset by 0.5.
"""
from __future__ import annotations

import numpy as np

# Rows: output channel; columns: input channel. Same constants as OpenCV's
# color_yuv.simd.hpp (RGB2YUV: 0.299/0.587/0.114, U = 0.492 (B-Y), V = 0.877 (R-Y)).
_Y = np.array([0.299, 0.587, 0.114])
_U = 0.492 * (np.array([0.0, 0.0, 1.0]) - _Y)
_V = 0.877 * (np.array([1.0, 0.0, 0.0]) - _Y)
RGB_TO_YUV = np.stack([_Y, _U, _V]).astype(np.float32)
# OpenCV's inverse constants (not the exact matrix inverse; round trip error ~2e-4).
YUV_TO_RGB = np.array(
    [[1.0, 0.0, 1.140], [1.0, -0.395, -0.581], [1.0, 2.032, 0.0]], dtype=np.float32
)
_OFFSET = np.array([0.0, 0.5, 0.5], dtype=np.float32)


def _is_tf(x) -> bool:
    return type(x).__module__.startswith("tensorflow")


def rgb_to_yuv(rgb):
    """(..., 3) RGB float in [0, 1] -> (..., 3) YUV (U, V centred on 0.5)."""
    if _is_tf(rgb):
        import tensorflow as tf  # only for tf input: numpy callers do not load TensorFlow

        rgb = tf.cast(rgb, tf.float32)
        return tf.tensordot(rgb, tf.constant(RGB_TO_YUV.T), axes=1) + _OFFSET
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb @ RGB_TO_YUV.T + _OFFSET


def yuv_to_rgb(yuv):
    """Inverse of `rgb_to_yuv` with OpenCV's constants (no clipping)."""
    if _is_tf(yuv):
        import tensorflow as tf  # only for tf input: numpy callers do not load TensorFlow

        yuv = tf.cast(yuv, tf.float32)
        return tf.tensordot(yuv - _OFFSET, tf.constant(YUV_TO_RGB.T), axes=1)
    yuv = np.asarray(yuv, dtype=np.float32)
    return (yuv - _OFFSET) @ YUV_TO_RGB.T


def to_model_space(images) -> np.ndarray:
    """The colour space the models work in: YUV for (..., 3) RGB images; grey (..., 1) is its own (Y)."""
    return rgb_to_yuv(images) if np.shape(images)[-1] == 3 else np.asarray(images, np.float32)


def from_model_space(images) -> np.ndarray:
    """Inverse of `to_model_space`, clipped to [0, 1]: displayable float32 images."""
    out = yuv_to_rgb(images) if np.shape(images)[-1] == 3 else images
    return np.clip(out, 0.0, 1.0).astype(np.float32)
