"""The patch grid's density at test time: PSNR and time of a VAE alone at several --overlap values.

Every pixel of the output is a ramp-weighted mean of the patches that cover it (SPEC step 3), so a
denser grid (a larger overlap, a smaller stride) averages more decodings of each pixel, at the cost
of more patches: (block - overlap)^-2 per pixel. The authors test at overlap 4 (stride 12). This
bench measures what denser grids return, on

- the sample's three test photos (the CelebA script's embedded default, its noise draws), and
- with --test_faces, the CelebA-HQ faces with the shared README's draws (bench/quality.py),

for a saved VAE (default: the authors' released CelebA VAEs shipped in models/weights), with and
without the exact D4 mode. Seconds are the median per image over --repeats passes, rows timed
round-robin (compare rows of one run).

    python bench/overlap.py [--test_faces ../shared/data/celeba_hq/val] [--overlaps 4 8 12] [--symmetrise]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from utils import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup("--verbose" in sys.argv)

import numpy as np  # noqa: E402

from data.errors import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="authors", help="a shipped model by name or a saved VAE folder")
    p.add_argument("--test_faces", default=None, help="also score these faces (shared README's noise draws)")
    p.add_argument("--overlaps", type=int, nargs="+", default=[4, 8, 12])
    p.add_argument("--symmetrise", action="store_true", help="also the exact D4 mode at each overlap")
    p.add_argument("--precision", default="auto", help="auto (denoise.py's default), float32 or mixed_bfloat16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up lines")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from data.images import to_uint8
    from data.noise import add_noise, parse_noise
    from data.pairs import TEST_STREAM
    from data.patches import check_patch_settings
    from data.sample import sample_test_images
    from evaluation import psnr
    from models.io import load_model
    from models.vae import denoise_image, inference_precision

    noise = parse_noise("gaussian_var", 0.02)
    model = load_model(args.weights, precision=inference_precision(args.precision))
    for overlap in args.overlaps:
        check_patch_settings(model.cfg.block_size, overlap)
    clean = list(sample_test_images(1))
    sets = {"sample test photos": [(add_noise(c, noise, (args.seed, i, TEST_STREAM)), c) for i, c in enumerate(clean)]}
    if args.test_faces:
        from bench.quality import faces_test_set

        sets[f"{Path(args.test_faces).name} faces"] = [(f.noisy, f.clean) for f in faces_test_set(args.test_faces, noise).open()]
    rows = [(o, s) for o in args.overlaps for s in ([False, True] if args.symmetrise else [False])]
    seconds: dict = {(name, row): [] for name in sets for row in rows}
    scores: dict = {}
    for repeat in range(args.repeats):
        for name, pairs in sets.items():
            for overlap, symmetrise in rows:
                started = time.perf_counter()
                outs = [denoise_image(model, noisy, overlap=overlap, symmetrise=symmetrise) for noisy, _ in pairs]
                seconds[name, (overlap, symmetrise)].append((time.perf_counter() - started) / len(pairs))
                scores[name, (overlap, symmetrise)] = float(np.mean([psnr(c, to_uint8(o)) for o, (_, c) in zip(outs, pairs)]))
    print(f"{args.weights}, {model.cfg.precision}, block {model.cfg.block_size}, gaussian_var 0.02; "
          f"median s/image over {args.repeats} round-robin passes")
    for name in sets:
        base = scores[name, rows[0]]
        print(f"\n{name} ({len(sets[name])} images)\n{'overlap':>7} {'stride':>6} {'D4':>3} {'PSNR':>8} {'vs first':>8} "
              f"{'s/image':>8} {'x time':>7}")
        base_s = float(np.median(seconds[name, rows[0]]))
        for overlap, symmetrise in rows:
            s = float(np.median(seconds[name, (overlap, symmetrise)]))
            print(f"{overlap:>7} {model.cfg.block_size - overlap:>6} {'yes' if symmetrise else 'no':>3} "
                  f"{scores[name, (overlap, symmetrise)]:8.3f} {scores[name, (overlap, symmetrise)] - base:+8.3f} "
                  f"{s:8.3f} {s / base_s:7.2f}")


def main(argv=None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
