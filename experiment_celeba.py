"""RSE-RL on CelebA-HQ (Glow TFRecords), or on the embedded sample when no paths are given.

    python experiment_celeba.py --file_batch 5 --epoch 50 --latent_dim 72 --target_psnr 30 \
        --train_files_path celeba-tfr/train/ --test_files_path celeba-tfr/validation/

See README.md for every flag; `python experiment_celeba.py --smoke` is a short run.
"""
from __future__ import annotations

import argparse
import sys

from utils import quiet_tensorflow_startup

quiet_tensorflow_startup("--verbose" in sys.argv)  # before anything imports TensorFlow (flags: parsed later)

from data.errors import ConfigError  # noqa: E402
from data.pairs import tfrecord_test_set, tfrecord_train_pairs  # noqa: E402
from data.sample import ensure_sample  # noqa: E402
from pipeline import RunData, add_common_flags, main  # noqa: E402

# sample_init_from: on the embedded sample round 0 uses the released CelebA VAEs as they are (pipeline.config)
DEFAULTS = {"name": "celeba", "epoch": 50, "sample_epoch": 2, "latent_dim": 72, "target_psnr": 30.0, "noise": "gaussian_var",
            "sample_init_from": "authors"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, DEFAULTS)
    parser.add_argument("--cache_dir", default=None, help="where the embedded sample is cached (default ~/.cache/rse_rl)")
    return parser


def validate(args: argparse.Namespace) -> None:
    if (args.train_files_path is None) != (args.test_files_path is None):
        raise ConfigError("give both --train_files_path and --test_files_path, or neither (embedded sample)")
    if args.noise_config.model == "none":
        raise ConfigError("--noise none: CelebA holds clean images only; choose a synthetic noise model")


def build_data(args: argparse.Namespace) -> RunData:
    if args.train_files_path is None:
        paths = ensure_sample(args.cache_dir)
        train_dir, test_dir, name = paths.train_dir, paths.test_dir, "the embedded sample (scikit-image photos)"
    else:
        train_dir, test_dir, name = args.train_files_path, args.test_files_path, f"CelebA-HQ {args.test_files_path}"
    test = tfrecord_test_set(test_dir, args.noise_config, args.seed, args.max_test_images)
    tfrecord_train_pairs(train_dir, args.noise_config, args.seed)  # checks the folder before training

    def train_pairs():
        return tfrecord_train_pairs(train_dir, args.noise_config, args.seed, file_batch=args.file_batch,
                                    shuffle_buffer=256 if args.max_train_images is None else 0)

    return RunData(f"{name}, {args.noise_config.describe()} noise", train_pairs, test)


if __name__ == "__main__":
    sys.exit(main(build_data, build_parser(), DEFAULTS, validate_dataset=validate))
