"""Fit the `camera` noise model (data/noise.py) to real noisy/ground-truth sRGB pairs.

    python scripts/fit_camera_noise.py --noisy ../shared/data/sidd_real/noisy --gt ../shared/data/sidd_real/gt

For each pair it measures the residual noisy - GT: its std, its std per GT intensity, its
mean (SIDD's high-ISO shots are darker than their GT), its lag-1 autocorrelation and the
correlation between colour channels. The model is then run on the pair's own GT:
- the gain g of each pair is found by bisection so that the simulated std equals the
  measured one; g_min and g_max are the smallest and largest of them;
- the read-noise ratio r (variance g*(x + r) in linear light) is the one of a grid that
  best matches the per-intensity std profiles (RMS of log std ratios over all pairs);
- rho and c are corrected until the simulated lag-1 and channel correlations match the
  mean measured ones (the tone curve and clipping change them slightly).
It prints the per-pair comparison and the `--noise_level` string to use; docs/noise.md
holds the output of a run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.errors import DataError, run_cli  # noqa: E402
from data.images import read_image  # noqa: E402
from data.noise import NoiseConfig, add_noise  # noqa: E402
from data.sidd import pair_noisy_gt_folders  # noqa: E402

BINS = np.array([0, 16, 32, 48, 64, 96, 128, 160, 192, 256])
READ_RATIOS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05)
MIN_BIN_PIXELS = 2000


def residual_stats(noisy: np.ndarray, gt: np.ndarray) -> dict:
    """Statistics of noisy - GT in grey levels: std, mean, lag-1, channel correlation, std per GT bin."""
    d = noisy.astype(np.float64) - gt.astype(np.float64)
    centred = d - d.mean(axis=(0, 1))
    var = centred.var()
    lag1 = 0.5 * ((centred[:, 1:] * centred[:, :-1]).mean() + (centred[1:] * centred[:-1]).mean()) / var
    corr = np.corrcoef(centred.reshape(-1, 3).T)[np.triu_indices(3, 1)].mean()
    bins = np.digitize(gt.ravel(), BINS) - 1
    per_bin = np.array([d.ravel()[bins == b].std() if np.sum(bins == b) >= MIN_BIN_PIXELS else np.nan
                        for b in range(len(BINS) - 1)])
    return {"std": d.std(), "mean": d.mean(), "lag1": lag1, "corr": corr, "per_bin": per_bin,
            "psnr": 10 * np.log10(255.0 ** 2 / np.mean(d ** 2))}


def simulate(gt: np.ndarray, gain: float, r: float, rho: float, c: float, seed: int = 0) -> np.ndarray:
    """The model's noisy version of `gt` (uint8) at a fixed gain, as uint8."""
    noisy = add_noise(gt, NoiseConfig("camera", (gain, gain, r, rho, c)), seed)
    return np.rint(noisy * 255.0).astype(np.uint8)


def fit_gain(gt: np.ndarray, target_std: float, r: float, rho: float, c: float) -> float:
    """Bisection on log gain: simulated residual std = target_std."""
    low, high = np.log(1e-6), np.log(1.0)
    for _ in range(18):
        mid = 0.5 * (low + high)
        std = (simulate(gt, np.exp(mid), r, rho, c).astype(np.float64) - gt).std()
        low, high = (mid, high) if std < target_std else (low, mid)
    return float(np.exp(0.5 * (low + high)))


def run(args: argparse.Namespace) -> None:
    pairs = pair_noisy_gt_folders(args.noisy, args.gt)
    data = []
    for noisy_path, gt_path in pairs:
        noisy, gt = read_image(noisy_path, colour=True), read_image(gt_path, colour=True)
        if noisy.shape != gt.shape:
            raise DataError(f"{noisy_path}: size {noisy.shape} differs from its ground truth {gt_path} {gt.shape}")
        data.append((noisy_path.stem, gt, residual_stats(noisy, gt)))
    rho = float(np.mean([s["lag1"] for _, _, s in data]))
    c = float(np.mean([s["corr"] for _, _, s in data]))
    target_rho, target_c = rho, c
    best = None
    for r in READ_RATIOS:
        gains = [fit_gain(gt, s["std"], r, rho, c) for _, gt, s in data]
        errors = []
        for (_, gt, s), g in zip(data, gains):
            sim = residual_stats(simulate(gt, g, r, rho, c), gt)["per_bin"]
            ok = np.isfinite(s["per_bin"]) & np.isfinite(sim)
            errors.append(np.log(sim[ok] / s["per_bin"][ok]))
        rms = float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))
        print(f"r = {r:<6g} RMS log std-per-intensity error {rms:.3f}")
        if best is None or rms < best[0]:
            best = (rms, r)
    r = best[1]
    for _ in range(args.iterations):  # correct rho and c for what the tone curve and clipping do to them
        gains = [fit_gain(gt, s["std"], r, rho, c) for _, gt, s in data]
        sims = [residual_stats(simulate(gt, g, r, rho, c), gt) for (_, gt, _), g in zip(data, gains)]
        rho = min(0.7, rho * target_rho / np.mean([s["lag1"] for s in sims]))
        c = min(0.95, c * target_c / np.mean([s["corr"] for s in sims]))
    gains = [fit_gain(gt, s["std"], r, rho, c) for _, gt, s in data]
    print(f"\nper pair, measured / simulated on its own GT (grey levels; model r={r:g} rho={rho:.3f} c={c:.3f}):")
    print(f"{'pair':8} {'gain':>9} {'PSNR':>13} {'std':>11} {'mean':>11} {'lag-1':>11} {'chan corr':>11}")
    for (name, gt, s), g in zip(data, gains):
        m = residual_stats(simulate(gt, g, r, rho, c), gt)
        print(f"{name:8} {g:9.2e} {s['psnr']:6.2f}/{m['psnr']:6.2f} {s['std']:5.1f}/{m['std']:5.1f} "
              f"{s['mean']:5.1f}/{m['mean']:5.1f} {s['lag1']:5.2f}/{m['lag1']:5.2f} {s['corr']:5.2f}/{m['corr']:5.2f}")
        print(f"{'':8} std per GT intensity, bins from {', '.join(str(int(b)) for b in BINS)}:")
        print(f"{'':10} measured  " + " ".join("    -" if np.isnan(v) else f"{v:5.1f}" for v in s["per_bin"]))
        print(f"{'':10} simulated " + " ".join("    -" if np.isnan(v) else f"{v:5.1f}" for v in m["per_bin"]))
    level = f"{min(gains):.2e},{max(gains):.2e},{r:g},{rho:.3f},{c:.3f}"
    print(f"\nmeasured mean lag-1 {target_rho:.3f}, channel correlation {target_c:.3f}")
    print(f"--noise camera --noise_level {level}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noisy", required=True, help="folder of real noisy sRGB images")
    p.add_argument("--gt", required=True, help="folder of their ground truths (same file names)")
    p.add_argument("--iterations", type=int, default=2, help="correction passes for rho and c")
    return run_cli(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
