"""How much can the agent gain at all, and how much of it did the trained agent take?

For a saved run (or a saved VAE with its clusters) this prints, on a folder of clean images
(or the embedded sample's test crops) with seeded synthetic noise: the noisy input, the VAE
alone, the run's trained agent, and for each action family the ground-truth oracle of a
whole episode of that family (`rl.oracle`: per patch, the reachable latent optimised against
the clean patch). The oracle's gain over the VAE alone is the family's headroom; the agent's
gain over the VAE alone, divided by its family's headroom, is the fraction it closed.

Noise: image i (sorted by name) gets `data.noise.add_noise(clean, noise, seed=i)`, i.e. for
gaussian_var `skimage.util.random_noise(img, var=v, rng=i)` cast to uint8: the protocol of the
reference figures on CelebA-HQ val in shared/data/README.md.

    python bench/agent_headroom.py --run_dir runs/faces --clean_dir ../shared/data/celeba_hq/val
    python bench/agent_headroom.py --model_dir runs/celeba/model/round0/vae --actions gain residual knn
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from data.color import from_model_space, to_model_space  # noqa: E402
from data.errors import DataError, run_cli  # noqa: E402
from data.folders import list_images  # noqa: E402
from data.images import read_image  # noqa: E402
from data.noise import add_noise, parse_noise  # noqa: E402
from data.patches import merge_patches, split_patches  # noqa: E402
from data.sample import sample_test_images  # noqa: E402
from evaluation import batch_psnr  # noqa: E402
from models.io import load_clusters, load_model  # noqa: E402
from pipeline.trained import read_run_record  # noqa: E402
from rl.envs.latent_filter import ACTIONS, FilterEnvConfig  # noqa: E402
from rl.inference import filter_images  # noqa: E402
from rl.oracle import oracle_latents  # noqa: E402
from rl.sac import SACAgent  # noqa: E402
from rl.vae_adapter import latent_model_from_vae  # noqa: E402


def run_env_config(run_dir: Path) -> FilterEnvConfig:
    """The filtering settings a run trained its agents with (its state.json)."""
    return read_run_record(run_dir)[2]


def load_images(clean_dir: Path | None, max_images: int | None) -> tuple[list[str], np.ndarray]:
    if clean_dir is None:
        clean = sample_test_images()[:max_images]
        return [f"sample{i}" for i in range(len(clean))], clean
    files = list_images(clean_dir)[:max_images]
    if not files:
        raise DataError(f"--clean_dir {clean_dir}: no images")
    images = [read_image(f, colour=True) for f in files]
    if len({im.shape for im in images}) != 1:
        raise DataError(f"--clean_dir {clean_dir}: images differ in size; this bench needs one size")
    return [f.name for f in files], np.stack(images)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run_dir", type=Path, help="a run's --out_dir: its VAE, clusters, agent and settings")
    src.add_argument("--model_dir", type=Path, help="a saved VAE folder with its clusters (no agent)")
    p.add_argument("--round", type=int, default=0, help="which round of --run_dir")
    p.add_argument("--clean_dir", type=Path, default=None, help="clean images (default: the embedded sample's test crops)")
    p.add_argument("--max_images", type=int, default=None)
    p.add_argument("--noise", default="gaussian_var")
    p.add_argument("--noise_level", default="0.02")
    p.add_argument("--actions", nargs="+", default=None, choices=ACTIONS,
                   help="families whose oracle to compute (default: the run's own, or all three)")
    p.add_argument("--steps", type=int, default=None, help="episode steps (default: the run's, or 3)")
    p.add_argument("--action_scale", type=float, default=None, help="beta (default: the run's, or 0.1)")
    p.add_argument("--knn", type=int, default=8)
    p.add_argument("--iterations", type=int, default=100, help="Adam steps of the per-patch oracle search")
    args = p.parse_args(argv)

    if args.run_dir is not None:
        vae_dir = args.run_dir / "model" / f"round{args.round}" / "vae"
        env_cfg = run_env_config(args.run_dir)
    else:
        vae_dir, env_cfg = args.model_dir, FilterEnvConfig()
    overrides = {k: v for k, v in (("steps", args.steps), ("action_scale", args.action_scale)) if v is not None}
    env_cfg = dataclasses.replace(env_cfg, **overrides)
    vae = load_model(vae_dir)
    clusters = load_clusters(vae_dir)
    latent = latent_model_from_vae(vae, clusters, k=args.knn)
    agent_dir = vae_dir.parent / "agent"
    agent = SACAgent.load(agent_dir) if args.run_dir is not None and agent_dir.is_dir() else None
    families = args.actions or ([env_cfg.action] if agent is not None else list(ACTIONS))

    names, clean_u8 = load_images(args.clean_dir, args.max_images)
    noise = parse_noise(args.noise, args.noise_level)
    clean = clean_u8.astype(np.float32) / 255.0
    noisy = np.stack([add_noise(c, noise, i) for i, c in enumerate(clean_u8)])
    source = args.clean_dir or "the embedded sample's test crops"
    print(f"{len(names)} images of {source}, {noise.describe()} noise (image i: seed i); model {vae_dir}")
    print(f"episode: {env_cfg.steps} steps, beta {env_cfg.action_scale}; oracle: {args.iterations} Adam steps per patch")

    def psnr(images: np.ndarray) -> float:
        return float(batch_psnr(clean, images).mean())

    vae_alone = psnr(filter_images(noisy, None, latent, env_cfg))
    rows = [("noisy input", psnr(noisy), None), ("VAE alone (a = 0)", vae_alone, None)]
    agent_gain = None
    if agent is not None:
        agent_psnr = psnr(filter_images(noisy, agent, latent, env_cfg))
        agent_gain = agent_psnr - vae_alone
        rows.append((f"trained agent ({env_cfg.action}, round {args.round})", agent_psnr, None))
    patches, grid = split_patches(to_model_space(noisy), env_cfg.block_size, env_cfg.overlap)
    targets, _ = split_patches(to_model_space(clean), env_cfg.block_size, env_cfg.overlap)
    t0 = latent.transform(latent.encode(patches))
    for action in families:
        cfg = dataclasses.replace(env_cfg, action=action)
        started = time.perf_counter()
        mean = np.asarray(latent.knn(t0).mean) if action == "knn" else None
        best = oracle_latents(vae.decode, t0, targets, cfg, latent.latent_scale, mean, iterations=args.iterations)
        oracle = psnr(from_model_space(merge_patches(latent.decode(best), grid)))
        headroom = oracle - vae_alone
        closed = (agent_gain / headroom) if agent_gain is not None and action == env_cfg.action and headroom > 0 else None
        rows.append((f"oracle: {action} ({time.perf_counter() - started:.0f} s)", oracle, closed))
    print(f"{'':44} {'psnr':>8} {'vs VAE':>8} {'closed':>8}")
    for name, value, closed in rows:
        print(f"{name:44} {value:8.3f} {value - vae_alone:+8.3f} {'' if closed is None else f'{closed:8.1%}'}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
