"""--init_from: fine-tuning starts from a saved (or the shipped) VAE; a layout that does not match
is one error naming the flag, before any training."""
import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data.errors import ConfigError, DataError
from models.io import load_model, save_model
from models.training import TrainConfig
from models.vae import VAEConfig, build_vae
from pipeline import add_common_flags, build_run_config
from pipeline.config import given_flags
from pipeline.rounds import _init_model, _vae_phase
from pipeline.state import RunState

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"name": "test", "epoch": 1, "sample_epoch": 1, "latent_dim": 72, "target_psnr": 30.0, "noise": "gaussian_var"}
TINY = dict(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16, deconv_filters=(8, 8, 8, 4))


def _config(*argv: str):
    parser = argparse.ArgumentParser()
    add_common_flags(parser, DEFAULTS)
    return build_run_config(parser.parse_args(list(argv)), DEFAULTS, given_flags(parser, list(argv)))


def test_init_from_authors_takes_their_network_and_the_flags_training_settings():
    cfg = _config("--init_from", "authors", "--lambda_eq", "0.5", "--precision", "mixed_bfloat16")
    assert (cfg.vae.decoder_out_channels, cfg.vae.logvar_activation, cfg.vae.transform_last_activation) == (3, "softplus", "relu")
    assert (cfg.vae.lambda_eq, cfg.vae.precision) == (0.5, "mixed_bfloat16")
    assert cfg.vae.freeze_batch_norm  # the released BatchNorm stays at its stored statistics, as the authors trained
    assert _config().vae.decoder_out_channels == VAEConfig().decoder_out_channels  # without the flag: ours
    assert not _config().vae.freeze_batch_norm


def test_other_latent_size_or_missing_model_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^--init_from authors: the saved VAE has latent_dim 72 but the run has --latent_dim 96"):
        _config("--init_from", "authors", "--latent_dim", "96")
    with pytest.raises(DataError, match=f"^--init_from {tmp_path}: not a saved model"):
        _config("--init_from", str(tmp_path))
    grey = _config("--init_from", "authors").for_data(colour=False)
    with pytest.raises(ConfigError, match="^--init_from authors: the saved VAE has subspaces Y/U/V, the data needs Y"):
        _init_model(grey)


def test_round_0_starts_from_the_saved_weights(tmp_path):
    """At learning rate 0 the trained VAE's kernels are the saved model's, not a fresh draw."""
    tf.random.set_seed(5)
    saved = build_vae(VAEConfig(**TINY))
    save_model(saved, tmp_path / "saved")
    cfg = _config("--init_from", str(tmp_path / "saved"), "--latent_dim", "8", "--out_dir", str(tmp_path / "run"))
    cfg = dataclasses.replace(cfg, train=TrainConfig(epochs=1, steps_per_epoch=1, batch_size=8, learning_rate=0.0))
    clean = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((clean, clean)))
    vae = _vae_phase(cfg, data, 0, RunState(tmp_path / "state.json"), None, tf.distribute.get_strategy())
    for a, b in zip(vae.trainable_weights, saved.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    fresh = build_vae(cfg.vae)
    assert not np.array_equal(fresh.trainable_weights[0].numpy(), saved.trainable_weights[0].numpy())
    np.testing.assert_array_equal(load_model(cfg.round_dir(0) / "vae").trainable_weights[0].numpy(),
                                  saved.trainable_weights[0].numpy())


def test_cli_init_from_another_latent_size_is_one_line(tmp_path):
    """The SIDD script's latent size is 96; the shipped authors' VAEs have 72."""
    result = subprocess.run([sys.executable, str(ROOT / "experiment_sidd_denoise.py"), "--init_from", "authors",
                             "--out_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --init_from authors: the saved VAE has latent_dim 72 but the run has --latent_dim 96 (layouts must match)"]
    assert not (tmp_path / "out").exists()


SAMPLE_DEFAULTS = {**DEFAULTS, "sample_init_from": "authors"}


def _sample_config(*argv: str):
    parser = argparse.ArgumentParser()
    add_common_flags(parser, SAMPLE_DEFAULTS)
    return build_run_config(parser.parse_args(list(argv)), SAMPLE_DEFAULTS, given_flags(parser, list(argv)))


def test_embedded_sample_starts_from_the_released_vaes_when_the_layout_matches():
    cfg = _sample_config()
    assert cfg.init_from == "authors" and cfg.vae.logvar_activation == "softplus"
    assert cfg.train.epochs == 0 and cfg.vae_epochs(1) == 1  # round 0 uses them as they are; round 1 fine-tunes
    tuned = _sample_config("--epoch", "4")
    assert (tuned.train.epochs, tuned.train.learning_rate, tuned.vae.sample_std) == (4, TrainConfig.learning_rate / 10, 0.0)
    given = _sample_config("--learning_rate", "1e-3", "--sample_std", "0.5", "--epoch", "1")
    assert (given.train.learning_rate, given.vae.sample_std) == (1e-3, 0.5)  # flags given win
    on_files_tuned = _sample_config("--train_files_path", "x", "--test_files_path", "y", "--init_from", "authors")
    assert on_files_tuned.train.epochs == max(1, DEFAULTS["epoch"] // 2)  # half the epochs, at least 1
    assert _sample_config("--latent_dim", "8").init_from is None  # another network: from scratch, no error
    assert _sample_config("--init_from", "none").init_from is None
    scratch = _sample_config("--init_from", "none")
    assert (scratch.train.learning_rate, scratch.vae.sample_std) == (TrainConfig.learning_rate, VAEConfig.sample_std)
    on_files = _sample_config("--train_files_path", "x", "--test_files_path", "y")
    assert on_files.init_from is None  # a dataset's own files: from scratch, as the paper
    assert _config().init_from is None  # a script without sample_init_from (SIDD)
    with pytest.raises(ConfigError, match="^--init_from authors: the saved VAE has latent_dim 72"):
        _sample_config("--init_from", "authors", "--latent_dim", "8")  # asked for explicitly: checked
    with pytest.raises(ConfigError, match="^--epoch 0 trains no VAE: it needs --init_from"):
        _sample_config("--init_from", "none", "--epoch", "0")


def test_epoch_0_uses_the_init_from_vae_as_it_is(tmp_path):
    tf.random.set_seed(5)
    saved = build_vae(VAEConfig(**TINY))
    save_model(saved, tmp_path / "saved")
    cfg = _config("--init_from", str(tmp_path / "saved"), "--latent_dim", "8", "--epoch", "0",
                  "--out_dir", str(tmp_path / "run"))
    data = SimpleNamespace(train_pairs=lambda: pytest.fail("--epoch 0 must not read the training data"))
    state = RunState(tmp_path / "state.json")
    vae = _vae_phase(cfg, data, 0, state, None, tf.distribute.get_strategy())
    for a, b in zip(vae.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert state.finished("round0/vae") and not state.finished("round0/finetune_check")


def _tiny_pairs(n: int = 6, size: int = 32, seed: int = 0):
    """Blurry random colour images (a VAE can tell them from noise) and their noisy versions."""
    small = np.random.default_rng(seed).random((n, 4, 4, 3)).astype(np.float32)
    clean = np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) for img in small]).clip(0, 1)
    noisy = np.clip(clean + np.random.default_rng(seed).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    return noisy, clean


def test_finetuning_check_keeps_the_better_of_the_two_models(tmp_path):
    """The check scores both models on the held-out pairs: a model whose weights were scrambled
    loses to the one it came from, and wins when the roles are swapped."""
    from pipeline.rounds import check_finetuning

    tf.random.set_seed(3)
    good = build_vae(VAEConfig(**TINY))
    good(tf.zeros([1, 16, 16, 3]))
    bad = build_vae(VAEConfig(**TINY))
    bad(tf.zeros([1, 16, 16, 3]))
    rng = np.random.default_rng(0)
    bad.set_weights([w + rng.normal(0, 1.0, w.shape).astype(w.dtype) for w in good.get_weights()])
    noisy, clean = _tiny_pairs()
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy, clean)))
    cfg = dataclasses.replace(_config("--init_from", "none", "--agent_images", "3", "--agent_check_images", "3",
                                      "--latent_dim", "8", "--out_dir", str(tmp_path)), init_from="x")
    state = RunState(tmp_path / "a.json")
    assert not check_finetuning(cfg, data, bad, good, state)
    record = state.done["round0/finetune_check"]
    assert record["images"] == 3 and record["init_psnr"] > record["finetuned_psnr"]
    assert check_finetuning(cfg, data, good, bad, RunState(tmp_path / "b.json"))


def test_dropped_finetuning_saves_the_init_from_weights(tmp_path, monkeypatch):
    """When the check says the fine-tuning lost, round 0's saved VAE is the --init_from model, and the
    fine-tuning never saw the held-out pairs."""
    import pipeline.rounds as rounds
    import pipeline.streams as streams

    tf.random.set_seed(5)
    saved = build_vae(VAEConfig(**TINY))
    save_model(saved, tmp_path / "saved")
    cfg = _config("--init_from", str(tmp_path / "saved"), "--latent_dim", "8", "--out_dir", str(tmp_path / "run"),
                  "--agent_images", "4", "--agent_check_images", "2")
    cfg = dataclasses.replace(cfg, train=TrainConfig(epochs=1, steps_per_epoch=2, batch_size=8, learning_rate=1e-2))
    noisy, clean = _tiny_pairs()
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy, clean)))
    seen = [c for _, c in streams.vae_training_images(cfg, data, 0).unbatch().as_numpy_iterator()]
    assert len(seen) == 4 and not any(np.array_equal(s, clean[i]) for s in seen for i in (4, 5))
    monkeypatch.setattr(rounds, "check_finetuning", lambda *a: False)
    vae = _vae_phase(cfg, data, 0, RunState(tmp_path / "state.json"), None, tf.distribute.get_strategy())
    for a, b in zip(load_model(cfg.round_dir(0) / "vae").get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(vae.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
