"""Glow CelebA TFRecords: write -> read bit-exact, counts, sharding, and every bad input."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data import celeba
from data.errors import DataError
from data.images import write_image


def _images(n, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def _read_all(directory, **kwargs):
    ds = celeba.celeba_dataset(directory, **kwargs)
    return [x.numpy() for x in celeba.iterate_images(ds, directory)]


def test_round_trip_bit_exact_non_square(tmp_path):
    images = _images(7, (12, 20, 3))
    paths = celeba.write_tfrecords(images, tmp_path, prefix="train", images_per_shard=3)
    assert [p.name for p in paths] == [f"train-r08-s-{i:04d}-of-0003.tfrecords" for i in range(3)]
    ds = celeba.celeba_dataset(tmp_path)
    assert ds.element_spec.shape == (12, 20, 3) and ds.element_spec.dtype == tf.uint8
    got = _read_all(tmp_path)
    assert len(got) == 7
    for a, b in zip(images, got):
        np.testing.assert_array_equal(a, b)


def test_grey_shard_round_trip(tmp_path):
    images = _images(4, (9, 9, 1), seed=1)
    celeba.write_tfrecords([im[:, :, 0] for im in images], tmp_path, images_per_shard=10)
    got = _read_all(tmp_path, expect_channels=1)
    assert [g.shape for g in got] == [(9, 9, 1)] * 4
    np.testing.assert_array_equal(np.stack(images), np.stack(got))


def test_float_input_is_rounded(tmp_path):
    image = np.linspace(0, 1, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    celeba.write_tfrecords([image], tmp_path)
    (got,) = _read_all(tmp_path)
    np.testing.assert_array_equal(got, np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))


def test_inspect_counts_and_num_shards(tmp_path):
    paths = celeba.write_tfrecords(_images(10, (4, 5, 3)), tmp_path, num_shards=4)
    counts = celeba.inspect_shards(paths)
    assert sum(counts) == 10 and len(counts) == 4 and max(counts) - min(counts) <= 1
    assert counts == [sum(1 for _ in tf.data.TFRecordDataset(str(p))) for p in paths]


def test_rewrite_removes_stale_shards(tmp_path):
    celeba.write_tfrecords(_images(6, (4, 4, 3)), tmp_path, images_per_shard=2)
    celeba.write_tfrecords(_images(2, (4, 4, 3)), tmp_path, images_per_shard=2)
    assert [p.name for p in celeba.list_shards(tmp_path)] == ["train-r08-s-0000-of-0001.tfrecords"]
    assert not list(tmp_path.glob(".*tmp"))


def test_extra_attr_feature_is_ignored(tmp_path):
    image = _images(1, (3, 4, 3))[0]
    feature = {
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[3, 4, 3])),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        "attr": tf.train.Feature(int64_list=tf.train.Int64List(value=list(range(40)))),
    }
    with tf.io.TFRecordWriter(str(tmp_path / "validation-r08-s-0000-of-0001.tfrecord")) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    (got,) = _read_all(tmp_path)
    np.testing.assert_array_equal(got, image)


def test_sharding_gives_disjoint_complete_subsets(tmp_path):
    images = [np.full((2, 2, 3), i, np.uint8) for i in range(11)]
    celeba.write_tfrecords(images, tmp_path, images_per_shard=2)  # 6 files
    parts = [{int(x[0, 0, 0]) for x in _read_all(tmp_path, num_shards=3, shard_index=i)} for i in range(3)]
    assert set().union(*parts) == set(range(11))
    assert sum(len(p) for p in parts) == 11
    with pytest.raises(DataError, match="shard_index"):
        celeba.celeba_dataset(tmp_path, num_shards=2, shard_index=2)


def test_shuffle_is_a_seeded_permutation(tmp_path):
    celeba.write_tfrecords([np.full((2, 2, 3), i, np.uint8) for i in range(20)], tmp_path, images_per_shard=5)
    order = lambda seed: [int(x[0, 0, 0]) for x in _read_all(tmp_path, shuffle_buffer=8, seed=seed)]  # noqa: E731
    a, b, c = order(3), order(3), order(4)
    assert sorted(a) == list(range(20))
    assert a == b and a != c and a != list(range(20))


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="no such TFRecord folder"):
        celeba.list_shards(tmp_path / "nope")
    with pytest.raises(DataError, match="no \\*.tfrecords shards"):
        celeba.celeba_dataset(tmp_path)


def test_truncated_shard_named(tmp_path):
    paths = celeba.write_tfrecords(_images(6, (8, 8, 3)), tmp_path, images_per_shard=3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 50])
    with pytest.raises(DataError, match=f"{paths[1].name}: truncated TFRecord"):
        celeba.inspect_shards(paths)
    with pytest.raises(DataError, match=f"{paths[1].name}.*truncated"):
        _read_all(tmp_path)


def test_corrupt_shard_named(tmp_path):
    paths = celeba.write_tfrecords(_images(6, (8, 8, 3)), tmp_path, images_per_shard=3)
    data = bytearray(paths[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside a record's payload: crc mismatch
    paths[1].write_bytes(bytes(data))
    assert celeba.inspect_shards(paths) == [3, 3]  # framing intact, payload corrupt
    with pytest.raises(DataError, match=f"{tmp_path}: corrupt.*{paths[1].name}.*corrupted record"):
        _read_all(tmp_path)


def test_grey_where_colour_expected(tmp_path):
    celeba.write_tfrecords(_images(2, (8, 8, 3)), tmp_path, prefix="a")
    celeba.write_tfrecords(_images(2, (8, 8, 1)), tmp_path, prefix="b")
    with pytest.raises(DataError, match="b-r08-s-0000-of-0001.tfrecords: grey images .* where 3-channel"):
        celeba.celeba_dataset(tmp_path)


def test_record_shape_mismatch_inside_a_shard(tmp_path):
    celeba.write_tfrecords(_images(2, (8, 8, 3)) + _images(1, (6, 8, 3)), tmp_path)
    with pytest.raises(DataError, match="record shape differs.*train-r08-s-0000-of-0001"):
        _read_all(tmp_path)


def test_bad_image_shape_on_write(tmp_path):
    with pytest.raises(DataError, match="image 1: shape"):
        celeba.write_tfrecords([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3, 2), np.uint8)], tmp_path)
    with pytest.raises(DataError, match="no images"):
        celeba.write_tfrecords([], tmp_path)
    assert not list(Path(tmp_path).iterdir())


def test_write_folder_as_tfrecords_resizes(tmp_path):
    rng = np.random.default_rng(5)
    photos = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), rng.integers(0, 256, (20, 20, 1), dtype=np.uint8)]
    write_image(tmp_path / "in" / "a.png", photos[0])
    write_image(tmp_path / "in" / "b.PNG", photos[1])
    celeba.write_folder_as_tfrecords(tmp_path / "in", tmp_path / "out", prefix="mine", size=16)
    got = _read_all(tmp_path / "out")
    expected_a = cv2.resize(photos[0][:, 5:35], (16, 16), interpolation=cv2.INTER_AREA)
    expected_b = cv2.resize(np.repeat(photos[1], 3, axis=2), (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(got[0], expected_a)
    np.testing.assert_array_equal(got[1], expected_b)
