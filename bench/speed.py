"""Denoising throughput on 256x256 colour images: RSE-RL vs BM3D, in one run; VAE training patches/s.

RSE-RL is timed through the code the pipeline uses: `rl.inference.filter_images`
(VAE + latent clusters + SAC agent, --rl_steps steps; and the VAE alone, agent=None) and
the exact D4-equivariant mode (`models.vae.denoise_image(..., symmetrise=True)`, the VAE
averaged over the 8 flips/rotations). The VAE alone is also timed through the model's eager
methods (no XLA), the reference the compiled inference path (`RSEVAE.inference`) is measured against. The networks have the default sizes (latent 72,
16 clusters, 256x256 SAC MLP); weights are freshly initialised, which does not change the
amount of work. BM3D is the optional `bm3d` package (`bm3d_rgb`, the noise std given);
without it the bench says so and times the rest. Images/s are medians over --repeats.

Compute floor: the VAE's floating-point operations per image (from its layer shapes) over
the rate of a large float32 matmul on this machine, i.e. the least time any implementation of
the VAE alone could take here; with BM3D's time it bounds the reachable ratio.

Training: VAE training patch pairs/s of `models.training.train_vae` (all loss terms,
lambda_eq 0.1 as the pipeline's default), from the time difference of two runs of
different lengths after a warm-up run (so tracing and start-up are not counted).

Every RSE-RL row and the training rate are measured for each of --precisions (the VAE's Keras
compute policy; the agent stays float32), in the same run, so their ratios are comparable.

    python bench/speed.py [--images 8] [--repeats 3] [--bm3d_images 1] [--precisions float32 mixed_bfloat16]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup("--verbose" in sys.argv)

import numpy as np  # noqa: E402

from bench.timing import median_seconds  # noqa: E402

SIZE = 256
AGENT, ALONE = "RSE-RL VAE + agent (filter_images)", "RSE-RL VAE alone (filter_images)"
EAGER, EXACT = "  same, eager TF (no XLA; the reference)", "RSE-RL VAE exact D4 (symmetrise)"
BM3D = "BM3D (bm3d.bm3d_rgb)"
NOISE_VAR = 0.02


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random colour images (uint8) and their gaussian_var 0.02 noisy versions (float)."""
    import cv2

    from data.noise import add_noise, parse_noise

    rng = np.random.default_rng(seed)
    clean = np.stack([cv2.resize(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), (SIZE, SIZE),
                                 interpolation=cv2.INTER_CUBIC) for _ in range(n)])
    noise = parse_noise("gaussian_var", NOISE_VAR)
    noisy = np.stack([add_noise(c, noise, (seed, i)) for i, c in enumerate(clean)])
    return clean, noisy


def patches_per_image(block: int = 16, overlap: int = 4) -> int:
    """Patches the pipeline cuts from one SIZE x SIZE image (its default block and overlap)."""
    from data.patches import make_grid

    return make_grid(SIZE, SIZE, block, overlap, 1, 3).patches_per_image


def build_rse_rl(noisy: np.ndarray, seed: int, precision: str = "float32"):
    """Default-size VAE, a cluster index of its latents and a SAC agent: what a trained run holds."""
    from data.color import rgb_to_yuv
    from data.patches import split_patches
    from models.clusters import ClusterConfig, ClusterIndex, latent_stream_from_patches
    from models.vae import VAEConfig, build_vae
    from rl.envs.latent_filter import FilterEnvConfig, LatentFilterEnv
    from rl.vae_adapter import latent_model_from_vae
    from rl.sac import SACAgent, SACConfig
    from utils import set_seeds

    set_seeds(seed)
    vae = build_vae(VAEConfig(precision=precision))
    patches, _ = split_patches(rgb_to_yuv(noisy), 16, 4)
    stream = latent_stream_from_patches(vae, lambda: (patches[i:i + 4096] for i in range(0, len(patches), 4096)))
    clusters = ClusterIndex.build(stream, ClusterConfig(num_clusters=16, cap=4096, seed=seed))
    latent = latent_model_from_vae(vae, clusters, k=8)
    env_cfg = FilterEnvConfig()
    env = LatentFilterEnv(latent, env_cfg)
    agent = SACAgent(env.state_dim, env.action_dim, SACConfig(), seed=seed)
    return vae, latent, agent, env_cfg


def vae_flops_per_patch(vae) -> int:
    """Floating-point operations (2 per multiply-add) of one patch through every encoder, T and
    decoder, from the layer shapes: a convolution applies its kernel at every output position, a
    transposed one at every input position. Biases and activations are left out (a lower bound)."""
    import keras

    macs = 0
    for sub in vae.submodels().values():
        for layer in sub.layers:
            if isinstance(layer, keras.layers.Conv2DTranspose):
                macs += int(np.prod(layer.input.shape[1:3])) * int(np.prod(layer.kernel.shape))
            elif isinstance(layer, keras.layers.Conv2D):
                macs += int(np.prod(layer.output.shape[1:3])) * int(np.prod(layer.kernel.shape))
            elif isinstance(layer, keras.layers.Dense):
                macs += int(np.prod(layer.kernel.shape))
    return 2 * macs


def matmul_rate(repeats: int, n: int = 1024) -> float:
    """FLOP/s of a compiled float32 n x n matmul, fastest of several: what this machine's cores sustain at best."""
    import tensorflow as tf

    a = tf.random.stateless_normal((n, n), seed=(0, 1))
    b = tf.random.stateless_normal((n, n), seed=(0, 2))
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()  # warm-up
    times = []
    for _ in range(max(repeats, 10)):  # the fastest run: a peak rate, so the floor is a true lower bound
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times)


def training_rate(steps: int, batch: int, seed: int, precision: str = "float32") -> float:
    """Patch pairs/s of train_vae: (long run - short run) time over the extra patches."""
    import tensorflow as tf

    from models.training import TrainConfig, train_vae
    from models.vae import VAEConfig, build_vae

    clean, noisy = make_images(8, seed + 1)
    images = tf.data.Dataset.from_tensor_slices((noisy, clean.astype(np.float32) / 255.0)).batch(4)

    def run(n):
        model = build_vae(VAEConfig(lambda_eq=0.1, precision=precision))
        cfg = TrainConfig(epochs=1, steps_per_epoch=n, batch_size=batch, shuffle_buffer=4096, seed=seed, progress=False)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            train_vae(model, images, cfg, work)
        return time.perf_counter() - start

    run(2)  # warm-up: the first run in a process also pays one-off library start-up costs
    short = run(2)
    long = run(2 + steps)
    if long <= short:
        raise SystemExit("training timing: the long run was not slower than the short one; raise --train_steps")
    return steps * batch / (long - short)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8, help="256x256 images per RSE-RL timing")
    p.add_argument("--bm3d_images", type=int, default=1, help="images per BM3D timing (it is slow)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train_steps", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                   choices=["float32", "mixed_bfloat16"], help="VAE compute policies to time (same run)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up lines")
    args = p.parse_args(argv)

    from models.vae import denoise_image, inference_precision
    from rl.inference import filter_images

    clean, noisy = make_images(args.images, args.seed)
    rates: dict[str, float] = {}  # images/s by row name

    def timed(name: str, fn, n: int) -> None:
        seconds = median_seconds(fn, args.repeats)
        rates[name] = n / seconds
        print(f"{name:58s} {n / seconds:9.3f} images/s  ({seconds / n:.3f} s/image)", flush=True)

    print(f"{SIZE}x{SIZE} colour, gaussian_var {NOISE_VAR}, medians of {args.repeats}, "
          f"{os.cpu_count()} CPU cores (shared machine: compare rows of one run); "
          f"denoise.py's --precision auto is {inference_precision('auto')} here")
    first = None
    for precision in args.precisions:
        vae, latent, agent, env_cfg = build_rse_rl(noisy, args.seed, precision)
        first = first or (vae, latent, env_cfg)
        timed(f"{AGENT} [{precision}]", lambda: filter_images(noisy, agent, latent, env_cfg), len(noisy))
        timed(f"{ALONE} [{precision}]", lambda: filter_images(noisy, None, latent, env_cfg), len(noisy))
        timed(f"{EXACT} [{precision}]",
              lambda: [denoise_image(vae, img, overlap=4, symmetrise=True) for img in noisy], len(noisy))
    vae, latent, env_cfg = first
    eager = dataclasses.replace(latent, encode=lambda p: vae.encode(p)[0], transform=vae.transform, decode=vae.decode)
    timed(f"{EAGER} [{args.precisions[0]}]", lambda: filter_images(noisy, None, eager, env_cfg), len(noisy))
    print(f"compiled / eager inference (VAE alone, {args.precisions[0]}): "
          f"{rates[f'{ALONE} [{args.precisions[0]}]'] / rates[f'{EAGER} [{args.precisions[0]}]']:.1f}x", flush=True)
    try:
        import bm3d
    except ImportError:
        print("bm3d not installed (pip install bm3d; free for non-commercial use only): no BM3D row, no ratio")
        bm3d = None
    if bm3d is not None:
        sigma = float(np.sqrt(NOISE_VAR))
        subset = noisy[:args.bm3d_images]
        timed(BM3D, lambda: [bm3d.bm3d_rgb(img, sigma) for img in subset], len(subset))
        ref = rates[BM3D]
        for precision in args.precisions:
            print(f"ratio RSE-RL (VAE + agent) / BM3D [{precision}]: {rates[f'{AGENT} [{precision}]'] / ref:.1f}x  (goal >= 35x)")
            print(f"ratio RSE-RL exact D4 / BM3D [{precision}]:       {rates[f'{EXACT} [{precision}]'] / ref:.1f}x  (goal >= 5x)")
    flops = vae_flops_per_patch(vae) * patches_per_image()
    peak = matmul_rate(args.repeats)
    floor = flops / peak
    print(f"VAE compute per image: {flops / 1e9:.1f} GFLOP ({patches_per_image()} patches); "
          f"this machine's float32 matmul rate {peak / 1e9:.0f} GFLOP/s; so the float32 VAE alone needs at least "
          f"{floor:.3f} s/image here", flush=True)
    if bm3d is not None:
        print(f"ceiling at that floor (no agent, no overhead): {1.0 / floor / ref:.0f}x BM3D")
    train = {precision: training_rate(args.train_steps, args.batch_size, args.seed, precision)
             for precision in args.precisions}
    for precision, rate in train.items():
        print(f"VAE training (train_vae, batch {args.batch_size}, lambda_eq 0.1) [{precision}]: {rate:.0f} patch pairs/s")


if __name__ == "__main__":
    main()
