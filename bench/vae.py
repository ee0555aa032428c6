"""VAE speed, float32 vs mixed_bfloat16 in one run, and the PSNR of both on the same images.

The network is the pipeline's default (three subspace encoders, transforms and decoders in the
authors' sizes, latent 72).
- Training: `models.training.make_train_step`, the step `train_vae` runs (all loss terms,
  lambda_eq 0.1), in patch pairs/s, with the D4 term on every patch of a batch
  (eq_fraction 1) and on --eq_fraction of it.
- Inference: `model.inference().denoise` (what the pipeline and denoise.py run: XLA-compiled
  chunks) and the same chunks through a plain tf.function (no XLA), in patches/s.
- Quality: PSNR under both policies on the same noisy photos (scikit-image's astronaut,
  coffee and chelsea at 256x256, gaussian_var 0.02, seeds 0-2) of (a) the authors' trained
  VAEs (shipped in models/weights) and (b) with --quality_steps N > 0, the default network
  trained N steps of `train_vae` from one initialisation on the embedded sample under each policy.

Rows are timed round-robin (repeat r of every row before repeat r+1 of any row) and reported as
medians: the machine may be shared, so compare rows of one run, not runs.

    python bench/vae.py [--patches 4096] [--train_steps 4] [--batch 128] [--repeats 5] [--quality_steps 0]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup("--verbose" in sys.argv)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.vae import PRECISIONS, CompiledInference, VAEConfig, build_vae  # noqa: E402

SIZE = 256


def test_photos() -> tuple[np.ndarray, np.ndarray]:
    """The three scikit-image photos at 256x256 (uint8) and their gaussian_var 0.02 noisy versions."""
    import cv2
    from skimage import data as skdata

    from data.noise import add_noise, parse_noise

    def square(img):
        side = min(img.shape[:2])
        return cv2.resize(img[:side, :side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)

    clean = np.stack([square(getattr(skdata, name)()) for name in ("astronaut", "coffee", "chelsea")])
    noise = parse_noise("gaussian_var", 0.02)
    return clean, np.stack([add_noise(c, noise, i) for i, c in enumerate(clean)])


def mean_psnr(model, clean: np.ndarray, noisy: np.ndarray) -> float:
    from data.images import to_uint8
    from evaluation import psnr
    from models.vae import denoise_image

    return float(np.mean([psnr(c, to_uint8(denoise_image(model, n))) for c, n in zip(clean, noisy)]))


def timed_rows(rows: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each row's function, run round-robin after one untimed warm-up each."""
    for fn, _ in rows.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, (fn, _) in rows.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def training_row(cfg: VAEConfig, patches: np.ndarray, steps: int, batch: int):
    """A function running `steps` training steps of a fresh model under `cfg`."""
    from models.training import make_train_step

    model = build_vae(cfg)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, tf.random.Generator.from_seed(0), batch)
    batches = [(tf.constant(patches[i * batch:(i + 1) * batch]),) * 2 for i in range(steps)]

    def run():
        for noisy_clean in batches:
            out = step(noisy_clean)
        float(out["total"])
    return run, steps * batch


def inference_row(model, patches: np.ndarray, jit: bool):
    infer = model.inference() if jit else CompiledInference(model, jit_compile=False)
    return (lambda: infer.denoise(patches)), len(patches)


def trained_psnr(precision: str, steps: int, clean: np.ndarray, noisy: np.ndarray) -> float:
    """PSNR after `steps` steps of train_vae on the embedded sample, from the same initial weights."""
    from data.noise import parse_noise
    from data.pairs import tfrecord_train_pairs
    from data.sample import ensure_sample
    from models.training import TrainConfig, train_vae
    from utils import set_seeds

    set_seeds(0)
    model = build_vae(VAEConfig(precision=precision))
    pairs = tfrecord_train_pairs(ensure_sample().train_dir, parse_noise("gaussian_var", 0.02), 0, shuffle_buffer=0)
    with tempfile.TemporaryDirectory() as work:
        train_vae(model, pairs.batch(8), TrainConfig(epochs=1, steps_per_epoch=steps, seed=0, progress=False), work)
    return mean_psnr(model, clean, noisy)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patches", type=int, default=4096, help="patches per inference timing")
    p.add_argument("--train_steps", type=int, default=4, help="training steps per training timing")
    p.add_argument("--batch", type=int, default=128, help="patch pairs per training step (the pipeline's default)")
    p.add_argument("--eq_fraction", type=float, default=0.25, help="the D4 term's share of a batch in the subset rows")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quality_steps", type=int, default=0, help="train this many steps per policy and compare PSNR (0: skip)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up lines")
    args = p.parse_args(argv)
    from data.images import to_uint8
    from evaluation import psnr
    from models.io import load_model

    clean, noisy = test_photos()
    rng = np.random.default_rng(0)
    patches = rng.random((max(args.patches, args.train_steps * args.batch), 16, 16, 3)).astype(np.float32)
    rows = {}
    for precision in PRECISIONS:
        for fraction in (1.0, args.eq_fraction):
            cfg = VAEConfig(precision=precision, eq_fraction=fraction)
            rows[f"train {precision:14s} D4 on {fraction:4.0%} of a batch"] = training_row(
                cfg, patches, args.train_steps, args.batch)
    for precision in PRECISIONS:
        model = build_vae(VAEConfig(precision=precision))
        for jit in (True, False):
            rows[f"infer {precision:14s} {'XLA (inference())' if jit else 'tf.function, no XLA'}"] = inference_row(
                model, patches[:args.patches], jit)
    seconds = timed_rows(rows, args.repeats)
    print(f"default VAE (3 subspaces, latent 72), train batch {args.batch} x {args.train_steps} steps, "
          f"{args.patches} inference patches, medians of {args.repeats} round-robin repeats, "
          f"{os.cpu_count()} CPU cores, TF {tf.__version__}")
    rates = {name: rows[name][1] / seconds[name] for name in rows}
    for name, rate in rates.items():
        print(f"{name:48s} {rate:9.0f} {'patch pairs' if name.startswith('train') else 'patches'}/s")
    base = {kind: next(r for n, r in rates.items() if n.startswith(kind) and "float32" in n) for kind in ("train", "infer")}
    for name, rate in rates.items():
        kind = name[:5]
        if rate != base[kind]:
            print(f"  {name.strip():46s} {rate / base[kind]:5.2f}x the first float32 {kind} row")

    authors = {precision: mean_psnr(load_model("authors", precision=precision), clean, noisy) for precision in PRECISIONS}
    noisy_psnr = float(np.mean([psnr(c, to_uint8(n)) for c, n in zip(clean, noisy)]))
    print(f"PSNR on astronaut/coffee/chelsea 256x256, var 0.02 (noisy {noisy_psnr:.3f} dB):")
    for precision, value in authors.items():
        print(f"  authors' VAEs, {precision:14s} {value:.3f} dB")
    print(f"  difference (mixed_bfloat16 - float32): {authors['mixed_bfloat16'] - authors['float32']:+.3f} dB")
    if args.quality_steps > 0:
        trained = {precision: trained_psnr(precision, args.quality_steps, clean, noisy) for precision in PRECISIONS}
        for precision, value in trained.items():
            print(f"  default VAE after {args.quality_steps} train_vae steps, {precision:14s} {value:.3f} dB")
        print(f"  difference (mixed_bfloat16 - float32): {trained['mixed_bfloat16'] - trained['float32']:+.3f} dB")


if __name__ == "__main__":
    main()
