"""Plain image folders: listing, loading grey/colour, and the errors on bad folders."""
import numpy as np
import pytest

from data import folders
from data.errors import DataError
from data.images import write_image


def _fill(directory, rng):
    images = {
        "b.png": rng.integers(0, 256, (10, 12, 3), dtype=np.uint8),
        "a.BMP": rng.integers(0, 256, (9, 11, 1), dtype=np.uint8),
        "c.tif": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
    }
    for name, img in images.items():
        write_image(directory / name, img)
    (directory / "notes.txt").write_text("not an image")
    (directory / "sub").mkdir()
    return images


def test_list_images_sorted_case_insensitive(tmp_path):
    _fill(tmp_path, np.random.default_rng(0))
    assert [p.name for p in folders.list_images(tmp_path)] == ["a.BMP", "b.png", "c.tif"]


def test_load_folder_colour_modes(tmp_path):
    images = _fill(tmp_path, np.random.default_rng(1))
    colour = folders.load_folder(tmp_path, colour=True)
    assert [im.shape for im in colour] == [(9, 11, 3), (10, 12, 3), (8, 8, 3)]
    np.testing.assert_array_equal(colour[0], np.repeat(images["a.BMP"], 3, axis=2))
    np.testing.assert_array_equal(colour[1], images["b.png"])
    kept = folders.load_folder(tmp_path, colour=None)
    assert [im.shape[2] for im in kept] == [1, 3, 3]
    grey = folders.load_folder(tmp_path, colour=False)
    assert all(im.shape[2] == 1 and im.dtype == np.uint8 for im in grey)


def test_missing_empty_corrupt_and_too_small(tmp_path):
    with pytest.raises(DataError, match="nope: no such image folder"):
        folders.list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files"):
        folders.load_folder(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png: cannot be decoded"):
        folders.load_folder(bad)
    small = tmp_path / "small"
    write_image(small / "big.png", np.zeros((32, 32, 3), np.uint8))
    write_image(small / "tiny.png", np.zeros((12, 40, 3), np.uint8))
    with pytest.raises(DataError, match="tiny.png: image is 40x12, smaller than the minimum size 16"):
        folders.load_folder(small, min_size=16)
    assert len(folders.load_folder(small, min_size=12)) == 2


def test_folder_dataset_streams_same_images(tmp_path):
    _fill(tmp_path, np.random.default_rng(2))
    eager = folders.load_folder(tmp_path, colour=True)
    streamed = [x.numpy() for x in folders.folder_dataset(tmp_path, colour=True)]
    assert len(streamed) == 3
    for a, b in zip(eager, streamed):
        np.testing.assert_array_equal(a, b)


def test_shared_set12_grey(shared_data):
    images = folders.load_folder(shared_data / "test" / "Set12", colour=False, min_size=16)
    assert len(images) == 12
    assert {im.shape for im in images} <= {(256, 256, 1), (512, 512, 1)}
