"""The patch engine: geometry, exact round trips, blending, numpy/tf agreement, errors."""
import numpy as np
import pytest
import tensorflow as tf

from data.errors import ConfigError, DataError
from data.patches import make_grid, merge_patches, split_patches

SETTINGS = [(256, 256, 16, 4), (37, 53, 16, 4), (31, 17, 8, 3), (20, 21, 16, 12), (16, 16, 16, 0), (40, 33, 9, 5)]


def test_default_grid_of_256_image_is_21_by_21():
    grid = make_grid(256, 256, 16, 4)
    assert (grid.n_rows, grid.n_cols, grid.padded_height) == (21, 21, 256)


@pytest.mark.parametrize("h,w,block,overlap", SETTINGS)
def test_split_then_merge_is_identity(h, w, block, overlap):
    x = np.random.default_rng(0).random((2, h, w, 3)).astype(np.float32)
    patches, grid = split_patches(x, block, overlap)
    assert patches.shape == (2 * grid.n_rows * grid.n_cols, block, block, 3)
    assert np.abs(merge_patches(patches, grid) - x).max() <= 1e-6


@pytest.mark.parametrize("h,w,block,overlap", SETTINGS)
def test_patches_hold_the_reflect_padded_windows(h, w, block, overlap):
    x = np.random.default_rng(1).random((2, h, w, 1)).astype(np.float32)
    patches, grid = split_patches(x, block, overlap)
    padded = np.pad(x, ((0, 0), (0, grid.padded_height - h), (0, grid.padded_width - w), (0, 0)), mode="reflect")
    s = grid.stride
    grid_view = patches.reshape(2, grid.n_rows, grid.n_cols, block, block, 1)
    for i in range(grid.n_rows):  # a direct per-patch reference, fine in a test
        for j in range(grid.n_cols):
            np.testing.assert_array_equal(grid_view[1, i, j], padded[1, i * s:i * s + block, j * s:j * s + block])


def test_merge_uses_linear_ramps_over_the_overlap():
    # Two patches side by side: a constant 0 patch then a constant 1 patch.
    block, overlap = 8, 3
    grid = make_grid(8, 13, block, overlap)
    assert (grid.n_rows, grid.n_cols) == (1, 2)
    patches = np.stack([np.zeros((8, 8, 1)), np.ones((8, 8, 1))]).astype(np.float32)
    row = merge_patches(patches, grid)[0, 0, :, 0]
    expected = np.r_[np.zeros(5), (np.arange(3) + 1) / 4, np.ones(5)]
    np.testing.assert_allclose(row, expected, atol=1e-6)


def test_merge_of_one_channel_from_a_colour_grid():
    x = np.random.default_rng(2).random((3, 45, 30, 3)).astype(np.float32)
    patches, grid = split_patches(x, 16, 4)
    np.testing.assert_allclose(merge_patches(patches[..., :1], grid), x[..., :1], atol=1e-6)


def test_tf_backend_matches_numpy_eager_and_in_graph():
    x = np.random.default_rng(3).random((3, 45, 61, 3)).astype(np.float32)
    ref_patches, grid = split_patches(x, 16, 4)
    patches, tf_grid = split_patches(tf.constant(x), 16, 4)
    assert tf_grid == grid
    np.testing.assert_array_equal(patches.numpy(), ref_patches)
    changed = ref_patches * np.linspace(0.5, 1.5, ref_patches.shape[0])[:, None, None, None].astype(np.float32)
    np.testing.assert_allclose(merge_patches(tf.constant(changed), grid).numpy(), merge_patches(changed, grid), atol=1e-6)

    @tf.function(input_signature=[tf.TensorSpec([None, 45, 61, 3], tf.float32)])
    def round_trip(images):
        p, g = split_patches(images, 16, 4)
        return merge_patches(p, g, batch=tf.shape(images)[0])

    np.testing.assert_allclose(round_trip(tf.constant(x)).numpy(), x, atol=1e-6)


def test_bad_settings_and_small_images_are_clear_errors():
    with pytest.raises(ConfigError, match="--overlap"):
        split_patches(np.zeros((1, 32, 32, 3)), 16, 16)
    with pytest.raises(DataError, match="smaller than one 16x16 patch"):
        split_patches(np.zeros((1, 12, 40, 3)), 16, 4)
    with pytest.raises(DataError, match=r"\(N, H, W, C\)"):
        split_patches(np.zeros((32, 32, 3)), 16, 4)
