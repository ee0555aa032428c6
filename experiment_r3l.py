#!/usr/bin/env python
"""R3L (PPO residual recovery) and the R3N baseline: train on grey crops, test on a folder.

With no paths it trains and tests on grey crops of scikit-image's bundled photos, at the
CPU settings (batch 8 x 32x32, 4 PPO passes, mixed bfloat16): a cloning warm start
(--warm_start oracle, 200 episodes), then 10 PPO episodes. `--paper` gives the authors'
settings (batch 32 x 70x70, 15 passes, 30,000 episodes, no warm start, float32): a GPU
budget. The BSD68 table (docs/r3l.md):
  python experiment_r3l.py --method r3l --train_dir ../shared/data/train/Train400 \
      --test_dir ../shared/data/test/BSD68 --init_dncnn ../shared/data/weights/dncnn/dncnn_gray_sigma25.mat \
      --warm_start dncnn --max_train_cpu_minutes 60 --out_dir runs/r3l
Output in --out_dir: results.json, images/sigma<s>/<name>.png, checkpoints/ (--resume),
tensorboard/, figures/learning_curve.png, warm_start_weights.npz.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from data.errors import DataError, run_cli
from models.r3l_net import POLICY_INITS, PRECISIONS
from rl.r3l import METHODS, WARM_STARTS, R3LRunConfig

log = logging.getLogger("rse_rl.r3l")


PAPER_SETTINGS = {  # the authors' PPO_batch.py: a GPU budget (about 85 CPU-seconds per episode here)
    "batch_size": 32, "crop": 70, "update_passes": 15, "episodes": 30000, "warm_start": "none",
    "precision": "float32", "policy_init": "he", "eval_every": 500, "save_every": 100,
}
SMOKE_SETTINGS = {"batch_size": 8, "crop": 24, "update_passes": 2, "episodes": 3, "warm_start_episodes": 120,
                  "eval_every": 10, "save_every": 2}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", choices=METHODS, default="r3l")
    p.add_argument("--paper", action="store_true",
                   help="the authors' settings (batch 32 x 70x70, 15 passes, 30,000 episodes, no warm start, "
                        "float32): a GPU budget; later flags still override")
    p.add_argument("--verbose", action="store_true", help="debug logs and TensorFlow's C++ start-up lines")
    p.add_argument("--train_dir", default=None, help="folder of training images (grey or colour, read as grey)")
    p.add_argument("--test_dir", default=None, help="folder of test images")
    p.add_argument("--sigma", type=float, default=25.0, help="training noise std (0..255 units)")
    p.add_argument("--test_sigmas", type=float, nargs="+", default=[15.0, 25.0, 35.0])
    p.add_argument("--episodes", type=int, default=10, help="episodes after the warm start (R3L: PPO; R3N: MSE steps)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--steps", type=int, default=6, help="actions per episode")
    p.add_argument("--update_passes", type=int, default=4, help="PPO passes per rollout (authors: 15)")
    p.add_argument("--minibatches", type=int, default=1, help="PPO minibatches per pass")
    p.add_argument("--clip", type=float, default=0.5)
    p.add_argument("--gamma", type=float, default=0.95)
    p.add_argument("--gae_lambda", type=float, default=1.0)
    p.add_argument("--entropy_coef", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-4,
                   help="PPO (R3N: MSE) Adam learning rate, polynomial decay (power 0.9) to 0 (authors: 1e-3)")
    p.add_argument("--warm_start", choices=WARM_STARTS, default="oracle",
                   help="before PPO, clone the residual toward the clean crop (oracle) or toward DnCNN's "
                        "estimate (dncnn, needs --init_dncnn); R3N gets the same start")
    p.add_argument("--warm_start_episodes", type=int, default=200)
    p.add_argument("--warm_start_lr", type=float, default=1e-3,
                   help="Adam learning rate of R3L's warm start (R3N's MSE warm start runs at --lr)")
    p.add_argument("--warm_start_decay", action="store_true",
                   help="decay the warm start's rate to 0 over --warm_start_episodes (polynomial, power 0.9) "
                        "instead of keeping it constant")
    p.add_argument("--init_dncnn", default=None,
                   help="DnCNN MatConvNet .mat: initialises the dilated layers (as the authors) and is the "
                        "teacher of --warm_start dncnn")
    p.add_argument("--precision", choices=PRECISIONS, default="mixed_bfloat16",
                   help="hidden layers in bfloat16 (float32 variables and outputs) or all float32")
    p.add_argument("--policy_init", choices=POLICY_INITS, default="noop",
                   help="last policy layer: start at the no-op residual, or He normal (authors)")
    p.add_argument("--strategy", default="default", choices=("auto", "default", "mirrored", "multiworker"),
                   help="tf.distribute strategy, as for the VAE (utils.get_strategy)")
    p.add_argument("--eval_every", type=int, default=25, help="learning-curve point every N episodes")
    p.add_argument("--max_train_minutes", type=float, default=None, help="stop training after this wall time (then test)")
    p.add_argument("--max_train_cpu_minutes", type=float, default=None,
                   help="stop training after this much process CPU time, warm start included (then test)")
    p.add_argument("--save_every", type=int, default=100, help="checkpoint every N episodes")
    p.add_argument("--out_dir", default="runs/r3l")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out_dir")
    p.add_argument("--smoke", action="store_true", help="tiny fast run (checks the whole path)")
    p.add_argument("--test_limit", type=int, default=None, help="test on the first N images (by file name) only")
    p.add_argument("--test_skip", type=int, default=0, help="skip the first N test images (noise seeds keep their index)")
    p.add_argument("--no_images", action="store_true", help="do not write denoised images")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    presets, _ = p.parse_known_args(argv)
    if presets.paper:
        p.set_defaults(**PAPER_SETTINGS)
    if presets.smoke:
        p.set_defaults(**SMOKE_SETTINGS)
    args = p.parse_args(argv)
    for flag in ("episodes", "warm_start_episodes", "batch_size", "crop", "steps", "update_passes", "minibatches",
                 "save_every", "eval_every"):
        value = getattr(args, flag)
        if value < (0 if flag in ("episodes", "warm_start_episodes") else 1):
            raise DataError(f"--{flag}: must be positive, got {value}")
    if args.crop < 8:
        raise DataError(f"--crop: must be at least 8, got {args.crop}")
    if args.sigma < 0 or any(s <= 0 for s in args.test_sigmas):
        raise DataError(f"--sigma/--test_sigmas: noise levels must be positive, got {args.sigma} / {args.test_sigmas}")
    if not 0 < args.clip < 1:
        raise DataError(f"--clip: must be in (0, 1), got {args.clip}")
    if args.warm_start == "dncnn" and not args.init_dncnn:
        raise DataError("--warm_start dncnn needs --init_dncnn PATH (the DnCNN-25 .mat whose estimates are cloned)")
    if args.init_dncnn and not Path(args.init_dncnn).is_file():
        raise DataError(f"--init_dncnn: {args.init_dncnn}: no such file")
    return args


def run_config(args) -> R3LRunConfig:
    """The run's config, built once from the flags."""
    from rl.ppo import PPOConfig

    ppo = PPOConfig(clip=args.clip, gamma=args.gamma, gae_lambda=args.gae_lambda, update_passes=args.update_passes,
                    minibatches=args.minibatches, learning_rate=args.lr, total_episodes=max(1, args.episodes),
                    entropy_coef=args.entropy_coef, clone_learning_rate=args.warm_start_lr,
                    clone_decay_episodes=args.warm_start_episodes if args.warm_start_decay else 0)
    return R3LRunConfig(
        method=args.method, sigma=args.sigma, episodes=args.episodes, warm_start=args.warm_start,
        warm_start_episodes=args.warm_start_episodes, init_dncnn=args.init_dncnn, batch_size=args.batch_size,
        crop=args.crop, steps=args.steps, precision=args.precision, policy_init=args.policy_init, ppo=ppo, seed=args.seed,
        eval_every=args.eval_every, save_every=args.save_every, max_train_minutes=args.max_train_minutes,
        max_train_cpu_minutes=args.max_train_cpu_minutes)


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


# -- testing ---------------------------------------------------------------------------
def evaluate(args, denoisers: dict, test_images, names, out_dir: Path) -> tuple[list[dict], list[dict]]:
    """Score each denoiser (label -> function) on the same noisy test images; rows and the table.

    Images are written for the first denoiser (the method) only.
    """
    from tqdm import tqdm

    from data.images import to_uint8, write_image
    from data.noise import add_noise, parse_noise
    from evaluation import psnr, ssim

    rows, table = [], []
    for sigma in args.test_sigmas:
        cfg = parse_noise("sigma", sigma)
        per = []
        for i, (clean, name) in enumerate(tqdm(list(zip(test_images, names)), desc=f"test sigma {sigma:g}",
                                                mininterval=10, file=sys.stderr)):
            noisy = add_noise(clean, cfg, (args.seed, int(round(sigma * 1000)), i + args.test_skip))  # float, not quantised
            row = {"image": name, "sigma": sigma, "psnr_noisy": psnr(clean, noisy), "ssim_noisy": ssim(clean, noisy)}
            for j, (label, denoise) in enumerate(denoisers.items()):
                out = to_uint8(denoise(noisy[None]).numpy()[0])
                row[f"psnr_{label}"], row[f"ssim_{label}"] = psnr(clean, out), ssim(clean, out)
                if j == 0 and not args.no_images:
                    write_image(out_dir / "images" / f"sigma{sigma:g}" / f"{name}.png", out)
            per.append(row)
        rows += per
        mean = lambda k: float(np.mean([r[k] for r in per]))
        line = {"test sigma": f"{sigma:g}", "noisy PSNR": mean("psnr_noisy"), "noisy SSIM": mean("ssim_noisy")}
        for label in denoisers:
            line[f"{label} PSNR"], line[f"{label} SSIM"] = mean(f"psnr_{label}"), mean(f"ssim_{label}")
        table.append(line)
    return rows, table


def run(args) -> dict:
    import tensorflow as tf

    from evaluation import format_table
    from rl.r3l import R3LRun, batch_psnr, validation_set, write_learning_curve
    from utils import atomic_write_json, get_strategy, set_seeds

    set_seeds(args.seed)
    cfg = run_config(args)
    out_dir = Path(args.out_dir)
    train_images, _ = load_images(args.train_dir, "train", "--train_dir")
    test_images, names = load_images(args.test_dir, "test", "--test_dir")
    if args.test_skip < 0 or args.test_skip >= len(test_images):
        raise DataError(f"--test_skip: {args.test_skip} is not below the {len(test_images)} test images")
    val_images = test_images[:3]  # the learning curve's fixed validation crops (before --test_skip/--test_limit)
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

    try:
        strategy = get_strategy(args.strategy)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    run_ = R3LRun(cfg, channels, strategy)
    if run_.dncnn_layers:
        log.info("initialised %s from DnCNN convs %s", ", ".join(run_.dncnn_layers), sorted(set(run_.dncnn_layers.values())))
    manager = tf.train.CheckpointManager(run_.checkpoint, str(out_dir / "checkpoints"), max_to_keep=2)
    if args.resume:
        if manager.latest_checkpoint:
            run_.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("resumed from %s at episode %d", manager.latest_checkpoint, int(run_.episode.numpy()))
        else:
            log.warning("--resume: no checkpoint in %s, starting from scratch", out_dir / "checkpoints")
    validation = validation_set(val_images, args.sigma, args.seed, size=64 if args.smoke else 128)
    training = run_.train(train_images, out_dir, validation, manager)
    noisy_val = batch_psnr(validation[1], validation[0])
    write_learning_curve(out_dir / "figures" / "learning_curve.png", training["curve"], args.method, noisy_val)

    label = args.method.upper()
    denoisers = {label: run_.denoiser()}
    warm = run_.warm_start_denoiser() if cfg.warm_episodes and args.episodes else None
    if warm is not None:
        denoisers["warm start alone"] = warm
    t0 = time.time()
    rows, table = evaluate(args, denoisers, test_images, names, out_dir)
    title = (f"{label} on {args.test_dir or 'scikit-image sample'} (grey), trained at sigma {args.sigma:g}: "
             f"{cfg.warm_episodes} warm-start ({cfg.warm_start}) + {args.episodes} episodes, "
             f"{training['episodes_done']} done")
    print(format_table(table, title=title))
    results = {"config": dict(vars(args)), "training": training, "test_seconds": time.time() - t0, "table": table,
               "images": rows}
    atomic_write_json(out_dir / "results.json", results)
    return results


def main(argv=None) -> int:
    from utils import quiet_tensorflow_startup, setup_logging

    def start():  # bad flags, like bad data, are one line and exit 2 (run_cli)
        args = parse_args(argv)
        quiet_tensorflow_startup(args.verbose)  # TensorFlow is imported lazily, after the flags
        setup_logging(args.verbose)
        return run(args)

    return run_cli(start)


if __name__ == "__main__":
    sys.exit(main())
