"""The embedded default data: photos that scikit-image ships (no network), split train/test.

Colour (RSE-RL default run), written once as CelebA-schema TFRecords so the default run
goes through the real loading path:
- test: astronaut, coffee and chelsea, each resized to 256x256 with cv2.INTER_AREA
  (the images the shared README's reference figures are measured on);
- train: 256x256 crops on a fixed grid of the OTHER photos, each first shrunk with
  INTER_AREA so its shorter side is at most 512: the natural colour photos rocket,
  immunohistochemistry and both views of stereo_motorcycle, and the natural grey photos
  camera, moon, coins, brick, grass and gravel as grey RGB (natural luminance texture
  for the Y subspace). `cat` is left out: it is the chelsea test photo. No overlap with
  the test photos.

Phone-like (`scale` = PHONE_SCALE, the SIDD script's default run): the same photos upsampled
x3 (cv2.INTER_CUBIC) before cropping, test images the centre 256x256 of each, training crops
as many per photo as above, evenly spread. Real phone shots at native resolution carry far
less detail per pixel than photos shrunk to 256x256: a Gaussian blur of std 1 pixel costs
39.4-48.5 dB on SIDD's ground truths, 26.7-34.3 dB on the test photos above, 39.3-47.3 dB on
their x3 versions (docs/vae.md, "The SIDD-setting default").

Grey (R3L default run), small enough to build in memory by `sample_grey_images`:
- test: camera, moon, coins, each resized to 256x256 with cv2.INTER_AREA;
- train: non-overlapping 128x128 crops of text, brick, grass, gravel, cell, page, clock.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data.errors import DataError

SAMPLE_VERSION = "sample-v2"
IMAGE_SIZE = 256
TEST_PHOTOS = ("astronaut", "coffee", "chelsea")
TRAIN_PHOTOS = (
    "rocket", "immunohistochemistry", "stereo_motorcycle:0", "stereo_motorcycle:1",
    "camera", "moon", "coins", "brick", "grass", "gravel",
)
GREY_TEST_PHOTOS = ("camera", "moon", "coins")
GREY_TRAIN_PHOTOS = ("text", "brick", "grass", "gravel", "cell", "page", "clock")
PHONE_SCALE = 3
_MAX_SHORT_SIDE = 512
_GRID_STRIDE = 128
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SamplePaths:
    """Folders of the cached sample, each holding CelebA-schema TFRecord shards."""

    train_dir: Path
    test_dir: Path


def _photo(name: str) -> np.ndarray:
    import skimage.data

    name, _, index = name.partition(":")  # "stereo_motorcycle:0": one image of a tuple
    image = getattr(skimage.data, name)()
    if index:
        image = image[int(index)]
    return image[:, :, None] if image.ndim == 2 else image[:, :, :3]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return out.reshape(height, width, image.shape[2])


def _grid_positions(length: int, crop: int, stride: int) -> np.ndarray:
    """Evenly spaced crop starts from 0 to length - crop, at most `stride` apart."""
    count = int(np.ceil((length - crop) / stride)) + 1
    return np.linspace(0, length - crop, count).round().astype(int)


def _upsample(image: np.ndarray, scale: int) -> np.ndarray:
    """The photo at `scale` times its size (cv2.INTER_CUBIC): a phone-like amount of detail per pixel."""
    if scale == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC).reshape(h * scale, w * scale, -1)


def sample_test_images(scale: int = 1) -> np.ndarray:
    """The colour test set: (3, 256, 256, 3) uint8, astronaut, coffee, chelsea resized (INTER_AREA);
    with scale > 1 the centre 256x256 of each photo upsampled `scale` times."""
    if scale == 1:
        return np.stack([_resize(_photo(n), IMAGE_SIZE, IMAGE_SIZE) for n in TEST_PHOTOS])
    crops = []
    for name in TEST_PHOTOS:
        image = _upsample(_photo(name), scale)
        top, left = (image.shape[0] - IMAGE_SIZE) // 2, (image.shape[1] - IMAGE_SIZE) // 2
        crops.append(image[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE])
    return np.stack(crops)


def sample_train_images(scale: int = 1) -> np.ndarray:
    """The colour training crops: (N, 256, 256, 3) uint8 on a fixed grid (see the module docstring);
    with scale > 1 cut from the photos upsampled `scale` times, as many crops per photo, evenly spread."""
    crops = []
    for name in TRAIN_PHOTOS:
        image = _photo(name)
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        h, w = image.shape[:2]
        shrink = min(1.0, _MAX_SHORT_SIDE / min(h, w))
        if shrink < 1.0:
            image = _resize(image, round(h * shrink), round(w * shrink))
        counts = [len(_grid_positions(side, IMAGE_SIZE, _GRID_STRIDE)) for side in image.shape[:2]]
        image = _upsample(image, scale)
        rows, cols = (np.linspace(0, side - IMAGE_SIZE, n).round().astype(int) for side, n in zip(image.shape[:2], counts))
        for top in rows:
            for left in cols:
                crops.append(image[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE])
    return np.stack(crops)


def sample_grey_images(split: str, crop: int = 128) -> np.ndarray:
    """Grey uint8 images (N, H, W, 1) for R3L: split 'train' gives non-overlapping crop x crop
    tiles of the grey training photos; 'test' gives camera, moon, coins resized to 256x256."""
    if split == "test":
        return np.stack([_resize(_photo(n), IMAGE_SIZE, IMAGE_SIZE) for n in GREY_TEST_PHOTOS])
    if split != "train":
        raise DataError(f"sample split {split!r}: choose 'train' or 'test'")
    tiles = []
    for name in GREY_TRAIN_PHOTOS:
        image = _photo(name)
        for top in range(0, image.shape[0] - crop + 1, crop):
            for left in range(0, image.shape[1] - crop + 1, crop):
                tiles.append(image[top : top + crop, left : left + crop])
    if not tiles:
        raise DataError(f"sample grey crop {crop}: larger than every grey photo")
    return np.stack(tiles)


def default_cache_root() -> Path:
    """$RSE_RL_CACHE if set, else ~/.cache/rse_rl."""
    env = os.environ.get("RSE_RL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "rse_rl"


def ensure_sample(cache_dir: str | os.PathLike | None = None, scale: int = 1) -> SamplePaths:
    """Build the colour sample once under `<cache_dir>/sample-v2/{train,test}` and return the folders.

    `cache_dir` defaults to `default_cache_root()`; scale > 1 (the phone-like sample) is
    cached apart, under `sample-v2-x<scale>`. The sample is built in a temporary
    folder and renamed into place in one step, so an interrupted run leaves nothing half
    written and concurrent runs agree on one copy; later calls reuse it.
    """
    from data.celeba import write_tfrecords

    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    version = SAMPLE_VERSION if scale == 1 else f"{SAMPLE_VERSION}-x{scale}"
    final = root / version
    paths = SamplePaths(final / "train", final / "test")
    if (final / _MANIFEST).is_file():
        return paths
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{root}: cannot create the sample cache folder ({exc}); set RSE_RL_CACHE") from None
    if final.exists():
        if (final / _MANIFEST).is_file():  # another process finished it meanwhile
            return paths
        _remove_aside(final)  # incomplete, not made by this function (renames are atomic)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{version}."))
    try:
        train = write_tfrecords(sample_train_images(scale), tmp / "train", prefix="train", images_per_shard=16)
        test = write_tfrecords(sample_test_images(scale), tmp / "test", prefix="test", images_per_shard=16)
        manifest = {
            "version": version,
            "scale": scale,
            "train": {"photos": TRAIN_PHOTOS, "shards": [p.name for p in train]},
            "test": {"photos": TEST_PHOTOS, "shards": [p.name for p in test]},
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _MANIFEST).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _remove_aside(path: Path) -> None:
    trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
    try:
        os.rename(path, trash / path.name)
    except OSError:
        pass
    shutil.rmtree(trash, ignore_errors=True)
