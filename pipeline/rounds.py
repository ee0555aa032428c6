"""One round of RSE-RL: train (round 0) or fine-tune (round r >= 1) the VAE + T, cluster the clean
latents, train and check the agent, check the round (r >= 1); then enhance the round's training
inputs for the next round.

The checks are do-no-harm rules on held-out training pairs (never test data): a round's agent
is used only if it beats that round's VAE alone, a round r >= 1 is applied at test time only
if its output beats its input (round r-1's output), and round 0's fine-tuning of an --init_from
model is kept only if it beats that model. The held-out pairs are the `--agent_check_images`
after the agent's own training images; they are also left out of the VAE's fine-tuning in
rounds >= 1 and in round 0 from --init_from (`pipeline.streams.vae_training_images`).

Every phase seeds itself from (--seed, round, phase), never from what the process did before,
so a run resumed at a phase boundary repeats the random draws of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from data.celeba import write_tfrecords
from data.errors import ConfigError
from data.images import to_uint8
from evaluation import batch_psnr
from models.clusters import ClusterIndex, latent_stream_from_patches
from models.io import load_clusters, load_model, save_model
from models.training import train_vae
from models.vae import RSEVAE, build_vae, denoise_image
from pipeline.agent import agent_phase, check_agent, earlier_decision
from pipeline.config import RunConfig
from pipeline.state import RunState
from pipeline.streams import (RunData, agent_pairs, agent_windows, clean_patch_batches, enhanced_dir,
                              round_input_pairs, vae_training_images)
from rl.envs.latent_filter import LatentModel
from rl.inference import filter_images
from rl.sac import SACAgent
from rl.vae_adapter import latent_model_from_vae
from utils import set_seeds

LOG = logging.getLogger("rse_rl")
PHASE_SEEDS = {"vae": 1, "clusters": 2, "agent": 3, "enhance": 4}


def phase_seed(seed: int, round_index: int, phase: str) -> int:
    return seed * 1000 + round_index * 10 + PHASE_SEEDS[phase]


@dataclass
class RoundModels:
    """A trained round, and how it filters images (as at test time)."""

    vae: RSEVAE
    clusters: ClusterIndex
    agent: SACAgent  # the trained agent (also the warm start of the next round's)
    latent: LatentModel  # the VAE and clusters as the environment sees them
    use_agent: bool = True  # False: it lowered PSNR on held-out training pairs; filter with the VAE alone
    kept: bool = True  # False: round r >= 1 lowered PSNR on held-out training pairs; not applied at test time

    @property
    def policy(self) -> SACAgent | None:
        """The agent this round filters with, or None for the VAE alone (all gates 0)."""
        return self.agent if self.use_agent else None

    def apply(self, images: np.ndarray, cfg: RunConfig) -> np.ndarray:
        """This round's output on (N, H, W, C) images (or a list of (H, W, C) images of any sizes);
        a round that was not kept returns its input."""
        if not self.kept:
            return images
        return filter_images(images, self.policy, self.latent, cfg.env, symmetrise=cfg.symmetrise)


def train_round(cfg: RunConfig, data: RunData, r: int, state: RunState, previous: RoundModels | None,
                strategy: tf.distribute.Strategy) -> RoundModels:
    """Train (round 0) or fine-tune (round r >= 1) VAE + T, clusters and agent."""
    vae = _vae_phase(cfg, data, r, state, previous, strategy)
    clusters = _clusters_phase(cfg, data, r, state, vae)
    latent = latent_model_from_vae(vae, clusters, k=cfg.knn)
    agent = agent_phase(cfg, data, r, latent, state, previous.agent if previous else None,
                        seed=phase_seed(cfg.seed, r, "agent"))
    models = RoundModels(vae, clusters, agent, latent, use_agent=check_agent(cfg, data, r, agent, latent, state))
    if r:
        models.kept = check_round(cfg, data, r, models, state)
    return models


def check_round(cfg: RunConfig, data: RunData, r: int, models: RoundModels, state: RunState) -> bool:
    """Keep round r >= 1 only if its output beats its input (round r-1's output) on held-out pairs.

    A second pass through an autoencoder can lose what the first one kept (docs/agent.md,
    "Recursion"); this rule makes the recursion never worse than the round before it on
    data it did not train on. The decision is stored in state.json and reused by --resume.
    """
    phase = f"round{r}/round_check"
    decided = earlier_decision(cfg, state, phase)
    if decided is not None:
        return decided
    windows = agent_windows(cfg, data, r)
    pairs = agent_pairs(cfg, data, r, skip=windows.train, take=windows.check)
    if pairs is None:
        LOG.warning("round %d: a single training pair, none to check the round on; keeping it", r)
        return True
    inputs, clean = pairs
    before = float(batch_psnr(clean, inputs).mean())
    after = float(batch_psnr(clean, models.apply(inputs, cfg)).mean())
    kept = after > before
    LOG.log(logging.INFO if kept else logging.WARNING,
            "round %d: on %d held-out training pairs its output gives %.3f dB, its input (round %d's output) "
            "%.3f dB: %s", r, len(inputs), after, r - 1, before,
            "round kept" if kept else "round not applied at test time, and the recursion stops here")
    state.mark(phase, {"images": len(inputs), "input_psnr": before, "output_psnr": after, "kept": kept})
    return kept


def _vae_phase(cfg: RunConfig, data: RunData, r: int, state: RunState, previous: RoundModels | None,
               strategy: tf.distribute.Strategy) -> RSEVAE:
    folder = cfg.round_dir(r) / "vae"
    if state.finished(f"round{r}/vae"):
        LOG.info("round %d: VAE loaded from %s (finished earlier)", r, folder)
        return load_model(folder)
    seed = phase_seed(cfg.seed, r, "vae")
    set_seeds(seed)
    start = previous.vae if previous is not None else _init_model(cfg) if cfg.init_from else None
    with strategy.scope():
        vae = build_vae(cfg.vae)
        if start is not None:
            vae(tf.zeros([1, cfg.vae.block_size, cfg.vae.block_size, cfg.vae.num_subspaces]))
            vae.set_weights(start.get_weights())
    train_cfg = dataclasses.replace(cfg.train, epochs=cfg.vae_epochs(r), learning_rate=cfg.vae_learning_rate(r),
                                    seed=seed, progress=True,
                                    kl_warmup_steps=cfg.train.kl_warmup_steps if start is None else 0)
    if cfg.lr_schedule == "cosine":
        train_cfg = dataclasses.replace(train_cfg, lr_decay_epochs=train_cfg.epochs)
    if train_cfg.epochs == 0:  # --epoch 0 with --init_from: the saved VAE as it is
        LOG.info("round %d: the VAE is used as it is (--epoch 0)", r)
        history = {}
    else:
        LOG.info("round %d: training the VAE for %d epoch(s)", r, train_cfg.epochs)
        history = train_vae(vae, vae_training_images(cfg, data, r), train_cfg,
                            cfg.out_dir / "work" / f"round{r}" / "vae", resume=cfg.resume, strategy=strategy)
        if r == 0 and start is not None and not check_finetuning(cfg, data, vae, start, state):
            vae.set_weights(start.get_weights())
    save_model(vae, folder)
    state.mark(f"round{r}/vae", {"history": history})
    return vae


def check_finetuning(cfg: RunConfig, data: RunData, tuned: RSEVAE, start: RSEVAE, state: RunState) -> bool:
    """Keep round 0's fine-tuning of an --init_from model only if the tuned VAE beats the model it
    started from on held-out training pairs (left out of the fine-tuning).

    Fine-tuning a model trained on a large set (the released CelebA VAEs: 27,000 faces) on a few
    photos can lose (docs/vae.md); this rule makes a run started from a saved model never worse
    than that model on data it did not train on. The decision is stored in state.json.
    """
    phase = "round0/finetune_check"
    decided = earlier_decision(cfg, state, phase)
    if decided is not None:
        return decided
    windows = agent_windows(cfg, data, 0)
    pairs = agent_pairs(cfg, data, 0, skip=windows.train, take=windows.check)
    if pairs is None:
        LOG.warning("round 0: a single training pair, none to check the fine-tuning on; keeping it")
        return True
    noisy, clean = pairs

    def mean_psnr(model: RSEVAE) -> float:
        outputs = np.stack([denoise_image(model, image, overlap=cfg.env.overlap, symmetrise=cfg.symmetrise)
                            for image in noisy])
        return float(batch_psnr(clean, outputs).mean())

    before, after = mean_psnr(start), mean_psnr(tuned)
    kept = after > before
    LOG.log(logging.INFO if kept else logging.WARNING,
            "round 0: on %d held-out training pairs the fine-tuned VAE gives %.3f dB, the --init_from model %.3f dB: %s",
            len(noisy), after, before,
            "fine-tuning kept" if kept else "fine-tuning dropped, round 0 uses the --init_from model as it was")
    state.mark(phase, {"images": len(noisy), "init_psnr": before, "finetuned_psnr": after, "kept": kept})
    return kept


def _init_model(cfg: RunConfig) -> RSEVAE:
    """The saved VAE that --init_from names (its network is the run's: `pipeline.config.vae_config`);
    ConfigError naming the flag if its subspaces are not the data's."""
    init = load_model(cfg.init_from, "--init_from")
    if init.cfg.channels != cfg.vae.channels:
        raise ConfigError(f"--init_from {cfg.init_from}: the saved VAE has subspaces {'/'.join(init.cfg.channels)}, "
                          f"the data needs {'/'.join(cfg.vae.channels)} (layouts must match)")
    LOG.info("round 0: the VAE starts from %s", cfg.init_from)
    return init


def _clusters_phase(cfg: RunConfig, data: RunData, r: int, state: RunState, vae: RSEVAE) -> ClusterIndex:
    """Latent clusters of clean training patches, saved beside the round's VAE."""
    folder = cfg.round_dir(r) / "vae"
    if state.finished(f"round{r}/clusters"):
        return load_clusters(folder)
    seed = phase_seed(cfg.seed, r, "clusters")
    set_seeds(seed)
    LOG.info("round %d: clustering clean latents (%d clusters)", r, cfg.clusters.num_clusters)
    stream = latent_stream_from_patches(vae, lambda: clean_patch_batches(cfg, data))
    clusters = ClusterIndex.build(stream, dataclasses.replace(cfg.clusters, seed=seed))
    save_model(vae, folder, clusters=clusters)
    state.mark(f"round{r}/clusters")
    return clusters


def enhance_training_set(cfg: RunConfig, data: RunData, r: int, models: RoundModels, state: RunState) -> None:
    """Write round r's outputs on its training inputs (round r+1's inputs) beside their clean targets
    (2c-channel records)."""
    phase = f"round{r}/enhance"
    if state.finished(phase):
        return
    ds = round_input_pairs(cfg, data, r)  # round r's outputs are round r+1's inputs, as at test time
    if cfg.enhance_images:
        ds = ds.take(cfg.enhance_images)

    total = int(ds.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))  # for the bar's total and ETA

    def records():
        with tqdm(total=total, desc=f"enhancing round {r}", unit="image", leave=False,
                  disable=not sys.stderr.isatty()) as bar:
            for noisy, clean in ds.batch(cfg.images_per_batch).as_numpy_iterator():
                for e, c in zip(to_uint8(models.apply(noisy, cfg)), to_uint8(clean)):
                    yield np.concatenate([e, c], axis=-1)
                bar.update(len(noisy))

    LOG.info("round %d: enhancing the training inputs for round %d", r, r + 1)
    write_tfrecords(records(), enhanced_dir(cfg, r), prefix="enhanced", images_per_shard=500)
    state.mark(phase)
