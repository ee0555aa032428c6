"""A finished run's rounds, loaded to filter new images as the run's test stage did
(`denoise.py --run_dir`): round 0's VAE with its agent where the agent's check kept it, then
every later round that its check applied, in order.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import DataError
from models.io import load_clusters, load_model
from pipeline.config import RunConfig
from pipeline.rounds import RoundModels
from pipeline.state import STATE_FILE
from rl.envs.latent_filter import FilterEnvConfig
from rl.sac import SACAgent
from rl.vae_adapter import latent_model_from_vae


@dataclass
class TrainedRun:
    """The rounds a run applies at test time, and the filtering settings it trained them with."""

    rounds: list[RoundModels]
    cfg: RunConfig  # the run's filtering settings (env, symmetrise); nothing else is read

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) float image in [0, 1] -> the last applied round's output, same shape."""
        current = np.asarray(image, np.float32)[None]
        for models in self.rounds:
            current = models.apply(current, self.cfg)
        return current[0]


def read_run_record(run_dir: str | Path, flag: str = "--run_dir") -> tuple[dict, dict, FilterEnvConfig]:
    """A run folder's saved flags, finished phases and filtering settings (its state.json); DataError
    naming `flag` when it has none."""
    run_dir = Path(run_dir)
    try:
        saved = json.loads((run_dir / STATE_FILE).read_text())
        flags, done, env = saved["config"]["flags"], saved["done"], saved["config"]["configs"]["env"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DataError(f"{flag} {run_dir}: not a run folder with a readable {STATE_FILE} ({exc})") from None
    known = {f.name for f in dataclasses.fields(FilterEnvConfig)}
    return flags, done, FilterEnvConfig(**{k: v for k, v in env.items() if k in known})


def load_trained_run(run_dir: str | Path, precision: str | None = None, flag: str = "--run_dir") -> TrainedRun:
    """The rounds of the run in `run_dir` (its --out_dir) that its test stage applied; DataError naming
    `flag` when there is no finished round 0. `precision` overrides the VAEs' compute policy."""
    flags, done, env = read_run_record(run_dir, flag)
    cfg = dataclasses.replace(RunConfig(), out_dir=Path(run_dir), env=env, symmetrise=bool(flags.get("symmetrise")),
                              model_dir=Path(flags["model_dir"]) if flags.get("model_dir") else None)
    checks = bool(flags.get("agent_check_images"))
    rounds: list[RoundModels] = []
    for r in range(int(flags.get("recursions", 0)) + 1):
        needed = ["vae", "clusters", "agent"] + (["agent_check"] if checks else []) + (["round_check"] if checks and r else [])
        if not all(f"round{r}/{phase}" in done for phase in needed):
            break  # an unfinished round is not applied
        if r and not done.get(f"round{r}/round_check", {"kept": True})["kept"]:
            break  # its check found it worse than its input: the test stage stopped before it
        use_agent = bool(done.get(f"round{r}/agent_check", {"kept": True})["kept"])
        vae = load_model(cfg.round_dir(r) / "vae", flag, precision=precision)
        clusters = load_clusters(cfg.round_dir(r) / "vae")
        agent = SACAgent.load(cfg.round_dir(r) / "agent") if use_agent else None
        rounds.append(RoundModels(vae, clusters, agent, latent_model_from_vae(vae, clusters, k=int(flags["knn"])),
                                  use_agent=use_agent))
    if not rounds:
        raise DataError(f"{flag} {run_dir}: round 0 has not finished (rerun the experiment with --resume)")
    return TrainedRun(rounds, cfg)
