"""Every stage on the test set in one streaming pass: the noisy input, the classical baselines (and
the authors' VAE), the VAE alone, the VAE + agent of round 0, and each later round applied to the
previous round's output. Also the SIDD benchmark submission.
"""
from __future__ import annotations

import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
from tqdm import tqdm

from data.color import to_model_space
from data.images import to_uint8
from data.patches import split_patches
from data.sidd import write_sidd_submission
from evaluation import psnr, ssim, uqi
from models.equivariance import relative_equivariance_error
from models.io import import_authors_weights, load_model
from models.vae import denoise_image
from pipeline.config import RunConfig
from pipeline.rounds import RoundModels
from pipeline.streams import RunData
from rl.envs.latent_filter import noise_estimate

LOG = logging.getLogger("rse_rl")
AUTHORS_STAGE = "authors' VAE weights"
COMPILED_BASELINES = frozenset({AUTHORS_STAGE})  # compiled on first use: warmed up before timing


def stage_names(baselines: list[str], rounds: int) -> list[str]:
    return ["noisy input", *baselines, "VAE", "VAE + agent (round 0)", *(f"round {r}" for r in range(1, rounds))]


def evaluate(cfg: RunConfig, data: RunData, rounds: list[RoundModels]) -> dict:
    """Score every stage on the test set in one streaming pass; returns the report dict."""
    baselines = baseline_functions(cfg)
    names = stage_names(list(baselines), len(rounds))
    per_image: list[dict] = []
    timings = {name: 0.0 for name in names}
    examples: dict[str, list[np.ndarray]] = {}
    vae_alone = RoundModels(rounds[0].vae, rounds[0].clusters, rounds[0].agent, rounds[0].latent, use_agent=False)

    # Untimed warm-up on the first test image: the inference graphs compile once per input
    # shape, and that one-off cost would otherwise land on whichever stage runs first.
    for pair in itertools.islice(data.test.open(), 1):
        for name in COMPILED_BASELINES & baselines.keys():
            baselines[name](pair.noisy)
        for models in [vae_alone, *rounds]:
            models.apply(pair.noisy[None], cfg)
    for pair in tqdm(data.test.open(), total=data.test.size, desc="evaluating", unit="image",
                     disable=not sys.stderr.isatty()):
        outputs: dict[str, np.ndarray] = {"noisy input": pair.noisy}
        for name, fn in baselines.items():
            start = time.perf_counter()
            outputs[name] = fn(pair.noisy)
            timings[name] += time.perf_counter() - start
        start = time.perf_counter()
        outputs["VAE"] = vae_alone.apply(pair.noisy[None], cfg)[0]
        timings["VAE"] += time.perf_counter() - start
        current = pair.noisy
        for r, models in enumerate(rounds):
            start = time.perf_counter()
            current = models.apply(current[None], cfg)[0]
            name = "VAE + agent (round 0)" if r == 0 else f"round {r}"
            timings[name] += time.perf_counter() - start
            outputs[name] = current
        if pair.clean is not None:
            for name, out in outputs.items():
                per_image.append({"image": pair.name, "stage": name, "psnr": psnr(pair.clean, out),
                                  "ssim": ssim(pair.clean, out), "uqi": uqi(pair.clean, out)})
        if len(examples.get("clean", [])) < 3:
            examples.setdefault("clean", []).append(to_uint8(pair.clean if pair.clean is not None else pair.noisy))
            for name, out in outputs.items():
                examples.setdefault(name, []).append(to_uint8(out))
    stages = [_stage_row(name, per_image, timings[name] / max(1, data.test.size)) for name in names]
    vae_row = stages[names.index("VAE")]
    probe = _probe_patches(cfg, examples["noisy input"][0])
    vae_row["eq_error"] = relative_equivariance_error(rounds[0].vae.denoise_fn, probe)
    if cfg.symmetrise:  # the mode every VAE stage ran in
        vae_row["eq_error_exact"] = relative_equivariance_error(
            lambda x: rounds[0].vae.denoise_patches(x, symmetrise=True), probe)
    return {"stages": stages, "per_image": per_image, "examples": examples}


def _stage_row(name: str, per_image: list[dict], seconds_per_image: float) -> dict:
    rows = [row for row in per_image if row["stage"] == name]
    stage: dict = {"stage": name}
    for metric in ("psnr", "ssim", "uqi"):
        stage[metric] = float(np.mean([row[metric] for row in rows])) if rows else None
    stage["eq_error"] = None
    stage["seconds_per_image"] = seconds_per_image
    return stage


def _probe_patches(cfg: RunConfig, image_uint8: np.ndarray) -> np.ndarray:
    """Model-space patches of one test image: where the relative equivariance error is measured."""
    patches, _ = split_patches(to_model_space(image_uint8.astype(np.float32)[None] / 255.0),
                               cfg.vae.block_size, cfg.env.overlap)
    return patches[:512]


def baseline_functions(cfg: RunConfig) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Classical baselines (scikit-image NLM and TV, BM3D if installed, the authors' VAE)."""

    def sigma_of(img):
        """Blind noise std (the same Immerkaer estimate the agent sees), as the baselines get no oracle."""
        return float(noise_estimate(img[None]).mean())

    functions: dict[str, Callable] = {}
    if "nlm" in cfg.baselines:
        functions["non-local means"] = lambda img: denoise_nl_means(
            img, h=0.8 * sigma_of(img), sigma=sigma_of(img), fast_mode=True, patch_size=5,
            patch_distance=6, channel_axis=-1).astype(np.float32).reshape(img.shape)  # NLM drops a single channel
    if "tv" in cfg.baselines:
        functions["TV (Chambolle)"] = lambda img: denoise_tv_chambolle(
            img, weight=max(0.02, 0.7 * sigma_of(img)), channel_axis=-1).astype(np.float32)
    if "bm3d" in cfg.baselines:
        try:
            import bm3d  # optional (free for non-commercial use only), so imported only when asked for
        except ImportError:
            LOG.warning("BM3D baseline skipped: the optional 'bm3d' package is not installed "
                        "(pip install bm3d; free for non-commercial use only)")
        else:
            def run_bm3d(img):
                sigma = sigma_of(img)
                if img.shape[-1] == 3:
                    return np.clip(bm3d.bm3d_rgb(img, sigma), 0, 1).astype(np.float32)
                return np.clip(bm3d.bm3d(img[..., 0], sigma), 0, 1)[..., None].astype(np.float32)

            functions["BM3D"] = run_bm3d
    if "authors" in cfg.baselines:  # float32, as the authors ran it (the shipped copy unless --authors_weights)
        authors = import_authors_weights(cfg.authors_weights) if cfg.authors_weights else load_model("authors")
        functions[AUTHORS_STAGE] = lambda img: denoise_image(authors, img, overlap=cfg.env.overlap)
    return functions


def write_benchmark_submission(cfg: RunConfig, data: RunData, rounds: list[RoundModels]) -> Path:
    """Every round applied in turn to the SIDD benchmark blocks; SubmitSrgb.mat in --out_dir."""
    blocks = data.benchmark_blocks
    flat = blocks.reshape(-1, *blocks.shape[-3:]).astype(np.float32) / 255.0
    for models in rounds:
        flat = models.apply(flat, cfg)
    return write_sidd_submission(to_uint8(flat).reshape(blocks.shape), cfg.out_dir)
