"""Peak memory of VAE training on 10 vs 100 TFRecord shards of the same size: training streams.

Two shard sets are written with the project's writer (`data.celeba.write_tfrecords`),
10 and 100 shards of --images_per_shard images each. Each set is trained on in a fresh
process, through the pipeline's own path (`data.pairs.tfrecord_train_pairs` -> batches of
images -> `models.training.train_vae`), for the same number of steps: one pass over the
100-shard set, i.e. ten passes over the 10-shard set (train_vae cycles the data), so both
runs do the same work and only the data size differs. The parent reads each process's peak
resident set size from `os.wait4` (the child's rusage, ru_maxrss). If training held the
data, the 100-shard run would need the extra data's size (printed) on top.

What memory is bounded by: the model, TensorFlow, the patch shuffle buffer
(--shuffle_buffer patch pairs; the 10-shard set already fills it) and tf.data prefetching,
none of which grows with the number of shards.

    python bench/memory.py [--images_per_shard 10] [--size 64] [--batch_size 512]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SHARD_COUNTS = (10, 100)


def write_shards(out_dir: Path, shards: int, per_shard: int, size: int, seed: int) -> int:
    """`shards` shards of `per_shard` smooth random colour images (size x size); returns bytes on disk."""
    import cv2

    from data.celeba import write_tfrecords

    rng = np.random.default_rng(seed)

    def images():
        for _ in range(shards * per_shard):
            small = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
            yield cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)

    paths = write_tfrecords(images(), out_dir, prefix="train", images_per_shard=per_shard)
    assert len(paths) == shards, (len(paths), shards)
    return sum(p.stat().st_size for p in paths)


def train_child(args: argparse.Namespace) -> None:
    """--steps steps of VAE training on --data; prints a JSON line with seconds and the last loss."""
    from data.noise import parse_noise
    from data.pairs import tfrecord_train_pairs
    from models.training import TrainConfig, train_vae
    from models.vae import VAEConfig, build_vae

    pairs = tfrecord_train_pairs(args.data, parse_noise("gaussian_var", 0.02), seed=0, file_batch=5)
    images = pairs.batch(8)  # --images_per_batch, as pipeline.streams.vae_training_images does
    model = build_vae(VAEConfig(lambda_eq=0.0))  # as measured in docs/benchmarks.md (no D4 loss)
    cfg = TrainConfig(epochs=1, steps_per_epoch=args.steps, batch_size=args.batch_size,
                      shuffle_buffer=args.shuffle_buffer, progress=False)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        history = train_vae(model, images, cfg, work)
    print(json.dumps({"seconds": time.perf_counter() - start, "loss": history["total"][-1]}))


def run_child(data: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """Train in a fresh process; (its peak RSS in MiB, what it printed)."""
    cmd = [sys.executable, __file__, "--child", "--data", str(data), "--batch_size", str(args.batch_size),
           "--shuffle_buffer", str(args.shuffle_buffer), "--steps", str(args.steps)]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"training on {data} failed (exit {proc.returncode}):\n{text}")
    peak_mib = usage.ru_maxrss / 1024.0  # Linux: KiB
    return peak_mib, json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images_per_shard", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="image side (pixels)")
    p.add_argument("--batch_size", type=int, default=512, help="patch pairs per step")
    p.add_argument("--shuffle_buffer", type=int, default=2000, help="patch pairs in the shuffle buffer")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        train_child(args)
        return
    patches_per_image = ((args.size - 4 + 11) // 12) ** 2  # block 16, overlap 4
    args.steps = SHARD_COUNTS[-1] * args.images_per_shard * patches_per_image // args.batch_size
    print(f"VAE training, {args.steps} steps, shards of {args.images_per_shard} images {args.size}x{args.size}x3, "
          f"--batch_size {args.batch_size}, shuffle buffer {args.shuffle_buffer} patch pairs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in SHARD_COUNTS:
            folder = Path(tmp) / f"shards{count}"
            disk = write_shards(folder, count, args.images_per_shard, args.size, seed=count)
            images = count * args.images_per_shard
            held = images * patches_per_image * 2 * 16 * 16 * 3 * 4  # float32 (noisy, clean) patch pairs
            peak, info = run_child(folder, args)
            rows.append(peak)
            print(f"{count:4d} shards: {images:5d} images, {disk / 2**20:6.1f} MiB on disk "
                  f"({held / 2**20:7.1f} MiB as float patch pairs); peak RSS {peak:7.1f} MiB; "
                  f"{info['seconds']:.0f} s")
    ratio = rows[1] / rows[0]
    print(f"peak RSS 100 / 10 shards: {ratio:.3f} ({abs(ratio - 1) * 100:.1f}% apart; target < 10%)")


if __name__ == "__main__":
    main()
