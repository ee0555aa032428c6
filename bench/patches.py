"""Benchmark of the patch engine (issue 2): split + merge of 256x256x3 images.

Prints, in one run, medians over repeats of:
- the engine (numpy backend, and TensorFlow ops compiled with tf.function),
- a plain per-patch Python loop doing the same split and ramp-weighted merge,
- the memory-bandwidth floor: one copy of the patch tensor plus one of the images,
for 100 images, and the engine for 1,000 images to check it scales linearly.

    python bench/patches.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.patches import make_grid, merge_patches, split_patches  # noqa: E402
from bench.timing import median_seconds  # noqa: E402


def loop_split_merge(images: np.ndarray, block: int, overlap: int) -> np.ndarray:
    """The per-patch reference: what a straightforward implementation does."""
    n, h, w, c = images.shape
    grid = make_grid(h, w, block, overlap, n, c)
    s = grid.stride
    padded = np.pad(images, ((0, 0), (0, grid.padded_height - h), (0, grid.padded_width - w), (0, 0)), mode="reflect")
    patches = []
    for k in range(n):
        for i in range(grid.n_rows):
            for j in range(grid.n_cols):
                patches.append(padded[k, i * s:i * s + block, j * s:j * s + block].copy())
    wy, wx = grid.row_weights(), grid.col_weights()
    out = np.zeros_like(padded)
    index = 0
    for k in range(n):
        for i in range(grid.n_rows):
            for j in range(grid.n_cols):
                weight = wy[i][:, None, None] * wx[j][None, :, None]
                out[k, i * s:i * s + block, j * s:j * s + block] += patches[index] * weight
                index += 1
    return out[:, :h, :w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block_size", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    args = parser.parse_args()
    import tensorflow as tf

    rng = np.random.default_rng(0)
    block, overlap = args.block_size, args.overlap

    def engine(images):
        patches, grid = split_patches(images, block, overlap)
        return merge_patches(patches, grid)

    @tf.function(jit_compile=False)
    def engine_tf(images):
        patches, grid = split_patches(images, block, overlap)
        return merge_patches(patches, grid)

    rows = []
    for n in (100, 1000):
        images = rng.random((n, 256, 256, 3)).astype(np.float32)
        patches, _ = split_patches(images, block, overlap)
        assert np.abs(engine(images) - images).max() <= 1e-6
        t_engine = median_seconds(lambda: engine(images), args.repeats, warm_up=False)
        t_floor = median_seconds(lambda: (patches.copy(), images.copy()), args.repeats, warm_up=False)
        row = {"images": n, "engine_s": t_engine, "floor_s": t_floor}
        if n == 100:
            np.testing.assert_allclose(loop_split_merge(images[:2], block, overlap), images[:2], atol=1e-6)
            row["loop_s"] = median_seconds(lambda: loop_split_merge(images, block, overlap), max(1, args.repeats // 2), warm_up=False)
            images_tf = tf.constant(images)
            engine_tf(images_tf)  # trace once
            row["tf_engine_s"] = median_seconds(lambda: engine_tf(images_tf).numpy(), args.repeats, warm_up=False)
        rows.append(row)
        del patches

    small, large = rows
    print(f"split + merge of 256x256x3 images, block {block}, overlap {overlap}, median of {args.repeats}")
    print(f"{'':28s}{'100 images':>12s}{'1000 images':>13s}")
    print(f"{'engine (numpy)':28s}{small['engine_s']:11.3f}s{large['engine_s']:12.3f}s")
    print(f"{'engine (tf ops, tf.function)':28s}{small['tf_engine_s']:11.3f}s{'':>13s}")
    print(f"{'per-patch Python loop':28s}{small['loop_s']:11.3f}s{'':>13s}")
    print(f"{'floor (copy patches+images)':28s}{small['floor_s']:11.3f}s{large['floor_s']:12.3f}s")
    print(f"engine vs loop: {small['loop_s'] / small['engine_s']:.1f}x faster (target >= 2x)")
    print(f"engine vs floor: {small['engine_s'] / small['floor_s']:.1f}x the floor")
    print(f"1000 / 100 images: {large['engine_s'] / small['engine_s']:.1f}x the time (target <= 11x)")


if __name__ == "__main__":
    main()
