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
    FilterEnvConfig, LatentFilterEnv, LatentModel, Neighbours, apply_action, neighbour_latents, psnr_reward,
    seam_disagreement,
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


def _toy_model(clean_images: np.ndarray, k: int = 2, num_clusters: int = 4, transform=lambda z: z) -> LatentModel:
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

    return LatentModel(encode, transform, decode, knn, S, L, num_clusters,
                       latent_scale=np.std(bank.numpy(), axis=0).astype(np.float32))


def _cfg(**kw) -> FilterEnvConfig:
    return FilterEnvConfig(**{"block_size": B, "overlap": O, "steps": 3, **kw})


def test_reward_terms_equal_independent_computation():
    clean = _crops()
    noisy = _noisy(clean)
    model = _toy_model(clean)
    cfg = _cfg(action="knn", target_psnr=25.0, lambda_db=0.5, mse_scale=1000.0)
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
    cfg = _cfg(action="knn", lambda_db=0.1, target_psnr=35.0, mse_scale=1000.0)
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
    env = LatentFilterEnv(model, _cfg(action="knn", gate="latent"))
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
    # latent, 4 neighbours' latents, centre and neighbour distances, cluster id, noise, step
    assert states.shape == (env.grid.num_patches, 3 * 8 + 4 * 3 * 8 + 3 + 3 + 3 * 4 + 3 + 2)
    np.testing.assert_allclose(model.latent_scale, index.latent_std())
    # Neighbour features agree with the index's own queries.
    nb = model.knn(env.z)
    _, dists, ids = index.knn(env.z, 3)
    np.testing.assert_array_equal(nb.cluster_id, ids)
    np.testing.assert_allclose(nb.mean_dist, np.mean(dists, -1), rtol=1e-5)
    np.testing.assert_allclose(nb.dist_to_centre, np.min(index.centre_distances(env.z), -1), rtol=1e-5)
    # Action 0: the output is the VAE's own denoised patches.
    patches = split_patches(rgb_to_yuv(_noisy(clean)), 16, 4)[0]
    np.testing.assert_allclose(env.decoded(), vae.denoise_patches(patches).numpy(), atol=1e-5)
    res = env.step(np.full((len(states), env.action_dim), 0.5, np.float32))
    assert np.isfinite(res.rewards).all()


@pytest.mark.parametrize("action", ["gain", "residual"])
def test_gain_and_residual_actions_known_values(action):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, S, L)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, size=(S, L)).astype(np.float32)
    cfg = _cfg(action=action, action_scale=0.2)
    np.testing.assert_array_equal(apply_action(z, np.zeros((5, S * L)), cfg, scale).numpy(), z)  # a = 0: unchanged
    a = rng.uniform(-1, 1, size=(5, S * L)).astype(np.float32)
    expected = z * (1 + 0.2 * a.reshape(5, S, L)) if action == "gain" else z + 0.2 * scale * a.reshape(5, S, L)
    np.testing.assert_allclose(apply_action(z, a, cfg, scale).numpy(), expected, rtol=1e-6, atol=1e-6)
    # through the environment: actions are clipped to [-1, 1], the latent moves as computed here
    clean = _crops(n=2)
    env = LatentFilterEnv(_toy_model(clean), cfg)
    env.reset(_noisy(clean))
    z0 = env.z.numpy()
    big = np.full((len(z0), S * L), 3.0, np.float32)
    env.step(big)
    one = np.ones_like(z0)
    np.testing.assert_allclose(env.z.numpy(), apply_action(z0, one.reshape(len(z0), -1), cfg, env.model.latent_scale),
                               rtol=1e-6)
    assert env.action_dim == S * L and env.action_low == -1.0


def test_residual_action_needs_the_latent_scale():
    clean = _crops(n=1)
    model = _toy_model(clean)
    model = LatentModel(model.encode, model.transform, model.decode, model.knn, S, L, 4)  # no latent_scale
    with pytest.raises(ConfigError, match="residual"):
        LatentFilterEnv(model, _cfg(action="residual"))
    with pytest.raises(ConfigError, match="--action"):
        FilterEnvConfig(action="blend")
    with pytest.raises(ConfigError, match="--action_scale"):
        FilterEnvConfig(action_scale=0.0)


def test_neighbour_latents_of_a_hand_built_3x3_grid():
    # One 3x3-patch image (block 4, overlap 1 -> 10x10 pixels); latent of patch (i, j) = 10 * i + j + 1.
    _, grid = split_patches(np.zeros((1, 10, 10, 1), np.float32), 4, 1)
    assert (grid.n_rows, grid.n_cols) == (3, 3)
    value = np.array([[10 * i + j + 1 for j in range(3)] for i in range(3)], np.float32)
    z = np.repeat(value.reshape(9, 1, 1), 2, axis=2)  # (P, S=1, L=2)
    nb = neighbour_latents(z, grid)[:, :, 0].reshape(3, 3, 4)  # up, down, left, right
    for i in range(3):
        for j in range(3):
            expected = [value[i - 1, j] if i > 0 else 0, value[i + 1, j] if i < 2 else 0,
                        value[i, j - 1] if j > 0 else 0, value[i, j + 1] if j < 2 else 0]
            np.testing.assert_array_equal(nb[i, j], expected)


def test_sac_learns_the_gain_a_toy_transform_needs():
    """The toy T overshoots every latent by 25%: a gain below 1 is what helps, and SAC finds it."""
    clean = _crops(n=4, size=16)
    noisy = _noisy(clean, sigma=0.02)
    model = _toy_model(clean, transform=lambda z: 1.25 * tf.convert_to_tensor(z, tf.float32))
    cfg = _cfg(action="gain", action_scale=0.1, lambda_db=0.0, target_psnr=40.0)
    env = LatentFilterEnv(model, cfg)
    agent = SACAgent(env.state_dim, env.action_dim,
                     SACConfig(hidden=(64, 64), batch_size=128, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3), seed=0)

    def psnr(x):
        return float(np.mean(10 * np.log10(1 / ((x - clean) ** 2).mean(axis=(1, 2, 3)))))

    vae_alone = psnr(filter_images(noisy, None, model, cfg))
    untrained = psnr(filter_images(noisy, agent, model, cfg))
    train_agent(env, agent, noisy, clean, AgentTrainConfig(episodes=12, images_per_episode=2, updates_per_step=8, seed=0))
    trained = psnr(filter_images(noisy, agent, model, cfg))
    assert abs(untrained - vae_alone) < 0.2  # the untrained policy's mean action is ~0: a no-op
    assert trained > vae_alone + 1.0, (vae_alone, untrained, trained)
