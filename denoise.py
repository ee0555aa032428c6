"""Denoise your own images with an RSE-RL VAE: the authors' released CelebA weights (shipped, the
default), or one you trained.

    python denoise.py --input photo.png --output out/
    python denoise.py --input photo.png --output photo_denoised.png --weights runs/celeba/model/round1/vae
    python denoise.py --input photos/ --output out/ --authors_weights weights/rse_rl_authors --symmetrise
    python denoise.py --input photos/ --output out/ --run_dir runs/celeba   # a finished run: VAE + agent + rounds

Writes one PNG per input image, with the same name (suffix .png), into the --output folder;
for a single input image --output may also name the file itself. Existing outputs are
kept unless --overwrite is given. Large photos are processed in tiles of --tile pixels
(bounded memory, the same output as one pass).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from utils import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup("--verbose" in sys.argv)  # before anything imports TensorFlow (argv: not parsed yet)

import numpy as np  # noqa: E402

from data.errors import ConfigError, DataError, run_cli  # noqa: E402
from data.images import IMAGE_SUFFIXES, read_image, to_float, write_image  # noqa: E402
from models.io import SHIPPED_WEIGHTS, load_any  # noqa: E402
from models.vae import PRECISIONS, RSEVAE, denoise_image, inference_precision  # noqa: E402
from utils import check_writable_folder  # noqa: E402

if TYPE_CHECKING:
    from pipeline.trained import TrainedRun


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the denoised PNGs (or, for one input image, the output file)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist already")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", default=None,
                     help=f"a shipped model by name ({', '.join(SHIPPED_WEIGHTS)}: the authors' released CelebA VAEs, "
                          "the default) or a folder saved by this project (config.json + vae.weights.h5)")
    src.add_argument("--model_dir", help="a folder saved by this project (same as --weights PATH)")
    src.add_argument("--authors_weights", help="folder with the authors' celeba_{y,u,v}_no SavedModels")
    src.add_argument("--run_dir", help="a finished experiment run's --out_dir: its VAE, its agent where the agent's "
                                       "check kept it, and the later rounds its checks applied, as its test stage "
                                       "(whole images: --tile does not apply)")
    p.add_argument("--precision", default="auto", choices=("auto", *PRECISIONS),
                   help="compute policy (variables stay float32); auto: mixed_bfloat16 on a CPU with native bfloat16 "
                        "(AVX512-BF16 or AMX) and no GPU, else float32; see docs/vae.md for speed and PSNR of both")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up lines")
    p.add_argument("--symmetrise", action="store_true", help="exact D4-equivariant mode (8x the compute)")
    p.add_argument("--block_size", type=int, default=16, help="patch size; must match the model")
    p.add_argument("--overlap", type=int, default=8,
                   help="pixels shared by neighbouring patches (stride = block - overlap); denser grids average more "
                        "decodings per pixel: 8 gains ~0.2 dB over the authors' 4 for ~2x the time, 12 ~0.35 dB for "
                        "~8x (bench/overlap.py); --run_dir uses its run's grid")
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


def plan_outputs(inputs: list[Path], output: Path, single_input: bool, overwrite: bool) -> list[Path]:
    """The file each input is written to; ConfigError, before any work, if that is not possible:
    an existing output without --overwrite, two inputs with one output name, a folder that cannot be written."""
    if single_input and output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        targets = [output]
    elif output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file; give a folder for the denoised images of a folder of inputs")
    else:
        targets = [output / (path.stem + ".png") for path in inputs]
    seen: dict[Path, Path] = {}
    for source, target in zip(inputs, targets):
        if target in seen:
            raise ConfigError(f"--input: {seen[target].name} and {source.name} would both be written to {target}")
        seen[target] = source
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ConfigError(f"--output {existing[0]}: exists{more}; add --overwrite to replace it")
    folder = targets[0].parent
    check_writable_folder(folder, "--output", output if folder != output else None)
    return targets


def run(args: argparse.Namespace) -> list[Path]:
    if args.tile < 1 or args.batch_size < 1:
        raise ConfigError("--tile and --batch_size must be positive")
    inputs = list_inputs(Path(args.input))
    targets = plan_outputs(inputs, Path(args.output), Path(args.input).is_file(), args.overwrite)
    model_dir = args.weights or args.model_dir
    if model_dir is None and args.authors_weights is None and args.run_dir is None:
        model_dir = "authors"
    trained = None
    if args.run_dir is not None:
        from pipeline.trained import load_trained_run

        trained = load_trained_run(args.run_dir, precision=inference_precision(args.precision))
        if args.symmetrise:
            trained.cfg = dataclasses.replace(trained.cfg, symmetrise=True)
        model = trained.rounds[0].vae
    else:
        model = load_any(model_dir, args.authors_weights, precision=inference_precision(args.precision))
    if args.block_size != model.cfg.block_size:
        raise ConfigError(f"--block_size {args.block_size} does not match the model's {model.cfg.block_size}")
    for path, target in zip(inputs, targets):
        t0 = time.perf_counter()
        img = read_image(path)
        try:
            out = denoise_photo(model, img, path, args, trained)
        except DataError as exc:  # e.g. an image smaller than one patch: say which one
            raise DataError(f"--input {path}: {exc}") from None
        write_image(target, out)
        print(f"{path} -> {target} ({img.shape[1]}x{img.shape[0]}, {time.perf_counter() - t0:.1f} s)")
    return targets


def denoise_photo(model: RSEVAE, img: np.ndarray, path: Path, args: argparse.Namespace,
                  trained: "TrainedRun | None" = None) -> np.ndarray:
    """One image through the model, or through a trained run's rounds (whose first VAE is `model`);
    a grey photo goes through a colour model as R = G = B, a colour photo through a grey model as grey."""
    grey, colour = img.shape[2] == 1, model.cfg.num_subspaces == 3
    if colour:
        x = np.repeat(img, 3, axis=2) if grey else img
    else:
        x = img if grey else read_image(path, colour=False)
    if trained is not None:
        out = trained.apply(to_float(x))
    else:
        out = denoise_image(model, x, args.overlap, args.symmetrise, args.tile, args.batch_size)
    return out.mean(axis=2, keepdims=True) if grey and colour else out


def main(argv=None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
