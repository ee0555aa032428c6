"""Denoising images with a trained agent (or the VAE alone): no ground truth, deterministic actions.

The VAE alone goes through the one whole-image path of every patch denoiser
(`data.patches.map_patches`, as `models.vae.denoise_image` does); with an agent the
patches of a batch of images are filtered by `LatentFilterEnv`, all at once.

`symmetrise=True` is the exact D4-equivariant mode: every patch is filtered in its 8
rotated / mirrored versions and the results, turned back, are averaged before blending
(8x the compute). With an agent this is done per patch, by handing the environment each
transformed patch as an image of its own (a one-patch grid), so the environment itself
is unchanged.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from data.color import from_model_space, to_model_space
from data.errors import DataError
from data.patches import map_patches, merge_patches, split_patches
from models import equivariance
from rl.envs.latent_filter import FilterEnvConfig, LatentFilterEnv, LatentModel


class Policy(Protocol):
    def act(self, states: np.ndarray, deterministic: bool = False) -> np.ndarray: ...


def filter_images(noisy_images: np.ndarray | Sequence[np.ndarray], agent: Policy | None, latent_model: LatentModel,
                  cfg: FilterEnvConfig | None = None, batch_images: int = 8,
                  symmetrise: bool = False) -> np.ndarray | list[np.ndarray]:
    """Denoise images with VAE + agent (deterministic actions); `agent=None` gives the VAE alone.

    `noisy_images`: an (N, H, W, C) array, or a sequence of (H, W, C) arrays of any sizes
    (each processed on its own). Returns float32 images in [0, 1], in the input's layout.
    """
    cfg = cfg or FilterEnvConfig()
    env = LatentFilterEnv(latent_model, cfg)
    dims = (getattr(agent, "state_dim", env.state_dim), getattr(agent, "action_dim", env.action_dim))
    if agent is not None and dims != (env.state_dim, env.action_dim):
        raise DataError(f"the agent's state and action sizes {dims} do not match the environment's "
                        f"{(env.state_dim, env.action_dim)}: it was trained with other --action/--rl_steps/state settings")

    def run(batch: np.ndarray) -> np.ndarray:
        if agent is None:
            return _vae_alone(latent_model, cfg, batch, symmetrise)
        return _filter_symmetrised(env, agent, batch) if symmetrise else _filter_batch(env, agent, batch)

    if isinstance(noisy_images, np.ndarray) and noisy_images.ndim == 4:
        batches = [noisy_images[i:i + batch_images] for i in range(0, len(noisy_images), batch_images)]
        return np.concatenate([run(b) for b in batches], axis=0)
    return [run(np.asarray(img)[None])[0] for img in noisy_images]


def _vae_alone(model: LatentModel, cfg: FilterEnvConfig, images: np.ndarray, symmetrise: bool) -> np.ndarray:
    """All gates 0: the latents never move, so no environment (nor neighbour search) is needed."""
    def denoise(patches):
        return np.asarray(model.decode(model.transform(model.encode(patches))), np.float32)

    fn = (lambda p: equivariance.symmetrise(denoise, p).numpy()) if symmetrise else denoise
    out = map_patches(to_model_space(np.asarray(images, np.float32)), fn, cfg.block_size, cfg.overlap)
    return from_model_space(out)


def _run_episode(env: LatentFilterEnv, agent: Policy, noisy: np.ndarray) -> None:
    states = env.reset(noisy)
    for _ in range(env.cfg.steps):
        states = env.step(agent.act(states, deterministic=True)).states


def _filter_batch(env: LatentFilterEnv, agent: Policy, noisy: np.ndarray) -> np.ndarray:
    _run_episode(env, agent, noisy)
    return env.current_images()


def _filter_symmetrised(env: LatentFilterEnv, agent: Policy, noisy: np.ndarray) -> np.ndarray:
    """mean over g of g^-1 (filter(g patch)) for every patch, blended in model space."""
    patches, grid = split_patches(np.asarray(noisy, np.float32), env.cfg.block_size, env.cfg.overlap)
    total = np.zeros((*patches.shape[:3], env.model.num_subspaces), np.float32)
    for g in range(equivariance.GROUP_SIZE):
        _run_episode(env, agent, equivariance.transform(patches, g).numpy())  # each patch a one-patch image
        total += equivariance.inverse_transform(env.decoded(), g).numpy()
    return from_model_space(merge_patches(total / equivariance.GROUP_SIZE, grid))
