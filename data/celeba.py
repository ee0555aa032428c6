"""CelebA-HQ in the Glow `celeba-tfr` TFRecord schema: a streaming reader and a writer.

Each record is a tf.train.Example with `shape` int64[3] (H, W, C), `data` bytes (raw
uint8 H*W*C, RGB) and `label` int64[1]; some shards also carry `attr`, which is ignored.

Reading streams over the shards in file-name order (never the whole set in memory) and
shards by FILE across workers. TensorFlow reports corrupt or truncated records only while
iterating, without the file name; iterate through `iterate_images(ds, directory)` to get
those failures as a DataError that names the directory and the culprit shard.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from data.errors import DataError

SHARD_SUFFIXES = (".tfrecords", ".tfrecord")
_HEADER = struct.Struct("<QI")  # record length, masked crc32c of the length
_FOOTER_BYTES = 4  # masked crc32c of the data


def list_shards(directory: str | os.PathLike) -> list[Path]:
    """The *.tfrecords / *.tfrecord files of `directory`, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such TFRecord folder")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SHARD_SUFFIXES)
    if not files:
        raise DataError(f"{directory}: no *.tfrecords shards in this folder")
    return files


def _count_records(path: Path) -> int:
    """Count records by walking the framing headers (seek past each payload, no full read)."""
    size = path.stat().st_size
    count = 0
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            header = fh.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise DataError(f"{path}: truncated TFRecord (incomplete record header at byte {pos})")
            (length, _) = _HEADER.unpack(header)
            end = pos + _HEADER.size + length + _FOOTER_BYTES
            if end > size:
                raise DataError(
                    f"{path}: truncated TFRecord (record {count} at byte {pos} needs {length} bytes, "
                    f"the file ends at byte {size})"
                )
            fh.seek(end)
            pos = end
            count += 1
    return count


def inspect_shards(paths: Iterable[str | os.PathLike]) -> list[int]:
    """Record count of each shard, from the framing headers only (fast; also a truncation check)."""
    return [_count_records(Path(p)) for p in paths]


def _first_record_shape(path: Path) -> tuple[int, int, int]:
    """(H, W, C) of the first record of a shard, parsed in Python without TensorFlow's reader."""
    import tensorflow as tf

    with open(path, "rb") as fh:
        header = fh.read(_HEADER.size)
        if len(header) == 0:
            raise DataError(f"{path}: empty TFRecord shard (no records)")
        if len(header) < _HEADER.size:
            raise DataError(f"{path}: truncated TFRecord (incomplete first record header)")
        (length, _) = _HEADER.unpack(header)
        if length > path.stat().st_size:
            raise DataError(f"{path}: truncated or corrupt TFRecord (first record length {length})")
        payload = fh.read(length)
    if len(payload) < length:
        raise DataError(f"{path}: truncated TFRecord (first record cut short)")
    try:
        example = tf.train.Example.FromString(payload)
        shape = tuple(int(v) for v in example.features.feature["shape"].int64_list.value)
    except Exception as exc:  # protobuf raises its own DecodeError type
        raise DataError(f"{path}: first record is not a tf.train.Example ({exc})") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise DataError(f"{path}: first record has no valid `shape` feature (got {shape}); not a Glow CelebA shard")
    return shape  # type: ignore[return-value]


def celeba_dataset(
    directory: str | os.PathLike,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    expect_channels: int | None = 3,
    cycle_length: int | None = None,
):
    """Stream the images of a Glow TFRecord folder as a tf.data.Dataset of uint8 (H, W, C).

    Files are listed in name order and split by FILE: worker `shard_index` of `num_shards`
    reads files shard_index, shard_index + num_shards, ... The pipeline starts from a file
    list read through `interleave`, so tf.distribute's FILE auto-sharding works too.
    With shuffle_buffer > 0 the file order and the records are shuffled from `seed`
    (a new order each epoch, the same sequence of orders for the same seed).
    `cycle_length` files are read at once, round-robin (default: 1 without shuffling,
    so records come in file order; 4 with shuffling, to mix shards).

    The first record of every shard is checked up front: channels other than
    `expect_channels` (e.g. grey shards where colour is expected) raise DataError naming
    the shard. When all shards agree the element shape is static; every record is also
    checked in the graph against it, and such failures, like corrupt records, surface
    as DataError through `iterate_images`.
    """
    import tensorflow as tf

    files = list_shards(directory)
    if not (num_shards >= 1 and 0 <= shard_index < num_shards):
        raise DataError(f"shard_index {shard_index} / num_shards {num_shards}: need 0 <= shard_index < num_shards")
    files = files[shard_index::num_shards]
    if not files:
        raise DataError(f"{directory}: worker {shard_index} of {num_shards} gets no shard (too few files)")
    shapes = {}
    for path in files:
        shape = _first_record_shape(path)
        if expect_channels is not None and shape[2] != expect_channels:
            kind = "grey" if shape[2] == 1 else f"{shape[2]}-channel"
            raise DataError(
                f"{path}: {kind} images (shape {shape[0]}x{shape[1]}x{shape[2]}) where "
                f"{expect_channels}-channel images are expected"
            )
        shapes[path] = shape
    distinct = set(shapes.values())
    channels = next(iter(distinct))[2] if len({s[2] for s in distinct}) == 1 else None
    static = next(iter(distinct)) if len(distinct) == 1 else (None, None, channels)
    features = {
        "shape": tf.io.FixedLenFeature([3], tf.int64),
        "data": tf.io.FixedLenFeature([], tf.string),
    }

    def parse(record, filename):
        parsed = tf.io.parse_single_example(record, features)
        shape = tf.cast(parsed["shape"], tf.int32)
        flat = tf.io.decode_raw(parsed["data"], tf.uint8)
        checks = [
            tf.debugging.Assert(
                tf.equal(tf.size(flat), tf.reduce_prod(shape)),
                ["record data size does not match its shape", filename, shape],
            )
        ]
        if static[0] is not None:
            checks.append(tf.debugging.Assert(
                tf.reduce_all(tf.equal(shape, tf.constant(static, tf.int32))),
                [f"record shape differs from {static}", filename, shape],
            ))
        elif channels is not None:
            checks.append(tf.debugging.Assert(
                tf.equal(shape[2], channels), [f"record channels differ from {channels}", filename, shape],
            ))
        with tf.control_dependencies(checks):
            image = tf.reshape(flat, shape)
        return tf.ensure_shape(image, static)

    if cycle_length is None:
        cycle_length = 4 if shuffle_buffer > 0 else 1
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in files])
    if shuffle_buffer > 0:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f).map(lambda r: parse(r, f)),
        cycle_length=max(1, min(cycle_length, len(files))),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _locate_bad_shard(files: list[Path]) -> str:
    """After a read failure: name the first shard that is truncated or fails TensorFlow's checksums."""
    import tensorflow as tf

    for path in files:
        try:
            _count_records(path)
            for _ in tf.data.TFRecordDataset(str(path)):
                pass
        except DataError as exc:
            return str(exc)
        except tf.errors.OpError as exc:
            return f"{path}: {_short(exc)}"
    return ""


def _short(exc: Exception) -> str:
    """TensorFlow's error message without the op/function decoration."""
    text = getattr(exc, "message", str(exc))
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[\[.*", "", text, flags=re.S)
    return re.sub(r"\s*\[Op:[^\]]*\].*", "", text, flags=re.S).strip()


def iterate_images(ds, directory: str | os.PathLike) -> Iterator:
    """Iterate `ds` (from celeba_dataset, possibly mapped/batched) turning read failures into DataError.

    Corrupt or truncated records (TensorFlow DataLossError) and records whose shape
    disagrees (InvalidArgumentError) become a DataError naming `directory` and, when it
    can be found by re-scanning the shards, the culprit file.
    """
    import tensorflow as tf

    try:
        yield from ds
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
        message = _short(exc)
        culprit = ""
        if isinstance(exc, tf.errors.DataLossError) and Path(directory).is_dir():
            try:
                culprit = _locate_bad_shard(list_shards(directory))
            except DataError:
                culprit = ""
        detail = culprit or message
        raise DataError(f"{directory}: corrupt or unreadable TFRecord data: {detail}") from None


def _example(image: np.ndarray, label: int = 0) -> bytes:
    import tensorflow as tf

    feature = {
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(image.shape))),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _as_record_image(image: np.ndarray, index: int) -> np.ndarray:
    from data.images import to_uint8

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    # Any channel count is stored as is: 1 or 3 for images, 6 for the pipeline's
    # (enhanced, clean) training pairs of the recursive rounds.
    if image.ndim != 3 or min(image.shape) == 0:
        raise DataError(f"image {index}: shape {image.shape} is not (H, W, C)")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise DataError(f"image {index}: dtype {image.dtype}; expected uint8 or float in [0, 1]")
        image = to_uint8(image)
    return np.ascontiguousarray(image)


def shard_name(prefix: str, index: int, total: int) -> str:
    """Glow's shard file name, e.g. train-r08-s-0003-of-0120.tfrecords."""
    return f"{prefix}-r08-s-{index:04d}-of-{total:04d}.tfrecords"


def write_tfrecords(
    images: Iterable[np.ndarray],
    out_dir: str | os.PathLike,
    prefix: str = "train",
    images_per_shard: int = 1000,
    num_shards: int | None = None,
) -> list[Path]:
    """Write images (uint8 or float [0,1], (H,W), (H,W,1) or (H,W,3)) as Glow-schema shards.

    Streams: at most one image is held at a time, unless `num_shards` is given, in which
    case the images are collected first and split evenly over that many shards. Each
    shard is written to a temporary file and renamed into place; older shards of the
    same prefix in `out_dir` that are not part of the new set are removed afterwards.
    Returns the shard paths in order.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if num_shards is not None:
        images = list(images)
        if num_shards < 1:
            raise DataError(f"num_shards must be >= 1, got {num_shards}")
        if num_shards > max(len(images), 1):
            raise DataError(f"num_shards {num_shards} is more than the {len(images)} images to write")
        bounds = np.linspace(0, len(images), num_shards + 1).round().astype(int)
        sizes = list(np.diff(bounds))
    else:
        if images_per_shard < 1:
            raise DataError(f"images_per_shard must be >= 1, got {images_per_shard}")
        sizes = None
    tmp_paths: list[Path] = []
    writer = None
    in_shard = 0
    shard = 0
    written = 0
    try:
        for index, image in enumerate(images):
            record = _example(_as_record_image(image, index))
            while writer is None or in_shard >= (sizes[shard] if sizes else images_per_shard):
                if writer is not None:
                    writer.close()
                    shard += 1
                tmp = out_dir / f".{prefix}-{len(tmp_paths):04d}.{os.getpid()}.tmp"
                tmp_paths.append(tmp)
                writer = tf.io.TFRecordWriter(str(tmp))
                in_shard = 0
            writer.write(record)
            in_shard += 1
            written += 1
        if writer is not None:
            writer.close()
            writer = None
        if written == 0:
            raise DataError(f"{out_dir}: no images to write")
        total = len(tmp_paths)
        final = [out_dir / shard_name(prefix, i, total) for i in range(total)]
        for tmp, path in zip(tmp_paths, final):
            os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        for tmp in tmp_paths:
            if tmp.exists():
                tmp.unlink()
        raise
    pattern = re.compile(re.escape(prefix) + r"-r08-s-\d{4}-of-\d{4}\.tfrecords")
    keep = set(final)
    for old in out_dir.iterdir():
        if pattern.fullmatch(old.name) and old not in keep:
            old.unlink()
    return final


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size with cv2.INTER_AREA."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return out.reshape(size, size, image.shape[2])


def write_folder_as_tfrecords(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    prefix: str = "train",
    size: int | None = None,
    colour: bool | None = True,
    images_per_shard: int = 1000,
) -> list[Path]:
    """Turn a folder of your own images into Glow-schema shards (reading one image at a time).

    With `size`, each image is centre-cropped to a square and resized to size x size
    (cv2.INTER_AREA), as CelebA-HQ 256 is; without it the images keep their size.
    """
    from data.folders import list_images
    from data.images import read_image

    files = list_images(image_dir)

    def images() -> Iterator[np.ndarray]:
        for path in files:
            img = read_image(path, colour=colour)
            yield square_resize(img, size) if size else img

    return write_tfrecords(images(), out_dir, prefix=prefix, images_per_shard=images_per_shard)
