"""R3L training speed: PPO episodes per CPU-minute, the old path against the new, in one run.

old: the step-by-step path (`PPO.train_episode_eager`: one host call per policy step and
per update pass, GAE on the host) with a float32 network, i.e. what experiment_r3l.py
ran before the compiled episode. new: `PPO.train_episode` (rollout + GAE + every pass in
one compiled call) with the network in mixed bfloat16 (float32 outputs). Both at the
authors' settings (batch 32 x 70x70, 15 passes) and at the CPU settings (batch 16 x
48x48, 4 passes), 6 steps, random crops of a synthetic image. Also the warm start's
cloning episode (`PPO.clone_episode`) at the CPU settings.

The measure is process CPU time (all threads), so a shared machine changes it less than
wall time; both are printed. Each path: one warm-up episode (tracing), then the median
of --repeats episodes. Each row also prints its arithmetic rate, GFLOP per CPU-second (the
episode's convolution FLOPs: 6 forward steps of the rollout, then per update pass 6 steps
of forward + backward, counted as 3 forwards), and the run ends with the ceiling that rate
can reach here: one 64->64 3x3 convolution (the network's bulk) forward + backward at the
CPU settings' size, float32 and bfloat16. When the old path already runs near the float32
ceiling, the new path's speed-up is bounded by the bfloat16 / float32 ratio of that line.

    python bench/r3l.py [--repeats 2] [--paper_repeats 1] [--skip_paper]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.r3l_net import R3LNet, R3LNetConfig  # noqa: E402
from rl.envs.residual import ResidualRecoveryEnv  # noqa: E402
from rl.ppo import PPO, PPOConfig  # noqa: E402

SETTINGS = {"authors (32 x 70x70, 15 passes)": (32, 70, 15), "CPU (16 x 48x48, 4 passes)": (16, 48, 4)}


def _batch(batch: int, crop: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:crop, :crop] / crop
    clean = 0.5 + 0.3 * np.sin(6 * yy[None] + rng.uniform(0, 6, (batch, 1, 1))) * np.cos(5 * xx[None])
    clean = clean[..., None].astype(np.float32)
    return np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32), clean


def _median_episode(run, repeats: int) -> tuple[float, float]:
    """(median CPU seconds, median wall seconds) of one episode, after one warm-up episode."""
    run()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall))


def conv_macs_per_pixel(net: tf.keras.Model) -> int:
    """Multiply-adds per pixel of one forward pass: every Conv2D is stride 1, 'same' padded."""
    return int(sum(np.prod(layer.kernel.shape) for layer in net.named_convs().values()))


def episode_gflop(macs_per_pixel: int, batch: int, crop: int, passes: int, steps: int = 6) -> float:
    """Convolution GFLOP of one PPO episode: the rollout's forwards, then each pass's forward + backward."""
    forwards = steps + passes * steps * 3
    return 2.0 * macs_per_pixel * batch * crop * crop * forwards / 1e9


def kernel_ceiling(batch: int = 16, crop: int = 48, repeats: int = 5) -> dict[str, float]:
    """GFLOP per CPU-second of one 64->64 3x3 convolution, forward + backward, per compute dtype."""
    rates = {}
    for dtype in (tf.float32, tf.bfloat16):
        x = tf.Variable(tf.cast(tf.random.normal([batch, crop, crop, 64]), dtype))
        w = tf.Variable(tf.cast(tf.random.normal([3, 3, 64, 64], stddev=0.05), dtype))

        @tf.function
        def fwd_bwd(x=x, w=w):
            with tf.GradientTape() as tape:
                y = tf.nn.conv2d(x, w, 1, "SAME")
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            gx, gw = tape.gradient(loss, [x, w])  # backward: input and filter gradients, 2 forwards' work
            return tf.reduce_sum(tf.cast(gx, tf.float32)) + tf.reduce_sum(tf.cast(gw, tf.float32))

        def run():
            for _ in range(10):
                fwd_bwd().numpy()

        cpu, _ = _median_episode(run, repeats)
        flop = 10 * 3 * 2.0 * 9 * 64 * 64 * batch * crop * crop
        rates[dtype.name] = flop / cpu / 1e9
    return rates


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2, help="timed episodes per path at the CPU settings")
    p.add_argument("--paper_repeats", type=int, default=1, help="timed episodes per path at the authors' settings")
    p.add_argument("--skip_paper", action="store_true", help="CPU settings only")
    args = p.parse_args(argv)
    print(f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__} (shared machine: compare rows of one run)", flush=True)
    rows = []
    for name, (batch, crop, passes) in SETTINGS.items():
        if args.skip_paper and passes == 15:
            continue
        repeats = args.paper_repeats if passes == 15 else args.repeats
        noisy, clean = _batch(batch, crop)
        rates = {}
        paths = {"old: eager, float32": ("float32", "eager"), "new: compiled, mixed bf16": ("mixed_bfloat16", "compiled")}
        if passes == 4:
            paths["warm start (cloning), compiled, mixed bf16"] = ("mixed_bfloat16", "clone")
        for label, (precision, mode) in paths.items():
            tf.keras.utils.set_random_seed(0)
            net = R3LNet(R3LNetConfig(precision=precision)).build_for()
            ppo = PPO(net, ResidualRecoveryEnv(), PPOConfig(update_passes=passes), seed=0)
            run = {"eager": lambda: ppo.train_episode_eager(noisy, clean),
                   "compiled": lambda: ppo.train_episode(noisy, clean),
                   "clone": lambda: ppo.clone_episode(noisy, clean, clean)}[mode]
            cpu, wall = _median_episode(run, repeats)
            rates[label] = 60.0 / cpu
            rows.append((name, label, cpu, wall, 60.0 / cpu))
            # a cloning episode is one rollout and one update step
            gflop = episode_gflop(conv_macs_per_pixel(net), batch, crop, 1 if mode == "clone" else passes)
            print(f"{name:32s} {label:44s} {cpu:7.1f} CPU-s/episode {wall:7.1f} s wall  "
                  f"{60.0 / cpu:6.2f} episodes/CPU-min  {gflop / cpu:5.0f} GFLOP/CPU-s", flush=True)
        old, new = rates["old: eager, float32"], rates["new: compiled, mixed bf16"]
        print(f"{name:32s} new / old: {new / old:.2f}x episodes per CPU-minute (target >= 3x)", flush=True)
    ceiling = kernel_ceiling()
    print("ceiling: one 64->64 3x3 conv at 16 x 48x48, forward + backward: "
          + ", ".join(f"{k} {v:.0f} GFLOP/CPU-s" for k, v in ceiling.items())
          + f" (bfloat16 / float32 {ceiling['bfloat16'] / ceiling['float32']:.2f}x)", flush=True)
    print("command: python bench/r3l.py " + " ".join(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
