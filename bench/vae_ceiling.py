"""Why a VAE can lose to its own input: its denoising against its autoencoding ceiling, per epoch.

Trains the VAE alone (the pipeline's settings: latent 96, batch 128, Adam 2e-3, BN
momentum 0.9, D4 loss 0.1) on the embedded sample's training crops with the given noise,
and after every epoch prints, on the sample's three test photos (and on real pairs with
--test_pairs): the noisy input's PSNR, the VAE's output on it, the denoiser applied to the
clean image, decode(T(E(clean))), and the autoencoding ceiling decode(E(clean)). A VAE
whose output on a clean image is below the noisy input's PSNR cannot beat that input.
--scale 3 uses the phone-like sample of the SIDD script (data/sample.py). docs/vae.md ("The
SIDD-setting default") holds the figures.

    python bench/vae_ceiling.py --noise poisson_gaussian --epochs 4
    python bench/vae_ceiling.py --noise camera --epochs 4 --test_pairs ../shared/data/sidd_real
    python bench/vae_ceiling.py --noise camera --model_dir runs/sidd/model/round0/vae   # a trained model, no training

With --train_faces / --test_faces it trains on a folder of faces (written once as TFRecords in a
temporary folder) and scores on faces with the shared README's noise draws: the learning curve of
the from-scratch faces VAE (docs/vae.md, "Faces from scratch"), e.g.

    python bench/vae_ceiling.py --noise gaussian_var --noise_level 0.02 --latent_dim 72 --epochs 30 \
        --train_faces ../shared/data/celeba_hq/train --test_faces ../shared/data/celeba_hq/val

Designs of the same curve: --fresh_noise (new training noise every epoch) and --augment_shift 12
(random grid shifts and mirror flips, data/augment.py), --ema 0.995 (each epoch ends at the
moving average of the weights, TrainConfig.ema_momentum), --lr_decay_epochs N (cosine rate),
--sample_std 0 (decode the latent means in training), --lambda_clean 0 (no clean autoencoding term).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from data.errors import run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noise", default="camera")
    p.add_argument("--noise_level", default=None)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--latent_dim", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test_pairs", default=None, help="also score on real pairs: a folder with noisy/ and gt/")
    p.add_argument("--cache_dir", default=None, help="where the embedded sample is cached")
    p.add_argument("--scale", type=int, default=1, help="1: the sample of the CelebA script; 3: the SIDD script's phone-like one")
    p.add_argument("--model_dir", default=None, help="score this trained VAE (config.json + weights) instead of training one")
    p.add_argument("--train_faces", default=None,
                   help="train on this folder of faces (e.g. ../shared/data/celeba_hq/train) instead of the sample")
    p.add_argument("--test_faces", default=None,
                   help="score on this folder of faces with the shared README's noise draws (bench/quality.py)")
    p.add_argument("--images_per_batch", type=int, default=8, help="training images per tf.data batch (patches are shuffled)")
    p.add_argument("--eq_fraction", type=float, default=1.0, help="the D4 term's share of each batch")
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--lr_decay_epochs", type=int, default=0,
                   help="cosine decay of the rate to 0 over this many epochs (0: constant, the default)")
    p.add_argument("--fresh_noise", action="store_true",
                   help="draw the training noise anew every epoch (data/augment.py; default: the same draws every epoch)")
    p.add_argument("--augment_shift", type=int, default=0,
                   help="shift each training image by up to this many pixels and mirror it at random, anew every epoch (0: off)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="end each epoch at the moving average of the weights with this momentum per step (0: off)")
    p.add_argument("--sample_std", type=float, default=1.0,
                   help="std of the latent samples decoded in training (VAEConfig.sample_std; 0: decode the means)")
    p.add_argument("--lambda_clean", type=float, default=1.0,
                   help="weight of the clean autoencoding term (VAEConfig.lambda_clean)")
    return p.parse_args(argv)


def autoencode(model, image: np.ndarray) -> np.ndarray:
    """decode(E(x)) of an RGB image through the patch grid (no transform T): the autoencoding ceiling."""
    from data.color import rgb_to_yuv, yuv_to_rgb
    from data.images import to_float
    from data.patches import merge_patches, split_patches

    patches, grid = split_patches(rgb_to_yuv(to_float(image))[None], model.cfg.block_size, 4)
    inference = model.inference()
    out = inference.decode(inference.encode(patches))
    return np.clip(yuv_to_rgb(merge_patches(out, grid)[0]), 0.0, 1.0)


def scores(model, noisy: list[np.ndarray], clean: list[np.ndarray]) -> tuple[float, ...]:
    """Mean PSNR of the noisy inputs, the VAE on them, the VAE on the clean images, decode(E(clean))."""
    from evaluation import psnr
    from models.vae import denoise_image

    rows = [(psnr(c, n), psnr(c, denoise_image(model, n)), psnr(c, denoise_image(model, c)), psnr(c, autoencode(model, c)))
            for n, c in zip(noisy, clean)]
    return tuple(float(v) for v in np.mean(rows, axis=0))


def run(args: argparse.Namespace) -> None:
    from data.images import read_image
    from data.noise import add_noise, parse_noise
    from data.augment import renoised_pairs, shifted_flipped_pairs
    from data.pairs import TEST_STREAM, tfrecord_train_pairs
    from data.sample import ensure_sample, sample_test_images
    from models.training import TrainConfig, train_vae
    from models.vae import VAEConfig, build_vae
    from utils import set_seeds

    noise = parse_noise(args.noise, args.noise_level)
    paths = ensure_sample(args.cache_dir, scale=args.scale)
    if args.test_faces:
        from bench.quality import faces_test_set

        faces = list(faces_test_set(args.test_faces, noise).open())
        sets = {"test faces": ([f.noisy for f in faces], [f.clean for f in faces])}
    else:
        clean = list(sample_test_images(args.scale))
        sets = {"sample test photos": ([add_noise(c, noise, (args.seed, i, TEST_STREAM)) for i, c in enumerate(clean)], clean)}
    if args.test_pairs:
        from data.sidd import pair_noisy_gt_folders

        pairs = pair_noisy_gt_folders(Path(args.test_pairs) / "noisy", Path(args.test_pairs) / "gt")
        sets["real pairs"] = ([read_image(n, colour=True).astype(np.float32) / 255.0 for n, _ in pairs],
                              [read_image(g, colour=True) for _, g in pairs])
    print(f"noise {noise.describe()}; PSNR dB: noisy / VAE / VAE(clean) / decode(E(clean))")
    if args.model_dir:
        from models.io import load_model

        model = load_model(args.model_dir)
        print(f"{args.model_dir}: " + "; ".join(f"{name} {' / '.join(f'{v:.2f}' for v in scores(model, *pair))}"
                                               for name, pair in sets.items()))
        return
    set_seeds(args.seed)
    model = build_vae(VAEConfig(latent_dim=args.latent_dim, lambda_kl=1e-3, lambda_latent=1e-2, lambda_eq=0.1, bn_momentum=0.9,
                                eq_fraction=args.eq_fraction, precision=args.precision, sample_std=args.sample_std,
                                lambda_clean=args.lambda_clean))
    with tempfile.TemporaryDirectory() as work:
        train_dir = paths.train_dir
        if args.train_faces:
            from data.celeba import write_folder_as_tfrecords

            train_dir = Path(work) / "faces_tfrecords"
            write_folder_as_tfrecords(args.train_faces, train_dir, prefix="train")
        for epoch in range(1, args.epochs + 1):
            started = time.perf_counter()
            data = tfrecord_train_pairs(train_dir, noise, args.seed, shuffle_buffer=0)
            epoch_seed = args.seed + 7919 * epoch  # this loop rebuilds the stream every epoch
            if args.fresh_noise:
                data = renoised_pairs(data, noise, epoch_seed)
            if args.augment_shift:
                data = shifted_flipped_pairs(data, args.augment_shift, epoch_seed)
            data = data.batch(args.images_per_batch)
            cfg = TrainConfig(epochs=epoch, batch_size=args.batch_size, learning_rate=args.learning_rate,
                              seed=args.seed, progress=False, lr_decay_epochs=args.lr_decay_epochs,
                              ema_momentum=args.ema)
            train_vae(model, data, cfg, Path(work) / "vae", resume=True)
            seconds = time.perf_counter() - started
            line = "; ".join(f"{name} {' / '.join(f'{v:.2f}' for v in scores(model, *pair))}" for name, pair in sets.items())
            print(f"epoch {epoch} ({seconds:.0f} s): {line}", flush=True)


def main(argv=None) -> int:
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
