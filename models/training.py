"""Training the VAE + latent transform on (noisy, clean) patch pairs made on the fly.

Input: a tf.data dataset of (noisy, clean) RGB image batches, float32 [0, 1],
(N, H, W, 3) with static H, W. In the graph: RGB -> YUV, both split into
block/overlap patches (data.patches.split_patches), unbatched, shuffled and
rebatched as patch pairs. Training runs a compiled step under a tf.distribute
strategy (build the model inside `strategy.scope()` and pass the same strategy,
or none: the current scope's strategy is used), with tqdm progress, TensorBoard
scalars and a tf.train.CheckpointManager checkpoint every epoch; `resume=True`
restores the last checkpoint and continues with the next epoch.
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from data.color import rgb_to_yuv
from data.errors import ConfigError, DataError
from data.patches import make_grid, split_patches
from models import equivariance
from models.vae import RSEVAE, VAEConfig
from utils import TensorBoardLogger, atomic_write_json


@dataclass
class TrainConfig:
    """Optimisation settings of the VAE stage."""

    epochs: int = 10
    batch_size: int = 128  # patch pairs per global step (split over the replicas)
    learning_rate: float = 2e-3  # Adam
    overlap: int = 4
    shuffle_buffer: int = 20000  # patches
    steps_per_epoch: int | None = None  # None: one pass over the dataset
    seed: int = 0
    keep_checkpoints: int = 3
    progress: bool = True
    # After training, BatchNorm's moving statistics are replaced by their mean over this many
    # batches (0: keep the moving averages, as the authors). See recalibrate_batch_norm.
    bn_recalibration_batches: int = 200
    # The KL weight rises linearly from 0 to lambda_kl over this many optimizer steps (0: constant).
    # Why: from a random start, the KL term pulled a low-variance subspace (U of the SIDD default)
    # onto the prior before its decoder learned to use it, and that subspace then decoded to a
    # constant for the rest of the run (posterior collapse, docs/vae.md). Only for training from
    # scratch: the pipeline turns it off when it fine-tunes a trained VAE.
    kl_warmup_steps: int = 300
    # 0: a constant Adam rate (the authors'). N > 0: the rate falls from learning_rate to 0 along a
    # cosine over the optimizer steps of N epochs (counted once, `count_patch_batches`), then stays
    # 0. Why: at a constant 2e-3 the from-scratch faces VAE oscillates by +-0.3 dB once it stops
    # improving (docs/vae.md, "Faces from scratch"); the cosine lets a fixed budget end at rest
    # (measured there: no gain at 10 epochs in the pipeline, so not the default).
    lr_decay_epochs: int = 0
    # 0: the model ends training at its last step's weights (the authors'). m in (0, 1): Adam keeps
    # an exponential moving average of the trained weights (Keras `use_ema`, momentum m per step)
    # and the model ends at that average (before BatchNorm is recalibrated). Why: at a constant
    # rate the from-scratch faces VAE swings by up to 1.5 dB from one epoch to the next, and where
    # a fixed budget stops on that swing decides its score (docs/vae.md, "Faces from scratch").
    ema_momentum: float = 0.0


def patch_pair_dataset(dataset: tf.data.Dataset, block: int, overlap: int, channels: int = 3) -> tf.data.Dataset:
    """(noisy, clean) RGB image batches -> unbatched (noisy, clean) YUV patch pairs."""

    def to_patches(noisy, clean):
        noisy, clean = tf.cast(noisy, tf.float32), tf.cast(clean, tf.float32)
        if channels == 3:
            noisy, clean = rgb_to_yuv(noisy), rgb_to_yuv(clean)
        pn, _ = split_patches(noisy, block, overlap)
        pc, _ = split_patches(clean, block, overlap)
        return pn, pc

    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise DataError("training data must yield (noisy, clean) image batches")
    for s in spec:
        if s.shape.rank != 4 or s.shape[1] is None or s.shape[2] is None or s.shape[3] != channels:
            raise DataError(f"training images must be batches (N, H, W, {channels}) with a fixed size; got {s.shape}")
    return dataset.map(to_patches, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def count_patch_batches(dataset: tf.data.Dataset, block: int, overlap: int, batch_size: int) -> int:
    """Full batches of patch pairs in one pass over (noisy, clean) image batches of a fixed size.

    Why: tf.data cannot know the length of a streamed dataset, and the progress bar needs it
    for a total and an ETA. This counts the images in one pass over the image stream (no
    patching, no training: seconds for thousands of images) and multiplies by the patches per image.
    """
    _, height, width, channels = dataset.element_spec[0].shape
    per_image = make_grid(int(height), int(width), block, overlap, 1, int(channels)).patches_per_image
    images = dataset.map(lambda noisy, clean: tf.shape(noisy, out_type=tf.int64)[0])
    total = int(images.reduce(tf.constant(0, tf.int64), lambda acc, n: acc + n))
    return total * per_image // batch_size


def learning_rate_schedule(cfg: TrainConfig, steps_per_epoch: int | None):
    """Adam's rate: `cfg.learning_rate`, or with `cfg.lr_decay_epochs` a cosine from it to 0 over that
    many epochs of `steps_per_epoch` steps (a function of the optimizer's step, so resuming continues it)."""
    if not cfg.lr_decay_epochs:
        return cfg.learning_rate
    if cfg.lr_decay_epochs < 0 or not steps_per_epoch:
        raise ConfigError(f"TrainConfig.lr_decay_epochs ({cfg.lr_decay_epochs}) needs to be >= 0 and a known "
                          f"number of steps per epoch (got {steps_per_epoch})")
    decay_steps = max(1, cfg.lr_decay_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps, alpha=0.0)


def ema_options(cfg: TrainConfig) -> dict:
    """Adam's keyword arguments for `cfg.ema_momentum` (ConfigError outside [0, 1))."""
    if not 0.0 <= cfg.ema_momentum < 1.0:
        raise ConfigError(f"TrainConfig.ema_momentum must be in [0, 1) (0: off), got {cfg.ema_momentum}")
    return {"use_ema": True, "ema_momentum": cfg.ema_momentum} if cfg.ema_momentum else {}


def _checkpoint(model: RSEVAE, optimizer, epoch: tf.Variable, rng: tf.random.Generator) -> tf.train.Checkpoint:
    """Everything a resumed run needs, the random stream included (so resuming repeats the draws)."""
    return tf.train.Checkpoint(optimizer=optimizer, epoch=epoch, rng=rng, **model.submodels())


def loss_names(cfg: VAEConfig) -> list[str]:
    """The loss terms a training step reports, `total` first."""
    return ["total", "recon", "clean", "kl", "latent"] + (["eq"] if cfg.lambda_eq > 0 else [])


def kl_weight_at(step, lambda_kl: float, warmup_steps: int):
    """The KL weight at optimizer step `step` (0-based): lambda_kl * min(1, step / warmup_steps)."""
    if warmup_steps <= 0:
        return tf.constant(lambda_kl, tf.float32)
    ramp = tf.cast(step, tf.float32) / float(warmup_steps)
    return lambda_kl * tf.minimum(1.0, ramp)


def make_train_step(model: RSEVAE, optimizer, rng: tf.random.Generator, global_batch: int,
                    strategy: tf.distribute.Strategy | None = None, kl_warmup_steps: int = 0) -> Callable:
    """The compiled training step of `train_vae`: (noisy, clean) patch batch -> {loss name: global mean}.

    One random D4 element per step, sampling from `rng`, the KL weight from `kl_weight_at` at the
    optimizer's step count (so a resumed run continues the ramp), Adam on every trainable variable
    (float32 under either precision: gradients arrive in float32 through the layers' casts).
    bench/vae.py times this same step.
    """
    strategy = strategy or tf.distribute.get_strategy()
    names = loss_names(model.cfg)

    def step_fn(noisy, clean):
        g = rng.uniform([], 0, equivariance.GROUP_SIZE, dtype=tf.int32)
        kl_weight = kl_weight_at(optimizer.iterations, model.cfg.lambda_kl, kl_warmup_steps)
        with tf.GradientTape() as tape:
            terms = model.losses_per_patch(noisy, clean, g_index=g, training=True, rng=rng, kl_weight=kl_weight)
            loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {k: tf.nn.compute_average_loss(terms[k], global_batch_size=global_batch) for k in names}

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(step_fn, args=batch)
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return train_step


def train_vae(
    model: RSEVAE,
    dataset: tf.data.Dataset,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Train in place; returns {'epoch': [...], '<loss>': [per-epoch means]} of the epochs run now.

    Writes out_dir/checkpoints (every epoch), out_dir/tensorboard and out_dir/history.json.
    """
    strategy = strategy or tf.distribute.get_strategy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vcfg = model.cfg
    patches = patch_pair_dataset(dataset, vcfg.block_size, cfg.overlap, vcfg.num_subspaces)
    patches = patches.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    patches = patches.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    dist_data = strategy.experimental_distribute_dataset(patches)

    steps_per_epoch = cfg.steps_per_epoch
    if steps_per_epoch is None and (cfg.lr_decay_epochs or (cfg.progress and sys.stderr.isatty())):
        steps_per_epoch = count_patch_batches(dataset, vcfg.block_size, cfg.overlap, cfg.batch_size)
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate_schedule(cfg, steps_per_epoch), **ema_options(cfg))
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        rng = tf.random.Generator.from_seed(cfg.seed)
    ckpt = _checkpoint(model, optimizer, epoch_var, rng)
    manager = tf.train.CheckpointManager(ckpt, str(out_dir / "checkpoints"), max_to_keep=cfg.keep_checkpoints)
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    elif resume:
        tqdm.write(f"--resume: no checkpoint in {out_dir / 'checkpoints'}, starting from scratch")

    names = loss_names(vcfg)
    expected_steps = steps_per_epoch
    train_step = make_train_step(model, optimizer, rng, cfg.batch_size, strategy, cfg.kl_warmup_steps)

    writer = TensorBoardLogger(out_dir / "tensorboard")
    history: dict[str, list] = {"epoch": [], **{k: [] for k in names}}
    start = int(epoch_var.numpy())
    for epoch in range(start + 1, cfg.epochs + 1):
        sums = {k: 0.0 for k in names}
        steps = 0
        it = iter(dist_data)
        bar = tqdm(total=expected_steps, desc=f"VAE epoch {epoch}/{cfg.epochs}", unit="batch",
                   disable=not cfg.progress or not sys.stderr.isatty(), leave=False)
        while cfg.steps_per_epoch is None or steps < cfg.steps_per_epoch:
            try:
                batch = next(it)
            except StopIteration:
                if cfg.steps_per_epoch is None or steps == 0:
                    break
                it = iter(dist_data)  # fixed-length epochs cycle the data
                continue
            out = train_step(batch)
            steps += 1
            vals = {k: float(v) for k, v in out.items()}
            for k in names:
                sums[k] += vals[k]
            bar.update(1)
            bar.set_postfix(loss=f"{vals['total']:.4f}")
            writer.scalars(vals, int(optimizer.iterations.numpy()), "vae_step/")
        bar.close()
        if steps == 0:
            raise DataError("the training data yielded no full batch of patches (lower --batch_size or add images)")
        means = {k: sums[k] / steps for k in names}
        writer.scalars(means, epoch, "vae_epoch/")
        writer.flush()
        history["epoch"].append(epoch)
        for k in names:
            history[k].append(means[k])
        epoch_var.assign(epoch)
        manager.save(checkpoint_number=epoch)
        tqdm.write(f"VAE epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
    # The checkpoints hold the last step's weights and the average; the model leaves with the average.
    optimizer.finalize_variable_values(model.trainable_variables)
    recalibrate_batch_norm(model, calibration_stream(dataset, model, cfg), cfg.bn_recalibration_batches)
    atomic_write_json(out_dir / "history.json", {"config": asdict(cfg), "history": history})
    return history


def batch_norm_layers(model: RSEVAE) -> list[tuple[keras.Model, keras.layers.Layer]]:
    """(encoder, its BatchNormalization layer) for every encoder: the VAE's only BatchNorm."""
    return [(enc, layer) for enc in model.encoders for layer in enc.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def calibration_stream(dataset: tf.data.Dataset, model: RSEVAE, cfg: TrainConfig) -> tf.data.Dataset:
    """The (noisy, clean) patch batches `train_vae` recalibrates BatchNorm over: shuffled like
    training, but in a fixed order, so a resumed run recalibrates exactly as the uninterrupted one."""
    patches = patch_pair_dataset(dataset, model.cfg.block_size, cfg.overlap, model.cfg.num_subspaces)
    return patches.shuffle(cfg.shuffle_buffer, seed=cfg.seed + 1, reshuffle_each_iteration=False).batch(
        cfg.batch_size, drop_remainder=True)


def recalibrate_batch_norm(model: RSEVAE, patches: tf.data.Dataset, max_batches: int) -> int:
    """Set each encoder BatchNorm's moving mean and variance to the mean of its batch statistics
    over up to `max_batches` (noisy, clean) patch batches; returns the batches used.

    Why: inference normalises with the moving averages, and with momentum 0.9 those remember
    only the last dozen batches of the last epoch. When the image stream is ordered (crops of
    one photo in a row, as the embedded sample), those batches come from the last few photos,
    and the whole test set is then normalised with one photo's colour: the SIDD default's VAE
    turned grey into magenta this way (docs/vae.md). Averaging the batch statistics over many
    shuffled batches ("precise BatchNorm") gives the statistics training normalised with.
    The encoder sees noisy and clean patches in one batch, as in `losses_per_patch`.
    A frozen BatchNorm (`trainable=False`: Keras runs it in inference mode, so training never
    normalised with batch statistics) keeps its statistics: the authors' released VAEs carry
    moving mean 0 and variance 1 and were trained to work with them, and recalibrating those
    costs 20 dB (docs/vae.md, "Released weights, fine-tuning").
    """
    layers = [(enc, bn) for enc, bn in batch_norm_layers(model) if bn.trainable]
    if max_batches <= 0 or not layers:
        return 0
    features = [keras.Model(enc.input, bn.input) for enc, bn in layers]
    shared = model.cfg.shared_encoder

    @tf.function(autograph=False)  # a static loop over the encoders: nothing to convert
    def batch_moments(noisy, clean):
        both = tf.concat([noisy, clean], axis=0)
        out = []
        for s, feature in enumerate(features):
            x = tf.cast(feature(both if shared else both[..., s:s + 1], training=False), tf.float32)
            out.append(tf.nn.moments(x, axes=[0, 1, 2]))
        return out

    sums = None
    used = 0
    for noisy, clean in patches.take(max_batches):
        moments = batch_moments(noisy, clean)
        sums = moments if sums is None else [(m0 + m1, v0 + v1) for (m0, v0), (m1, v1) in zip(sums, moments)]
        used += 1
    if used:
        for (_, bn), (mean_sum, var_sum) in zip(layers, sums):
            bn.moving_mean.assign(tf.cast(mean_sum / used, bn.moving_mean.dtype))
            bn.moving_variance.assign(tf.cast(var_sum / used, bn.moving_variance.dtype))
    return used


def evaluate_patches(model: RSEVAE, noisy, clean, symmetrise: bool = False, batch_size: int = 4096) -> dict:
    """Patch MSE of the denoiser and its relative equivariance error (soft and exact modes).

    noisy, clean: (P, b, b, S) YUV patches. Every evaluation reports the equivariance error.
    """
    noisy = np.asarray(noisy, np.float32)
    clean = np.asarray(clean, np.float32)
    outs = [model.inference().denoise(noisy[i:i + batch_size], symmetrise=symmetrise)
            for i in range(0, len(noisy), batch_size)]
    out = np.concatenate(outs)
    probe = noisy[: min(len(noisy), 1024)]
    fn = (lambda x: model.denoise_patches(x, symmetrise=True)) if symmetrise else model.denoise_fn
    return {
        "mse": float(np.mean((out - clean) ** 2)),
        "input_mse": float(np.mean((noisy - clean) ** 2)),
        "equivariance_error": equivariance.relative_equivariance_error(fn, probe),
    }
