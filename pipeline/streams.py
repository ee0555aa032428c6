"""The images each round sees: what a dataset script hands over (`RunData`), round r's inputs
(noisy pairs in round 0, round r-1's enhanced outputs after), the VAE's training stream, the
clean patches of the latent bank, and the agent's pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from data.augment import renoised_pairs, shifted_flipped_pairs
from data.celeba import celeba_dataset
from data.color import to_model_space
from data.errors import ConfigError
from data.pairs import TestSet
from data.patches import split_patches
from pipeline.config import RunConfig


@dataclass
class RunData:
    """What a dataset script hands to the pipeline."""

    description: str
    train_pairs: Callable[[], tf.data.Dataset]  # () -> (noisy, clean) float images in [0, 1], one pass
    test: TestSet
    colour: bool = True
    benchmark_blocks: np.ndarray | None = None  # SIDD benchmark noisy blocks (40, 32, 256, 256, 3)


def enhanced_dir(cfg: RunConfig, r: int):
    """Where round r's outputs on its training inputs are written (round r+1's inputs)."""
    return cfg.out_dir / "enhanced" / f"round{r}"


def enhanced_pairs(cfg: RunConfig, r: int) -> tf.data.Dataset:
    """Round r's enhanced training inputs beside their clean targets, as (input, clean) float pairs."""
    c = 3 if cfg.colour else 1  # enhanced records hold (enhanced, clean) side by side: 2c channels
    enhanced = celeba_dataset(enhanced_dir(cfg, r), expect_channels=2 * c)
    return enhanced.map(lambda x: (tf.cast(x[..., :c], tf.float32) / 255.0, tf.cast(x[..., c:], tf.float32) / 255.0))


def training_stream(cfg: RunConfig, data: RunData) -> tf.data.Dataset:
    """The dataset script's training pairs, in the same order for every phase.

    A tf.data shuffle with an op seed still takes TensorFlow's global seed, read when the dataset
    is built, and every phase sets its own (`phase_seed`); without pinning it, the agent's
    training images and its held-out check images would be cut from differently shuffled
    streams and could overlap. So the global seed is set to the run's seed first.
    """
    tf.random.set_seed(cfg.seed)
    return data.train_pairs()


def round_input_pairs(cfg: RunConfig, data: RunData, r: int) -> tf.data.Dataset:
    """The (input, clean) pairs round r is applied to: noisy ones in round 0, round r-1's outputs after."""
    if r:
        return enhanced_pairs(cfg, r - 1)
    pairs = training_stream(cfg, data)
    return pairs.take(cfg.max_train_images) if cfg.max_train_images else pairs


@dataclass(frozen=True)
class AgentWindows:
    """Round r's pairs 0..train-1 train the agent; the `check` pairs after them are held out for
    the do-no-harm checks (the agent against the VAE alone, the round against its input)."""

    train: int
    check: int


def agent_windows(cfg: RunConfig, data: RunData, r: int) -> AgentWindows:
    """--agent_images and --agent_check_images when round r has pairs for both; otherwise what
    there is, split in the same ratio with at least one pair held out.

    A small training set (a few real photos, a reduced budget) would otherwise leave no pair to
    check on, and an unchecked agent or round could ship a loss. Counting stops at the two
    windows' total, so a large dataset is not read to the end.
    """
    wanted = cfg.agent_images + cfg.agent_check_images
    if not cfg.agent_check_images:
        return AgentWindows(cfg.agent_images, 0)
    available = sum(1 for _ in round_input_pairs(cfg, data, r).take(wanted))
    if available >= wanted:
        return AgentWindows(cfg.agent_images, cfg.agent_check_images)
    if available < 2:
        return AgentWindows(available, 0)
    check = min(available - 1, max(1, round(available * cfg.agent_check_images / wanted)))
    return AgentWindows(available - check, check)


def without_check_pairs(windows: AgentWindows, pairs: tf.data.Dataset) -> tf.data.Dataset:
    """`pairs` minus the held-out window the do-no-harm checks score on (after the agent's images)."""
    return pairs.take(windows.train).concatenate(pairs.skip(windows.train + windows.check))


def vae_training_images(cfg: RunConfig, data: RunData, r: int) -> tf.data.Dataset:
    """The VAE's training stream in round r: the noisy pairs in round 0; in round r >= 1 round r-1's
    outputs (`--finetune_data outputs`), or the noisy pairs and every earlier round's outputs
    (`all`). Round r's held-out check pairs are left out when something is judged on them: the
    round (r >= 1), or the fine-tuning of an --init_from model against the model it started from."""
    if r == 0:
        pairs = round_input_pairs(cfg, data, 0)
        if cfg.init_from and cfg.agent_check_images:
            pairs = without_check_pairs(agent_windows(cfg, data, 0), pairs)
        if cfg.fresh_noise:
            if cfg.noise is None:
                raise ConfigError("--fresh_noise needs a synthetic --noise model")
            pairs = renoised_pairs(pairs, cfg.noise, cfg.seed)
        return augmented(cfg, pairs).batch(cfg.images_per_batch, drop_remainder=False)
    earlier = range(r) if cfg.finetune_data == "all" else [r - 1]
    windows = agent_windows(cfg, data, r)
    streams = [without_check_pairs(windows, enhanced_pairs(cfg, previous)) for previous in earlier]
    if cfg.finetune_data == "all":
        streams.insert(0, round_input_pairs(cfg, data, 0))
    mixed = streams[0]
    for other in streams[1:]:
        mixed = mixed.concatenate(other)
    return augmented(cfg, mixed).batch(cfg.images_per_batch, drop_remainder=False)


def augmented(cfg: RunConfig, pairs: tf.data.Dataset) -> tf.data.Dataset:
    """The VAE's training pairs with `--augment_shift`'s random shifts and flips (new every epoch)."""
    return shifted_flipped_pairs(pairs, cfg.augment_shift, cfg.seed) if cfg.augment_shift else pairs


def clean_patch_batches(cfg: RunConfig, data: RunData) -> Iterator[np.ndarray]:
    """Clean training images -> model-space patch batches, at most --cluster_images images."""
    ds = training_stream(cfg, data).map(lambda n, c: c).take(cfg.cluster_images).batch(cfg.images_per_batch)
    for clean in ds.as_numpy_iterator():
        patches, _ = split_patches(to_model_space(clean), cfg.vae.block_size, cfg.env.overlap)
        yield patches


def agent_pairs(cfg: RunConfig, data: RunData, r: int, skip: int = 0,
                take: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(input, clean) training pairs of round r's inputs as stacked arrays, or None when there are none."""
    take = cfg.agent_images if take is None else take
    if take <= 0:
        return None
    pairs = list(round_input_pairs(cfg, data, r).skip(skip).take(take).as_numpy_iterator())
    if not pairs:
        return None
    noisy, clean = zip(*pairs)
    return np.stack(noisy), np.stack(clean)
