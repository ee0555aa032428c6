"""Image quality metrics (PSNR, SSIM, UQI: what the paper reports) and the stage table.

The reported metrics compare uint8 images (0..255 data range) at their true size; float
inputs in [0, 1] are rounded to uint8 first, as a saved PNG would be. `batch_psnr` takes
float batches as they are (the agent's reward). Imports only `data/` (and scikit-image /
sewar lazily), so every layer may use the metrics.
"""
from __future__ import annotations

import csv
import importlib.metadata as md
import io
import math
import platform
import subprocess
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from data.images import to_uint8
from utils import atomic_write, atomic_write_json, atomic_write_text

# scikit-image, sewar and matplotlib are imported where they are used: the agent's reward
# imports this module for `batch_psnr`, and should not pay for loading them.

METRICS = ("psnr", "ssim", "uqi")


def _pair(clean, test) -> tuple[np.ndarray, np.ndarray]:
    clean, test = to_uint8(clean), to_uint8(test)
    if clean.shape != test.shape:
        raise ValueError(f"images differ in shape: {clean.shape} vs {test.shape}")
    return clean, test


def batch_psnr(clean, test, data_range: float = 1.0) -> np.ndarray:
    """(N,) PSNR in dB of two image batches (N, ...) taken as they are (no rounding); inf where equal.

    The one PSNR formula: `psnr` (what the tables report) and the agent's reward both use it.
    """
    clean, test = np.asarray(clean, np.float64), np.asarray(test, np.float64)
    if clean.shape != test.shape:
        raise ValueError(f"images differ in shape: {clean.shape} vs {test.shape}")
    mse = np.mean((clean - test) ** 2, axis=tuple(range(1, clean.ndim)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def psnr(clean, test) -> float:
    """PSNR in dB of one image pair as saved (rounded to uint8), data range 255 (inf when identical)."""
    clean, test = _pair(clean, test)
    return float(batch_psnr(clean[None], test[None], 255.0)[0])


def ssim(clean, test) -> float:
    """SSIM of one (H, W, C) or (H, W) pair: scikit-image, Gaussian-free default window, channel_axis."""
    from skimage.metrics import structural_similarity

    clean, test = _pair(clean, test)
    if clean.ndim == 3 and clean.shape[2] == 1:
        clean, test = clean[:, :, 0], test[:, :, 0]
    channel_axis = -1 if clean.ndim == 3 else None
    return float(structural_similarity(clean, test, data_range=255, channel_axis=channel_axis))


def uqi(clean, test) -> float:
    """Universal quality index (sewar, window 8) of one image pair."""
    from sewar.full_ref import uqi as sewar_uqi

    clean, test = _pair(clean, test)
    if clean.ndim == 3 and clean.shape[2] == 1:
        clean, test = clean[:, :, 0], test[:, :, 0]
    return float(sewar_uqi(clean, test, ws=8))


def score_images(clean: Iterable, test: Iterable, metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Per-image metric arrays for two equally long sequences of images (any sizes)."""
    functions = {"psnr": psnr, "ssim": ssim, "uqi": uqi}
    scores: dict[str, list[float]] = {name: [] for name in metrics}
    for c, t in zip(clean, test, strict=True):
        for name in metrics:
            scores[name].append(functions[name](c, t))
    return {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}


def mean_scores(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-image metric array."""
    return {name: float(np.mean(values)) for name, values in scores.items()}


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None, title: str = "") -> str:
    """A plain-text table of dict rows (first column left-aligned, numbers with 4 digits).

    Used by every script so that all results print the same way.
    """
    if not rows:
        return title
    columns = list(columns or rows[0].keys())

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return "inf" if math.isinf(value) else f"{value:.4g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}"
        return str(value)

    cells = [[cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:])]
        return "  ".join([first, *rest])

    out = [title] if title else []
    out += [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


# ----- reports ------------------------------------------------------------------------------------
def environment_info() -> dict:
    """Package versions and the git commit, recorded in every results.json."""
    versions = {}
    for name in ("tensorflow", "tensorflow-probability", "numpy", "scikit-image", "sewar", "opencv-python-headless", "bm3d"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "packages": versions, "git_commit": commit}


def write_report(out_dir, report: Mapping) -> None:
    """results.json (config, versions, commit, stages, per-image rows, timings), results.csv, figures."""
    out_dir = Path(out_dir)
    body = {k: v for k, v in report.items() if k != "examples"}
    body["environment"] = environment_info()
    atomic_write_json(out_dir / "results.json", body)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["image", "stage", "psnr", "ssim", "uqi"])
    writer.writeheader()
    writer.writerows(report.get("per_image", []))
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    if report.get("examples"):
        write_figures(out_dir / "figures", report["stages"], report["examples"])


def write_figures(folder, stages: Sequence[Mapping], examples: Mapping[str, list]) -> None:
    """noisy / denoised / clean grid, PSNR per stage, and first-vs-last round difference image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rounds = [s["stage"] for s in stages if s["stage"].startswith(("VAE + agent", "round "))]
    last = rounds[-1] if rounds else "VAE"

    def save(fig, name):
        atomic_write(folder / name, lambda fh: fig.savefig(fh, format="png", dpi=100, bbox_inches="tight"), mode="wb")
        plt.close(fig)

    columns = ["noisy input", "VAE", last, "clean"]
    n = len(examples["clean"])
    fig, axes = plt.subplots(n, len(columns), figsize=(3 * len(columns), 3 * n), squeeze=False)
    for i in range(n):
        for j, name in enumerate(columns):
            img = examples[name][i]
            axes[i, j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(name)
    save(fig, "grid.png")

    scored = [s for s in stages if s.get("psnr") is not None]
    if scored:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.bar(range(len(scored)), [s["psnr"] for s in scored])
        ax.set_xticks(range(len(scored)), [s["stage"] for s in scored], rotation=30, ha="right")
        ax.set_ylabel("PSNR (dB)")
        ax.set_ylim(min(s["psnr"] for s in scored) - 2, max(s["psnr"] for s in scored) + 1)
        save(fig, "psnr_per_stage.png")

    if len(rounds) >= 1:
        first, final = examples[rounds[0]][0].astype(np.float32), examples[last][0].astype(np.float32)
        diff = np.abs(final - first).mean(axis=-1)
        fig, ax = plt.subplots(figsize=(4, 4))
        shown = ax.imshow(diff, cmap="magma")
        ax.set_title(f"|{last} - {rounds[0]}|")
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046)
        save(fig, "round_difference.png")
