"""What BatchNorm recalibration does to a trained VAE: the same weights, moving averages vs recalibrated.

Loads a saved VAE (config.json + vae.weights.h5), scores the VAE alone on a test set of
TFRecords with the given noise (the pipeline's test noise: seed, image index), then sets the
encoders' BatchNorm statistics to their mean over the training TFRecords' patch batches
(`models.training.recalibrate_batch_norm`, what `train_vae` now ends with) and scores again.
The weights do not change, so a model saved before the recalibration existed shows here what
training with it would have given. docs/vae.md and the README quote its figures.

    python bench/bn_recalibration.py --model_dir runs/faces_s0/model/round0/vae \\
        --train_dir faces/train --test_dir faces/val --noise gaussian_var --seed 0
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from data.errors import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a saved VAE (config.json + vae.weights.h5)")
    p.add_argument("--train_dir", required=True, help="training TFRecords (clean images; noise added as in training)")
    p.add_argument("--test_dir", required=True, help="test TFRecords")
    p.add_argument("--noise", default="gaussian_var")
    p.add_argument("--noise_level", default=None)
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (its noise draws)")
    p.add_argument("--batches", type=int, default=200, help="patch batches the statistics are averaged over")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--test_limit", type=int, default=None)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from data.noise import parse_noise
    from data.pairs import tfrecord_test_set, tfrecord_train_pairs
    from evaluation import psnr
    from models.io import load_model
    from models.training import TrainConfig, calibration_stream, recalibrate_batch_norm
    from models.vae import denoise_image

    noise = parse_noise(args.noise, args.noise_level)
    model = load_model(args.model_dir)
    tests = list(tfrecord_test_set(args.test_dir, noise, args.seed, args.test_limit).open())

    def score() -> float:
        return float(np.mean([psnr(p.clean, denoise_image(model, p.noisy)) for p in tests]))

    noisy = float(np.mean([psnr(p.clean, p.noisy) for p in tests]))
    before = score()
    images = tfrecord_train_pairs(args.train_dir, noise, args.seed, shuffle_buffer=0).batch(8)
    stream = calibration_stream(images, model, TrainConfig(seed=args.seed, batch_size=args.batch_size))
    used = recalibrate_batch_norm(model, stream, args.batches)
    print(f"{args.model_dir} on {len(tests)} test images ({noise.describe()}): noisy {noisy:.2f} dB, "
          f"VAE with its moving averages {before:.2f} dB, recalibrated over {used} batches {score():.2f} dB")


def main(argv=None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
