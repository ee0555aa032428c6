"""Noise models (Gaussian, Poisson-Gaussian, camera), reproducible from a seed, in numpy and in TensorFlow.

- `gaussian_var`: `skimage.util.random_noise(img, mode='gaussian', var=v)`, then x255
  and cast to uint8 (the RSE-RL paper's CelebA setting; v = 0.02 gives ~17-18 dB).
- `sigma`: additive white Gaussian noise of std sigma in 0..255 units, clipped.
- `poisson_gaussian`: signal-dependent noise, variance a*x + b (x in [0, 1]), white.
- `camera`: a phone camera's sRGB noise (docs/noise.md): the clean sRGB image is taken to
  linear light with the sRGB transfer function; Poisson-Gaussian noise of variance
  g*x + g*r is added there (g, the gain, drawn per image log-uniformly in [g_min, g_max]),
  its channels correlated (coefficient c, as after colour interpolation) and spatially
  correlated by a separable 3-tap kernel [k, 1, k] (lag-1 autocorrelation rho, as after
  demosaicing); then back through the sRGB tone curve and rounded to 8 bits. The concave
  tone curve makes strong noise darken mid-tones, as on SIDD's high-ISO shots.
  Levels `g_min,g_max,r,rho,c`, fitted to real SIDD pairs by `scripts/fit_camera_noise.py`.
- `none`: the data already holds real noisy/clean pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data.errors import DataError

NOISE_MODELS = ("gaussian_var", "sigma", "poisson_gaussian", "camera", "none")
# camera: fitted to the 8 real SIDD pairs by scripts/fit_camera_noise.py (docs/noise.md).
CAMERA_LEVELS = (3.19e-3, 6.71e-2, 0.005, 0.485, 0.34)  # g_min, g_max, r, rho, c
CAMERA_MEASURED_LAG1 = 0.464  # mean lag-1 autocorrelation of noisy - GT on those pairs (sRGB, 8 bits)
DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_var": (0.02,),
    "sigma": (25.0,),
    "poisson_gaussian": (0.005, 0.0005),
    "camera": CAMERA_LEVELS,
    "none": (),
}
LEVEL_NAMES = {"camera": "g_min,g_max,r,rho,c", "poisson_gaussian": "a,b", "sigma": "sigma", "gaussian_var": "var"}


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
    if model == "camera":
        g_min, g_max, _, rho, c = values
        if g_min > g_max:
            raise DataError(f"--noise_level: camera needs g_min <= g_max, got {level!r}")
        if rho > MAX_LAG1:
            raise DataError(f"--noise_level: camera lag-1 autocorrelation must be at most {MAX_LAG1:.3f} (3-tap kernel), got {rho:g}")
        if c >= 1:
            raise DataError(f"--noise_level: camera channel correlation must be below 1, got {c:g}")
    return NoiseConfig(model, values)


MAX_LAG1 = float(np.sqrt(0.5))  # the largest lag-1 autocorrelation a 3-tap kernel [k, 1, k] reaches (k = 1/sqrt 2)


def lag1_kernel(rho: float) -> np.ndarray:
    """The unit-energy 3-tap kernel [k, 1, k] / norm whose lag-1 autocorrelation is `rho`.

    Filtering white noise with it gives autocorrelation 2k / (1 + 2k^2) at lag 1 (and the
    same per axis when applied separably), so k solves 2 rho k^2 - 2k + rho = 0.
    """
    k = 0.0 if rho == 0 else (1.0 - np.sqrt(1.0 - 2.0 * rho * rho)) / (2.0 * rho)
    taps = np.array([k, 1.0, k])
    return taps / np.sqrt(np.sum(taps * taps))


def srgb_to_linear(x):
    """The sRGB transfer function's inverse (IEC 61966-2-1), numpy or tf, x in [0, 1]."""
    lib = _lib(x)
    return lib.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """The sRGB tone curve (IEC 61966-2-1), numpy or tf, x in [0, 1]."""
    lib = _lib(x)
    safe = lib.maximum(x, 0.0031308)  # keeps the power's gradient finite below the knee
    return lib.where(x <= 0.0031308, 12.92 * x, 1.055 * safe ** (1 / 2.4) - 0.055)


def _lib(x):
    if isinstance(x, np.ndarray):
        return np
    import tensorflow as tf

    return tf.experimental.numpy


def _camera_numpy(x: np.ndarray, levels: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """`camera` noise on float64 sRGB (H, W, C) or (N, H, W, C); one gain per image."""
    from scipy.ndimage import correlate1d

    g_min, g_max, r, rho, c = levels
    images = x[None] if x.ndim == 3 else x
    n, channels = images.shape[0], images.shape[-1]
    gain = np.exp(rng.uniform(np.log(max(g_min, 1e-12)), np.log(max(g_max, 1e-12)), size=(n, 1, 1, 1)))
    linear = srgb_to_linear(images)
    white = rng.standard_normal(images.shape)
    shared = rng.standard_normal(images.shape[:-1] + (1,))
    mixed = np.sqrt(1.0 - c) * white + np.sqrt(c) * shared if channels > 1 else white
    noise = np.sqrt(gain * (linear + r)) * mixed
    kernel = lag1_kernel(rho)
    noise = correlate1d(correlate1d(noise, kernel, axis=1, mode="reflect"), kernel, axis=2, mode="reflect")
    noisy = np.rint(linear_to_srgb(np.clip(linear + noise, 0.0, 1.0)) * 255.0) / 255.0
    return noisy[0] if x.ndim == 3 else noisy


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
    elif cfg.model == "camera":
        noisy = _camera_numpy(x, cfg.level, rng)
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
    if cfg.model == "camera":
        return _camera_tf(x, cfg.level, tf.cast(seed, tf.int64))
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


def _camera_tf(x, levels: tuple[float, ...], seed):
    """`camera` noise in the graph, (H, W, C) or (N, H, W, C) float sRGB; the numpy path's distribution."""
    import tensorflow as tf

    g_min, g_max, r, rho, c = levels
    images = x[None] if x.shape.rank == 3 else x
    gain_seed, white_seed, shared_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    shape = tf.shape(images)
    log_gain = tf.random.stateless_uniform(
        [shape[0], 1, 1, 1], seed=gain_seed,
        minval=float(np.log(max(g_min, 1e-12))), maxval=float(np.log(max(g_max, 1e-12))) + 1e-12)
    linear = srgb_to_linear(images)
    white = tf.random.stateless_normal(shape, seed=white_seed)
    shared = tf.random.stateless_normal(tf.concat([shape[:-1], [1]], 0), seed=shared_seed)
    mixed = np.sqrt(1.0 - c) * white + np.sqrt(c) * shared if images.shape[-1] != 1 else white
    noise = tf.sqrt(tf.exp(log_gain) * (linear + r)) * mixed
    taps = tf.constant(lag1_kernel(rho), tf.float32)
    channels = tf.shape(noise)[-1]
    padded = tf.pad(noise, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    rows = tf.tile(tf.reshape(taps, [3, 1, 1, 1]), [1, 1, channels, 1])
    cols = tf.tile(tf.reshape(taps, [1, 3, 1, 1]), [1, 1, channels, 1])
    noise = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    noise = tf.nn.depthwise_conv2d(noise, cols, [1, 1, 1, 1], "VALID")
    noisy = tf.round(linear_to_srgb(tf.clip_by_value(linear + noise, 0.0, 1.0)) * 255.0) / 255.0
    return noisy[0] if x.shape.rank == 3 else noisy
