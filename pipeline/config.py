"""Flags -> `RunConfig`: where the experiment scripts' flags become typed configs, once.

Defaults live in the config dataclasses (`VAEConfig`, `TrainConfig`, `ClusterConfig`,
`FilterEnvConfig`, `SACConfig`, `AgentTrainConfig`, and `RunConfig` for the run's own
settings); the flags read them. A flag named like a field of a config fills that field
(`FLAG_NAMES` lists the few whose names differ), so a new setting is a field plus one flag.
`--smoke` lowers the budget of every flag the user did not give; flags given explicitly win.
Below this module nothing reads flags: the run takes a `RunConfig`.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from data.errors import ConfigError, DataError
from data.noise import NOISE_MODELS, NoiseConfig, parse_noise
from data.patches import check_patch_settings
from models.clusters import ClusterConfig
from models.training import TrainConfig
from models.vae import PRECISIONS, VAEConfig
from rl.agent_training import AgentTrainConfig
from rl.envs.latent_filter import ACTIONS, GATES, FilterEnvConfig
from rl.sac import SACConfig

BASELINES = ("nlm", "tv", "bm3d", "authors")
FINETUNE_DATA = ("outputs", "all")
LR_SCHEDULES = ("constant", "cosine")
AGENT_EPISODES = (40, 15)  # agent episodes in round 0 and in later rounds
SAMPLE_AGENT_EPISODES = (20, 10)  # the same on the embedded sample (a run of minutes, not hours)
SAMPLE_ENHANCE_IMAGES = 50  # training images enhanced per round on the embedded sample
SMOKE = {  # --smoke: a short run through every phase; explicit flags still win
    "epoch": 2, "max_train_images": 16, "max_test_images": 2, "agent_images": 4, "images_per_episode": 2,
    "updates_per_step": 4, "agent_check_images": 4, "cluster_images": 8, "recursions": 1, "agent_episodes": 3,
}
# config field -> its flag, where the names differ (the authors' flag names, or a clearer field name)
FLAG_NAMES: dict[type, dict[str, str]] = {
    TrainConfig: {"epochs": "epoch"},
    ClusterConfig: {"cap": "cluster_cap"},
    FilterEnvConfig: {"steps": "rl_steps"},
}
# config fields that a flag of the same name must not fill (the flag means something else)
NOT_FROM_FLAGS: dict[type, set[str]] = {SACConfig: {"batch_size"}}  # --batch_size is the VAE's
AT_LEAST = {  # flag -> smallest valid value (None values mean "the default" and are not checked)
    "latent_dim": 1, "batch_size": 1, "num_clusters": 1, "knn": 1, "rl_steps": 1, "images_per_batch": 1,
    "agent_images": 1, "images_per_episode": 1, "updates_per_step": 1, "epoch": 0, "finetune_epochs": 1,
    "cluster_images": 1, "cluster_cap": 1, "file_batch": 1, "agent_episodes": 1, "enhance_images": 1,
    "max_train_images": 1, "max_test_images": 1, "recursions": 0, "agent_check_images": 0,
    "bn_recalibration_batches": 0, "kl_warmup_steps": 0, "augment_shift": 0,
}


@dataclass(frozen=True)
class RunConfig:
    """Everything one RSE-RL run needs, built once from the flags by `build_run_config`."""

    out_dir: Path = Path("runs") / "rse_rl"
    model_dir: Path | None = None  # None: <out_dir>/model
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    recursions: int = 1  # self-enhancement rounds after round 0
    baselines: tuple[str, ...] = ("nlm", "tv", "bm3d")
    authors_weights: Path | None = None
    init_from: str | None = None  # a saved VAE folder or a shipped name ("authors") to fine-tune from in round 0
    max_train_images: int | None = None
    max_test_images: int | None = None
    strategy: str = "auto"
    images_per_batch: int = 8
    finetune_epochs: int | None = None  # VAE epochs in rounds >= 1; None: half of train.epochs
    finetune_lr: float | None = None  # VAE learning rate in rounds >= 1; None: a tenth of train.learning_rate
    finetune_data: str = "outputs"  # rounds >= 1 fine-tune on: round r-1's outputs, or all (noisy + every round's outputs)
    lr_schedule: str = "constant"  # the VAE's Adam rate in each round: constant (authors'), or cosine to 0 over its epochs
    fresh_noise: bool = False  # round 0's VAE stream draws new synthetic noise on every epoch (data/augment.py)
    augment_shift: int = 0  # the VAE's training images shifted by up to this many pixels and mirrored, every epoch (0: off)
    cluster_images: int = 2000
    knn: int = 8
    symmetrise: bool = False
    agent_episodes: tuple[int, int] = AGENT_EPISODES  # round 0, rounds >= 1
    agent_images: int = 16
    agent_check_images: int = 16
    enhance_images: int | None = None  # None: every training image
    colour: bool = True  # set from the data (`for_data`)
    noise: NoiseConfig | None = None  # None: the dataset script picks (real pairs, or its sample's noise)
    vae: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    env: FilterEnvConfig = field(default_factory=FilterEnvConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    agent_train: AgentTrainConfig = field(default_factory=AgentTrainConfig)
    flags: Mapping[str, Any] = field(default_factory=dict)  # the effective flags (results.json "config")

    @property
    def models_dir(self) -> Path:
        return self.model_dir or self.out_dir / "model"

    def round_dir(self, r: int) -> Path:
        return self.models_dir / f"round{r}"

    def vae_epochs(self, r: int) -> int:
        return self.train.epochs if r == 0 else (self.finetune_epochs or max(1, self.train.epochs // 2))

    def vae_learning_rate(self, r: int) -> float:
        return self.train.learning_rate if r == 0 else (self.finetune_lr or self.train.learning_rate / 10)

    def for_data(self, colour: bool) -> "RunConfig":
        """The same run on colour (Y, U, V subspaces) or grey (Y) data."""
        return dataclasses.replace(self, colour=colour,
                                   vae=dataclasses.replace(self.vae, channels=("Y", "U", "V") if colour else ("Y",)))

    def record(self) -> dict:
        """What state.json keeps and `--resume` compares: the effective flags and every typed config."""
        skip = {"resume", "overwrite", "verbose"}
        configs = {name: dataclasses.asdict(getattr(self, name))
                   for name in ("vae", "train", "clusters", "env", "sac", "agent_train")}
        return _json_safe({"flags": {k: v for k, v in self.flags.items() if k not in skip}, "configs": configs})


def add_common_flags(parser: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """The flags both experiment scripts share; `defaults` holds the per-dataset values."""
    run, vae, train, env = RunConfig, VAEConfig, TrainConfig, FilterEnvConfig
    p = parser.add_argument_group("authors' flags (same meaning as their README)")
    p.add_argument("--file_batch", type=int, default=5, help="TFRecord shards (or image pairs) read concurrently")
    p.add_argument("--epoch", type=int, default=None,
                   help=f"VAE training epochs (default {defaults['epoch']}; {defaults['sample_epoch']} on the embedded sample; half "
                        "with --init_from; 0: the --init_from VAE as it is)")
    p.add_argument("--latent_dim", type=int, default=defaults["latent_dim"])
    p.add_argument("--target_psnr", type=float, default=defaults["target_psnr"], help="PSNR target of the agent's image-level reward (dB)")
    p.add_argument("--train_files_path", default=None)
    p.add_argument("--test_files_path", default=None)

    r = parser.add_argument_group("run")
    r.add_argument("--out_dir", default=None, help=f"results, figures, checkpoints (default runs/{defaults['name']})")
    r.add_argument("--model_dir", default=None, help="where trained models are saved (default <out_dir>/model)")
    r.add_argument("--seed", type=int, default=run.seed)
    r.add_argument("--noise", default=defaults["noise"], help=f"noise model: {', '.join(NOISE_MODELS)}")
    r.add_argument("--noise_level", default=None, help="gaussian_var: variance (0.02); sigma: std in 0..255 (25); poisson_gaussian: a,b (0.005,0.0005)")
    r.add_argument("--recursions", type=int, default=run.recursions, help="self-enhancement rounds after round 0")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out_dir")
    r.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out_dir")
    r.add_argument("--baselines", nargs="*", default=list(run.baselines), choices=BASELINES, metavar="BASELINE",
                   help=f"any of {', '.join(BASELINES)}")
    r.add_argument("--authors_weights", default=None,
                   help="the authors' released VAE folder (celeba_{y,u,v}_no); without it --baselines authors "
                        "uses the copy shipped in models/weights")
    sample_init = defaults.get("sample_init_from")
    r.add_argument("--init_from", default=None, metavar="PATH|authors|none",
                   help="fine-tune from a saved VAE (a model folder, or 'authors': the authors' released CelebA VAEs, "
                        "shipped) instead of starting from scratch ('none'); its layout must match the run's. Kept only "
                        "if it beats the saved VAE on held-out training pairs; default --learning_rate a tenth, "
                        "--epoch half, --sample_std 0" + (f"; default on the embedded sample: {sample_init} with --epoch 0 "
                                            "(used as it is) when the layout matches"
                                            if sample_init else ""))
    r.add_argument("--precision", default=vae.precision, choices=PRECISIONS,
                   help="VAE compute policy, training and inference (variables, losses and KL stay float32)")
    r.add_argument("--verbose", action="store_true", help="debug logs and TensorFlow's C++ start-up lines")
    r.add_argument("--smoke", action="store_true",
                   help="a short run: tiny budgets for every flag not given (16 training, 2 test images, 2 epochs; "
                        "round 0 trains none when it starts from the released VAEs on the CelebA sample)")
    r.add_argument("--max_train_images", type=int, default=None)
    r.add_argument("--max_test_images", type=int, default=None)
    r.add_argument("--strategy", default=run.strategy, choices=("auto", "default", "mirrored", "multiworker"), help="tf.distribute strategy")

    m = parser.add_argument_group("method")
    m.add_argument("--block_size", type=int, default=vae.block_size)
    m.add_argument("--overlap", type=int, default=env.overlap)
    m.add_argument("--batch_size", type=int, default=train.batch_size, help="patch pairs per VAE step (global, over all replicas)")
    m.add_argument("--learning_rate", type=float, default=train.learning_rate, help="Adam rate of the VAE")
    m.add_argument("--bn_momentum", type=float, default=vae.bn_momentum, help="BatchNorm momentum of the encoders (authors: 0.99, for long runs)")
    m.add_argument("--bn_recalibration_batches", type=int, default=train.bn_recalibration_batches,
                   help="after the VAE's epochs, set BatchNorm's statistics to their mean over this many batches "
                        "(0: keep the moving averages, as the authors; docs/vae.md)")
    m.add_argument("--images_per_batch", type=int, default=run.images_per_batch, help="images split into patches at once")
    m.add_argument("--finetune_epochs", type=int, default=None, help="VAE epochs in rounds >= 1 (default: half of --epoch)")
    m.add_argument("--finetune_lr", type=float, default=None, help="VAE learning rate in rounds >= 1 (default: a tenth of --learning_rate)")
    m.add_argument("--lr_schedule", default=run.lr_schedule, choices=LR_SCHEDULES,
                   help="the VAE's Adam rate in each round: constant (the authors'), or cosine: from --learning_rate "
                        "to 0 over the round's epochs (on the CelebA-HQ faces: no gain in the pipeline at 10 epochs, "
                        "docs/vae.md)")
    m.add_argument("--ema_momentum", type=float, default=train.ema_momentum,
                   help="end the VAE's training in each round at the moving average of its weights, with this "
                        "momentum m per step (0: the last step's weights, the authors'). The starting weights keep a "
                        "share m^steps of the average: 0.2%% for 0.995 over the 1,240 steps of 10 epochs on 36 faces; "
                        "on those faces no gain alone at batch 128, +1.0 dB with --batch_size 32, 0.998, "
                        "--fresh_noise and --augment_shift 12 (docs/vae.md)")
    m.add_argument("--fresh_noise", action="store_true",
                   help="draw new synthetic noise for the VAE's round-0 training images on every epoch (default: "
                        "seeded by the image's position in the stream, so the same draws return; docs/vae.md)")
    m.add_argument("--augment_shift", type=int, default=run.augment_shift,
                   help="shift the VAE's training images by up to this many pixels and mirror them left-right at random, "
                        "anew every epoch (0: off; the grid's stride, 12 by default, reaches every offset; docs/vae.md)")
    m.add_argument("--finetune_data", default=run.finetune_data, choices=FINETUNE_DATA,
                   help="what rounds >= 1 fine-tune the VAE on: 'outputs', round r-1's enhanced training images (the "
                        "inputs round r meets at test time), or 'all': the noisy pairs and every earlier round's outputs")
    m.add_argument("--shared_encoder", action="store_true", help="one encoder with three latent heads (paper figure)")
    m.add_argument("--lambda_kl", type=float, default=vae.lambda_kl)
    m.add_argument("--kl_warmup_steps", type=int, default=train.kl_warmup_steps,
                   help="VAE steps over which the KL weight rises from 0 to --lambda_kl when the VAE trains from "
                        "scratch (0: constant; against posterior collapse, docs/vae.md)")
    m.add_argument("--logvar_bias_init", type=float, default=vae.logvar_bias_init,
                   help="initial bias of the VAE's log-variance heads (-6: informative early samples, against "
                        "posterior collapse of a low-variance subspace; 0: Keras's default; docs/vae.md)")
    m.add_argument("--lambda_latent", type=float, default=vae.lambda_latent)
    m.add_argument("--lambda_clean", type=float, default=vae.lambda_clean,
                   help="weight of the clean autoencoding loss ||decode(E(clean)) - clean||^2 (the cluster bank "
                        "decodes clean latents; the authors' released decoders were not trained for it, docs/vae.md)")
    m.add_argument("--lambda_eq", type=float, default=vae.lambda_eq, help="weight of the D4 equivariance loss")
    m.add_argument("--sample_std", type=float, default=vae.sample_std,
                   help="std of the latent samples decoded in training (0: decode the means; for fine-tuning "
                        "the authors' weights, whose log-variance head gives variances >= 1, see docs/vae.md)")
    m.add_argument("--eq_fraction", type=float, default=vae.eq_fraction,
                   help="share of each batch the D4 loss is computed on (1: all; less is faster, see docs/vae.md)")
    m.add_argument("--symmetrise", action="store_true",
                   help="exact D4-equivariant mode for every VAE stage at test time (mean over the 8 symmetries; 8x the inference compute)")
    m.add_argument("--num_clusters", type=int, default=ClusterConfig.num_clusters)
    m.add_argument("--cluster_cap", type=int, default=ClusterConfig.cap, help="clean latents kept per cluster for neighbour search")
    m.add_argument("--cluster_images", type=int, default=run.cluster_images, help="training images encoded into the latent bank")
    m.add_argument("--knn", type=int, default=run.knn, help="clean neighbours averaged per patch")
    m.add_argument("--rl_steps", type=int, default=env.steps, help="filtering steps per patch")
    m.add_argument("--action", default=env.action, choices=ACTIONS,
                   help="the agent's action per patch and step: gain t*(1+beta*a), residual t+beta*s*a (s: std of the "
                        "clean latents), both a in [-1,1]^(3 x latent_dim); knn: gated pull toward the mean of the "
                        "k clean neighbours (the earlier design, for comparison)")
    m.add_argument("--action_scale", type=float, default=env.action_scale, help="beta of the gain and residual actions")
    m.add_argument("--gate", default=env.gate, choices=GATES, help="--action knn only: gates per subspace (3) or per latent dimension")
    m.add_argument("--kl_max", type=float, default=SACConfig.kl_max, help="trust region: max mean KL per actor update")
    m.add_argument("--action_low", type=float, default=SACConfig.action_low,
                   help="lower end of the actor's squashed range (-1: tanh, symmetric, the untrained policy's mean "
                        "action is 0, a no-op for every action; the knn action clips it to [0, 1], so gates can be exactly 0)")
    m.add_argument("--lambda_db", type=float, default=env.lambda_db, help="weight of the de-blocking reward term")
    m.add_argument("--mse_scale", type=float, default=env.mse_scale,
                   help="reward per unit decrease of a patch's MSE (and of the de-blocking term)")
    m.add_argument("--agent_episodes", type=int, default=None,
                   help=f"SAC episodes per round (default {AGENT_EPISODES[0]}, {AGENT_EPISODES[1]} in rounds >= 1; "
                        f"{SAMPLE_AGENT_EPISODES[0]} and {SAMPLE_AGENT_EPISODES[1]} on the embedded sample)")
    m.add_argument("--agent_images", type=int, default=run.agent_images, help="training images the agent trains on")
    m.add_argument("--agent_check_images", type=int, default=run.agent_check_images,
                   help="held-out training pairs (after the agent's) for the do-no-harm checks: the agent must beat "
                        "the VAE alone (or the round filters with the VAE alone), and a round >= 1 must beat its input, "
                        "round r-1's output (or it is not applied and the recursion stops), and round 0's fine-tuning "
                        "of an --init_from VAE must beat that VAE (or it is dropped); left out of the VAE's fine-tuning "
                        "in rounds >= 1 and from --init_from; 0 turns the checks off")
    m.add_argument("--images_per_episode", type=int, default=AgentTrainConfig.images_per_episode)
    m.add_argument("--updates_per_step", type=int, default=AgentTrainConfig.updates_per_step)
    m.add_argument("--enhance_images", type=int, default=None,
                   help=f"training images enhanced per round (default: all; {SAMPLE_ENHANCE_IMAGES} on the embedded sample)")


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> frozenset[str]:
    """The flags (argparse dests) the user typed: the same command parsed with every default suppressed."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:  # argparse has no public way to list what was given
        action.default = argparse.SUPPRESS
    return frozenset(vars(probe.parse_args(argv)))


def build_run_config(args: argparse.Namespace, defaults: Mapping[str, Any], given: frozenset[str]) -> RunConfig:
    """The run's config from the parsed flags: dataset defaults, the sample's and --smoke's budgets
    for flags not given, checks (ConfigError naming the flag), then the typed configs."""
    flags = dict(vars(args))
    sample = flags.get("train_files_path") is None
    if flags["smoke"]:
        flags.update({k: v for k, v in SMOKE.items() if k not in given})
    if flags["epoch"] is None:
        flags["epoch"] = defaults["sample_epoch"] if sample else defaults["epoch"]
    if sample and not flags["smoke"] and flags["enhance_images"] is None:
        flags["enhance_images"] = SAMPLE_ENHANCE_IMAGES
    _fine_tuning_defaults(flags, defaults, sample, given)
    if flags["finetune_epochs"] is None:
        flags["finetune_epochs"] = max(1, flags["epoch"] // 2)
    if flags["authors_weights"] and "authors" not in flags["baselines"]:
        flags["baselines"] = [*flags["baselines"], "authors"]
    flags["out_dir"] = str(flags["out_dir"] or Path("runs") / defaults["name"])
    _check(flags)
    episodes = flags["agent_episodes"]
    schedule = (episodes, episodes) if episodes else SAMPLE_AGENT_EPISODES if sample and not flags["smoke"] else AGENT_EPISODES
    out_dir = Path(flags["out_dir"])
    return RunConfig(
        out_dir=out_dir,
        model_dir=Path(flags["model_dir"]) if flags["model_dir"] else None,
        seed=flags["seed"], resume=flags["resume"], overwrite=flags["overwrite"], recursions=flags["recursions"],
        baselines=tuple(flags["baselines"]),
        authors_weights=Path(flags["authors_weights"]) if flags["authors_weights"] else None,
        init_from=flags.get("init_from"),
        max_train_images=flags["max_train_images"], max_test_images=flags["max_test_images"],
        strategy=flags["strategy"], images_per_batch=flags["images_per_batch"],
        finetune_epochs=flags["finetune_epochs"], finetune_lr=flags["finetune_lr"],
        finetune_data=flags["finetune_data"], lr_schedule=flags["lr_schedule"],
        fresh_noise=flags.get("fresh_noise", False), augment_shift=flags.get("augment_shift", 0),
        cluster_images=flags["cluster_images"], knn=flags["knn"],
        symmetrise=flags["symmetrise"], agent_episodes=schedule, agent_images=flags["agent_images"],
        agent_check_images=flags["agent_check_images"], enhance_images=flags["enhance_images"],
        noise=parse_noise(flags["noise"], flags["noise_level"]) if flags["noise"] is not None else None,
        vae=vae_config(flags),
        train=config_from_flags(TrainConfig, flags),
        clusters=config_from_flags(ClusterConfig, flags),
        env=config_from_flags(FilterEnvConfig, flags),
        sac=config_from_flags(SACConfig, flags),
        agent_train=config_from_flags(AgentTrainConfig, flags, episodes=schedule[0]),
        flags=flags,
    )


def _fine_tuning_defaults(flags: dict, defaults: Mapping[str, Any], sample: bool, given: frozenset[str]) -> None:
    """Where round 0 starts, and the training settings a start from a saved VAE needs.

    On the embedded sample a dataset's `sample_init_from` (the CelebA script: the released CelebA
    VAEs) is round 0's VAE, as it is (`--epoch 0`), when the run's network matches it: ten photos
    and minutes of training cannot teach a VAE what 27,000 faces did, and fine-tuning the
    released VAEs on them loses on other photos (docs/vae.md, "The CelebA-setting default").
    `--init_from none` trains from scratch, `--epoch N` fine-tunes. Fine-tuning takes a tenth
    of the from-scratch learning rate, half the epochs (as rounds >= 1 do) and decodes the
    latent means (`--sample_std 0`: the released log-variance head gives variances >= 1),
    unless those flags are given.
    """
    if flags.get("init_from") == "none":
        flags["init_from"] = None
    elif "init_from" not in given and sample and defaults.get("sample_init_from"):
        from models.io import read_config  # a JSON read

        shipped = read_config(defaults["sample_init_from"], "--init_from")
        if all(getattr(shipped, f) == flags[f] for f in ("latent_dim", "block_size", "shared_encoder")):
            flags["init_from"] = defaults["sample_init_from"]
            if "epoch" not in given:
                flags["epoch"] = 0
    if flags["epoch"] == 0 and not flags.get("init_from"):
        raise ConfigError("--epoch 0 trains no VAE: it needs --init_from (a saved VAE to use as it is)")
    if flags.get("init_from"):
        if "learning_rate" not in given:
            flags["learning_rate"] = TrainConfig.learning_rate / 10
        if "sample_std" not in given:
            flags["sample_std"] = 0.0
        if "epoch" not in given and flags["epoch"]:
            flags["epoch"] = max(1, flags["epoch"] // 2)


def vae_config(flags: Mapping[str, Any]) -> VAEConfig:
    """The VAE's config from the flags; with --init_from, the saved model's network with the flags'
    training settings, after checking that the flags that shape the network agree with it."""
    vae = config_from_flags(VAEConfig, flags)
    if not flags.get("init_from"):
        return vae
    from models.io import read_config  # a JSON read: cheap, so a mismatch stops the run before any work

    saved = read_config(flags["init_from"], "--init_from")
    for flag in ("latent_dim", "block_size", "shared_encoder"):
        if getattr(saved, flag) != getattr(vae, flag):
            raise ConfigError(f"--init_from {flags['init_from']}: the saved VAE has {flag} {getattr(saved, flag)} "
                              f"but the run has --{flag} {getattr(vae, flag)} (layouts must match)")
    return vae.with_layout_of(saved)


def config_from_flags(cls: type, flags: Mapping[str, Any], **fixed: Any):
    """An instance of the config dataclass `cls` whose fields take the flags of their names (or
    `FLAG_NAMES`), the other fields keep their defaults; `fixed` overrides both."""
    names = FLAG_NAMES.get(cls, {})
    skip = NOT_FROM_FLAGS.get(cls, set())
    values = {}
    for f in dataclasses.fields(cls):
        flag = names.get(f.name, f.name)
        if f.name not in skip and flags.get(flag) is not None:
            values[f.name] = flags[flag]
    return cls(**{**values, **fixed})


def _check(flags: Mapping[str, Any]) -> None:
    """Everything that can be checked before any training; ConfigError naming the flag."""
    check_patch_settings(flags["block_size"], flags["overlap"])
    for flag, least in AT_LEAST.items():
        value = flags.get(flag)
        if value is not None and value < least:
            raise ConfigError(f"--{flag} must be at least {least}, got {value}")
    if flags["knn"] > flags["cluster_cap"]:
        raise ConfigError(f"--knn {flags['knn']} is more than the --cluster_cap {flags['cluster_cap']} latents kept per cluster")
    if not 0.0 <= flags.get("ema_momentum", 0.0) < 1.0:
        raise ConfigError(f"--ema_momentum must be in [0, 1) (0: off), got {flags['ema_momentum']}")
    if flags.get("fresh_noise") and flags.get("noise") in (None, "none"):
        raise ConfigError("--fresh_noise needs a synthetic --noise model (real noisy/clean pairs cannot be re-noised)")
    if flags["resume"] and flags["overwrite"]:
        raise ConfigError("--resume and --overwrite contradict each other: continue the run in --out_dir, or replace it")
    if flags["authors_weights"] and not Path(flags["authors_weights"]).is_dir():
        raise DataError(f"--authors_weights {flags['authors_weights']}: no such folder")


def _json_safe(value: Any) -> Any:
    """Paths as strings, tuples as lists: the record compares equal to itself after a JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
