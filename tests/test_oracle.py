"""The ground-truth oracle of an action family (rl.oracle), on a tiny VAE."""
import numpy as np
import pytest
import tensorflow as tf

from models.vae import VAEConfig, build_vae
from rl.envs.latent_filter import FilterEnvConfig
from rl.oracle import oracle_latents, reachable_latents

TINY = dict(latent_dim=6, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16, deconv_filters=(8, 8, 8, 4))


def _setup(seed=0):
    tf.keras.utils.set_random_seed(seed)
    vae = build_vae(VAEConfig(**TINY))
    rng = np.random.default_rng(seed)
    noisy = rng.uniform(size=(40, 16, 16, 3)).astype(np.float32)
    clean = np.clip(noisy + rng.normal(0, 0.1, noisy.shape), 0, 1).astype(np.float32)
    t0 = vae.transform(vae.encode(noisy)[0]).numpy()
    return vae, t0, clean


def _mse(vae, t, clean):
    return np.mean((vae.decode(t).numpy() - clean) ** 2, axis=(1, 2, 3))


@pytest.mark.parametrize("action", ["gain", "residual", "knn"])
def test_oracle_beats_the_vae_alone_wherever_it_moves_the_latent(action):
    vae, t0, clean = _setup()
    cfg = FilterEnvConfig(action=action, action_scale=0.2, steps=2)
    scale = np.full(t0.shape[1:], 0.5, np.float32)
    pull = np.random.default_rng(1).normal(size=t0.shape).astype(np.float32)
    best = oracle_latents(vae.decode, t0, clean, cfg, scale, pull, iterations=30)
    moved = np.any(best != t0, axis=(1, 2))
    assert moved.mean() > 0.5  # the search finds something better for most patches
    before, after = _mse(vae, t0, clean), _mse(vae, best, clean)
    assert np.all(after[moved] < before[moved])
    np.testing.assert_array_equal(after[~moved], before[~moved])


def test_reachable_sets_match_an_episode_of_the_family():
    rng = np.random.default_rng(0)
    t0 = tf.constant(rng.normal(size=(4, 3, 5)).astype(np.float32))
    big = tf.fill(t0.shape, 50.0)  # tanh(u) = 1: the far end of the set
    gain = FilterEnvConfig(action="gain", action_scale=0.1, steps=3)
    np.testing.assert_allclose(reachable_latents(gain, t0, big), t0.numpy() * 1.1 ** 3, rtol=1e-5)
    np.testing.assert_allclose(reachable_latents(gain, t0, -big), t0.numpy() * 0.9 ** 3, rtol=1e-5)
    scale = rng.uniform(0.5, 2, size=(3, 5)).astype(np.float32)
    residual = FilterEnvConfig(action="residual", action_scale=0.1, steps=3)
    np.testing.assert_allclose(reachable_latents(residual, t0, -big, scale), t0.numpy() - 0.3 * scale, rtol=1e-5)
