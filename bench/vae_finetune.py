"""Can fine-tuning on the embedded sample improve the authors' released VAEs? (docs/vae.md)

Scores the shipped authors' VAEs alone on the sample's three test crops (gaussian_var 0.02, the
CelebA-setting default's test set and noise), then, for each variant, fine-tunes a copy with the
project's training loss on the sample's training crops and scores it again. A variant is a
comma-separated list of key=value: lr (Adam rate, default 2e-4), ep (epochs, default 1),
freeze (VAEConfig.freeze_batch_norm; default: the released config's, 1: BatchNorm in inference
mode at the released statistics, as the authors trained; 0: training-mode BatchNorm), and any
VAEConfig training field (sample_std, lambda_latent, bn_momentum, ...).

    python bench/vae_finetune.py "lr=2e-5" "lr=2e-4,sample_std=0" "lr=2e-4,sample_std=0,freeze=1"

On the paper's domain instead: `--train_dir` a folder of CelebA-schema TFRecords (e.g. the
faces_tfrecords that `bench/quality.py --tasks faces` writes) and `--test_faces` a folder of
faces, noised with the shared README's protocol (seed i for the i-th face, as bench/quality.py):

    python bench/vae_finetune.py --train_dir runs/quality_faces/faces_var0.02_scratch/faces_tfrecords \
        --test_faces ../shared/data/celeba_hq/val "lr=2e-4,sample_std=0,freeze=1,ep=3"
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data.errors import ConfigError, run_cli  # noqa: E402
from data.images import to_uint8  # noqa: E402
from data.noise import parse_noise  # noqa: E402
from data.pairs import tfrecord_test_set, tfrecord_train_pairs  # noqa: E402
from data.sample import ensure_sample  # noqa: E402
from evaluation import psnr  # noqa: E402
from models.io import load_model  # noqa: E402
from models.training import TrainConfig, train_vae  # noqa: E402
from models.vae import TRAINING_FIELDS, build_vae, denoise_image  # noqa: E402
from utils import set_seeds  # noqa: E402


def parse_variant(spec: str) -> tuple[float, int, dict]:
    fields = dict(item.split("=", 1) for item in spec.split(",") if item)
    lr, epochs = float(fields.pop("lr", 2e-4)), int(fields.pop("ep", 1))
    overrides = {"freeze_batch_norm": fields.pop("freeze") == "1"} if "freeze" in fields else {}
    unknown = set(fields) - set(TRAINING_FIELDS)
    if unknown:
        raise ConfigError(f"variant {spec!r}: unknown keys {sorted(unknown)} (lr, ep, freeze, {', '.join(TRAINING_FIELDS)})")
    return lr, epochs, {**overrides, **{k: float(v) for k, v in fields.items()}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", default=["lr=2e-4"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train_dir", default=None, help="TFRecord folder to fine-tune on (default: the embedded sample's)")
    p.add_argument("--test_faces", default=None, help="folder of faces to score on (default: the sample's test crops)")
    args = p.parse_args(argv)
    variants = [(spec, *parse_variant(spec)) for spec in args.variants]

    noise = parse_noise("gaussian_var", 0.02)
    paths = ensure_sample() if args.train_dir is None or args.test_faces is None else None
    train_dir = args.train_dir or paths.train_dir
    if args.test_faces:
        from bench.quality import faces_test_set
        test = faces_test_set(args.test_faces, noise)
    else:
        test = tfrecord_test_set(paths.test_dir, noise, args.seed)

    def score(model) -> float:
        return float(np.mean([psnr(pair.clean, to_uint8(denoise_image(model, pair.noisy))) for pair in test.open()]))

    released = load_model("authors")
    print(f"authors' VAEs alone on {test.description}: {score(released):.3f} dB", flush=True)
    for spec, lr, epochs, overrides in variants:
        set_seeds(args.seed)
        model = build_vae(dataclasses.replace(released.cfg, **overrides))
        model(tf.zeros([1, model.cfg.block_size, model.cfg.block_size, model.cfg.num_subspaces]))
        model.set_weights(released.get_weights())
        pairs = tfrecord_train_pairs(train_dir, noise, args.seed).batch(8)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            train_vae(model, pairs, TrainConfig(epochs=epochs, learning_rate=lr, seed=args.seed, progress=False), work)
        print(f"fine-tuned {spec}: {score(model):.3f} dB ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
