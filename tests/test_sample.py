"""The embedded sample: built once from scikit-image photos, cached as TFRecords, reused."""
import cv2
import numpy as np
import pytest
import skimage.data

from data import celeba, sample
from data.errors import DataError
from data.sample import SAMPLE_VERSION


def _read(directory):
    ds = celeba.celeba_dataset(directory)
    return np.stack([x.numpy() for x in celeba.iterate_images(ds, directory)])


def test_sample_built_once_and_reused(tmp_path, monkeypatch):
    paths = sample.ensure_sample(tmp_path)
    assert paths.train_dir == tmp_path / SAMPLE_VERSION / "train"
    test = _read(paths.test_dir)
    expected = np.stack(
        [cv2.resize(getattr(skimage.data, n)(), (256, 256), interpolation=cv2.INTER_AREA)
         for n in ("astronaut", "coffee", "chelsea")]
    )
    np.testing.assert_array_equal(test, expected)
    train = _read(paths.train_dir)
    assert train.shape[1:] == (256, 256, 3) and 40 <= len(train) <= 128
    np.testing.assert_array_equal(train, sample.sample_train_images())
    assert not [p for p in tmp_path.iterdir() if p.name != SAMPLE_VERSION]  # no temporary leftovers

    shards = {p: p.stat().st_mtime_ns for p in paths.train_dir.iterdir()}

    def fail():
        raise AssertionError("the cached sample was rebuilt")

    monkeypatch.setattr(sample, "sample_train_images", fail)
    again = sample.ensure_sample(tmp_path)
    assert again == paths
    assert {p: p.stat().st_mtime_ns for p in paths.train_dir.iterdir()} == shards


def test_env_var_sets_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RSE_RL_CACHE", str(tmp_path / "cache"))
    assert sample.default_cache_root() == tmp_path / "cache"


def test_incomplete_cache_is_rebuilt(tmp_path):
    broken = tmp_path / SAMPLE_VERSION / "train"
    broken.mkdir(parents=True)
    (broken / "train-r08-s-0000-of-0001.tfrecords").write_bytes(b"half")
    paths = sample.ensure_sample(tmp_path)
    assert celeba.inspect_shards(celeba.list_shards(paths.test_dir)) == [3]
    assert sum(celeba.inspect_shards(celeba.list_shards(paths.train_dir))) == len(sample.sample_train_images())


def test_train_crops_do_not_come_from_test_photos():
    train = sample.sample_train_images().reshape(-1, 256 * 256 * 3)
    for name in ("astronaut", "coffee", "chelsea"):
        photo = getattr(skimage.data, name)()
        # no training crop equals the top-left 256x256 window of a test photo or of its resized version
        for view in (photo[:256, :256], cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)):
            assert not np.any(np.all(train == view.reshape(1, -1), axis=1))
    assert "cat" not in sample.TRAIN_PHOTOS  # skimage's cat is the chelsea test photo


def test_grey_images():
    test = sample.sample_grey_images("test")
    assert test.shape == (3, 256, 256, 1) and test.dtype == np.uint8
    expected = cv2.resize(skimage.data.camera(), (256, 256), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(test[0, :, :, 0], expected)
    train = sample.sample_grey_images("train", crop=64)
    assert train.shape[1:] == (64, 64, 1) and len(train) > 100
    np.testing.assert_array_equal(train[0, :, :, 0], skimage.data.text()[:64, :64])
    with pytest.raises(DataError, match="choose 'train' or 'test'"):
        sample.sample_grey_images("validation")


def test_phone_like_sample_has_a_phones_detail_per_pixel(tmp_path):
    # The SIDD script's sample: the photos upsampled x3 (INTER_CUBIC), centre crops for testing,
    # as many training crops as the plain sample; cached apart from it.
    test = sample.sample_test_images(sample.PHONE_SCALE)
    astronaut = cv2.resize(skimage.data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(test[0], astronaut[640:896, 640:896])
    assert len(sample.sample_train_images(sample.PHONE_SCALE)) == len(sample.sample_train_images())

    def blur_loss(images):  # PSNR of a 1-pixel Gaussian blur: high when there is little fine detail
        from evaluation import psnr

        return np.mean([psnr(x, cv2.GaussianBlur(x, (0, 0), 1.0)) for x in images])

    assert blur_loss(test) > blur_loss(sample.sample_test_images()) + 8  # measured: 43.0 vs 30.1 dB
    paths = sample.ensure_sample(tmp_path, scale=sample.PHONE_SCALE)
    assert paths.test_dir == tmp_path / f"{SAMPLE_VERSION}-x{sample.PHONE_SCALE}" / "test"
    np.testing.assert_array_equal(_read(paths.test_dir), test)
