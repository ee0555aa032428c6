"""Training-pair augmentation: fresh noise every pass, random grid shifts and mirror flips.

Why: the VAE trains on patches cut on a fixed grid (stride block - overlap) from a few images,
so 36 CelebA-HQ faces give the same 441 patches per face in every epoch, and the training
noise is drawn from (run seed, position in the stream): the same few dozen noise fields, pass
after pass. These maps give every pass new samples of the same images:

- `renoised_pairs`: draws the synthetic noise again from a seed that changes on every pass
  over the stream (`tf.data.Dataset.random(..., rerandomize_each_iteration=True)`), so epoch e
  of a run sees noise no earlier epoch saw, and the sequence is the same for the same seed.
- `shifted_flipped_pairs`: moves each image (noisy and clean alike) by a random offset in
  [0, shift] pixels down and right (reflect-padded at the far edges, so the size and the patch
  count stay) and mirrors it left-right with probability 1/2. With shift = the grid's stride
  every pixel position of a patch corner is reachable. Mirroring keeps faces faces; the
  transposes and quarter turns of the D4 group are left to the equivariance term.

Both act on unbatched (noisy, clean) float image pairs, before they are batched.
"""
from __future__ import annotations

import tensorflow as tf

from data.errors import DataError
from data.noise import NoiseConfig, add_noise_tf


def _with_pass_seeds(pairs: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Zip each element with a random int64 that differs on every pass over the stream."""
    words = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((pairs, words))


def renoised_pairs(pairs: tf.data.Dataset, noise: NoiseConfig, seed: int) -> tf.data.Dataset:
    """(noisy, clean) -> (new noisy draw of clean, clean), with a new draw on every pass."""
    if noise.model == "none":
        raise DataError("fresh noise needs a synthetic --noise model; real noisy/clean pairs cannot be re-noised")

    def renoise(pair, word):
        _, clean = pair
        return add_noise_tf(clean, noise, tf.stack([tf.constant(seed, tf.int64), word])), clean

    return _with_pass_seeds(pairs, seed).map(renoise, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def shift_and_flip(noisy, clean, shift: int, seed):
    """One pair moved by the same random offset in [0, shift] down and right (reflect-padded)
    and mirrored left-right with probability 1/2; `seed` is a shape-[2] stateless seed."""
    both = tf.concat([noisy, clean], axis=-1)
    shape = tf.shape(both)
    offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if shift > 0:
        padded = tf.pad(both, [[0, shift], [0, shift], [0, 0]], mode="REFLECT")
        offsets = tf.random.stateless_uniform([2], seed=offset_seed, minval=0, maxval=shift + 1, dtype=tf.int32)
        both = tf.slice(padded, tf.concat([offsets, [0]], 0), shape)
    both = tf.image.stateless_random_flip_left_right(both, seed=flip_seed)
    channels = tf.shape(noisy)[-1]
    return both[..., :channels], both[..., channels:]


def shifted_flipped_pairs(pairs: tf.data.Dataset, shift: int, seed: int) -> tf.data.Dataset:
    """Every pair shifted by up to `shift` pixels and maybe mirrored, anew on every pass."""
    if shift < 0:
        raise DataError(f"augmentation shift must be >= 0, got {shift}")

    def augment(pair, word):
        noisy, clean = pair
        return shift_and_flip(noisy, clean, shift, tf.stack([tf.constant(seed + 1, tf.int64), word]))

    return _with_pass_seeds(pairs, seed + 1).map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
