"""(noisy, clean) image pairs for training and testing, from every data source (TFRecords, SIDD folders and .mat blocks, image folders).

Training pairs are tf.data streams of float32 [0, 1] images; synthetic noise is drawn
in the graph from a stateless seed (run seed, image index), so every noisy sample is
reproducible and the stream never holds the dataset. Test pairs are Python iterators
of `TestPair` (one image at its true size at a time) with noise from `data.noise.add_noise`
seeded by (run seed, image index, 1), so test noise differs from training noise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from data.errors import DataError
from data.noise import NoiseConfig, add_noise, add_noise_tf

TEST_STREAM = 1  # third seed word of test noise (training noise uses the stateless tf stream)


@dataclass
class TestPair:
    """One test image: a name, its noisy input (float32 [0, 1]) and clean target (uint8)."""

    name: str
    noisy: np.ndarray
    clean: np.ndarray | None


@dataclass
class TestSet:
    """A re-iterable test set: `open()` yields TestPairs; `size` is known up front."""

    description: str
    size: int
    open: Callable[[], Iterator[TestPair]]


def _to_float(image):
    import tensorflow as tf

    return tf.cast(image, tf.float32) / 255.0


def synthetic_pairs(clean_images, noise: NoiseConfig, seed: int):
    """Map a tf.data stream of uint8 clean images to (noisy, clean) float pairs."""
    import tensorflow as tf

    def pair(index, image):
        clean = _to_float(image)
        noisy = add_noise_tf(clean, noise, tf.stack([tf.cast(seed, tf.int64), index]))
        return noisy, clean

    return clean_images.enumerate().map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def real_pairs(noisy_clean_uint8):
    """Map a tf.data stream of uint8 (noisy, clean) pairs to floats (noise model `none`)."""
    import tensorflow as tf

    return noisy_clean_uint8.map(lambda n, c: (_to_float(n), _to_float(c)), num_parallel_calls=tf.data.AUTOTUNE)


def tfrecord_train_pairs(directory, noise: NoiseConfig, seed: int, *, shuffle_buffer: int = 256, file_batch: int = 5, num_shards: int = 1, shard_index: int = 0):
    """Training pairs from a CelebA-schema TFRecord folder (`--train_files_path`)."""
    from data.celeba import celeba_dataset, inspect_shards, list_shards

    if noise.model == "none":
        raise DataError("--noise none needs real noisy/clean pairs (SIDD); TFRecord folders hold clean images only")
    inspect_shards(list_shards(directory))  # a truncated shard is named here, not as a DataLossError mid-training
    images = celeba_dataset(
        directory, shuffle_buffer=shuffle_buffer, seed=seed, num_shards=num_shards,
        shard_index=shard_index, cycle_length=max(1, file_batch),
    )
    return synthetic_pairs(images, noise, seed)


def sidd_train_pairs(noisy_dir, gt_dir, noise: NoiseConfig, seed: int, *, crop: int = 256, crops_per_image: int = 8,
                     report_padding: bool = True):
    """Training pairs from SIDD-Medium folders: real pairs, or synthetic noise on the GT images."""
    from data.sidd import pair_noisy_gt_folders, sidd_crops_dataset

    pairs = pair_noisy_gt_folders(noisy_dir, gt_dir)
    crops = sidd_crops_dataset(pairs, crop=crop, crops_per_image=crops_per_image, seed=seed, epochs=1,
                               report_padding=report_padding)
    if noise.model == "none":
        return real_pairs(crops)
    return synthetic_pairs(crops.map(lambda n, c: c), noise, seed)


def count_tfrecord_images(directory) -> int:
    from data.celeba import inspect_shards, list_shards

    return int(sum(inspect_shards(list_shards(directory))))


def tfrecord_test_set(directory, noise: NoiseConfig, seed: int, limit: int | None = None) -> TestSet:
    """Test pairs from a CelebA-schema TFRecord folder, in file order."""
    from data.celeba import celeba_dataset, iterate_images

    if noise.model == "none":
        raise DataError("--noise none needs real noisy/clean pairs; TFRecord folders hold clean images only")
    total = count_tfrecord_images(directory)
    size = min(total, limit) if limit else total

    def open_pairs() -> Iterator[TestPair]:
        ds = celeba_dataset(directory).take(size)
        for index, image in enumerate(iterate_images(ds, directory)):
            clean = np.asarray(image)
            yield TestPair(f"{index:05d}", add_noise(clean, noise, (seed, index, TEST_STREAM)), clean)

    return TestSet(f"{directory} ({size} images, {noise.describe()})", size, open_pairs)


def array_test_set(name: str, clean: np.ndarray, noise: NoiseConfig, seed: int, noisy: np.ndarray | None = None, names=None) -> TestSet:
    """Test pairs held in memory (small sets: the embedded sample, .mat blocks)."""
    if noisy is None and noise.model == "none":
        raise DataError(f"{name}: --noise none needs noisy images alongside the clean ones")
    names = names or [f"{i:05d}" for i in range(len(clean))]

    def open_pairs() -> Iterator[TestPair]:
        for index, image in enumerate(clean):
            noisy_image = (
                noisy[index].astype(np.float32) / 255.0 if noisy is not None
                else add_noise(image, noise, (seed, index, TEST_STREAM))
            )
            yield TestPair(names[index], noisy_image, image)

    return TestSet(f"{name} ({len(clean)} images, {'real noise' if noisy is not None else noise.describe()})", len(clean), open_pairs)


def folder_test_set(clean_dir, noise: NoiseConfig, seed: int, noisy_dir=None, colour: bool = True,
                    limit: int | None = None, min_size: int = 1) -> TestSet:
    """Test pairs from image folders: clean only (synthetic noise), or noisy + clean folders.

    Images are scored at their true size. Sizes are checked up front (PNG headers): a noisy
    image whose GT differs in size, or an image with a side below `min_size` (one patch),
    is a DataError naming the file(s) before anything is trained.
    """
    from data.folders import list_images
    from data.images import read_image
    from data.sidd import image_size, pair_noisy_gt_folders

    if noisy_dir is not None:
        pairs = pair_noisy_gt_folders(noisy_dir, clean_dir)
    else:
        if noise.model == "none":
            raise DataError(f"{clean_dir}: --noise none needs a folder of noisy images too")
        pairs = [(None, p) for p in list_images(clean_dir)]
    pairs = pairs[:limit] if limit else pairs
    for noisy_path, clean_path in pairs:
        height, width = image_size(clean_path)
        if noisy_path is not None and image_size(noisy_path) != (height, width):
            h, w = image_size(noisy_path)
            raise DataError(f"{noisy_path}: size {w}x{h} differs from its ground truth {clean_path} {width}x{height}")
        if min(height, width) < min_size:
            raise DataError(f"{noisy_path or clean_path}: image is {width}x{height}, smaller than one {min_size}x{min_size} patch")

    def open_pairs() -> Iterator[TestPair]:
        for index, (noisy_path, clean_path) in enumerate(pairs):
            clean = read_image(clean_path, colour=colour)
            if noisy_path is not None:
                noisy = read_image(noisy_path, colour=colour).astype(np.float32) / 255.0
                if noisy.shape != clean.shape:
                    raise DataError(f"{noisy_path}: size {noisy.shape} differs from its ground truth {clean_path}")
                if noise.model != "none":
                    noisy = add_noise(noisy, noise, (seed, index, TEST_STREAM))
            else:
                noisy = add_noise(clean, noise, (seed, index, TEST_STREAM))
            yield TestPair(Path(clean_path).stem, noisy, clean)

    return TestSet(f"{clean_dir} ({len(pairs)} images)", len(pairs), open_pairs)


def mat_test_set(noisy_mat, gt_mat, limit: int | None = None, keys: tuple[str | None, str | None] = (None, None)) -> TestSet:
    """SIDD validation blocks: every (40 x 32) 256x256 block at its true size.

    `keys` (from --mat_key) name the arrays; None expects SIDD's own names.
    """
    from data.sidd import load_mat_blocks

    noisy = load_mat_blocks(noisy_mat, keys[0], expected="ValidationNoisyBlocksSrgb")
    clean = load_mat_blocks(gt_mat, keys[1], expected="ValidationGtBlocksSrgb")
    if noisy.shape != clean.shape:
        raise DataError(f"{noisy_mat}: blocks {noisy.shape} do not match {gt_mat} {clean.shape}")
    noisy = noisy.reshape(-1, *noisy.shape[-3:])
    clean = clean.reshape(-1, *clean.shape[-3:])
    if limit:
        noisy, clean = noisy[:limit], clean[:limit]
    names = [f"block{i // 32:02d}_{i % 32:02d}" for i in range(len(clean))]
    return array_test_set(str(noisy_mat), clean, NoiseConfig("none", ()), 0, noisy=noisy, names=names)


def is_mat(path) -> bool:
    return path is not None and os.fspath(path).lower().endswith(".mat")
