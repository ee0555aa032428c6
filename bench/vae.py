"""Throughput of one subspace model (encoder -> T -> decoder, the authors' sizes): ours vs plain Keras.

Training: our compiled train step (all loss terms: reconstruction, clean
reconstruction, KL, latent matching) vs `model.fit` of the same three networks
chained as one functional model with an MSE loss. Inference: `model.inference().denoise`
(XLA-compiled, what the pipeline and denoise.py use) vs `denoise_patches` in a plain
tf.function and `model.predict` of the same chained network. Medians over --repeats, patches/s.

    python bench/vae.py [--patches 16384] [--batch 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.vae import VAEConfig, build_vae  # noqa: E402
from bench.timing import median_seconds  # noqa: E402


def _median_rate(fn, n: int, repeats: int) -> float:
    return n / median_seconds(fn, repeats)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patches", type=int, default=16384)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latent_dim", type=int, default=72)
    args = p.parse_args(argv)
    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    clean = rng.random((args.patches, 16, 16, 1)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.14, clean.shape), 0, 1).astype(np.float32)

    model = build_vae(VAEConfig(channels=("Y",), latent_dim=args.latent_dim, lambda_eq=0.0))  # one subspace, no D4 loss
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.losses_per_patch(x, y, training=True)["total"])
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    data = tf.data.Dataset.from_tensor_slices((noisy, clean)).batch(args.batch, drop_remainder=True).cache()
    n_train = (args.patches // args.batch) * args.batch

    def ours_train():
        for x, y in data:
            step(x, y)

    # The same three networks chained, trained and run by plain Keras.
    inp = keras.Input((16, 16, 1))
    mean, _ = model.encoders[0](inp)
    out = model.decoders[0](model.transforms[0](mean[:, 0]))
    plain = keras.Model(inp, out)
    plain.compile(keras.optimizers.Adam(1e-3), loss="mse")

    def plain_train():
        plain.fit(data, epochs=1, verbose=0)

    infer = tf.function(lambda x: model.denoise_patches(x))
    big = 4096

    def graph_infer():
        for i in range(0, args.patches, big):
            infer(clean[i:i + big]).numpy()

    def ours_infer():
        model.inference().denoise(clean)

    def plain_infer():
        plain.predict(clean, batch_size=big, verbose=0)

    rows = [
        ("train, ours (compiled step, all VAE losses)", _median_rate(ours_train, n_train, args.repeats)),
        ("train, plain model.fit (MSE only)", _median_rate(plain_train, n_train, args.repeats)),
        ("infer, ours (inference(): XLA, chunks of 1024)", _median_rate(ours_infer, args.patches, args.repeats)),
        ("infer, tf.function(denoise_patches), no XLA", _median_rate(graph_infer, args.patches, args.repeats)),
        ("infer, plain model.predict", _median_rate(plain_infer, args.patches, args.repeats)),
    ]
    print(f"one subspace model, latent {args.latent_dim}, {args.patches} patches, train batch {args.batch}, "
          f"medians of {args.repeats}, {os.cpu_count()} CPU cores, TF {tf.__version__}")
    for name, rate in rows:
        print(f"{name:48s} {rate:10.0f} patches/s")


if __name__ == "__main__":
    main()
