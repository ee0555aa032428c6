"""The ground-truth oracle of an action family: the most any policy of that family could gain.

For every patch, the latent reachable by a whole episode of the family is optimised against
the clean patch (Adam on an unconstrained parameter, `iterations` steps), and the patch keeps
the oracle's latent only where it decodes closer to the clean patch than t_0 does. So the
oracle never loses to the VAE alone, and no policy that sees only the noisy image can beat it:
it is the headroom that training an agent can at best close.

Reachable sets over an episode of `steps` steps with scale beta (per latent dimension):
  gain:     t_0 * g,  g in [(1 - beta)^steps, (1 + beta)^steps]  (a product of per-step gains);
  residual: t_0 + d,  |d| <= steps * beta * s                     (a sum of per-step residuals);
  knn:      t_0 + c (m - t_0), c in [0, 1] per gate, m the mean of t_0's clean neighbours
            (neighbours held at those of t_0; the agent re-queries them after every step).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf
import keras

from rl.envs.latent_filter import FilterEnvConfig


def reachable_latents(cfg: FilterEnvConfig, t0: tf.Tensor, u: tf.Tensor, latent_scale=None,
                      neighbour_mean=None) -> tf.Tensor:
    """The latent an episode of `cfg`'s family reaches from t0 (P, S, L) for the free parameter u.

    u has the shape of t0 (one value per latent dimension), or (P, S) for the knn action's
    subspace gates; u = 0 is the middle of the reachable set, not t0 itself.
    """
    beta, n = cfg.action_scale, cfg.steps
    if cfg.action == "gain":
        lo, hi = n * np.log1p(-beta), n * np.log1p(beta)
        return t0 * tf.exp(0.5 * (hi + lo) + 0.5 * (hi - lo) * tf.tanh(u))
    if cfg.action == "residual":
        return t0 + n * beta * tf.convert_to_tensor(latent_scale, tf.float32) * tf.tanh(u)
    gates = tf.sigmoid(u)
    if gates.shape.rank == 2:
        gates = gates[:, :, None]
    return t0 + gates * (tf.convert_to_tensor(neighbour_mean, tf.float32) - t0)


def oracle_latents(decode: Callable[[tf.Tensor], tf.Tensor], t0: np.ndarray, clean_patches: np.ndarray,
                   cfg: FilterEnvConfig, latent_scale=None, neighbour_mean=None, iterations: int = 100,
                   learning_rate: float = 0.1, chunk: int = 2048) -> np.ndarray:
    """Per patch, the reachable latent closest (after decoding) to the clean patch, or t0 where
    the search found nothing better. `decode` must be differentiable (e.g. `RSEVAE.decode`)."""
    t0 = np.asarray(t0, np.float32)
    target_all = np.asarray(clean_patches, np.float32)
    gate_shape = (t0.shape[1],) if cfg.action == "knn" and cfg.gate == "subspace" else t0.shape[1:]
    out = t0.copy()
    for start in range(0, len(t0), chunk):
        t = tf.constant(t0[start:start + chunk])
        y = tf.constant(target_all[start:start + chunk])
        m = None if neighbour_mean is None else tf.constant(np.asarray(neighbour_mean, np.float32)[start:start + chunk])
        u = tf.Variable(tf.zeros((t.shape[0], *gate_shape)))
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build([u])

        def patch_mse(latents):
            return tf.reduce_mean(tf.square(decode(latents) - y), axis=[1, 2, 3])

        @tf.function
        def descend():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(patch_mse(reachable_latents(cfg, t, u, latent_scale, m)))
            optimizer.apply_gradients([(tape.gradient(loss, u), u)])

        for _ in range(iterations):
            descend()
        best = reachable_latents(cfg, t, u, latent_scale, m)
        better = (patch_mse(best) < patch_mse(t)).numpy()
        out[start:start + chunk][better] = best.numpy()[better]
    return out
