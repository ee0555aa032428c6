"""What can a policy learn from the agent's state? A supervised bound, feature set by feature set.

The oracle (bench/agent_headroom.py) bounds any policy, even one that sees the clean image.
This bench bounds a policy that sees only the state: an MLP (the actor's size) maps the
state of every patch to a one-step action of the family, and is trained by gradient descent
*through the decoder* against the clean training patches (the reward made differentiable,
which SAC does not have). Its PSNR on held-out images is about the most a state-to-action
policy of that size can generalise to; comparing feature sets shows which part of the state
carries information (here: whether the neighbours' latents, or the seam disagreement with
each neighbour, add anything over the patch's own latent and noise estimate; "own+pixels" adds
the noisy patch's pixels, which the agent's state does not hold).

    python bench/agent_state.py --run_dir runs/faces --train_dir ../shared/data/celeba_hq/train \
        --clean_dir ../shared/data/celeba_hq/val --iterations 600
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.agent_headroom import load_images, run_env_config  # noqa: E402
from data.color import from_model_space, to_model_space  # noqa: E402
from data.errors import run_cli  # noqa: E402
from data.noise import add_noise, parse_noise  # noqa: E402
from data.patches import PatchGrid, merge_patches, split_patches  # noqa: E402
from evaluation import batch_psnr  # noqa: E402
from models.io import load_clusters, load_model  # noqa: E402
from rl.envs.latent_filter import FilterEnvConfig, apply_action, neighbour_latents, noise_estimate  # noqa: E402
from rl.vae_adapter import latent_model_from_vae  # noqa: E402

FEATURES = ("own", "neighbours", "neighbours+seams", "own+pixels")


def seam_features(patches: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(P, b, b, S) -> (P, 4 * S): mean squared disagreement with the up/down/left/right neighbour
    over the shared pixels, per channel (0 at the border)."""
    b, o = grid.block, grid.overlap
    n = patches.shape[0] // grid.patches_per_image
    p = patches.reshape(n, grid.n_rows, grid.n_cols, b, b, -1)
    out = np.zeros((n, grid.n_rows, grid.n_cols, 4, p.shape[-1]), np.float32)
    vert = np.mean((p[:, :-1, :, b - o:] - p[:, 1:, :, :o]) ** 2, axis=(3, 4))
    horiz = np.mean((p[:, :, :-1, :, b - o:] - p[:, :, 1:, :, :o]) ** 2, axis=(3, 4))
    out[:, 1:, :, 0], out[:, :-1, :, 1], out[:, :, 1:, 2], out[:, :, :-1, 3] = vert, vert, horiz, horiz
    return out.reshape(n * grid.patches_per_image, -1)


class Split:
    """One image set through the VAE: patches, t_0, targets and the state features."""

    def __init__(self, latent, cfg: FilterEnvConfig, clean_u8: np.ndarray, noise, seed_offset: int) -> None:
        self.clean = clean_u8.astype(np.float32) / 255.0
        noisy = np.stack([add_noise(c, noise, seed_offset + i) for i, c in enumerate(clean_u8)])
        patches, self.grid = split_patches(to_model_space(noisy), cfg.block_size, cfg.overlap)
        self.targets, _ = split_patches(to_model_space(self.clean), cfg.block_size, cfg.overlap)
        self.t0 = latent.transform(latent.encode(patches))
        p = len(self.t0)
        self.parts = {
            "own": np.concatenate([self.t0.reshape(p, -1), noise_estimate(patches)], 1),
            "neighbours": neighbour_latents(self.t0, self.grid).reshape(p, -1),
            "seams": seam_features(latent.decode(self.t0), self.grid),
            "pixels": patches.reshape(p, -1),  # the noisy patch itself (not in the agent's state)
        }

    def features(self, kind: str) -> np.ndarray:
        names = {"own": ["own"], "neighbours": ["own", "neighbours"], "neighbours+seams": ["own", "neighbours", "seams"],
                 "own+pixels": ["own", "pixels"]}
        return np.concatenate([self.parts[n] for n in names[kind]], 1).astype(np.float32)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run_dir", type=Path, required=True, help="a run's --out_dir (its round-0 VAE and settings)")
    p.add_argument("--train_dir", type=Path, required=True, help="clean training images")
    p.add_argument("--clean_dir", type=Path, default=None, help="clean held-out images (default: the sample's test crops)")
    p.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--batch", type=int, default=512, help="patches per step")
    p.add_argument("--noise", default="gaussian_var")
    p.add_argument("--noise_level", default="0.02")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    vae_dir = args.run_dir / "model" / "round0" / "vae"
    cfg = run_env_config(args.run_dir)
    vae = load_model(vae_dir)
    latent = latent_model_from_vae(vae, load_clusters(vae_dir))
    noise = parse_noise(args.noise, args.noise_level)
    train = Split(latent, cfg, load_images(args.train_dir, None)[1], noise, seed_offset=1000)
    test = Split(latent, cfg, load_images(args.clean_dir, None)[1], noise, seed_offset=0)

    def psnr(split: Split, latents: np.ndarray) -> float:
        images = from_model_space(merge_patches(latent.decode(latents), split.grid))
        return float(batch_psnr(split.clean, images).mean())

    print(f"one-step {cfg.action} action, beta {cfg.action_scale}; policy MLP 256-256 trained through the decoder, "
          f"{args.iterations} Adam steps of {args.batch} patches; {len(train.clean)} training, {len(test.clean)} held-out images")
    print(f"VAE alone: held-out {psnr(test, test.t0):.3f}")
    one_step = FilterEnvConfig(action=cfg.action, action_scale=cfg.action_scale, steps=1)
    for kind in args.features:
        keras.utils.set_random_seed(args.seed)
        x_train, x_test = train.features(kind), test.features(kind)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        policy = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dense(256, "relu"),
                                   keras.layers.Dense(256, "relu"),
                                   keras.layers.Dense(train.t0[0].size, "tanh", kernel_initializer="zeros")])
        optimizer = keras.optimizers.Adam(1e-3)
        t0, targets, states = tf.constant(train.t0), tf.constant(train.targets), tf.constant(x_train)

        @tf.function
        def step(idx):
            with tf.GradientTape() as tape:
                moved = apply_action(tf.gather(t0, idx), policy(tf.gather(states, idx)), one_step, latent.latent_scale)
                loss = tf.reduce_mean(tf.square(vae.decode(moved) - tf.gather(targets, idx)))
            optimizer.apply_gradients(zip(tape.gradient(loss, policy.trainable_variables), policy.trainable_variables))

        rng = np.random.default_rng(args.seed)
        started = time.perf_counter()
        for _ in range(args.iterations):
            step(tf.constant(rng.integers(0, len(x_train), args.batch)))
        moved = apply_action(test.t0, policy(x_test), one_step, latent.latent_scale).numpy()
        print(f"state = {kind:18} ({x_train.shape[1]:5d} features): held-out {psnr(test, moved):.3f} "
              f"[{time.perf_counter() - started:.0f} s]", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
