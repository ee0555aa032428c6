"""Plain image folders (CBSD68, Kodak24, BSD68, Set12, your own photos), grey or colour.

Small test sets are loaded into memory with `load_folder`; folders too large for
memory can be streamed with `folder_dataset`, which decodes one file at a time.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.images import IMAGE_SUFFIXES, read_image


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files directly inside `directory` (png, jpg, jpeg, bmp, tif, tiff; any case), sorted by name."""
    directory = Path(directory)
    if not directory.exists():
        raise DataError(f"{directory}: no such image folder")
    if not directory.is_dir():
        raise DataError(f"{directory}: is not a folder")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{directory}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def load_folder(
    directory: str | os.PathLike, colour: bool | None = True, min_size: int | None = None
) -> list[np.ndarray]:
    """Read every image of a folder as uint8 (H, W, C), in file-name order.

    colour=True gives RGB (grey files are repeated to 3 channels), False gives grey
    (C=1), None keeps what each file holds. Images may differ in size, hence a list.
    An image with a side shorter than `min_size` (e.g. one patch) is a DataError.
    """
    images = []
    for path in list_images(directory):
        img = read_image(path, colour=colour)
        if min_size is not None and min(img.shape[:2]) < min_size:
            raise DataError(
                f"{path}: image is {img.shape[1]}x{img.shape[0]}, smaller than the minimum "
                f"size {min_size} (one patch)"
            )
        images.append(img)
    return images


def folder_dataset(directory: str | os.PathLike, colour: bool | None = True, shuffle: bool = False, seed: int = 0):
    """A tf.data.Dataset of uint8 (H, W, C) images decoded lazily, one file at a time.

    For folders too large to hold in memory. Channels are fixed (3 for colour=True,
    1 for colour=False); with colour=None the channel count of the first file is used
    and a file that disagrees fails at iteration time.
    """
    import tensorflow as tf

    files = [str(p) for p in list_images(directory)]
    channels = 3 if colour is True else 1 if colour is False else read_image(files[0]).shape[2]

    def _read(path: np.ndarray) -> np.ndarray:
        img = read_image(path.decode(), colour=colour)
        if img.shape[2] != channels:
            raise DataError(f"{path.decode()}: has {img.shape[2]} channels, expected {channels}")
        return img

    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda p: tf.ensure_shape(tf.numpy_function(_read, [p], tf.uint8), [None, None, channels]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds
