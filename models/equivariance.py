"""The dihedral group D4 acting on square patches, and equivariance tools.

D4 has 8 elements: g_i = R^(i mod 4) F^(i // 4), where F mirrors the columns
(left-right flip) and R rotates by 90 degrees counter-clockwise (`tf.image.rot90`).
Every function takes patch batches (P, b, b, C) (tf tensors or numpy arrays) and
acts on the two spatial axes only, so a whole batch is transformed in one op.

A patch denoiser f is equivariant when f(g x) = g f(x) for all g. `symmetrise`
makes any f exactly equivariant (mean over the group of g^-1 f(g x)), evaluating
f once on the 8 transformed batches stacked together.
"""
from __future__ import annotations

from typing import Callable, Iterable

import tensorflow as tf

GROUP_SIZE = 8
PatchFn = Callable[[tf.Tensor], tf.Tensor]


def transform(x, index: int) -> tf.Tensor:
    """g_index(x) for a Python int index in 0..7 (rotate by 90*(index % 4) after a flip if index >= 4)."""
    x = tf.convert_to_tensor(x)
    if not 0 <= index < GROUP_SIZE:
        raise ValueError(f"D4 index must be in 0..7, got {index}")
    if index >= 4:
        x = tf.reverse(x, axis=[2])
    return tf.image.rot90(x, index % 4)


def inverse_transform(x, index: int) -> tf.Tensor:
    """g_index^-1(x): undo the rotation, then the flip."""
    x = tf.convert_to_tensor(x)
    if not 0 <= index < GROUP_SIZE:
        raise ValueError(f"D4 index must be in 0..7, got {index}")
    x = tf.image.rot90(x, (4 - index % 4) % 4)
    if index >= 4:
        x = tf.reverse(x, axis=[2])
    return x


def transform_by_tensor(x, index: tf.Tensor) -> tf.Tensor:
    """g_index(x) for a scalar int tensor index (a random group element inside tf.function)."""
    x = tf.convert_to_tensor(x)
    branches = [lambda i=i: transform(x, i) for i in range(GROUP_SIZE)]
    return tf.switch_case(tf.cast(index, tf.int32), branches)


def all_transforms(x) -> tf.Tensor:
    """The 8 transformed copies of x stacked along the batch axis: (8 * P, b, b, C), group-major."""
    return tf.concat([transform(x, i) for i in range(GROUP_SIZE)], axis=0)


def symmetrise(f: PatchFn, x) -> tf.Tensor:
    """Exactly equivariant version of f: mean over g of g^-1 f(g x), with one call of f on 8P patches."""
    x = tf.convert_to_tensor(x)
    y = f(all_transforms(x))
    parts = tf.split(y, GROUP_SIZE, axis=0)
    return tf.add_n([inverse_transform(p, i) for i, p in enumerate(parts)]) / float(GROUP_SIZE)


def relative_equivariance_error(f: PatchFn, x, indices: Iterable[int] = range(1, GROUP_SIZE)) -> float:
    """sum_g sum_P ||f(g x) - g f(x)||^2 / (|G| * sum_P ||f(x)||^2) over the non-identity g.

    A ratio of means rather than a mean of per-patch ratios, so near-zero outputs
    do not dominate. 0 for an equivariant f.
    """
    x = tf.convert_to_tensor(x)
    indices = list(indices)
    fx = f(x)
    f_gx = tf.split(f(tf.concat([transform(x, i) for i in indices], axis=0)), len(indices), axis=0)
    num = tf.add_n([tf.reduce_sum(tf.square(a - transform(fx, i))) for a, i in zip(f_gx, indices)])
    den = len(indices) * tf.reduce_sum(tf.square(fx))
    return float(num / tf.maximum(den, 1e-30))
