"""Flags -> RunConfig: defaults come from the config dataclasses, every flag lands in a typed config,
--smoke never overrides an explicit flag, bad flags are one ConfigError naming the flag."""
import argparse
import json

import pytest

from data.errors import ConfigError
from models.clusters import ClusterConfig
from models.training import TrainConfig
from models.vae import VAEConfig
from pipeline import RunConfig, add_common_flags, build_run_config
from pipeline.config import SMOKE, given_flags
from rl.agent_training import AgentTrainConfig
from rl.envs.latent_filter import FilterEnvConfig
from rl.sac import SACConfig

DEFAULTS = {"name": "test", "epoch": 50, "sample_epoch": 2, "latent_dim": 72, "target_psnr": 30.0, "noise": "gaussian_var"}


def _config(*argv: str, defaults: dict = DEFAULTS) -> RunConfig:
    parser = argparse.ArgumentParser()
    add_common_flags(parser, defaults)
    return build_run_config(parser.parse_args(list(argv)), defaults, given_flags(parser, list(argv)))


def test_without_flags_every_typed_config_has_its_dataclass_defaults():
    cfg = _config("--train_files_path", "x", "--test_files_path", "y")
    assert cfg.train == TrainConfig(epochs=50)  # --epoch: the dataset's default
    assert cfg.vae == VAEConfig(latent_dim=72)
    assert cfg.env == FilterEnvConfig(target_psnr=30.0)
    assert cfg.clusters == ClusterConfig() and cfg.sac == SACConfig()
    assert cfg.agent_train == AgentTrainConfig(episodes=cfg.agent_episodes[0])
    assert (cfg.recursions, cfg.knn, cfg.agent_images) == (RunConfig.recursions, RunConfig.knn, RunConfig.agent_images)
    assert (cfg.train.batch_size, cfg.train.learning_rate) == (128, 2e-3)  # one default, the flags read it


def test_each_flag_fills_its_typed_config_field():
    cfg = _config("--rl_steps", "5", "--gate", "latent", "--cluster_cap", "7", "--knn", "3", "--num_clusters", "3", "--epoch", "4",
                  "--batch_size", "32", "--learning_rate", "0.5", "--bn_momentum", "0.5", "--lambda_eq", "0",
                  "--kl_max", "0.2", "--action_low", "0", "--images_per_episode", "3", "--updates_per_step", "9",
                  "--lambda_db", "2", "--overlap", "2", "--block_size", "8", "--latent_dim", "5", "--sample_std", "0",
                  "--kl_warmup_steps", "7", "--logvar_bias_init", "-6", "--lr_schedule", "cosine",
                  "--ema_momentum", "0.99", "--fresh_noise", "--augment_shift", "12", "--lambda_clean", "0.25")
    assert (cfg.env.steps, cfg.env.gate, cfg.env.lambda_db, cfg.env.overlap, cfg.env.block_size) == (5, "latent", 2.0, 2, 8)
    assert (cfg.clusters.cap, cfg.clusters.num_clusters) == (7, 3)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate, cfg.train.overlap) == (4, 32, 0.5, 2)
    assert cfg.train.kl_warmup_steps == 7 and cfg.train.ema_momentum == 0.99
    assert cfg.fresh_noise and cfg.augment_shift == 12
    assert cfg.lr_schedule == "cosine" and cfg.train.lr_decay_epochs == 0  # each round sets it to its epochs
    assert (cfg.vae.bn_momentum, cfg.vae.lambda_eq, cfg.vae.block_size, cfg.vae.latent_dim) == (0.5, 0.0, 8, 5)
    assert (cfg.vae.sample_std, cfg.vae.logvar_bias_init, cfg.vae.lambda_clean) == (0.0, -6.0, 0.25)
    assert (cfg.sac.kl_max, cfg.sac.action_low) == (0.2, 0.0)
    assert cfg.sac.batch_size == SACConfig.batch_size  # --batch_size is the VAE's, not SAC's
    assert (cfg.agent_train.images_per_episode, cfg.agent_train.updates_per_step) == (3, 9)


def test_smoke_lowers_only_the_flags_not_given():
    cfg = _config("--smoke", "--agent_images", "16", "--epoch", "5")
    assert cfg.agent_images == 16 and cfg.train.epochs == 5  # explicit flags win
    assert cfg.max_test_images == SMOKE["max_test_images"] and cfg.agent_check_images == SMOKE["agent_check_images"]
    assert cfg.agent_episodes == (SMOKE["agent_episodes"],) * 2
    plain = _config()  # the embedded sample without --smoke: its own budget
    assert plain.train.epochs == DEFAULTS["sample_epoch"] and plain.enhance_images == 50
    assert plain.agent_episodes == (20, 10)


def test_record_survives_json_and_names_every_config():
    cfg = _config("--seed", "3").for_data(colour=False)
    record = cfg.record()
    assert json.loads(json.dumps(record)) == record
    assert record["configs"]["vae"]["channels"] == ["Y"] and record["flags"]["seed"] == 3
    assert "resume" not in record["flags"] and "overwrite" not in record["flags"]


@pytest.mark.parametrize("argv,message", [
    (["--knn", "0"], "--knn must be at least 1, got 0"),
    (["--recursions", "-1"], "--recursions must be at least 0"),
    (["--overlap", "16"], "--overlap"),
    (["--resume", "--overwrite"], "--resume and --overwrite"),
    (["--knn", "9", "--cluster_cap", "8"], "--knn 9 is more than the --cluster_cap 8"),
    (["--rl_steps", "0"], "--rl_steps"),
    (["--kl_max", "0"], "--kl_max"),
    (["--kl_warmup_steps", "-1"], "--kl_warmup_steps must be at least 0"),
    (["--ema_momentum", "1"], r"--ema_momentum must be in \[0, 1\)"),
    (["--augment_shift", "-1"], "--augment_shift must be at least 0"),
    (["--noise", "none", "--fresh_noise"], "--fresh_noise needs a synthetic --noise"),
])
def test_bad_flags_name_the_flag(argv, message):
    with pytest.raises(ConfigError, match=message):
        _config(*argv)
