"""Denoise your own images with a trained RSE-RL VAE (ours or the authors' released weights).

    python denoise.py --input photo.png --output out/ --model_dir runs/celeba/model
    python denoise.py --input photos/ --output out/ --authors_weights weights/rse_rl_authors --symmetrise

Writes one PNG per input image, with the same name (suffix .png), into --output.
Large photos are processed in tiles of --tile pixels (bounded memory).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from data.errors import DataError, run_cli
from data.images import IMAGE_SUFFIXES


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the denoised PNGs")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_dir", help="a model saved by this project (config.json + vae.weights.h5)")
    src.add_argument("--authors_weights", help="folder with the authors' celeba_{y,u,v}_no SavedModels")
    p.add_argument("--symmetrise", action="store_true", help="exact D4-equivariant mode (8x the compute)")
    p.add_argument("--block_size", type=int, default=16, help="patch size; must match the model")
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--tile", type=int, default=1024, help="tile size in pixels for large images")
    p.add_argument("--batch_size", type=int, default=4096, help="patches per model call")
    return p.parse_args(argv)


def list_inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"--input {path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    raise DataError(f"--input {path}: no such file or folder")


def run(args: argparse.Namespace) -> list[Path]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from data.images import read_image, write_image
    from models.io import load_any
    from models.vae import denoise_image

    if args.tile < 1 or args.batch_size < 1:
        raise DataError("--tile and --batch_size must be positive")
    inputs = list_inputs(Path(args.input))
    model = load_any(args.model_dir, args.authors_weights)
    if args.block_size != model.cfg.block_size:
        raise DataError(f"--block_size {args.block_size} does not match the model's {model.cfg.block_size}")
    out_dir = Path(args.output)
    written = []
    for path in inputs:
        t0 = time.perf_counter()
        img = read_image(path)
        grey = img.shape[2] == 1
        rgb = np.repeat(img, 3, axis=2) if grey else img[..., :3]
        try:
            out = denoise_image(model, rgb, args.overlap, args.symmetrise, args.tile, args.batch_size)
        except DataError as exc:  # e.g. an image smaller than one patch: say which file
            raise DataError(f"{path}: {exc}") from None
        if grey:
            out = out.mean(axis=2, keepdims=True)
        target = out_dir / (path.stem + ".png")
        write_image(target, out)
        written.append(target)
        print(f"{path} -> {target} ({img.shape[1]}x{img.shape[0]}, {time.perf_counter() - t0:.1f} s)")
    return written


def main(argv=None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
