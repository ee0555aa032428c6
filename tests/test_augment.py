"""data/augment.py: fresh noise every pass, random shifts and mirror flips of training pairs."""
import numpy as np
import pytest
import tensorflow as tf

from data.augment import renoised_pairs, shifted_flipped_pairs
from data.errors import DataError
from data.noise import parse_noise


def _pairs(images: np.ndarray, noisy_scale: float = 1.0) -> tf.data.Dataset:
    x = tf.constant(images, tf.float32)
    return tf.data.Dataset.from_tensor_slices((x * noisy_scale, x))


def _passes(ds: tf.data.Dataset, n: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    return [list(ds.as_numpy_iterator()) for _ in range(n)]


def test_renoised_pairs_draw_new_noise_every_pass_reproducibly():
    clean = np.full((2, 24, 24, 3), 0.5, np.float32)  # mid-grey: no clipping, so the std is the model's
    noise = parse_noise("gaussian_var", 0.02)
    first, second = _passes(renoised_pairs(_pairs(clean), noise, seed=3), 2)
    again = _passes(renoised_pairs(_pairs(clean), noise, seed=3), 1)[0]
    for (n1, c1), (n2, _), (n3, _) in zip(first, second, again):
        np.testing.assert_array_equal(c1, 0.5)
        assert not np.allclose(n1, n2)  # a new draw on the second pass
        np.testing.assert_array_equal(n1, n3)  # the same sequence for the same seed
        assert abs(np.std(n1 - c1) - np.sqrt(0.02)) < 0.015
    assert not np.allclose(first[0][0], first[1][0])  # images of one pass get different draws


def test_renoised_pairs_refuse_real_pairs():
    with pytest.raises(DataError, match="synthetic --noise"):
        renoised_pairs(_pairs(np.zeros((1, 8, 8, 3))), parse_noise("none"), seed=0)


def _candidates(image: np.ndarray, shift: int) -> list[np.ndarray]:
    """Every output shifted_flipped_pairs may give, built independently with numpy."""
    h, w = image.shape[:2]
    padded = np.pad(image, [(0, shift), (0, shift), (0, 0)], mode="reflect")
    out = []
    for dy in range(shift + 1):
        for dx in range(shift + 1):
            moved = padded[dy:dy + h, dx:dx + w]
            out += [moved, moved[:, ::-1]]
    return out


def test_shifted_flipped_pairs_move_noisy_and_clean_alike_within_the_shift():
    rng = np.random.default_rng(0)
    images = rng.random((3, 20, 28, 3)).astype(np.float32)
    shift = 4
    outputs = [pair for one_pass in _passes(shifted_flipped_pairs(_pairs(images, 0.5), shift, seed=1), 6)
               for pair in one_pass]
    seen = set()
    for k, (noisy, clean) in enumerate(outputs):
        image = images[k % len(images)]
        assert clean.shape == image.shape
        np.testing.assert_allclose(noisy, 0.5 * clean, atol=1e-7)  # the same move for both
        matches = [i for i, cand in enumerate(_candidates(image, shift)) if np.array_equal(cand, clean)]
        assert matches, "output is not a shift within [0, shift] (mirrored or not) of its input"
        seen.add(matches[0])
    assert len(seen) > 6  # 18 draws land on many of the 50 moves, flipped and not
    assert any(i % 2 for i in seen) and any(i % 2 == 0 for i in seen)


def test_shifted_flipped_pairs_reject_negative_shift():
    with pytest.raises(DataError, match="shift"):
        shifted_flipped_pairs(_pairs(np.zeros((1, 8, 8, 3))), -1, seed=0)
