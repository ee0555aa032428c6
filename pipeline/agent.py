"""A round's agent: trained on the round's inputs (SAC in the filtering environment), then kept only
if it beats the VAE alone on held-out training pairs.
"""
from __future__ import annotations

import dataclasses
import logging
import sys

from tqdm import tqdm

from data.errors import DataError
from evaluation import batch_psnr
from pipeline.config import RunConfig
from pipeline.state import RunState
from pipeline.streams import RunData, agent_pairs, agent_windows
from rl.agent_training import train_agent, warm_start
from rl.envs.latent_filter import LatentFilterEnv, LatentModel
from rl.inference import Policy, filter_images
from rl.sac import SACAgent
from utils import TensorBoardLogger, set_seeds

LOG = logging.getLogger("rse_rl")


def agent_phase(cfg: RunConfig, data: RunData, r: int, latent: LatentModel, state: RunState,
                previous: SACAgent | None, seed: int) -> SACAgent:
    """Round r's trained agent (loaded if the phase finished earlier); round r >= 1 starts from `previous`."""
    phase = f"round{r}/agent"
    folder = cfg.round_dir(r) / "agent"
    if state.finished(phase):
        return SACAgent.load(folder)
    env = LatentFilterEnv(latent, cfg.env)
    set_seeds(seed)
    agent = SACAgent(env.state_dim, env.action_dim, cfg.sac, seed=seed)
    if previous is not None:
        warm_start(agent, previous)
    pairs = agent_pairs(cfg, data, r, take=agent_windows(cfg, data, r).train)
    if pairs is None:
        raise DataError("the training set is empty")
    noisy, clean = pairs
    train_cfg = dataclasses.replace(cfg.agent_train, episodes=cfg.agent_episodes[min(r, 1)], seed=seed)
    LOG.info("round %d: training the agent, %d episodes on %d images", r, train_cfg.episodes, len(noisy))
    bar = tqdm(total=train_cfg.episodes, desc=f"agent round {r}", disable=not sys.stderr.isatty())
    history = train_agent(
        env, agent, noisy, clean, train_cfg,
        logger=TensorBoardLogger(cfg.out_dir / "work" / f"round{r}" / "agent_tensorboard"),
        progress=lambda e, m: (bar.update(1), bar.set_postfix(psnr=f"{m['psnr']:.2f}", kl=f"{m.get('kl', 0):.4f}")),
    )
    bar.close()
    agent.save(folder)
    state.mark(phase, {"history": history[-5:]})
    return agent


def earlier_decision(cfg: RunConfig, state: RunState, phase: str) -> bool | None:
    """A do-no-harm check's outcome without running it: True when the checks are off
    (--agent_check_images 0), the saved decision when `phase` finished before (--resume), else None."""
    if not cfg.agent_check_images:
        return True
    return bool(state.done[phase]["kept"]) if state.finished(phase) else None


def check_agent(cfg: RunConfig, data: RunData, r: int, agent: Policy, latent: LatentModel, state: RunState) -> bool:
    """Keep the agent only if it beats the VAE alone on held-out training pairs (never test data).

    SAC on a few episodes can end on a policy that hurts; the pairs after the agent's own
    training images decide, so a harmful policy is not shipped. Both sides run as at test
    time (`--symmetrise` included).
    """
    phase = f"round{r}/agent_check"
    decided = earlier_decision(cfg, state, phase)
    if decided is not None:
        return decided
    windows = agent_windows(cfg, data, r)
    pairs = agent_pairs(cfg, data, r, skip=windows.train, take=windows.check)
    if pairs is None:
        LOG.warning("round %d: a single training pair, none to check the agent on; keeping the agent", r)
        return True
    noisy, clean = pairs

    def mean_psnr(policy: Policy | None) -> float:
        return float(batch_psnr(clean, filter_images(noisy, policy, latent, cfg.env, symmetrise=cfg.symmetrise)).mean())

    vae_psnr, agent_psnr = mean_psnr(None), mean_psnr(agent)
    kept = agent_psnr > vae_psnr
    LOG.log(logging.INFO if kept else logging.WARNING,
            "round %d: on %d held-out training pairs the agent gives %.3f dB, the VAE alone %.3f dB: %s",
            r, len(noisy), agent_psnr, vae_psnr,
            "agent kept" if kept else "agent dropped, this round filters with the VAE alone (--agent_check_images 0 keeps it)")
    state.mark(phase, {"images": len(noisy), "vae_psnr": vae_psnr, "agent_psnr": agent_psnr, "kept": kept})
    return kept
