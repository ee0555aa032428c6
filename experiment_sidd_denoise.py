"""RSE-RL on SIDD (real smartphone noise), or on the embedded sample with synthetic
camera noise (`--noise camera`, fitted to real SIDD pairs) when no training paths are given;
the sample's photos are then upsampled x3 so that their detail per pixel is a phone's.

    python experiment_sidd_denoise.py --file_batch 5 --epoch 25 --latent_dim 96 --target_psnr 34 \
        --train_files_path sidd_noise/ --validation_file_path sidd_ground_truth/ \
        --test_files_path sidd_test_noise/ --test_validation_files_path sidd_test_GT/

Training: noisy (--train_files_path) and ground-truth (--validation_file_path) folders,
SIDD-Medium scene folders or flat folders, paired by file name. Testing: noisy and
ground-truth folders, or the validation files ValidationNoisyBlocksSrgb.mat and
ValidationGtBlocksSrgb.mat (all 1280 blocks scored at their true size).
--benchmark_mat BenchmarkNoisyBlocksSrgb.mat also writes SubmitSrgb.mat for the SIDD site.
Training images smaller than --crop are used whole (mirror-padded to the crop); test
images are scored at their true size. Test paths without training paths: train on the
embedded sample with synthetic noise, test on your real pairs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils import quiet_tensorflow_startup

quiet_tensorflow_startup("--verbose" in sys.argv)  # before anything imports TensorFlow (flags: parsed later)

from data.errors import DataError  # noqa: E402
from pipeline import RunData, add_common_flags, main  # noqa: E402

DEFAULTS = {"name": "sidd", "epoch": 25, "sample_epoch": 2, "latent_dim": 96, "target_psnr": 34.0, "noise": None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, DEFAULTS)
    parser.add_argument("--validation_file_path", default=None, help="ground-truth training images (pairs of --train_files_path)")
    parser.add_argument("--test_validation_files_path", default=None, help="ground-truth test images or ValidationGtBlocksSrgb.mat")
    parser.add_argument("--benchmark_mat", default=None, help="BenchmarkNoisyBlocksSrgb.mat: write the submission file too")
    parser.add_argument("--crop", type=int, default=256, help="training crop size cut from the SIDD images")
    parser.add_argument("--crops_per_image", type=int, default=8)
    parser.add_argument("--cache_dir", default=None, help="where the embedded sample is cached (default ~/.cache/rse_rl)")
    parser.add_argument("--mat_key", default=None,
                        help="array name in the .mat files when it is not SIDD's own (ValidationNoisyBlocksSrgb, ...): "
                             "one name for every .mat file, or NOISY,GT[,BENCHMARK]")
    return parser


def mat_keys(flag: str | None) -> tuple[str | None, str | None, str | None]:
    """--mat_key as (test noisy, test GT, benchmark) keys; None where SIDD's own name is expected."""
    if not flag:
        return (None, None, None)
    keys = [k.strip() for k in flag.split(",")]
    if len(keys) == 1:
        return (keys[0], keys[0], keys[0])
    if len(keys) not in (2, 3) or not all(keys):
        raise DataError(f"--mat_key {flag!r}: give one array name, or NOISY,GT or NOISY,GT,BENCHMARK")
    return (keys[0], keys[1], keys[2] if len(keys) == 3 else None)


def validate(args: argparse.Namespace) -> None:
    train = (args.train_files_path, args.validation_file_path)
    test = (args.test_files_path, args.test_validation_files_path)
    if (None in train) != all(v is None for v in train):
        raise DataError("give both --train_files_path (noisy) and --validation_file_path (ground truth), or neither")
    if (None in test) != all(v is None for v in test):
        raise DataError("give both --test_files_path (noisy) and --test_validation_files_path (ground truth), or neither")
    if train[0] is not None and test[0] is None:
        raise DataError("give the test paths too (--test_files_path, --test_validation_files_path)")
    if train[0] is not None and args.crop < args.block_size:
        raise DataError(f"--crop {args.crop}: smaller than one {args.block_size}x{args.block_size} patch")
    mat_keys(args.mat_key)
    for flag in ("train_files_path", "validation_file_path", "test_files_path", "test_validation_files_path", "benchmark_mat"):
        value = getattr(args, flag)
        if value is not None and not Path(value).exists():
            raise DataError(f"--{flag} {value}: no such file or folder")


def build_data(args: argparse.Namespace) -> RunData:
    from data.noise import parse_noise
    from data.pairs import (folder_test_set, is_mat, mat_test_set, sidd_train_pairs, tfrecord_test_set,
                            tfrecord_train_pairs)
    from data.sample import PHONE_SCALE, ensure_sample

    noisy_key, gt_key, benchmark_key = mat_keys(args.mat_key)
    benchmark = None
    if args.benchmark_mat:
        from data.sidd import load_mat_blocks

        # the validation noisy blocks are accepted too: a dry run of the submission path
        benchmark = load_mat_blocks(args.benchmark_mat, benchmark_key,
                                    expected=("BenchmarkNoisyBlocksSrgb", "ValidationNoisyBlocksSrgb"))
    if args.test_files_path is None:
        test = None
    elif is_mat(args.test_files_path):
        test = mat_test_set(args.test_files_path, args.test_validation_files_path, args.max_test_images,
                            keys=(noisy_key, gt_key))
    else:  # real noisy test images: never more noise on top, whatever the training noise
        test = folder_test_set(args.test_validation_files_path, parse_noise("none"), args.seed,
                               noisy_dir=args.test_files_path, limit=args.max_test_images, min_size=args.block_size)
    if args.train_files_path is None:
        if args.noise is None:
            args.noise_config = parse_noise("camera", args.noise_level)
        paths = ensure_sample(args.cache_dir, scale=PHONE_SCALE)  # phone-like detail per pixel (data/sample.py)
        tfrecord_train_pairs(paths.train_dir, args.noise_config, args.seed)  # checks the shards before training
        if test is None:
            test = tfrecord_test_set(paths.test_dir, args.noise_config, args.seed, args.max_test_images)

        def sample_pairs():
            return tfrecord_train_pairs(paths.train_dir, args.noise_config, args.seed, file_batch=args.file_batch, shuffle_buffer=0)

        tested_on = "" if args.test_files_path is None else f", tested on {args.test_files_path}"
        return RunData(f"the embedded sample (phone-like, x{PHONE_SCALE}), {args.noise_config.describe()} noise{tested_on}", sample_pairs, test,
                       benchmark_blocks=benchmark)

    if args.noise is None:
        args.noise_config = parse_noise("none")
    sidd_train_pairs(args.train_files_path, args.validation_file_path, args.noise_config, args.seed, crop=args.crop)

    def train_pairs():
        return sidd_train_pairs(args.train_files_path, args.validation_file_path, args.noise_config, args.seed,
                                crop=args.crop, crops_per_image=args.crops_per_image, report_padding=False)

    return RunData(f"SIDD {args.test_files_path}", train_pairs, test, benchmark_blocks=benchmark)


if __name__ == "__main__":
    sys.exit(main(build_data, build_parser(), DEFAULTS, validate_dataset=validate))
