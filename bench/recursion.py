"""Why a recursion round can lose, and what it should fine-tune on: the diagnosis behind the round check.

For a run's round-0 VAE (VAE alone, no agent, so the effect of recursion is isolated) it prints,
on held-out clean images with seeded noise:
- round 0 on the noisy images, round 0 applied to its own output (the test-time chain without
  any fine-tuning), and round 0 on the clean images (its reconstruction ceiling);
- for each fine-tuning variant, the round-0 VAE fine-tuned for --epochs on the training faces and
  then applied to round 0's output (what round 1 does at test time) and to the noisy images:
  `outputs` (round 0's outputs -> clean, the pipeline's --finetune_data outputs),
  `mixed` (those plus the noisy pairs, the paper's --finetune_data all), `noisy` (noisy pairs
  only: extra training, no enhanced data), each at the --learning_rates given.

    python bench/recursion.py --run_dir runs/faces --train_dir ../shared/data/celeba_hq/train \
        --clean_dir ../shared/data/celeba_hq/val --epochs 2 --learning_rates 2e-4 2e-3
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.agent_headroom import load_images, run_env_config  # noqa: E402
from data.errors import run_cli  # noqa: E402
from data.noise import add_noise, parse_noise  # noqa: E402
from evaluation import batch_psnr  # noqa: E402
from models.io import load_clusters, load_model  # noqa: E402
from models.training import TrainConfig, train_vae  # noqa: E402
from models.vae import build_vae  # noqa: E402
from rl.inference import filter_images  # noqa: E402
from rl.vae_adapter import latent_model_from_vae  # noqa: E402
from utils import set_seeds  # noqa: E402

VARIANTS = ("outputs", "mixed", "noisy")


def noisy_pairs(clean_u8: np.ndarray, noise, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) in [0, 1]; image i gets seed offset + i."""
    noisy = np.stack([add_noise(c, noise, offset + i) for i, c in enumerate(clean_u8)])
    return clean_u8.astype(np.float32) / 255.0, noisy.astype(np.float32)


def quantised(images: np.ndarray) -> np.ndarray:
    """An enhanced image as the pipeline stores it between rounds (uint8)."""
    return (np.round(np.clip(images, 0, 1) * 255) / 255).astype(np.float32)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run_dir", type=Path, required=True, help="a run's --out_dir (its round-0 VAE and settings)")
    p.add_argument("--train_dir", type=Path, required=True, help="clean training images")
    p.add_argument("--clean_dir", type=Path, default=None, help="clean held-out images (default: the sample's test crops)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs of each variant")
    p.add_argument("--learning_rates", type=float, nargs="+", default=[2e-4], help="fine-tuning learning rates")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--noise", default="gaussian_var")
    p.add_argument("--noise_level", default="0.02")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    vae_dir = args.run_dir / "model" / "round0" / "vae"
    env_cfg = run_env_config(args.run_dir)
    vae, clusters = load_model(vae_dir), load_clusters(vae_dir)
    noise = parse_noise(args.noise, args.noise_level)
    train_clean, train_noisy = noisy_pairs(load_images(args.train_dir, None)[1], noise, 1000)
    names, val_u8 = load_images(args.clean_dir, None)
    val_clean, val_noisy = noisy_pairs(val_u8, noise, 0)

    def psnr(images: np.ndarray) -> float:
        return float(batch_psnr(val_clean, images).mean())

    def vae_alone(model, images: np.ndarray) -> np.ndarray:
        return filter_images(images, None, latent_model_from_vae(model, clusters), env_cfg)

    round0_val = quantised(vae_alone(vae, val_noisy))
    round0_train = quantised(vae_alone(vae, train_noisy))
    print(f"{len(names)} held-out images ({args.clean_dir or 'sample'}), {len(train_clean)} training images, "
          f"{noise.describe()} noise; model {vae_dir}")
    rows = [("noisy input", psnr(val_noisy)), ("round 0 (VAE alone)", psnr(round0_val)),
            ("round 0 applied to its own output", psnr(vae_alone(vae, round0_val))),
            ("round 0 on the clean images (ceiling)", psnr(vae_alone(vae, val_clean)))]
    for name, value in rows:
        print(f"{name:58} {value:8.3f}", flush=True)

    inputs = {"outputs": [round0_train], "mixed": [round0_train, train_noisy], "noisy": [train_noisy]}
    print(f"{'fine-tuned ' + str(args.epochs) + ' epoch(s), then applied to':58} {'round-0 output':>15} {'noisy':>8}")
    for variant in args.variants:
        for lr in args.learning_rates:
            set_seeds(args.seed)
            tuned = build_vae(vae.cfg)
            tuned(tf.zeros([1, vae.cfg.block_size, vae.cfg.block_size, vae.cfg.num_subspaces]))
            tuned.set_weights(vae.get_weights())
            xs = np.concatenate(inputs[variant])
            ys = np.concatenate([train_clean] * len(inputs[variant]))
            data = tf.data.Dataset.from_tensor_slices((xs, ys)).shuffle(len(xs), seed=args.seed).batch(8)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as work:
                train_vae(tuned, data, TrainConfig(epochs=args.epochs, learning_rate=lr, seed=args.seed,
                                                   progress=False), work)
            on_output, on_noisy = psnr(vae_alone(tuned, round0_val)), psnr(vae_alone(tuned, val_noisy))
            label = f"{variant} (lr {lr:g}, {time.perf_counter() - started:.0f} s)"
            print(f"{label:58} {on_output:15.3f} {on_noisy:8.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
