"""SIDD: folder pairing, .mat blocks in MATLAB v5 and v7.3, submission round trip, crops."""
import h5py
import numpy as np
import pytest
import scipy.io

from data import sidd
from data.errors import DataError
from data.images import write_image


def _blocks(shape=(3, 2, 8, 8, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _touch_png(path, shape=(8, 8, 3), value=0):
    write_image(path, np.full(shape, value, np.uint8))


def _sidd_tree(root):
    data = root / "SIDD_Medium_Srgb" / "Data"
    for scene in ("0001_001_S6_00100_00060_3200_L", "0002_001_S6_00100_00020_3200_N"):
        sid = scene[:4]
        for n in ("010", "011"):
            _touch_png(data / scene / f"{sid}_GT_SRGB_{n}.PNG")
            _touch_png(data / scene / f"{sid}_NOISY_SRGB_{n}.PNG", value=9)
    return data


def test_find_sidd_medium_pairs(tmp_path):
    data = _sidd_tree(tmp_path)
    pairs = sidd.find_sidd_medium_pairs(tmp_path / "SIDD_Medium_Srgb")
    assert len(pairs) == 4
    for noisy, gt in pairs:
        assert noisy.parent == gt.parent
        assert noisy.name.replace("NOISY", "GT") == gt.name
    assert pairs == sidd.pair_noisy_gt_folders(data, data)


def test_missing_partner_named(tmp_path):
    data = _sidd_tree(tmp_path)
    victim = next(data.rglob("0002_NOISY_SRGB_011.PNG"))
    victim.unlink()
    with pytest.raises(DataError, match="0002_GT_SRGB_011.PNG: ground-truth image without its NOISY partner"):
        sidd.find_sidd_medium_pairs(tmp_path)
    with pytest.raises(DataError, match="no such SIDD-Medium folder"):
        sidd.find_sidd_medium_pairs(tmp_path / "missing")


def test_pair_separate_folders(tmp_path):
    for name in ("a_NOISY_SRGB_010.PNG", "b.png", "scene1/c_noisy.png"):
        _touch_png(tmp_path / "noisy" / name)
    for name in ("a_GT_SRGB_010.PNG", "b.png", "scene1/c_gt.png"):
        _touch_png(tmp_path / "gt" / name)
    pairs = sidd.pair_noisy_gt_folders(tmp_path / "noisy", tmp_path / "gt")
    names = [(n.relative_to(tmp_path).as_posix(), g.relative_to(tmp_path).as_posix()) for n, g in pairs]
    assert names == [
        ("noisy/a_NOISY_SRGB_010.PNG", "gt/a_GT_SRGB_010.PNG"),
        ("noisy/b.png", "gt/b.png"),
        ("noisy/scene1/c_noisy.png", "gt/scene1/c_gt.png"),
    ]
    _touch_png(tmp_path / "noisy" / "d.png")
    with pytest.raises(DataError, match="d.png: noisy image without a ground-truth partner"):
        sidd.pair_noisy_gt_folders(tmp_path / "noisy", tmp_path / "gt")
    _touch_png(tmp_path / "gt" / "d.png")
    _touch_png(tmp_path / "gt" / "e.png")
    with pytest.raises(DataError, match="e.png: ground-truth image without a noisy partner"):
        sidd.pair_noisy_gt_folders(tmp_path / "noisy", tmp_path / "gt")


def test_mat_v5_round_trip(tmp_path):
    blocks = _blocks()
    scipy.io.savemat(tmp_path / "v5.mat", {"ValidationNoisyBlocksSrgb": blocks})
    np.testing.assert_array_equal(sidd.load_mat_blocks(tmp_path / "v5.mat"), blocks)
    np.testing.assert_array_equal(sidd.load_mat_blocks(tmp_path / "v5.mat", "ValidationNoisyBlocksSrgb"), blocks)


def test_mat_v73_round_trip(tmp_path):
    blocks = _blocks(seed=1)
    with h5py.File(tmp_path / "v73.mat", "w") as fh:  # MATLAB stores column-major: reversed axes
        fh.create_dataset("ValidationGtBlocksSrgb", data=blocks.transpose())
    got = sidd.load_mat_blocks(tmp_path / "v73.mat")
    assert got.shape == (3, 2, 8, 8, 3)
    np.testing.assert_array_equal(got, blocks)


def test_mat_errors(tmp_path):
    scipy.io.savemat(tmp_path / "two.mat", {"alpha": _blocks(), "beta": _blocks()})
    with pytest.raises(DataError, match="two.mat: no array named `ValidationGtBlocksSrgb` \\(--mat_key\\); the file holds `alpha`, `beta`"):
        sidd.load_mat_blocks(tmp_path / "two.mat", "ValidationGtBlocksSrgb")
    with pytest.raises(DataError, match="two.mat: expected a SIDD array .*choose one with --mat_key"):
        sidd.load_mat_blocks(tmp_path / "two.mat")
    scipy.io.savemat(tmp_path / "flat.mat", {"x": _blocks()[0]})
    with pytest.raises(DataError, match=r"flat.mat: `x` has shape \(2, 8, 8, 3\)"):
        sidd.load_mat_blocks(tmp_path / "flat.mat", "x")
    scipy.io.savemat(tmp_path / "float.mat", {"x": _blocks().astype(np.float64)})
    with pytest.raises(DataError, match="float.mat: `x` has dtype float64"):
        sidd.load_mat_blocks(tmp_path / "float.mat", "x")
    with h5py.File(tmp_path / "h5.mat", "w") as fh:
        fh.create_dataset("a", data=_blocks())
    with pytest.raises(DataError, match="h5.mat: no array named `b` \\(--mat_key\\); the file holds `a`"):
        sidd.load_mat_blocks(tmp_path / "h5.mat", "b")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat: not a readable MATLAB"):
        sidd.load_mat_blocks(tmp_path / "junk.mat")
    with pytest.raises(DataError, match="no such .mat file"):
        sidd.load_mat_blocks(tmp_path / "absent.mat")


def test_mat_with_another_key_is_refused_unless_named(tmp_path):
    blocks = _blocks(seed=3)
    scipy.io.savemat(tmp_path / "mine.mat", {"myBlocks": blocks})
    with pytest.raises(DataError, match="mine.mat: expected `ValidationGtBlocksSrgb`, the file holds `myBlocks`; "
                                        "if `myBlocks` is the right one, pass --mat_key myBlocks"):
        sidd.load_mat_blocks(tmp_path / "mine.mat", expected="ValidationGtBlocksSrgb")
    np.testing.assert_array_equal(sidd.load_mat_blocks(tmp_path / "mine.mat", "myBlocks"), blocks)
    # a GT file passed where the noisy blocks are expected is refused, not read
    scipy.io.savemat(tmp_path / "gt.mat", {"ValidationGtBlocksSrgb": blocks})
    with pytest.raises(DataError, match="gt.mat: expected `ValidationNoisyBlocksSrgb`, the file holds `ValidationGtBlocksSrgb`"):
        sidd.load_mat_blocks(tmp_path / "gt.mat", expected="ValidationNoisyBlocksSrgb")


def test_submission_round_trip(tmp_path):
    blocks = _blocks((4, 3, 16, 16, 3), seed=2)
    path = sidd.write_sidd_submission(blocks, tmp_path / "submit")
    assert path.name == "SubmitSrgb.mat"
    raw = scipy.io.loadmat(path)
    cells = raw["DenoisedBlocksSrgb"]
    assert cells.dtype == object and cells.shape == (4, 3)
    assert cells[2, 1].dtype == np.uint8 and cells[2, 1].shape == (16, 16, 3)
    np.testing.assert_array_equal(cells[2, 1], blocks[2, 1])
    assert raw["israw"].item() == 0 and raw["eval_version"].item() == "1.0"
    np.testing.assert_array_equal(sidd.load_sidd_submission(path), blocks)
    assert [p.name for p in (tmp_path / "submit").iterdir()] == ["SubmitSrgb.mat"]
    with pytest.raises(DataError, match="expected uint8"):
        sidd.write_sidd_submission(blocks.astype(np.float32), tmp_path)


def _pair_images(tmp_path, k, h, w, seed):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    noisy = (clean.astype(int) + 7) % 256  # a known per-pixel relation between the two
    write_image(tmp_path / f"{k}_NOISY_SRGB_010.PNG", noisy.astype(np.uint8))
    write_image(tmp_path / f"{k}_GT_SRGB_010.PNG", clean)
    return clean


def test_crops_share_window_and_reproduce(tmp_path):
    images = [_pair_images(tmp_path, k, 40 + 4 * k, 50, seed=k) for k in range(3)]
    pairs = sidd.find_sidd_medium_pairs(tmp_path)
    take = lambda seed: [(n.numpy(), c.numpy()) for n, c in sidd.sidd_crops_dataset(pairs, crop=16, crops_per_image=4, seed=seed, epochs=2)]  # noqa: E731
    first = take(5)
    assert len(first) == 3 * 4 * 2
    for noisy, clean in first:
        assert noisy.shape == clean.shape == (16, 16, 3)
        np.testing.assert_array_equal(noisy, ((clean.astype(int) + 7) % 256).astype(np.uint8))
        # each clean crop is a real window of one of the source images
        assert any(_contains(img, clean) for img in images)
    again = take(5)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))
    other = take(6)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def _contains(image, crop):
    h, w = crop.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(image, (h, w, 3))[:, :, 0]
    return bool(np.any(np.all(windows == crop, axis=(2, 3, 4))))


def test_crops_size_mismatch_names_both_files(tmp_path):
    _pair_images(tmp_path, 0, 20, 30, seed=0)
    write_image(tmp_path / "0_GT_SRGB_010.PNG", np.zeros((20, 31, 3), np.uint8))
    pairs = sidd.find_sidd_medium_pairs(tmp_path)
    with pytest.raises(DataError, match=r"0_NOISY_SRGB_010.PNG: size 30x20 differs from its ground truth .*0_GT_SRGB_010.PNG 31x20"):
        sidd.sidd_crops_dataset(pairs, crop=8)


def _coordinate_pair(folder, name, h, w):
    """A flat-folder pair whose pixels hold their own (row, column): GT blue 0, noisy blue 200."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    gt = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    noisy = gt.copy()
    noisy[..., 2] = 200
    write_image(folder / "noisy" / name, noisy)
    write_image(folder / "gt" / name, gt)


def test_crops_come_from_the_same_location_in_noisy_and_gt(tmp_path):
    for k, (h, w) in enumerate([(60, 90), (100, 70), (48, 48)]):
        _coordinate_pair(tmp_path, f"pair{k}.png", h, w)
    pairs = sidd.pair_noisy_gt_folders(tmp_path / "noisy", tmp_path / "gt")
    crops = [(n.numpy(), c.numpy()) for n, c in sidd.sidd_crops_dataset(pairs, crop=24, crops_per_image=5, seed=3)]
    assert len(crops) == 15
    corners = set()
    for noisy, gt in crops:
        np.testing.assert_array_equal(noisy[..., :2], gt[..., :2])  # same window in both
        assert (noisy[..., 2] == 200).all() and (gt[..., 2] == 0).all()  # each from its own image
        top, left = int(gt[0, 0, 0]), int(gt[0, 0, 1])
        np.testing.assert_array_equal(gt[..., 0], top + np.arange(24)[:, None] + 0 * np.arange(24))  # a contiguous window
        np.testing.assert_array_equal(gt[..., 1], left + np.arange(24)[None, :] + 0 * np.arange(24)[:, None])
        corners.add((top, left))
    assert len(corners) > 10  # windows are spread over the images


def test_image_smaller_than_the_crop_trains_mirror_padded(tmp_path):
    _coordinate_pair(tmp_path, "big.png", 64, 64)
    _coordinate_pair(tmp_path, "small.png", 20, 30)  # smaller than the crop in both sides
    pairs = sidd.pair_noisy_gt_folders(tmp_path / "noisy", tmp_path / "gt")
    crops = [(n.numpy(), c.numpy()) for n, c in sidd.sidd_crops_dataset(pairs, crop=32, crops_per_image=2, seed=0)]
    assert len(crops) == 4 and all(n.shape == c.shape == (32, 32, 3) for n, c in crops)
    small = [(n, c) for n, c in crops if c[..., 0].max() < 20 and c[..., 1].max() < 30]
    assert len(small) == 2
    for noisy, gt in small:
        np.testing.assert_array_equal(noisy[..., :2], gt[..., :2])
        # the whole image is in the crop, then its mirror: rows 0..19, 19..8; columns 0..29, 29, 28
        np.testing.assert_array_equal(gt[:, 0, 0], np.r_[np.arange(20), np.arange(19, 7, -1)])
        np.testing.assert_array_equal(gt[0, :, 1], np.r_[np.arange(30), 29, 28])


def test_small_pair_trains_through_the_training_stream(tmp_path):
    from data.noise import parse_noise
    from data.pairs import sidd_train_pairs

    _coordinate_pair(tmp_path, "small.png", 20, 30)
    pairs = list(sidd_train_pairs(tmp_path / "noisy", tmp_path / "gt", parse_noise("none"), 0, crop=32, crops_per_image=2))
    assert len(pairs) == 2 and pairs[0][0].shape == (32, 32, 3)
