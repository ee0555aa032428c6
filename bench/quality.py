"""Denoising quality against the peers: RSE-RL trained within a stated CPU budget, one table.

Length (over 400 lines): one command, one table; its blocks (colour, grey, faces, R3L) share
the row format, the noise protocol and the printing, and nothing outside bench/ uses them.

Colour: trained on LIVE1 crops, tested on CBSD68; grey: trained on Train400 crops
(through the pipeline with colour=False, one subspace 'Y'), tested on Set12. Each at the
paper's gaussian_var 0.02 and at sigma 25. Faces (the paper's domain; when
../shared/data/celeba_hq exists, skipped otherwise): trained on its 36 train/ faces (written
as Glow TFRecords, read as experiment_celeba.py reads them), tested on its 10 val/ faces at
gaussian_var 0.02 with the shared README's noise draws (seed i for the i-th face in sorted
order), from scratch and fine-tuned from the authors' weights (--faces_init_from); the
noisy row and the authors' weights through the authors' own reconstruction path are checked
against the README's 17.75 and 28.53 dB (the authors' weights through our pipeline are a
separate row). RSE-RL is trained once per (data, noise) by the
pipeline itself (`pipeline.run` on a `RunData` built from the folders, so training,
evaluation and the classical baselines are exactly the experiment scripts'), next to:
the noisy input, non-local means and TV (scikit-image), BM3D (when the optional `bm3d`
package is installed), the authors' released CelebA weights (colour). Grey also gets the
second agent's block: R3L and R3N (rl.r3l) trained at sigma 25 on Train400 crops, each
within --r3l_minutes of process CPU time including their warm start (default: cloning
DnCNN-25's estimates when its weights are found, as `experiment_r3l.py --warm_start dncnn`),
scored beside the noisy input and BM3D on the first --r3l_test_images of --r3l_test
(BSD68, R3L's test set). The baselines get a blind noise estimate, not the true level.

The CPU budget is set by the pipeline's own flags (--epoch, --max_train_images,
--agent_episodes, --recursions, ...); --smoke is the tiny one. Measured training and test
seconds are printed. Rerunning into the same --out_dir needs --overwrite (or --resume). Example (the README's table):

    python bench/quality.py --epoch 2 --max_train_images 116 --cluster_images 200 --agent_episodes 10 \
        --recursions 0 --max_test_images 2 --r3l_minutes 5 --out_dir runs/quality
    python bench/quality.py --smoke --max_test_images 1 --r3l_minutes 0.2   # the whole path, tiny
    python bench/quality.py --tasks faces --epoch 10 --out_dir runs/quality_faces   # faces, the seed's 10 epochs
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup("--verbose" in sys.argv)

import numpy as np  # noqa: E402

from data.errors import DataError, run_cli  # noqa: E402
from pipeline import RunData, add_common_flags, build_run_config  # noqa: E402
from pipeline.config import given_flags  # noqa: E402
from pipeline.state import check_out_dir  # noqa: E402

DEFAULTS = {"name": "quality", "epoch": 4, "sample_epoch": 4, "latent_dim": 72, "target_psnr": 28.0, "noise": "gaussian_var"}
NOISES = {"var0.02": ("gaussian_var", "0.02"), "sigma25": ("sigma", "25")}
R3L_METHODS = {"r3l": "R3L", "r3n": "R3N"}
TASKS = {  # name -> (colour, train folder flag, test folder flag)
    "colour": (True, "train_colour", "test_colour"),
    "grey": (False, "train_grey", "test_grey"),
    "faces": (True, "train_faces", "test_faces"),
}
FACES_NOISE = "var0.02"
# The shared data README's figures on celeba_hq/val with these noise draws (the protocol check).
AUTHORS_PIPELINE = "authors' VAE weights, authors' pipeline"
FACES_REFERENCE = {"noisy input": 17.75, AUTHORS_PIPELINE: 28.53}
FACES_TOLERANCE = 0.05


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, DEFAULTS)
    shared = ROOT.parent / "shared" / "data"
    b = parser.add_argument_group("benchmark")
    b.add_argument("--train_colour", default=str(shared / "train" / "LIVE1"))
    b.add_argument("--train_grey", default=str(shared / "train" / "Train400"))
    b.add_argument("--test_colour", default=str(shared / "test" / "CBSD68"))
    b.add_argument("--test_grey", default=str(shared / "test" / "Set12"))
    b.add_argument("--train_faces", default=str(shared / "celeba_hq" / "train"), help="CelebA-HQ training faces")
    b.add_argument("--test_faces", default=str(shared / "celeba_hq" / "val"), help="CelebA-HQ test faces")
    b.add_argument("--faces_init_from", nargs="+", default=["scratch", "authors"], metavar="scratch|authors|PATH",
                   help="the faces runs: from scratch, and/or fine-tuned from a saved VAE (--init_from)")
    b.add_argument("--authors_dir", default=str(shared / "weights" / "rse_rl_authors"),
                   help="the authors' SavedModels for the colour rows (the copy shipped in models/weights when absent)")
    b.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    b.add_argument("--noises", nargs="+", default=list(NOISES), choices=list(NOISES))
    b.add_argument("--crop", type=int, default=128, help="training crops (pixels)")
    b.add_argument("--crops_per_image", type=int, default=4, help="random crops per training image per pass")
    b.add_argument("--r3l_minutes", type=float, default=3.0,
                   help="R3L and R3N training budget, process CPU-minutes each, warm start included (0: no rows)")
    b.add_argument("--r3l_methods", nargs="+", default=list(R3L_METHODS), choices=list(R3L_METHODS))
    b.add_argument("--r3l_test", default=str(shared / "test" / "BSD68"), help="grey test folder of the R3L rows")
    b.add_argument("--r3l_test_images", type=int, default=4, help="R3L rows: the first N images of --r3l_test")
    b.add_argument("--r3l_episodes", type=int, default=100000,
                   help="R3L PPO episodes / R3N steps after the warm start (the CPU budget usually stops first)")
    b.add_argument("--r3l_warm_start", default="dncnn", choices=("none", "oracle", "dncnn"),
                   help="warm start of R3L and R3N (dncnn falls back to oracle without --r3l_init_dncnn)")
    b.add_argument("--r3l_warm_start_episodes", type=int, default=150)
    b.add_argument("--r3l_init_dncnn", default=str(shared / "weights" / "dncnn" / "dncnn_gray_sigma25.mat"),
                   help="DnCNN .mat: R3L/R3N layers start from it (as the authors) and it teaches the dncnn warm start")
    b.add_argument("--r3l_batch_size", type=int, default=16, help="crops per episode (authors: 32)")
    b.add_argument("--r3l_crop", type=int, default=48, help="crop size (authors: 70)")
    b.add_argument("--r3l_update_passes", type=int, default=4, help="PPO passes per rollout (authors: 15)")
    b.add_argument("--r3l_lr", type=float, default=1e-4, help="PPO / R3N learning rate after the warm start")
    return parser


def folder_train_pairs(directory, noise, seed: int, colour: bool, crop: int, crops_per_image: int):
    """One pass of (noisy, clean) float crops from an image folder: `crops_per_image` seeded random crops each."""
    import tensorflow as tf

    from data.folders import folder_dataset
    from data.pairs import synthetic_pairs

    channels = 3 if colour else 1
    images = folder_dataset(directory, colour=colour, shuffle=True, seed=seed).repeat(crops_per_image)

    def crop_one(index, image):
        return tf.image.stateless_random_crop(image, [crop, crop, channels], seed=tf.stack([tf.constant(seed, tf.int64), index]))

    crops = images.enumerate().map(crop_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return synthetic_pairs(crops, noise, seed)


def check_folders(args) -> None:
    """Clear errors for missing folders and training images smaller than --crop, before any training."""
    from data.folders import list_images
    from data.images import read_image

    for task in args.tasks:
        _, train_flag, test_flag = TASKS[task]
        if task == "faces":
            continue  # whole 256x256 faces, no crops; absent folders drop the task (`_benchmark`)
        for flag in (train_flag, test_flag):
            folder = Path(getattr(args, flag))
            if not folder.is_dir():
                raise DataError(f"--{flag} {folder}: no such folder (the benchmark data lives in ../shared/data; "
                                f"point --{flag} at your copy)")
        if task == "grey" and args.r3l_minutes > 0 and not Path(args.r3l_test).is_dir():
            raise DataError(f"--r3l_test {args.r3l_test}: no such folder (or --r3l_minutes 0 for no R3L rows)")
        for path in list_images(getattr(args, train_flag)):
            h, w = read_image(path).shape[:2]
            if min(h, w) < args.crop:
                raise DataError(f"--crop {args.crop}: training image {path} is only {w}x{h}")


def faces_test_set(directory, noise, limit: int | None = None):
    """The shared README's protocol: the i-th face in sorted order gets noise seeded with i
    (`skimage.util.random_noise(img, mode='gaussian', var=0.02, rng=i)`, x255 cast to uint8)."""
    from data.folders import list_images
    from data.images import read_image
    from data.noise import add_noise
    from data.pairs import TestPair, TestSet

    paths = sorted(list_images(directory))[:limit] if limit else sorted(list_images(directory))

    def open_pairs():
        for index, path in enumerate(paths):
            clean = read_image(path)
            yield TestPair(Path(path).stem, add_noise(clean, noise, index), clean)

    return TestSet(f"{directory} ({len(paths)} faces, seed = index)", len(paths), open_pairs)


def faces_run_data(args) -> RunData:
    """Training faces as Glow TFRecords (written once under --out_dir), read as experiment_celeba.py reads them."""
    from data.celeba import list_shards, write_folder_as_tfrecords
    from data.pairs import tfrecord_train_pairs

    shards = Path(args.out_dir) / "faces_tfrecords"
    try:
        list_shards(shards)
    except DataError:
        write_folder_as_tfrecords(args.train_faces, shards, prefix="train")
    test = faces_test_set(args.test_faces, args.noise_config, args.max_test_images)

    def train_pairs():
        return tfrecord_train_pairs(shards, args.noise_config, args.seed, file_batch=args.file_batch,
                                    shuffle_buffer=256 if args.max_train_images is None else 0)

    return RunData(f"CelebA-HQ {Path(args.test_faces).name}, {args.noise_config.describe()} noise", train_pairs, test)


def run_data(args, task: str) -> RunData:
    from data.pairs import folder_test_set

    if task == "faces":
        return faces_run_data(args)
    colour, train_flag, test_flag = TASKS[task]
    train_dir, test_dir = getattr(args, train_flag), getattr(args, test_flag)
    test = folder_test_set(test_dir, args.noise_config, args.seed, colour=colour, limit=args.max_test_images)

    def train_pairs():
        return folder_train_pairs(train_dir, args.noise_config, args.seed, colour, args.crop, args.crops_per_image)

    return RunData(f"{Path(test_dir).name}, {args.noise_config.describe()} noise", train_pairs, test, colour=colour)


def rse_rl_rows(base, given: frozenset[str], task: str, noise_key: str, strategy, init_from: str | None = None,
                baselines: bool = True) -> list[dict]:
    """Train + evaluate through pipeline.run; its stage rows, labelled (RSE-RL rows with `init_from`'s
    name when it is given; `baselines=False`: only the RSE-RL rows)."""
    import pipeline

    args = copy.deepcopy(base)
    args.noise, args.noise_level = NOISES[noise_key]
    args.out_dir = str(Path(base.out_dir) / f"{task}_{noise_key}{'_from_' + Path(init_from).name if init_from else ''}")
    args.model_dir = None
    args.init_from = init_from
    colour = TASKS[task][0]
    args.baselines = [b for b in args.baselines if b != "authors"] + (["authors"] if colour else [])
    args.authors_weights = base.authors_dir if colour and Path(base.authors_dir).is_dir() and task != "faces" else None
    if not baselines:
        args.baselines, args.authors_weights = [], None
    cfg = build_run_config(args, DEFAULTS, given)
    check_out_dir(cfg)
    data = run_data(argparse.Namespace(**cfg.flags, noise_config=cfg.noise), task)
    started = time.perf_counter()
    report = pipeline.run(cfg, data, strategy)
    rows = []
    suffix = f" (from {init_from})" if init_from else " (from scratch)" if task == "faces" else ""
    rse_rl = {"VAE", "VAE + agent (round 0)"} | {f"round {r}" for r in range(1, cfg.recursions + 1)}
    for stage in report["stages"]:
        method = stage["stage"] + (suffix if stage["stage"] in rse_rl else "")
        rows.append({"test set": Path(getattr(args, TASKS[task][2])).name, "noise": noise_key, "method": method,
                     "psnr": stage["psnr"], "ssim": stage["ssim"], "uqi": stage["uqi"],
                     "s/image": stage["seconds_per_image"]})
    rows[-1]["train s"] = report["timings"]["train_seconds"]  # on the last RSE-RL stage: its whole training
    print(f"{task} {noise_key}: pipeline run {time.perf_counter() - started:.0f} s "
          f"(training {report['timings']['train_seconds']:.0f} s)", flush=True)
    return rows


def authors_pipeline_denoise(model, noisy: np.ndarray, block: int = 16, overlap: int = 4) -> np.ndarray:
    """The authors' reconstruction path (their utils.py), as the shared README's figure was made: the
    uint8 image to YUV with OpenCV and kept as uint8, patches / 255 through the model, linear-ramp
    merge, x255 truncated to uint8, back to RGB with OpenCV. (Their code calls COLOR_BGR2YUV on RGB
    data; with the RGB conversion the README's figure is matched more closely.) Our pipeline keeps
    float YUV and rounds once at the end."""
    import cv2

    from data.images import to_uint8
    from data.patches import map_patches

    yuv = cv2.cvtColor(to_uint8(noisy), cv2.COLOR_RGB2YUV).astype(np.float32) / 255.0
    out = map_patches(yuv[None], model.inference().denoise, block, overlap, 1024, 4096)[0]
    return cv2.cvtColor((out * 255.0).astype(np.uint8), cv2.COLOR_YUV2RGB)


def authors_pipeline_row(args, test_set: str) -> dict:
    """The shipped authors' weights through `authors_pipeline_denoise` on the faces test set."""
    from data.noise import parse_noise
    from evaluation import psnr, ssim, uqi
    from models.io import load_model

    model = load_model("authors")
    test = faces_test_set(args.test_faces, parse_noise(*NOISES[FACES_NOISE]), args.max_test_images)
    scores, seconds = [], 0.0
    for pair in test.open():
        start = time.perf_counter()
        out = authors_pipeline_denoise(model, pair.noisy)
        seconds += time.perf_counter() - start
        scores.append((psnr(pair.clean, out), ssim(pair.clean, out), uqi(pair.clean, out)))
    mean = np.mean(scores, axis=0)
    return {"test set": test_set, "noise": FACES_NOISE, "method": AUTHORS_PIPELINE, "psnr": mean[0], "ssim": mean[1],
            "uqi": mean[2], "s/image": seconds / max(1, test.size)}


def check_faces_protocol(rows: list[dict], test_set: str) -> None:
    """Our noisy and authors' rows on the faces against the shared README's figures (same draws, the
    authors' pipeline): within FACES_TOLERANCE dB, or the protocol differs."""
    for method, reference in FACES_REFERENCE.items():
        found = [r["psnr"] for r in rows if r["test set"] == test_set and r["method"] == method]
        if not found:
            continue
        verdict = "matches" if abs(found[0] - reference) <= FACES_TOLERANCE else "DOES NOT MATCH"
        print(f"faces protocol check: {method} {found[0]:.3f} dB vs the README's {reference:.2f} dB: {verdict} "
              f"(tolerance {FACES_TOLERANCE} dB)", flush=True)


def train_r3l_methods(args) -> dict[str, tuple]:
    """R3L and R3N (rl.r3l) trained at sigma 25 on --train_grey, each for --r3l_minutes of process
    CPU time, warm start included; label -> (denoiser of one (H,W,1) image, training CPU seconds)."""
    from data.folders import load_folder
    from rl.ppo import PPOConfig
    from rl.r3l import R3LRun, R3LRunConfig

    init = args.r3l_init_dncnn if args.r3l_init_dncnn and Path(args.r3l_init_dncnn).is_file() else None
    warm = args.r3l_warm_start
    if warm == "dncnn" and init is None:
        print(f"no DnCNN weights at {args.r3l_init_dncnn}: R3L/R3N warm start 'oracle' instead of 'dncnn'")
        warm = "oracle"
    train_images = load_folder(args.train_grey, colour=False)
    out = {}
    for method in args.r3l_methods:
        ppo = PPOConfig(update_passes=args.r3l_update_passes, learning_rate=args.r3l_lr,
                        total_episodes=args.r3l_episodes)
        cfg = R3LRunConfig(method=method, sigma=25.0, episodes=args.r3l_episodes, warm_start=warm,
                           warm_start_episodes=args.r3l_warm_start_episodes, init_dncnn=init,
                           batch_size=args.r3l_batch_size, crop=args.r3l_crop, ppo=ppo, seed=args.seed,
                           eval_every=10**9, save_every=10**9, max_train_cpu_minutes=args.r3l_minutes)
        run = R3LRun(cfg, channels=1)
        info = run.train(train_images, Path(args.out_dir) / method, validation=None, progress=False)
        label = f"{R3L_METHODS[method]} ({warm} warm start + {method.upper()}, sigma 25)"
        print(f"{label}: {info['episodes_done']} episodes ({cfg.warm_episodes} warm start) in "
              f"{info['train_cpu_seconds'] / 60:.1f} CPU-min", flush=True)
        denoise = run.denoiser()
        out[label] = (lambda img, denoise=denoise: denoise(img[None]).numpy()[0], info["train_cpu_seconds"])
    return out


def bm3d_function():
    """BM3D (grey) with a blind noise estimate (skimage's estimate_sigma), or None when bm3d is absent."""
    try:
        import bm3d
    except ImportError:
        print("bm3d not installed (pip install bm3d; free for non-commercial use only): no BM3D row beside R3L")
        return None
    from skimage.restoration import estimate_sigma

    return lambda img: np.clip(bm3d.bm3d(img[..., 0], float(estimate_sigma(img[..., 0]))), 0, 1)[..., None]


def r3l_rows(base, trained: dict[str, tuple]) -> list[dict]:
    """The noisy input, BM3D, R3L and R3N on the same noisy --r3l_test images (first --r3l_test_images)."""
    from data.images import to_uint8
    from data.noise import parse_noise
    from data.pairs import folder_test_set
    from evaluation import psnr, ssim, uqi

    methods = {"noisy input": (lambda img: img, None)}
    bm3d = bm3d_function()
    if bm3d is not None:
        methods["BM3D (blind sigma)"] = (bm3d, None)
    methods.update(trained)
    rows = []
    for noise_key in base.noises:
        noise = parse_noise(*NOISES[noise_key])
        test = folder_test_set(base.r3l_test, noise, base.seed, colour=False, limit=base.r3l_test_images)
        pairs = list(test.open())
        for label, (denoise, train_seconds) in methods.items():
            scores, seconds = [], 0.0
            for pair in pairs:
                start = time.perf_counter()
                out = to_uint8(np.asarray(denoise(pair.noisy.astype(np.float32))))
                seconds += time.perf_counter() - start
                scores.append((psnr(pair.clean, out), ssim(pair.clean, out), uqi(pair.clean, out)))
            mean = np.mean(scores, axis=0)
            row = {"test set": f"{Path(base.r3l_test).name} (first {len(pairs)})", "noise": noise_key, "method": label,
                   "psnr": mean[0], "ssim": mean[1], "uqi": mean[2], "s/image": seconds / max(1, len(pairs))}
            if train_seconds is not None:
                row["train CPU s"] = train_seconds
            rows.append(row)
    return rows


def main(argv=None) -> int:
    from utils import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(_benchmark, args, given_flags(parser, argv), argv)


def _benchmark(args, given: frozenset[str], argv) -> None:
    from evaluation import format_table
    from utils import atomic_write_json, get_strategy

    args.out_dir = args.out_dir or str(ROOT / "runs" / "quality")
    if "faces" in args.tasks and not (Path(args.train_faces).is_dir() and Path(args.test_faces).is_dir()):
        if "tasks" in given:
            raise DataError(f"--train_faces {args.train_faces} / --test_faces {args.test_faces}: no such folders "
                            "(the CelebA-HQ faces live in ../shared/data/celeba_hq)")
        print(f"faces: skipped (no {args.train_faces} and {args.test_faces})")
        args.tasks = [t for t in args.tasks if t != "faces"]
    check_folders(args)
    strategy = get_strategy(args.strategy)
    started = time.perf_counter()
    rows: list[dict] = []
    partial = Path(args.out_dir) / "quality.json"
    for task in args.tasks:
        if task == "faces":
            for i, start in enumerate(args.faces_init_from):
                rows += rse_rl_rows(args, given, task, FACES_NOISE, strategy, None if start == "scratch" else start,
                                    baselines=i == 0)
                atomic_write_json(partial, {"rows": rows, "partial": True, "argv": sys.argv})
            rows.append(authors_pipeline_row(args, Path(args.test_faces).name))
            check_faces_protocol(rows, Path(args.test_faces).name)
            continue
        for noise_key in args.noises:
            rows += rse_rl_rows(args, given, task, noise_key, strategy)
            atomic_write_json(partial, {"rows": rows, "partial": True, "argv": sys.argv})
    if "grey" in args.tasks:
        if args.r3l_minutes <= 0:
            print("R3L/R3N rows skipped (--r3l_minutes 0)")
        else:
            try:
                rows += r3l_rows(args, train_r3l_methods(args))
            except Exception as exc:  # optional peers: report it, keep the other rows
                print(f"R3L/R3N failed, no R3L rows: {type(exc).__name__}: {exc}")
    rows.sort(key=lambda r: (r["test set"], r["noise"]))
    columns = ["test set", "noise", "method", "psnr", "ssim", "uqi", "s/image", "train s", "train CPU s"]
    print(format_table(rows, columns, title="Denoising quality (PSNR dB / SSIM / UQI, means over the test images)"))
    total = time.perf_counter() - started
    print(f"total {total:.0f} s; command: python bench/quality.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    atomic_write_json(Path(args.out_dir) / "quality.json", {"rows": rows, "total_seconds": total, "argv": sys.argv})


if __name__ == "__main__":
    sys.exit(main())
