"""--init_from: fine-tuning starts from a saved (or the shipped) VAE; a layout that does not match
is one error naming the flag, before any training."""
import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
