"""How much can the agent gain at all? The filtering action's headroom for a trained round.

The agent's only lever is the gated pull z <- z + a (mean of k clean neighbours - z)
(docs/agent.md). For a trained VAE + clusters this prints the PSNR on the embedded
sample's test crops of: the VAE alone (a = 0), every gate held at a constant g for all
steps, and a per-patch oracle that, for each patch, keeps whichever of a = 0 or a = g
(one step) is closer to the clean patch. The oracle uses the ground truth, so it is an
upper bound on what any policy over those two choices can reach; if it barely beats the
VAE alone, no amount of agent training will.

    python bench/agent_headroom.py --model_dir runs/celeba_default/model/round0/vae
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from data.errors import run_cli  # noqa: E402


class ConstantGates:
    """A stand-in agent whose every gate is g."""

    def __init__(self, gate: float, action_dim: int) -> None:
        self.gate, self.action_dim = gate, action_dim

    def act(self, states: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.full((len(states), self.action_dim), self.gate, np.float32)


def oracle_psnr(env, noisy: np.ndarray, clean: np.ndarray, gate: float) -> tuple[float, float]:
    """(mean PSNR, fraction of patches the pull improves) of the per-patch oracle over {0, gate}."""
    from data.color import from_model_space, to_model_space
    from data.patches import merge_patches, split_patches
    from evaluation import batch_psnr

    env.reset(noisy)
    before = env.decoded()
    env.step(np.full((len(before), env.action_dim), gate, np.float32))
    after = env.decoded()
    target, _ = split_patches(to_model_space(clean), env.cfg.block_size, env.cfg.overlap)
    better = np.mean((after - target) ** 2, axis=(1, 2, 3)) < np.mean((before - target) ** 2, axis=(1, 2, 3))
    best = np.where(better[:, None, None, None], after, before)
    images = from_model_space(merge_patches(best, env.grid))
    return float(batch_psnr(clean, images).mean()), float(better.mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", type=Path, required=True, help="a round's vae folder (with its clusters)")
    p.add_argument("--noise", default="gaussian_var")
    p.add_argument("--noise_level", default="0.02")
    p.add_argument("--knn", type=int, default=8)
    p.add_argument("--rl_steps", type=int, default=3)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--gates", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from data.noise import add_noise, parse_noise
    from data.sample import sample_test_images
    from models.io import load_clusters, load_model
    from evaluation import batch_psnr
    from rl.envs.latent_filter import FilterEnvConfig, LatentFilterEnv
    from rl.inference import filter_images
    from rl.vae_adapter import latent_model_from_vae

    vae = load_model(args.model_dir)
    latent = latent_model_from_vae(vae, load_clusters(args.model_dir), k=args.knn)
    cfg = FilterEnvConfig(steps=args.rl_steps, block_size=vae.cfg.block_size, overlap=args.overlap)
    clean = sample_test_images().astype(np.float32) / 255.0
    noisy = np.clip(add_noise(clean, parse_noise(args.noise, args.noise_level), args.seed), 0.0, 1.0).astype(np.float32)
    env = LatentFilterEnv(latent, cfg)

    print(f"{len(clean)} sample test crops, {args.noise}({args.noise_level}), model {args.model_dir}")
    print(f"{'policy':<34} {'psnr':>8}")
    print(f"{'noisy input':<34} {batch_psnr(clean, noisy).mean():8.3f}")
    vae_alone = float(batch_psnr(clean, filter_images(noisy, None, latent, cfg)).mean())
    print(f"{'VAE alone (a = 0)':<34} {vae_alone:8.3f}")
    for g in args.gates:
        out = filter_images(noisy, ConstantGates(g, env.action_dim), latent, cfg)
        print(f"{f'a = {g} on every patch, {cfg.steps} steps':<34} {batch_psnr(clean, out).mean():8.3f}")
    for g in args.gates:
        psnr, frac = oracle_psnr(env, noisy, clean, g)
        print(f"{f'oracle per patch over {{0, {g}}}':<34} {psnr:8.3f}   ({frac:.1%} of patches improved, "
              f"headroom {psnr - vae_alone:+.3f} dB)")


if __name__ == "__main__":
    sys.exit(run_cli(main))
