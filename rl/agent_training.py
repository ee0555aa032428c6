"""Training the patch-filtering agent: SAC episodes on random image batches of the environment,
an update after every environment step, and the warm start of a later round's agent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from data.errors import DataError
from rl.envs.latent_filter import LatentFilterEnv
from rl.replay import ReplayBuffer
from rl.sac import SACAgent


@dataclass
class AgentTrainConfig:
    """The RL loop: episodes on random image batches, updates after every env step."""

    episodes: int = 40
    images_per_episode: int = 2
    updates_per_step: int = 16
    learning_starts: int | None = None  # transitions before the first update; None: one SAC batch
    buffer_capacity: int = 200_000
    seed: int = 0


def train_agent(env: LatentFilterEnv, agent: SACAgent, noisy_images: np.ndarray, clean_images: np.ndarray,
                cfg: AgentTrainConfig | None = None, logger=None,
                progress: Callable[[int, dict], None] | None = None) -> list[dict[str, float]]:
    """Train `agent` (an `rl.sac.SACAgent`) on (noisy, clean) image pairs; returns per-episode metrics.

    Every env step adds one transition per patch (hundreds to thousands), so the
    buffer passes `learning_starts` after the first step and SAC updates from
    the first episode on (the authors' loop never reached its first update).
    A fresh agent (no update yet) first fits its state normaliser on the states of
    all training images; a warm-started one keeps the normaliser it was copied with.
    `logger` (an `rl.sac.ScalarLogger`) receives every update's scalars under
    `sac/` and every episode's metrics under `env/`.
    """
    cfg = cfg or AgentTrainConfig()
    noisy = np.asarray(noisy_images, np.float32)
    clean = np.asarray(clean_images, np.float32)
    if noisy.shape != clean.shape or noisy.ndim != 4:
        raise DataError(f"train_agent: noisy {noisy.shape} and clean {clean.shape} must be equal (N, H, W, C)")
    if agent.state_dim != env.state_dim or agent.action_dim != env.action_dim:
        raise DataError(f"agent dims ({agent.state_dim}, {agent.action_dim}) do not match the "
                        f"environment ({env.state_dim}, {env.action_dim})")
    rng = np.random.default_rng(cfg.seed)
    if int(agent.updates.numpy()) == 0:  # a fresh agent: standardise its inputs on the training images' states
        agent.fit_state_normaliser(np.concatenate([env.reset(noisy[i:i + 8]) for i in range(0, len(noisy), 8)]))
    learning_starts = agent.cfg.batch_size if cfg.learning_starts is None else cfg.learning_starts
    buffer = ReplayBuffer(cfg.buffer_capacity, env.state_dim, env.action_dim)
    history = []
    for episode in range(cfg.episodes):
        idx = rng.choice(len(noisy), size=min(cfg.images_per_episode, len(noisy)), replace=False)
        states = env.reset(noisy[idx], clean[idx])
        totals: dict[str, float] = {}
        update_logs: list[dict[str, float]] = []
        done = False
        while not done:
            actions = agent.act(states)
            result = env.step(actions)
            done = result.done
            buffer.add(states, actions, result.rewards, result.states, float(done))
            states = result.states
            for name, value in result.metrics.items():
                if name.startswith("reward"):
                    totals[name] = totals.get(name, 0.0) + value
            if len(buffer) >= learning_starts:
                for _ in range(cfg.updates_per_step):
                    log = agent.update(buffer.sample(agent.cfg.batch_size, rng))
                    update_logs.append(log)
                    if logger is not None:
                        _log_scalars(logger, log, int(agent.updates.numpy()), "sac/")
        metrics = {f"return_{k[len('reward_'):] if k != 'reward' else 'total'}": v for k, v in totals.items()}
        metrics.update(psnr=result.metrics["psnr"], seam_msd=result.metrics["seam_msd"],
                       mean_action=result.metrics["mean_action"], mean_abs_action=result.metrics["mean_abs_action"],
                       updates=float(agent.updates.numpy()))
        if update_logs:
            for key in ("kl", "alpha", "critic_loss", "actor_loss"):
                metrics[key] = float(np.mean([u[key] for u in update_logs]))
            metrics["kl_max_seen"] = float(max(u["kl"] for u in update_logs))
        history.append(metrics)
        if logger is not None:
            _log_scalars(logger, metrics, episode, "env/")
        if progress is not None:
            progress(episode, metrics)
    return history


def _log_scalars(logger, values: dict[str, float], step: int, prefix: str) -> None:
    if hasattr(logger, "scalars"):
        logger.scalars(values, step, prefix=prefix)
    else:
        for name, value in values.items():
            logger.scalar(prefix + name, value, step)


def warm_start(target: SACAgent, source: SACAgent) -> None:
    """Copy `source`'s actor, critics, targets, temperature, state normaliser and update count into
    `target` (a later round's agent starts from the previous round's)."""
    for src, dst in ((source.actor, target.actor), (source.q1, target.q1), (source.q2, target.q2),
                     (source.q1_target, target.q1_target), (source.q2_target, target.q2_target)):
        for a, b in zip(src.trainable_variables, dst.trainable_variables):
            b.assign(a)
    for name in ("log_alpha", "state_shift", "state_scale", "updates"):
        getattr(target, name).assign(getattr(source, name))
