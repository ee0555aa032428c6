"""VAE training speed of this tree against an older commit's, in one run.

#14's training target is a ratio to the patch pairs/s of commit c728e22, and timing on a shared
machine moves by 2x between runs, so both trees are timed here side by side: the commit is
checked out into a temporary git worktree, and each row runs in a process of its own (the tree
on sys.path), round-robin, `--repeats` times; medians. Every row times the same training step
(a fresh default VAE, all loss terms with lambda_eq 0.1, Adam, one random D4 element per step,
as `models.training.make_train_step`) on the same random patch batches; only the model code
differs between the trees. This tree also gets rows with XLA (`jit_compile=True`), with the
D4 term on a quarter of each batch (`VAEConfig.eq_fraction`), in mixed bfloat16
(`VAEConfig.precision`, alone and with the D4 term on a quarter; that last also decoding latent
means, `VAEConfig.sample_std` 0, as the faces recipe of docs/vae.md), and at the batch sizes of
`--tree_batches` (each such row times the same patch pairs in more, smaller steps, so each
must divide --batch x --steps).

    python bench/train_vs_commit.py [--commit c728e22] [--batch 128] [--steps 4] [--repeats 5] [--tree_batches 32]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(root: str, batch: int, steps: int, jit: bool, eq_fraction: float, precision: str,
          sample_std: float) -> None:
    """Time one tree's step; print {"pairs_per_s": ...} as the last line."""
    import time

    sys.path.insert(0, root)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import numpy as np
    import tensorflow as tf

    from models import equivariance
    from models.vae import VAEConfig, build_vae

    options = {"lambda_eq": 0.1}
    if eq_fraction < 1.0:
        options["eq_fraction"] = eq_fraction  # this tree only
    if precision != "float32":
        options["precision"] = precision  # this tree only
    if sample_std != 1.0:
        options["sample_std"] = sample_std
    model = build_vae(VAEConfig(**options))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    rng = tf.random.Generator.from_seed(0)

    def step(noisy, clean):
        g = rng.uniform([], 0, equivariance.GROUP_SIZE, dtype=tf.int32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.losses_per_patch(noisy, clean, g_index=g, training=True, rng=rng)["total"])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    step = tf.function(step, jit_compile=jit)
    patches = np.random.default_rng(0).random((steps, batch, 16, 16, 3)).astype(np.float32)
    batches = [tf.constant(p) for p in patches]
    for b in batches:  # warm-up: tracing (and XLA compilation)
        step(b, b)
    start = time.perf_counter()
    for b in batches:
        out = step(b, b)
    float(out)
    print(json.dumps({"pairs_per_s": steps * batch / (time.perf_counter() - start)}))


def run_row(root: str, args: argparse.Namespace, jit: bool, eq_fraction: float, batch: int,
            precision: str, sample_std: float = 1.0) -> float:
    steps = args.steps * args.batch // batch  # the same patch pairs whatever the batch size
    cmd = [sys.executable, __file__, "--child", root, "--batch", str(batch), "--steps", str(steps),
           "--eq_fraction", str(eq_fraction), "--precision", precision, "--sample_std", str(sample_std)]
    cmd += ["--xla"] if jit else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: the timing process for {root} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["pairs_per_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commit", default="c728e22", help="the baseline commit (the tree #14 measured)")
    p.add_argument("--batch", type=int, default=128, help="patch pairs per step (the pipeline's default)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per row and repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tree_batches", type=int, nargs="*", default=[],
                   help="extra rows: this tree, float32, at these batch sizes")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--eq_fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--sample_std", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min([args.batch, args.steps, args.repeats, *args.tree_batches]) < 1:
        p.error("--batch, --steps, --repeats and --tree_batches must be >= 1")
    if args.child:
        child(args.child, args.batch, args.steps, args.xla, args.eq_fraction, args.precision, args.sample_std)
        return 0
    pairs = args.batch * args.steps
    uneven = [b for b in args.tree_batches if pairs % b]
    if uneven:
        p.error(f"--tree_batches {' '.join(map(str, uneven))}: each must divide --batch x --steps = {pairs} "
                "(every row times the same patch pairs)")
    import numpy as np

    with tempfile.TemporaryDirectory() as work:
        baseline = Path(work) / "baseline"
        added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.commit],
                               capture_output=True, text=True)
        if added.returncode:
            raise SystemExit(f"error: --commit {args.commit}: git could not check it out ({added.stderr.strip()})")
        try:
            rows = {
                f"commit {args.commit}, float32": (str(baseline), False, 1.0, args.batch, "float32"),
                "this tree, float32": (str(ROOT), False, 1.0, args.batch, "float32"),
                "this tree, float32, XLA": (str(ROOT), True, 1.0, args.batch, "float32"),
                "this tree, float32, D4 on 25% of a batch": (str(ROOT), False, 0.25, args.batch, "float32"),
                "this tree, mixed_bfloat16": (str(ROOT), False, 1.0, args.batch, "mixed_bfloat16"),
                "this tree, mixed_bfloat16, D4 on 25%": (str(ROOT), False, 0.25, args.batch, "mixed_bfloat16"),
                "  the same, decoding latent means": (str(ROOT), False, 0.25, args.batch, "mixed_bfloat16", 0.0),
                **{f"this tree, float32, batch {b}": (str(ROOT), False, 1.0, b, "float32") for b in args.tree_batches},
            }
            rates: dict[str, list[float]] = {name: [] for name in rows}
            for r in range(args.repeats):
                for name, row in rows.items():
                    rates[name].append(run_row(row[0], args, *row[1:]))
                print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], capture_output=True)
    medians = {name: float(np.median(v)) for name, v in rates.items()}
    first = medians[next(iter(medians))]
    print(f"VAE training step, batch {args.batch} unless named, medians of {args.repeats} round-robin repeats (patch pairs/s):")
    for name, value in medians.items():
        print(f"  {name:45s} {value:8.0f}  {value / first:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
