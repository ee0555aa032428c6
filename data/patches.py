"""The patch engine: split images into overlapping blocks and blend them back.

One definition of the geometry (`PatchGrid`), used by a numpy backend (host) and a
TensorFlow backend (inside tf.data or a model graph, on the device). Both are
vectorised: no Python loop over patches; the only loops run over the
ceil(block / stride) "chunks" of a patch (2 for the default 16/4).

Geometry: stride s = block - overlap. An image of H rows gives
n_rows = ceil((H - overlap) / s) patch rows; it is reflect-padded at the bottom
(and right) to n_rows * s + overlap and cropped back after merging, so any size
works without resizing. A 256x256 image with block 16, overlap 4 gives 21x21 patches.

`map_patches` applies a patch function to whole images (tiled for bounded memory): the one
whole-image path of every patch denoiser.

Blending: each patch is weighted by linear ramps (k+1)/(o+1) over the overlap it
shares with its predecessor and their complements over the overlap with its
successor (weight 1 at the image border), and the weights are normalised so that
they sum to one at every pixel: merging unmodified patches returns the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from data.errors import ConfigError, DataError

_MERGE_BLOCK_BYTES = 4 << 20  # patches merged per pass (cache-sized working set)


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of a batch of images come from; everything needed to merge them."""

    batch: int
    height: int
    width: int
    channels: int
    block: int
    overlap: int

    @property
    def stride(self) -> int:
        return self.block - self.overlap

    @property
    def n_rows(self) -> int:
        return _count(self.height, self.block, self.overlap)

    @property
    def n_cols(self) -> int:
        return _count(self.width, self.block, self.overlap)

    @property
    def patches_per_image(self) -> int:
        return self.n_rows * self.n_cols

    @property
    def num_patches(self) -> int:
        return self.batch * self.patches_per_image

    @property
    def padded_height(self) -> int:
        return self.n_rows * self.stride + self.overlap

    @property
    def padded_width(self) -> int:
        return self.n_cols * self.stride + self.overlap

    @property
    def chunks(self) -> int:
        """How many stride-long chunks a patch spans along one axis."""
        return math.ceil(self.block / self.stride)

    def row_weights(self) -> np.ndarray:
        """(n_rows, block) normalised blending weights along the vertical axis."""
        return _axis_weights(self.n_rows, self.block, self.overlap)

    def col_weights(self) -> np.ndarray:
        """(n_cols, block) normalised blending weights along the horizontal axis."""
        return _axis_weights(self.n_cols, self.block, self.overlap)


def check_patch_settings(block: int, overlap: int) -> None:
    """ConfigError unless 0 <= overlap < block (the flags --block_size / --overlap)."""
    if block < 1:
        raise ConfigError(f"--block_size must be positive, got {block}")
    if not 0 <= overlap < block:
        raise ConfigError(f"--overlap must be at least 0 and smaller than --block_size ({block}), got {overlap}")


def make_grid(height: int, width: int, block: int, overlap: int, batch: int = 1, channels: int = 3) -> PatchGrid:
    """The grid for images of the given size; DataError if an image is smaller than one patch."""
    check_patch_settings(block, overlap)
    if height < block or width < block:
        raise DataError(f"image of size {height}x{width} is smaller than one {block}x{block} patch")
    return PatchGrid(int(batch), int(height), int(width), int(channels), int(block), int(overlap))


def _count(size: int, block: int, overlap: int) -> int:
    return max(1, math.ceil((size - overlap) / (block - overlap)))


def _axis_weights(n: int, block: int, overlap: int) -> np.ndarray:
    """Linear ramps over the overlaps, normalised to a partition of unity along the axis."""
    stride = block - overlap
    ramp = (np.arange(overlap) + 1.0) / (overlap + 1.0)
    w = np.ones((n, block))
    if overlap:
        w[1:, :overlap] = ramp
        w[:-1, block - overlap:] = np.minimum(w[:-1, block - overlap:], 1.0 - ramp)
    # Normalise: total weight at each padded position (only needed when overlap > stride,
    # where more than two patches meet; otherwise it is 1 up to rounding).
    length = n * stride + overlap
    total = np.zeros(length)
    positions = np.arange(n)[:, None] * stride + np.arange(block)[None, :]
    np.add.at(total, positions.ravel(), w.ravel())
    return (w / total[positions]).astype(np.float32)


def _is_tf(x) -> bool:
    return type(x).__module__.startswith("tensorflow")


def split_patches(images, block: int = 16, overlap: int = 4):
    """Split (N, H, W, C) images into (N * n_rows * n_cols, block, block, C) patches.

    Returns (patches, grid). Patches are ordered image-major, then row, then column.
    numpy input gives numpy output; a tf tensor (eager or symbolic, static H and W)
    gives tf ops.
    """
    if _is_tf(images):
        return _split_tf(images, block, overlap)
    images = np.asarray(images)
    if images.ndim != 4:
        raise DataError(f"split_patches expects (N, H, W, C) images, got shape {images.shape}")
    n, h, w, c = images.shape
    grid = make_grid(h, w, block, overlap, n, c)
    padded = np.pad(
        images,
        ((0, 0), (0, grid.padded_height - h), (0, grid.padded_width - w), (0, 0)),
        mode="reflect",
    )
    s = grid.stride
    windows = np.lib.stride_tricks.sliding_window_view(padded, (block, block), axis=(1, 2))[:, ::s, ::s]
    # windows: (N, n_rows, n_cols, C, block, block) view -> one copy into patch layout.
    patches = np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3)).reshape(-1, block, block, c)
    return patches, grid


def _split_tf(images, block: int, overlap: int):
    import tensorflow as tf  # only for tf input: numpy callers do not load TensorFlow

    shape = images.shape
    if shape.rank != 4 or shape[1] is None or shape[2] is None or shape[3] is None:
        raise DataError(f"split_patches needs (N, H, W, C) tensors with static H, W, C; got {shape}")
    n = shape[0] if shape[0] is not None else -1
    grid = make_grid(shape[1], shape[2], block, overlap, n, shape[3])
    padded = tf.pad(
        images,
        [[0, 0], [0, grid.padded_height - shape[1]], [0, grid.padded_width - shape[2]], [0, 0]],
        mode="REFLECT",
    )
    s = grid.stride
    patches = tf.image.extract_patches(
        padded, sizes=[1, block, block, 1], strides=[1, s, s, 1], rates=[1, 1, 1, 1], padding="VALID"
    )
    return tf.reshape(patches, [-1, block, block, shape[3]]), grid


def merge_patches(patches, grid: PatchGrid, batch: int | None = None):
    """Blend (N * n_rows * n_cols, block, block, C') patches back into (N, H, W, C') images.

    C' may differ from the grid's channel count (e.g. merging one YUV channel).
    `batch` overrides grid.batch (needed when the grid was made with an unknown batch).
    """
    if _is_tf(patches):
        return _merge_tf(patches, grid, batch)
    patches = np.asarray(patches)
    b, s, m = grid.block, grid.stride, grid.chunks
    nh, nw = grid.n_rows, grid.n_cols
    c = patches.shape[-1]
    n = patches.shape[0] // grid.patches_per_image
    if patches.shape[1:3] != (b, b) or n * grid.patches_per_image != patches.shape[0]:
        raise DataError(f"merge_patches: patches of shape {patches.shape} do not fit the grid {grid}")
    dtype = np.result_type(patches.dtype, np.float32)
    # Columns and channels are contiguous in both layouts: fold them into one axis.
    p = patches.reshape(n, nh, nw, b, b * c)
    wy = grid.row_weights().astype(dtype)
    wx = np.repeat(grid.col_weights(), c, axis=1).astype(dtype)
    out = np.empty((n, (nh + m - 1) * s, (nw + m - 1) * s, c), dtype=dtype)
    out[:, nh * s:] = 0  # the bands past the first chunks' tiling start empty
    out[:, : nh * s, nw * s:] = 0
    # Chunk (kr, kc) of every patch lands at row block i + kr, column block j + kc. Within
    # one chunk pair the patches do not overlap, so each is one strided in-place op on a
    # view of the output in the patches' own layout (no transpose, no scatter).
    chunks = []
    for kr in range(m):
        rows = slice(kr * s, kr * s + min(s, b - kr * s))
        for kc in range(m):
            cols = slice(kc * s * c, kc * s * c + min(s, b - kc * s) * c)
            chunks.append((kr, kc, rows, cols, wy[:, None, rows, None] * wx[None, :, None, cols]))
    # A few images at a time keep the working set in cache: time stays linear in N.
    step = max(1, _MERGE_BLOCK_BYTES // max(1, p[0].nbytes))
    for first in range(0, n, step):
        block_out = out[first:first + step]
        block_p = p[first:first + step]
        sn, sr, sc, sch = block_out.strides
        for kr, kc, rows, cols, weight in chunks:
            view = np.lib.stride_tricks.as_strided(
                block_out[:, kr * s:, kc * s:],
                shape=(block_out.shape[0], nh, nw, rows.stop - rows.start, cols.stop - cols.start),
                strides=(sn, s * sr, s * sc, sr, sch),
                writeable=True,
            )
            if kr == 0 and kc == 0:
                np.multiply(block_p[:, :, :, rows, cols], weight, out=view)
            else:
                view += block_p[:, :, :, rows, cols] * weight
    return out[:, : grid.height, : grid.width]


def _merge_tf(patches, grid: PatchGrid, batch: int | None):
    import tensorflow as tf  # only for tf input: numpy callers do not load TensorFlow

    b, s, m = grid.block, grid.stride, grid.chunks
    nh, nw = grid.n_rows, grid.n_cols
    c = patches.shape[-1]
    n = batch if batch is not None else (grid.batch if grid.batch > 0 else -1)
    p = tf.reshape(patches, [n, nh, nw, b, b, c])
    wy = tf.constant(grid.row_weights(), dtype=patches.dtype)
    wx = tf.constant(grid.col_weights(), dtype=patches.dtype)
    p = p * wy[None, :, None, :, None, None] * wx[None, None, :, None, :, None]
    p = tf.transpose(p, [0, 1, 3, 2, 4, 5])  # (n, nh, b, nw, b, c)
    cols = 0
    for k in range(m):
        width = min(s, b - k * s)
        chunk = p[:, :, :, :, k * s:k * s + width, :]
        cols += tf.pad(chunk, [[0, 0], [0, 0], [0, 0], [k, m - 1 - k], [0, s - width], [0, 0]])
    cols = tf.reshape(cols, [n, nh, b, (nw + m - 1) * s, c])
    rows = 0
    for k in range(m):
        height = min(s, b - k * s)
        chunk = cols[:, :, k * s:k * s + height]
        rows += tf.pad(chunk, [[0, 0], [k, m - 1 - k], [0, s - height], [0, 0], [0, 0]])
    out = tf.reshape(rows, [n, (nh + m - 1) * s, (nw + m - 1) * s, c])
    return out[:, : grid.height, : grid.width]


def map_patches(images: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], block: int, overlap: int,
                tile: int | None = None, batch_size: int = 4096) -> np.ndarray:
    """Apply a patch function to (N, H, W, C) images: split, `fn` on at most `batch_size`
    patches at a time, blend back; the one whole-image path of every patch denoiser.

    `fn` maps (P, block, block, C) to (P, block, block, C) numpy arrays. Images larger than
    `tile` pixels (None: no tiling) go through in tiles whose origins lie on the patch grid,
    each with a margin of whole strides (>= one block) that is discarded, so every kept pixel
    sees the same patches and blend weights as in one pass over the whole image: the output
    is that of one pass, while memory is bounded by the tile, not the image.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise DataError(f"map_patches expects (N, H, W, C) images, got shape {x.shape}")
    _, h, w, _ = x.shape
    make_grid(h, w, block, overlap)  # checks the settings and that one patch fits
    stride = block - overlap
    margin = -(-block // stride) * stride
    step = max(stride, ((tile or 0) // stride) * stride)
    if tile is None or (h <= step + 2 * margin and w <= step + 2 * margin):
        return _map_region(x, fn, block, overlap, batch_size)
    out = np.empty_like(x)
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):  # a loop over tiles (a few per photo), not patches
            ya, xa = max(0, y0 - margin), max(0, x0 - margin)
            yb, xb = min(h, y0 + step + margin), min(w, x0 + step + margin)
            # Keep the region at least one block tall/wide at the image end, on the grid.
            ya, xa = min(ya, max(0, yb - block)), min(xa, max(0, xb - block))
            ya, xa = ya - ya % stride, xa - xa % stride
            res = _map_region(x[:, ya:yb, xa:xb], fn, block, overlap, batch_size)
            ye, xe = min(h, y0 + step), min(w, x0 + step)
            out[:, y0:ye, x0:xe] = res[:, y0 - ya:ye - ya, x0 - xa:xe - xa]
    return out


def _map_region(images: np.ndarray, fn, block: int, overlap: int, batch_size: int) -> np.ndarray:
    patches, grid = split_patches(images, block, overlap)
    out = np.concatenate([np.asarray(fn(patches[i:i + batch_size]), np.float32)
                          for i in range(0, len(patches), batch_size)])
    return merge_patches(out, grid)
