"""Reading, writing and converting single images, with errors that name the file."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from data.errors import DataError
from utils import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageConversionWarning(UserWarning):
    """An input image was converted on reading (16-bit to 8-bit, alpha dropped); the message names the file.

    Python's default warning filter shows each distinct message once, so a file read
    every epoch is reported once per process.
    """


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 by rounding (uint8 input is returned as is)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (float input is cast to float32)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def read_image(path: str | os.PathLike, colour: bool | None = None) -> np.ndarray:
    """Read an image file as uint8 (H, W, C), RGB order.

    colour=True converts grey to RGB, colour=False converts RGB to grey (C=1),
    None keeps what the file holds. 16-bit files are scaled to 8 bits and an alpha
    channel is dropped, each with an ImageConversionWarning naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: cannot be decoded as an image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        warnings.warn(f"{path}: 16-bit image, scaled to 8 bits", ImageConversionWarning, stacklevel=2)
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] == 4:
        warnings.warn(f"{path}: RGBA image, alpha channel dropped", ImageConversionWarning, stacklevel=2)
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if colour is True and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif colour is False and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    return img


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB or grey image (uint8 or float in [0, 1]) atomically."""
    path = Path(path)
    img = to_uint8(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    suffix = path.suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, img)
    if not ok:
        raise DataError(f"{path}: cannot encode an image with suffix {suffix!r}")
    atomic_write_bytes(path, buf.tobytes())
