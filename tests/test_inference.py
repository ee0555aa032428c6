"""Inference with an agent or the VAE alone: no ground truth, neighbour searches only where an
action needs them, and the exact D4-equivariant mode (`symmetrise=True`)."""
import dataclasses
import inspect

import numpy as np

from data.color import rgb_to_yuv, yuv_to_rgb
from models import equivariance
from models.clusters import ClusterConfig, ClusterIndex
from models.vae import VAEConfig, build_vae, denoise_image
from rl.envs.latent_filter import FilterEnvConfig, LatentFilterEnv
from rl.inference import filter_images
from rl.sac import SACAgent, SACConfig
from rl.vae_adapter import latent_model_from_vae
from tests.test_latent_filter import _cfg, _crops, _noisy, _toy_model


def _rotate(images: np.ndarray, g: int) -> np.ndarray:
    return equivariance.transform(images, g).numpy()


def test_inference_takes_no_ground_truth_and_agent_none_is_vae_alone():
    assert "clean" not in " ".join(inspect.signature(filter_images).parameters)
    clean = _crops(n=3)
    noisy = _noisy(clean)
    model = _toy_model(clean)
    cfg = _cfg()
    env = LatentFilterEnv(model, cfg)
    env.reset(noisy)  # no clean images: steps give no reward
    res = env.step(np.ones((env.grid.num_patches, env.action_dim), np.float32))
    assert res.rewards is None and res.terms == {}
    agent = SACAgent(env.state_dim, env.action_dim, SACConfig(hidden=(16,)), seed=0)
    out = filter_images(noisy, agent, model, cfg, batch_images=2)
    assert out.shape == noisy.shape and out.min() >= 0 and out.max() <= 1
    # agent=None: all gates 0, i.e. decode(T(encode(x))), the identity for the toy model
    vae_only = filter_images(noisy, None, model, cfg)
    np.testing.assert_allclose(vae_only, np.clip(yuv_to_rgb(rgb_to_yuv(noisy)), 0, 1), atol=1e-5)
    # differently sized images as a list
    outs = filter_images([noisy[0], noisy[1, :13, :10]], agent, model, cfg)
    assert outs[1].shape == (13, 10, 3)


def test_inference_searches_neighbours_only_where_an_action_needs_them():
    """VAE alone: no search; VAE + agent: one search per step (the state it acts on), none after the last."""
    clean = _crops(n=2)
    model = _toy_model(clean)
    calls = []

    def counting_knn(t):
        calls.append(len(t))
        return model.knn(t)

    counted = dataclasses.replace(model, knn=counting_knn)
    cfg = _cfg(steps=3)
    env = LatentFilterEnv(counted, cfg)
    agent = SACAgent(env.state_dim, env.action_dim, SACConfig(hidden=(16,)), seed=0)
    noisy = _noisy(clean)
    filter_images(noisy, agent, counted, cfg)
    assert len(calls) == cfg.steps
    calls.clear()
    filter_images(noisy, None, counted, cfg)
    assert calls == []
    # stepping by hand: no next state at the end of an inference episode, so no search for it
    states = env.reset(noisy)
    for _ in range(cfg.steps):
        states = env.step(agent.act(states, deterministic=True)).states
    assert states is None and len(calls) == cfg.steps


def test_symmetrised_agent_is_exactly_equivariant():
    """On a grid that maps onto itself (16 = 1 + 5 x 3 pixels: no padding), rotating or mirroring
    the input rotates or mirrors the output, agent included; without the mode it does not."""
    clean = _crops(n=2, size=16)
    noisy = _noisy(clean)
    model = _toy_model(clean)  # its clean bank is not symmetric: the plain filter is not equivariant
    cfg = _cfg(action="knn")  # the pull toward an asymmetric clean bank: the plain filter is clearly not equivariant
    env = LatentFilterEnv(model, cfg)
    agent = SACAgent(env.state_dim, env.action_dim, SACConfig(hidden=(16,), action_low=0.0), seed=0)
    exact = filter_images(noisy, agent, model, cfg, symmetrise=True)
    plain = filter_images(noisy, agent, model, cfg)
    for g in (1, 4, 6):
        np.testing.assert_allclose(filter_images(_rotate(noisy, g), agent, model, cfg, symmetrise=True),
                                   _rotate(exact, g), atol=2e-5)
        assert np.abs(filter_images(_rotate(noisy, g), agent, model, cfg) - _rotate(plain, g)).max() > 1e-3


def test_symmetrised_vae_alone_is_the_vaes_exact_mode():
    """filter_images(agent=None) through the adapter == denoise_image, in both modes."""
    vae = build_vae(VAEConfig(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16,
                              deconv_filters=(8, 8, 8, 4)))
    bank = np.random.default_rng(0).normal(size=(200, 3, 8)).astype(np.float32)
    index = ClusterIndex.build(lambda: iter([bank]), ClusterConfig(num_clusters=4, cap=64, passes=1))
    latent = latent_model_from_vae(vae, index, k=3)
    cfg = FilterEnvConfig(block_size=16, overlap=4)
    image = _noisy(_crops(n=1, size=40))
    outputs = {}
    for symmetrise in (False, True):
        outputs[symmetrise] = filter_images(image, None, latent, cfg, symmetrise=symmetrise)[0]
        np.testing.assert_allclose(outputs[symmetrise], denoise_image(vae, image[0], overlap=4, symmetrise=symmetrise),
                                   atol=2e-5)
    assert np.abs(outputs[True] - outputs[False]).max() > 1e-4
