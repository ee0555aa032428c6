"""Image quality metrics (PSNR, SSIM, UQI as in SPEC section 2.9) and the stage table.

All metrics compare uint8 images (0..255 data range) at their true size; float
inputs in [0, 1] are rounded to uint8 first, as a saved PNG would be.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from data.images import to_uint8

METRICS = ("psnr", "ssim", "uqi")


def _pair(clean, test) -> tuple[np.ndarray, np.ndarray]:
    clean, test = to_uint8(clean), to_uint8(test)
    if clean.shape != test.shape:
        raise ValueError(f"images differ in shape: {clean.shape} vs {test.shape}")
    return clean, test


def psnr(clean, test) -> float:
    """PSNR in dB of one image pair, data range 255 (inf when identical)."""
    clean, test = _pair(clean, test)
    mse = np.mean((clean.astype(np.float64) - test.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


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
