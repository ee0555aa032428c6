#!/usr/bin/env python
"""R3L (PPO residual recovery) and the R3N baseline: train on grey crops, test on a folder.

Example (the README's BSD68 table):
  python experiment_r3l.py --method r3l --train_dir ../shared/data/train/Train400 \
      --test_dir ../shared/data/test/BSD68 --init_dncnn ../shared/data/weights/dncnn/dncnn_gray_sigma25.mat \
      --out_dir runs/r3l
With no paths it trains and tests on grey crops of scikit-image's bundled photos.
Output in --out_dir: results.json, images/sigma<s>/<name>.png, checkpoints/ (--resume).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from data.errors import DataError, run_cli

log = logging.getLogger("rse_rl.r3l")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", choices=("r3l", "r3n"), default="r3l")
    p.add_argument("--verbose", action="store_true", help="debug logs and TensorFlow's C++ start-up lines")
    p.add_argument("--train_dir", default=None, help="folder of training images (grey or colour, read as grey)")
    p.add_argument("--test_dir", default=None, help="folder of test images")
    p.add_argument("--sigma", type=float, default=25.0, help="training noise std (0..255 units)")
    p.add_argument("--test_sigmas", type=float, nargs="+", default=[15.0, 25.0, 35.0])
    p.add_argument("--episodes", type=int, default=30000, help="training episodes (one batch each)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--crop", type=int, default=70)
    p.add_argument("--steps", type=int, default=6, help="actions per episode")
    p.add_argument("--update_passes", type=int, default=15, help="PPO passes per rollout")
    p.add_argument("--minibatches", type=int, default=1, help="PPO minibatches per pass")
    p.add_argument("--clip", type=float, default=0.5)
    p.add_argument("--gamma", type=float, default=0.95)
    p.add_argument("--gae_lambda", type=float, default=1.0)
    p.add_argument("--entropy_coef", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, polynomial decay (power 0.9) to 0")
    p.add_argument("--init_dncnn", default=None, help="DnCNN MatConvNet .mat to initialise the dilated layers")
    p.add_argument("--max_train_minutes", type=float, default=None, help="stop training after this long (then test)")
    p.add_argument("--save_every", type=int, default=100, help="checkpoint every N episodes")
    p.add_argument("--out_dir", default="runs/r3l")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out_dir")
    p.add_argument("--smoke", action="store_true", help="tiny fast run (checks the whole path)")
    p.add_argument("--test_limit", type=int, default=None, help="test on the first N images (by file name) only")
    p.add_argument("--test_skip", type=int, default=0, help="skip the first N test images (noise seeds keep their index)")
    p.add_argument("--no_images", action="store_true", help="do not write denoised images")
    args = p.parse_args(argv)
    if args.smoke:
        args.episodes, args.batch_size, args.crop, args.update_passes = min(args.episodes, 3), 4, 24, 2
        args.save_every = 2
    for flag in ("episodes", "batch_size", "crop", "steps", "update_passes", "minibatches", "save_every"):
        value = getattr(args, flag)
        if value < (0 if flag == "episodes" else 1):
            raise DataError(f"--{flag}: must be positive, got {value}")
    if args.crop < 8:
        raise DataError(f"--crop: must be at least 8, got {args.crop}")
    if args.sigma < 0 or any(s <= 0 for s in args.test_sigmas):
        raise DataError(f"--sigma/--test_sigmas: noise levels must be positive, got {args.sigma} / {args.test_sigmas}")
    if not 0 < args.clip < 1:
        raise DataError(f"--clip: must be in (0, 1), got {args.clip}")
    return args


# -- data ------------------------------------------------------------------------------
def sample_images(split: str) -> tuple[list[np.ndarray], list[str]]:
    """The embedded grey sample (scikit-image photos, data.sample) as a list with names."""
    from data.sample import sample_grey_images

    images = list(sample_grey_images(split))
    return images, [f"sample_{split}_{i:02d}" for i in range(len(images))]


def load_images(directory: str | None, split: str, flag: str) -> tuple[list[np.ndarray], list[str]]:
    """Grey uint8 (H,W,1) images and their names, from a folder or the embedded sample."""
    if directory is None:
        return sample_images(split)
    from data.folders import list_images, load_folder

    if not Path(directory).is_dir():
        raise DataError(f"{flag}: {directory}: no such folder")
    try:
        names = [p.stem for p in list_images(directory)]
        return load_folder(directory, colour=False), names
    except DataError as exc:
        raise DataError(f"{flag}: {exc}") from None


def random_batch(images: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """`batch` random crops (uint8 (B,crop,crop,C)) with a random flip/90-degree rotation each."""
    out = np.empty((batch, crop, crop, images[0].shape[2]), np.uint8)
    for b, i in enumerate(rng.integers(0, len(images), batch)):  # one crop per batch item, not per pixel
        img = images[i]
        y = rng.integers(0, img.shape[0] - crop + 1)
        x = rng.integers(0, img.shape[1] - crop + 1)
        patch = np.rot90(img[y:y + crop, x:x + crop], rng.integers(0, 4))
        out[b] = patch[:, ::-1] if rng.integers(0, 2) else patch
    return out


# -- training --------------------------------------------------------------------------
def build(args, channels: int):
    import tensorflow as tf

    from models.r3l_net import R3LNet, R3LNetConfig, R3NNet

    cfg = R3LNetConfig(channels=channels)
    if args.method == "r3l":
        from rl.envs.residual import ResidualRecoveryEnv
        from rl.ppo import PPO, PPOConfig

        net = R3LNet(cfg).build_for()
        ppo_cfg = PPOConfig(clip=args.clip, gamma=args.gamma, gae_lambda=args.gae_lambda,
                            update_passes=args.update_passes, minibatches=args.minibatches,
                            learning_rate=args.lr, total_episodes=max(1, args.episodes), entropy_coef=args.entropy_coef)
        trainer = PPO(net, ppo_cfg, seed=args.seed)
        env = ResidualRecoveryEnv(steps=args.steps)
        optimizer, extra = trainer.optimizer, {"rng": trainer.rng}
    else:
        net = R3NNet(cfg, steps=args.steps).build_for()
        schedule = tf.keras.optimizers.schedules.PolynomialDecay(args.lr, max(1, args.episodes), 0.0, power=0.9)
        optimizer = tf.keras.optimizers.Adam(schedule)
        trainer, env, extra = None, None, {}
    if args.init_dncnn:
        from models.dncnn_import import init_from_dncnn

        used = init_from_dncnn(net, args.init_dncnn)
        log.info("initialised %s from DnCNN convs %s", ", ".join(used), sorted(set(used.values())))
    optimizer.build(net.trainable_variables)
    return net, optimizer, trainer, env, extra


def make_r3n_step(net, optimizer):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(noisy, clean):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(noisy, training=True) - clean))
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    return step


def make_checkpoint(net, optimizer, **extra):
    """Checkpoint of the network weights (tracked by name: tf.train.Checkpoint does not see
    inside a Keras 3 model), the optimizer, the episode counter and any extra trackables."""
    import tensorflow as tf

    weights = tf.train.Checkpoint(**{v.path.replace("/", "."): v for v in net.weights})
    return tf.train.Checkpoint(weights=weights, optimizer=optimizer, episode=tf.Variable(0, dtype=tf.int64), **extra)


def train(args, train_images, net, optimizer, trainer, env, ckpt, manager, start: int) -> dict:
    from tqdm import tqdm

    from data.noise import add_noise, parse_noise

    noise = parse_noise("sigma", args.sigma)
    r3n_step = make_r3n_step(net, optimizer) if args.method == "r3n" else None
    t0 = time.time()
    episode, history = start, []
    bar = tqdm(range(start, args.episodes), initial=start, total=args.episodes, desc=f"train {args.method}",
               mininterval=10, file=sys.stderr)
    for episode in bar:
        rng = np.random.default_rng([args.seed, episode])  # per-episode stream: resuming reproduces it
        clean_u8 = random_batch(train_images, args.batch_size, args.crop, rng)
        clean = clean_u8.astype(np.float32) / 255.0
        noisy = add_noise(clean_u8, noise, rng)
        if args.method == "r3l":
            stats = trainer.train_episode(env, clean, noisy)
        else:
            stats = {"mse": float(r3n_step(noisy, clean))}
        history.append(stats)
        bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items() if k in ("episode_return", "loss", "mse")})
        ckpt.episode.assign(episode + 1)
        done_minutes = (time.time() - t0) / 60
        out_of_time = args.max_train_minutes is not None and done_minutes >= args.max_train_minutes
        if (episode + 1) % args.save_every == 0 or episode + 1 == args.episodes or out_of_time:
            manager.save(checkpoint_number=episode + 1)
        if out_of_time:
            log.info("stopping after %.1f min (--max_train_minutes) at episode %d", done_minutes, episode + 1)
            break
    bar.close()
    last = history[-50:]
    summary = {k: float(np.mean([h[k] for h in last])) for k in (last[0] if last else {})}
    return {"episodes_run": len(history), "episodes_done": int(ckpt.episode.numpy()),
            "train_seconds": time.time() - t0, "last50_mean": summary}


# -- testing ---------------------------------------------------------------------------
def make_denoiser(args, net, channels: int):
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, None, channels], tf.float32)]
    if args.method == "r3l":
        from rl.envs.residual import greedy_denoise

        return tf.function(lambda x: greedy_denoise(net.policy_logits, x, steps=args.steps), input_signature=spec)
    return tf.function(lambda x: net(x), input_signature=spec)


def evaluate(args, net, test_images, names, out_dir: Path) -> tuple[list[dict], list[dict]]:
    from tqdm import tqdm

    from data.images import to_uint8, write_image
    from data.noise import add_noise, parse_noise
    from evaluation import psnr, ssim

    denoise = make_denoiser(args, net, test_images[0].shape[2])
    label = args.method.upper()
    rows, table = [], []
    for sigma in args.test_sigmas:
        cfg = parse_noise("sigma", sigma)
        per = []
        for i, (clean, name) in enumerate(tqdm(list(zip(test_images, names)), desc=f"test sigma {sigma:g}",
                                                mininterval=10, file=sys.stderr)):
            noisy = add_noise(clean, cfg, (args.seed, int(round(sigma * 1000)), i + args.test_skip))  # float, not quantised
            out = to_uint8(denoise(noisy[None]).numpy()[0])
            row = {"image": name, "sigma": sigma, "psnr_noisy": psnr(clean, noisy), "ssim_noisy": ssim(clean, noisy),
                   "psnr": psnr(clean, out), "ssim": ssim(clean, out)}
            per.append(row)
            if not args.no_images:
                write_image(out_dir / "images" / f"sigma{sigma:g}" / f"{name}.png", out)
        rows += per
        mean = lambda k: float(np.mean([r[k] for r in per]))
        table.append({"test sigma": f"{sigma:g}", "noisy PSNR": mean("psnr_noisy"), "noisy SSIM": mean("ssim_noisy"),
                      f"{label} PSNR": mean("psnr"), f"{label} SSIM": mean("ssim")})
    return rows, table


def run(args) -> dict:
    import tensorflow as tf

    from evaluation import format_table
    from utils import atomic_write_json, set_seeds

    set_seeds(args.seed)
    out_dir = Path(args.out_dir)
    train_images, _ = load_images(args.train_dir, "train", "--train_dir")
    test_images, names = load_images(args.test_dir, "test", "--test_dir")
    if args.test_skip < 0 or args.test_skip >= len(test_images):
        raise DataError(f"--test_skip: {args.test_skip} is not below the {len(test_images)} test images")
    test_images, names = test_images[args.test_skip:], names[args.test_skip:]
    if args.test_limit is not None:
        if args.test_limit < 1:
            raise DataError(f"--test_limit: must be positive, got {args.test_limit}")
        test_images, names = test_images[:args.test_limit], names[:args.test_limit]
    if args.smoke:  # centre crops keep the smoke test quick
        test_images = [im[(im.shape[0] - 64) // 2:][:64, (im.shape[1] - 64) // 2:][:, :64] for im in test_images]
    for img, name in zip(train_images, range(len(train_images))):
        if min(img.shape[:2]) < args.crop:
            raise DataError(f"--crop: {args.crop} is larger than training image {name} ({img.shape[1]}x{img.shape[0]})")
    channels = train_images[0].shape[2]

    net, optimizer, trainer, env, extra = build(args, channels)
    ckpt = make_checkpoint(net, optimizer, **extra)
    manager = tf.train.CheckpointManager(ckpt, str(out_dir / "checkpoints"), max_to_keep=2)
    start = 0
    if args.resume:
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            start = int(ckpt.episode.numpy())
            log.info("resumed from %s at episode %d", manager.latest_checkpoint, start)
        else:
            log.warning("--resume: no checkpoint in %s, starting from scratch", out_dir / "checkpoints")
    training = train(args, train_images, net, optimizer, trainer, env, ckpt, manager, start)
    t0 = time.time()
    rows, table = evaluate(args, net, test_images, names, out_dir)
    title = (f"{args.method.upper()} on {args.test_dir or 'scikit-image sample'} (grey), trained at sigma "
             f"{args.sigma:g} for {training['episodes_done']} episodes")
    text = format_table(table, title=title)
    print(text)
    config = {k: v for k, v in vars(args).items()}
    results = {"config": config, "training": training, "test_seconds": time.time() - t0, "table": table, "images": rows}
    atomic_write_json(out_dir / "results.json", results)
    return results


def main(argv=None) -> int:
    from utils import quiet_tensorflow_startup, setup_logging

    args = parse_args(argv)
    quiet_tensorflow_startup(args.verbose)  # TensorFlow is imported lazily, after the flags
    setup_logging(args.verbose)
    return run_cli(run, args)


if __name__ == "__main__":
    sys.exit(main())
