"""Patch-filtering environment and agent training with a toy latent model (identity encoder: latent =
the patch's pixels per channel; bank = clean patches), so nothing depends on the VAE."""

import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from data.color import rgb_to_yuv, yuv_to_rgb
from data.errors import ConfigError, DataError
from data.patches import merge_patches, split_patches
from rl.agent_training import AgentTrainConfig, train_agent
from rl.envs.latent_filter import (
    FilterEnvConfig, LatentFilterEnv, LatentModel, Neighbours, psnr_reward, seam_disagreement,
)
from rl.inference import filter_images
from rl.sac import SACAgent, SACConfig

B, O, S = 4, 1, 3
L = B * B


def _crops(n: int = 4, size: int = 16, seed: int = 0) -> np.ndarray:
    img = skdata.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, img.shape[0] - size, n)
    xs = rng.integers(0, img.shape[1] - size, n)
    return np.stack([img[y:y + size, x:x + size] for y, x in zip(ys, xs)])


def _noisy(clean: np.ndarray, sigma: float = 0.1, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)


def _toy_model(clean_images: np.ndarray, k: int = 2, num_clusters: int = 4) -> LatentModel:
    """Latent = pixels of each YUV channel; the clean bank = the clean images' patches."""
    def encode(p):
        p = tf.convert_to_tensor(p, tf.float32)
        return tf.reshape(tf.transpose(p, (0, 3, 1, 2)), (-1, S, L))

    def decode(z):
        return tf.transpose(tf.reshape(z, (-1, S, B, B)), (0, 2, 3, 1))

    bank = encode(split_patches(rgb_to_yuv(clean_images), B, O)[0])  # (M, S, L)
    centres = bank[:num_clusters]  # (K, S, L)

    def knn(t):
        t = tf.convert_to_tensor(t, tf.float32)
        d = tf.norm(t[:, None] - bank[None], axis=-1)  # (P, M, S)
        neg, nn = tf.math.top_k(-tf.transpose(d, (0, 2, 1)), k=k)  # (P, S, k)
        bank_s = tf.transpose(bank, (1, 0, 2))  # (S, M, L)
        nbrs = tf.gather(bank_s, tf.transpose(nn, (1, 0, 2)), batch_dims=1)  # (S, P, k, L)
        mean = tf.transpose(tf.reduce_mean(nbrs, axis=2), (1, 0, 2))
        dc = tf.norm(t[:, None] - centres[None], axis=-1)  # (P, K, S)
        ids = tf.argmin(dc, axis=1, output_type=tf.int32)
        return Neighbours(mean, ids, tf.reduce_min(dc, axis=1), tf.reduce_mean(-neg, -1))

    return LatentModel(encode, lambda z: z, decode, knn, S, L, num_clusters)


def _cfg(**kw) -> FilterEnvConfig:
    return FilterEnvConfig(**{"block_size": B, "overlap": O, "steps": 3, **kw})


def test_reward_terms_equal_independent_computation():
    clean = _crops()
    noisy = _noisy(clean)
    model = _toy_model(clean)
    cfg = _cfg(target_psnr=25.0, lambda_db=0.5)
    env = LatentFilterEnv(model, cfg)
    states = env.reset(noisy, clean)
    assert states.shape == (env.grid.num_patches, env.state_dim)
    rng = np.random.default_rng(0)
    # Independent replay: patches in YUV, latent = pixels, neighbours from the toy knn.
    clean_p = split_patches(rgb_to_yuv(clean), B, O)[0]
    z = split_patches(rgb_to_yuv(noisy), B, O)[0].astype(np.float64)
    for step in range(cfg.steps):
        a = rng.uniform(size=(len(z), S)).astype(np.float32)
        nb_mean = model.decode(model.knn(model.encode(z.astype(np.float32))).mean).numpy()
        z_new = z + a[:, None, None, :] * (nb_mean - z)
        mse_before = ((z - clean_p) ** 2).mean(axis=(1, 2, 3))
        mse_after = ((z_new - clean_p) ** 2).mean(axis=(1, 2, 3))
        res = env.step(a)
        np.testing.assert_allclose(res.terms["mse"], 1000.0 * (mse_before - mse_after), rtol=1e-3, atol=1e-4)
        z = z_new
    assert res.done
    # Image term: PSNR of the merged RGB image, computed here from scratch.
    img = np.clip(yuv_to_rgb(merge_patches(z.astype(np.float32), env.grid)), 0, 1)
    psnr = 10 * np.log10(1.0 / ((img - clean) ** 2).mean(axis=(1, 2, 3)))
    expected = np.clip(1.25 * (psnr - 25.0) + 5, -15, 5)
    np.testing.assert_allclose(res.terms["psnr"].reshape(len(clean), -1), expected[:, None].repeat(
        env.grid.patches_per_image, 1), rtol=1e-4)
    per_patch, _ = seam_disagreement(z, env.grid)
    np.testing.assert_allclose(res.terms["deblock"], -0.5 * 1000.0 * per_patch, rtol=1e-4, atol=1e-7)
    assert np.all(res.terms["deblock"] <= 0) and res.terms["deblock"].min() < 0
    np.testing.assert_allclose(res.rewards, res.terms["mse"] + res.terms["psnr"] + res.terms["deblock"], rtol=1e-5)
    with pytest.raises(DataError, match="episode is over"):
        env.step(a)


def test_psnr_reward_clips_like_the_authors():
    np.testing.assert_allclose(psnr_reward(np.array([10.0, 30.0, 31.0, 40.0]), 30.0), [-15.0, 5.0, 5.0, 5.0])
    np.testing.assert_allclose(psnr_reward(np.array([26.0, 20.0]), 30.0), [0.0, -7.5])


def test_deblocking_zero_for_split_image_and_positive_for_disagreement():
    img = skdata.astronaut()[100:164, 180:260].astype(np.float32)[None] / 255.0
    patches, grid = split_patches(rgb_to_yuv(img), 16, 4)
    per_patch, per_image = seam_disagreement(patches, grid)
    assert per_patch.max() == 0.0 and per_image[0] == 0.0
    bad = patches.copy()
    target = 1 * grid.n_cols + 2  # row 1, column 2
    bad[target] += 0.1
    per_patch, per_image = seam_disagreement(bad, grid)
    touched = {target, target - 1, target + 1, target - grid.n_cols, target + grid.n_cols}
    assert per_image[0] > 0
    assert set(np.flatnonzero(per_patch > 0)) == touched
    # the shifted patch differs by 0.1 on every shared pixel of its 4 seams
    np.testing.assert_allclose(per_patch[target], 0.01, rtol=1e-4)


def test_training_updates_from_first_episode_and_improves_on_untrained_agent():
    clean = _crops(n=4, size=16)
    noisy = _noisy(clean, sigma=0.1)
    model = _toy_model(clean, k=1)  # the bank holds the true clean patches: full gates are best
    cfg = _cfg(lambda_db=0.1, target_psnr=35.0)
    env = LatentFilterEnv(model, cfg)
    agent = SACAgent(env.state_dim, env.action_dim,
                     SACConfig(hidden=(64, 64), batch_size=128, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3,
                               action_low=0.0),  # the untrained policy's gates are ~0.5
                     seed=0)

    def psnr(x):
        return float(np.mean(10 * np.log10(1 / ((x - clean) ** 2).mean(axis=(1, 2, 3)))))

    vae_alone = psnr(filter_images(noisy, None, model, cfg))
    untrained = psnr(filter_images(noisy, agent, model, cfg))  # gates ~0.5
    logged = []

    class ListLogger:
        def scalar(self, name, value, step):
            logged.append((name, value))

    history = train_agent(env, agent, noisy, clean,
                          AgentTrainConfig(episodes=10, images_per_episode=2, updates_per_step=8, seed=0),
                          logger=ListLogger())
    assert history[0]["updates"] > 0  # learning starts in the first episode
    assert {"return_mse", "return_psnr", "return_deblock", "kl"} <= set(history[0])
    assert max(h["kl_max_seen"] for h in history) <= agent.cfg.kl_max + 1e-5
    assert any(name == "sac/kl" for name, _ in logged)
    trained = psnr(filter_images(noisy, agent, model, cfg))
    # measured (seed 0): VAE alone 20.5 dB, untrained agent 30.5 dB, trained 31.4 dB
    assert trained > untrained + 0.5 > vae_alone + 5, (vae_alone, untrained, trained)


def test_gate_per_latent_dimension_and_bad_input():
    clean = _crops(n=4)
    model = _toy_model(clean)
    env = LatentFilterEnv(model, _cfg(gate="latent"))
    states = env.reset(clean, clean)
    assert env.action_dim == S * L
    # a gate of 1 on one latent dimension only moves that pixel
    a = np.zeros((len(states), S * L), np.float32)
    before = env.decoded()
    a[:, 5] = 1.0
    env.step(a)
    changed = np.abs(env.decoded() - before) > 0
    assert changed.any()
    assert not changed.reshape(len(states), -1, S)[:, :, 1:].any()
    with pytest.raises(DataError, match="actions must have shape"):
        env.step(a[:, :3])
    with pytest.raises(ConfigError, match="gate"):
        FilterEnvConfig(gate="pixel")
    with pytest.raises(DataError, match="noisy images"):
        env.reset(np.zeros((8, 8, 3)))


def test_adapter_to_project_vae_and_cluster_index():
    from models.clusters import ClusterConfig, ClusterIndex
    from models.vae import VAEConfig, build_vae

    from rl.vae_adapter import latent_model_from_vae

    vae = build_vae(VAEConfig(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16,
                              deconv_filters=(8, 8, 8, 4)))
    clean = _crops(n=2, size=40)
    rng = np.random.default_rng(0)
    bank = [rng.normal(size=(200, 3, 8)).astype(np.float32) for _ in range(2)]
    index = ClusterIndex.build(lambda: iter(bank), ClusterConfig(num_clusters=4, cap=64, passes=1))
    model = latent_model_from_vae(vae, index, k=3)
    cfg = FilterEnvConfig(block_size=16, overlap=4, steps=2)
    env = LatentFilterEnv(model, cfg)
    states = env.reset(_noisy(clean), clean)
    assert states.shape == (env.grid.num_patches, 3 * 8 + 3 + 3 + 3 * 4 + 3 + 2)
    # Neighbour features agree with the index's own queries.
    nb = model.knn(env.z)
    _, dists, ids = index.knn(env.z, 3)
    np.testing.assert_array_equal(nb.cluster_id, ids)
    np.testing.assert_allclose(nb.mean_dist, np.mean(dists, -1), rtol=1e-5)
    np.testing.assert_allclose(nb.dist_to_centre, np.min(index.centre_distances(env.z), -1), rtol=1e-5)
    # All gates 0: the output is the VAE's own denoised patches.
    patches = split_patches(rgb_to_yuv(_noisy(clean)), 16, 4)[0]
    np.testing.assert_allclose(env.decoded(), vae.denoise_patches(patches).numpy(), atol=1e-5)
    res = env.step(np.full((len(states), 3), 0.5, np.float32))
    assert np.isfinite(res.rewards).all()
