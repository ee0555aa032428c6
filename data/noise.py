"""Noise models of SPEC section 1, reproducible from a seed, in numpy and in TensorFlow.

- `gaussian_var`: `skimage.util.random_noise(img, mode='gaussian', var=v)`, then x255
  and cast to uint8 (the RSE-RL paper's CelebA setting; v = 0.02 gives ~17-18 dB).
- `sigma`: additive white Gaussian noise of std sigma in 0..255 units, clipped.
- `poisson_gaussian`: signal-dependent camera noise, variance a*x + b (x in [0, 1]).
- `none`: the data already holds real noisy/clean pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data.errors import DataError

NOISE_MODELS = ("gaussian_var", "sigma", "poisson_gaussian", "none")
DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_var": (0.02,),
    "sigma": (25.0,),
    "poisson_gaussian": (0.005, 0.0005),
    "none": (),
}


@dataclass(frozen=True)
class NoiseConfig:
    """A noise model and its parameters (see the module docstring for their units)."""

    model: str = "gaussian_var"
    level: tuple[float, ...] = (0.02,)

    def describe(self) -> str:
        return self.model + ("(" + ",".join(f"{v:g}" for v in self.level) + ")" if self.level else "")


def parse_noise(model: str, level: str | float | Sequence[float] | None = None) -> NoiseConfig:
    """Build a NoiseConfig from the `--noise` and `--noise_level` flags (DataError if invalid)."""
    if model not in NOISE_MODELS:
        raise DataError(f"--noise: unknown noise model {model!r}; choose one of {', '.join(NOISE_MODELS)}")
    if level is None or level == "":
        values = DEFAULT_LEVELS[model]
    else:
        try:
            if isinstance(level, str):
                values = tuple(float(v) for v in level.split(","))
            elif isinstance(level, (int, float)):
                values = (float(level),)
            else:
                values = tuple(float(v) for v in level)
        except ValueError:
            raise DataError(f"--noise_level: {level!r} is not a number or comma-separated numbers") from None
    expected = len(DEFAULT_LEVELS[model])
    if len(values) != expected:
        raise DataError(f"--noise_level: {model} takes {expected} value(s), got {len(values)} ({level!r})")
    if any(v < 0 for v in values):
        raise DataError(f"--noise_level: values must be non-negative, got {level!r}")
    return NoiseConfig(model, values)


def add_noise(clean: np.ndarray, cfg: NoiseConfig, seed: int | Sequence[int] | np.random.Generator) -> np.ndarray:
    """Noisy version of `clean` (uint8, or float in [0, 1]) as float32 in [0, 1].

    `seed` may be an int, a sequence such as (run_seed, image_index) so that each
    image's noise does not depend on batching, or a Generator.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = np.asarray(clean)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if cfg.model == "gaussian_var":
        from skimage.util import random_noise

        noisy = random_noise(x, mode="gaussian", var=cfg.level[0], rng=rng)
        return (noisy * 255).astype(np.uint8).astype(np.float32) / 255.0
    if cfg.model == "sigma":
        noisy = x + rng.normal(0.0, cfg.level[0] / 255.0, size=x.shape)
    elif cfg.model == "poisson_gaussian":
        a, b = cfg.level
        noisy = x + np.sqrt(a * x + b) * rng.standard_normal(size=x.shape)
    elif cfg.model == "none":
        noisy = x
    else:
        raise DataError(f"--noise: unknown noise model {cfg.model!r}")
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def add_noise_tf(clean, cfg: NoiseConfig, seed):
    """TensorFlow version for tf.data / on-device use: same distributions as `add_noise`.

    `clean` is float in [0, 1]; `seed` is a shape-[2] int tensor for the stateless
    RNG (e.g. (run_seed, image_index)), so each sample is reproducible.
    """
    import tensorflow as tf

    x = tf.cast(clean, tf.float32)
    if cfg.model == "none":
        return x
    z = tf.random.stateless_normal(tf.shape(x), seed=tf.cast(seed, tf.int64), dtype=tf.float32)
    if cfg.model == "gaussian_var":
        noisy = tf.clip_by_value(x + np.sqrt(cfg.level[0]) * z, 0.0, 1.0)
        return tf.floor(noisy * 255.0) / 255.0
    if cfg.model == "sigma":
        noisy = x + (cfg.level[0] / 255.0) * z
    elif cfg.model == "poisson_gaussian":
        a, b = cfg.level
        noisy = x + tf.sqrt(a * x + b) * z
    else:
        raise DataError(f"--noise: unknown noise model {cfg.model!r}")
    return tf.clip_by_value(noisy, 0.0, 1.0)
