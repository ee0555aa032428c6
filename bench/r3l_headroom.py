"""How far can R3L's action family go, and how much of it did a trained run take?

R3L acts by 6 per-pixel residuals in {-13..13}/255: toward the clean image that family
reaches every pixel whose noise is under 78 grey levels (the ground-truth oracle is the
clean image itself, almost everywhere, at these sigmas), so the informative ceiling is the
expert that plays the family toward DnCNN-25's estimate (`ResidualRecoveryEnv.expert_rollout`,
the teacher of `--warm_start dncnn`): what a perfect cloning of the warm start would give,
before PPO. The bench prints it beside DnCNN's own float estimate and the oracle's
fraction of unreachable pixels. With `--run_dir` (and no --limit) it also reads that run's
results.json and prints the share of the teacher's gain over the noisy input that the warm
start alone and the method reached.

The test noise is experiment_r3l.py's: image i (sorted by name) at sigma s gets
`add_noise(clean, sigma s, (seed, round(1000 s), i))`, so the rows line up with a run's table.

    python bench/r3l_headroom.py --test_dir ../shared/data/test/BSD68 \
        --init_dncnn ../shared/data/weights/dncnn/dncnn_gray_sigma25.mat --run_dir runs/r3l_bsd68
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from data.errors import DataError, run_cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--test_dir", required=True, help="folder of grey test images (e.g. BSD68)")
    p.add_argument("--init_dncnn", required=True, help="DnCNN MatConvNet .mat (the warm start's teacher)")
    p.add_argument("--test_sigmas", type=float, nargs="+", default=[15, 25, 35])
    p.add_argument("--seed", type=int, default=0, help="experiment_r3l.py's --seed (test noise)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--run_dir", default=None, help="an experiment_r3l.py --out_dir with results.json")
    return p.parse_args(argv)


def expert_output(env, noisy: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The image after the expert's 6 quantised steps toward `target` (float, [0, 1] scale)."""
    image = noisy[None]
    for actions in env.expert_rollout(image, target[None]):
        image = image + env.residuals(actions)
    return np.asarray(image)[0]


def run(args: argparse.Namespace) -> list[dict]:
    from tqdm import tqdm

    from data.folders import load_folder
    from data.images import to_uint8
    from data.noise import add_noise, parse_noise
    from evaluation import format_table, psnr
    from models.dncnn_import import dncnn_denoiser
    from rl.envs.residual import ResidualRecoveryEnv

    if not Path(args.test_dir).is_dir():
        raise DataError(f"--test_dir {args.test_dir}: no such folder")
    if not Path(args.init_dncnn).is_file():
        raise DataError(f"--init_dncnn {args.init_dncnn}: no such file")
    images = load_folder(args.test_dir, colour=False)[:args.limit]
    teacher = dncnn_denoiser(args.init_dncnn)
    env = ResidualRecoveryEnv(max_residual=13, steps=6)
    run_table = {}
    if args.run_dir:
        results = Path(args.run_dir) / "results.json"
        if not results.is_file():
            raise DataError(f"--run_dir {args.run_dir}: no results.json")
        run_table = {float(r["test sigma"]): r for r in json.loads(results.read_text())["table"]}

    rows = []
    for sigma in args.test_sigmas:
        noise = parse_noise("sigma", sigma)
        per = {"noisy": [], "DnCNN (float)": [], "teacher in the action family": [], "oracle: unreachable pixels %": []}
        for i, clean in enumerate(tqdm(images, desc=f"sigma {sigma:g}", file=sys.stderr, mininterval=10)):
            noisy = add_noise(clean, noise, (args.seed, int(round(sigma * 1000)), i)).astype(np.float32)
            estimate = teacher(noisy[None]).numpy()[0]
            per["noisy"].append(psnr(clean, noisy))
            per["DnCNN (float)"].append(psnr(clean, to_uint8(estimate)))
            per["teacher in the action family"].append(psnr(clean, to_uint8(expert_output(env, noisy, estimate))))
            oracle = to_uint8(expert_output(env, noisy, clean.astype(np.float32) / 255.0))
            per["oracle: unreachable pixels %"].append(100.0 * float(np.mean(oracle != clean)))
        row = {"sigma": f"{sigma:g}", **{k: float(np.mean(v)) for k, v in per.items()}}
        found = run_table.get(float(sigma)) if args.limit is None else None
        if found:
            gain = row["teacher in the action family"] - row["noisy"]
            for label in ("warm start alone", "R3L", "R3N"):
                if f"{label} PSNR" in found:
                    row[label] = found[f"{label} PSNR"]
                    row[f"{label}: share of the teacher's gain"] = (found[f"{label} PSNR"] - row["noisy"]) / gain
        rows.append(row)
    print(f"R3L's action family on {args.test_dir} ({len(images)} images, PSNR dB)")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    sys.exit(run_cli(lambda: run(parse_args())))
