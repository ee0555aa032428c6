"""Which subspaces a trained VAE uses: per-subspace latent activity and decoder output spread.

Posterior collapse shows here before it shows in a PSNR table: a subspace whose encoder
gives every patch the prior (mean ~0, log-variance ~0) carries no information, and its
decoder then returns one constant patch whatever the latent. For each subspace (Y, U, V)
of a saved VAE, on clean patches (the embedded sample's test photos at --scale, or a
folder of images), this prints:

- active dims: latent dimensions whose posterior mean varies across patches
  (variance > 0.01; the "active units" count of Burda et al., 2016), of latent_dim;
- mean KL per patch against N(0, I) (0: the encoder outputs the prior);
- out / in std: the spread across patches of decode(E(clean)) over that of the clean
  patches, per pixel (about 1: the subspace is reproduced; about 0: a constant output).

    python bench/vae_latents.py --model_dir runs/sidd_default/model/round0/vae --scale 3
    python bench/vae_latents.py --model_dir runs/celeba/model/round0/vae --images my_photos/
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from data.errors import run_cli  # noqa: E402

ACTIVE_VARIANCE = 0.01


def latent_usage(model, patches: np.ndarray) -> list[dict[str, float]]:
    """Per subspace: active dims, mean KL per patch, and decode(E(x)) spread over x's spread."""
    inference = model.inference()
    mean, logvar = (np.asarray(a) for a in model.encode(patches))
    out = inference.decode(mean)
    rows = []
    for s, name in enumerate(model.cfg.channels):
        m, lv = mean[:, s], logvar[:, s]
        kl = -0.5 * np.sum(1.0 + lv - m ** 2 - np.exp(lv), axis=1)
        rows.append({
            "subspace": name,
            "active": int(np.sum(m.var(axis=0) > ACTIVE_VARIANCE)),
            "latent_dim": int(m.shape[1]),
            "kl": float(kl.mean()),
            "spread": float(out[..., s].std(axis=0).mean() / max(patches[..., s].std(axis=0).mean(), 1e-8)),
        })
    return rows


def run(args: argparse.Namespace) -> None:
    from data.color import rgb_to_yuv
    from data.errors import DataError
    from data.folders import list_images
    from data.images import read_image, to_float
    from data.patches import split_patches
    from models.io import load_model

    model = load_model(args.model_dir)
    if args.images:
        paths = list_images(args.images)[: args.max_images]
        if not paths:
            raise DataError(f"--images {args.images}: no images")
        images, source = [to_float(read_image(p, colour=True)) for p in paths], args.images
    else:
        from data.sample import sample_test_images

        images, source = list(to_float(sample_test_images(args.scale))), f"the sample's test photos (x{args.scale})"
    patches = np.concatenate([split_patches(rgb_to_yuv(im)[None], model.cfg.block_size, 4)[0] for im in images])
    patches = patches[..., : model.cfg.num_subspaces]
    print(f"{args.model_dir}: {len(patches)} clean patches of {len(images)} images, {source}")
    print(f"{'subspace':9s} {'active dims':>12s} {'KL/patch':>9s} {'out/in std':>11s}")
    for row in latent_usage(model, patches):
        print(f"{row['subspace']:9s} {row['active']:5d} of {row['latent_dim']:<4d} {row['kl']:9.1f} {row['spread']:11.2f}")
    print("command: python bench/vae_latents.py " + " ".join(sys.argv[1:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a saved VAE (a model/round<r>/vae folder)")
    p.add_argument("--images", default=None, help="folder of clean RGB images (default: the embedded sample's test photos)")
    p.add_argument("--scale", type=int, default=1, help="the sample's scale: 1 (CelebA script) or 3 (SIDD script)")
    p.add_argument("--max_images", type=int, default=10)
    return run_cli(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
