"""The RSE-RL run shared by the experiment scripts (SPEC section 2).

    data -> round 0: VAE + T -> latent clusters -> SAC agent
         -> round r >= 1: enhanced training inputs of round r-1 join the training set,
            VAE, clusters and agent are fine-tuned
         -> evaluation of every stage on the test set -> table, results.json/csv, figures

The experiment scripts only add their dataset flags and build the data (`RunData`).
Each phase writes its artefacts atomically and records itself in `<out_dir>/state.json`,
so `--resume` after an interruption (Ctrl-C included) skips finished phases, and VAE
training resumes from its last epoch checkpoint. Every phase seeds itself from
(--seed, phase), so a resumed run computes what an uninterrupted one would.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from data.errors import DataError
from data.noise import NOISE_MODELS, NoiseConfig, parse_noise
from data.pairs import TestSet
from data.patches import check_patch_settings
from utils import atomic_write_json

LOG = logging.getLogger("rse_rl")
AUTHORS_STAGE = "authors' VAE weights"
COMPILED_BASELINES = frozenset({AUTHORS_STAGE})  # compiled on first use: warmed up before timing
BASELINES = ("nlm", "tv", "bm3d", "authors")
PHASE_SEEDS = {"vae": 1, "clusters": 2, "agent": 3, "enhance": 4}
AGENT_EPISODES = (40, 15)  # default --agent_episodes in round 0 and in later rounds
SAMPLE_AGENT_EPISODES = (20, 10)  # the same on the embedded sample (a ten-minute run)
SAMPLE_ENHANCE_IMAGES = 50  # default --enhance_images on the embedded sample


# ----- flags ---------------------------------------------------------------------------------------
def add_common_flags(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The flags both experiment scripts share; `defaults` holds the per-dataset values."""
    p = parser.add_argument_group("authors' flags (same meaning as their README)")
    p.add_argument("--file_batch", type=int, default=5, help="TFRecord shards (or image pairs) read concurrently")
    p.add_argument("--epoch", type=int, default=None,
                   help=f"VAE training epochs (default {defaults['epoch']}; {defaults['sample_epoch']} on the embedded sample)")
    p.add_argument("--latent_dim", type=int, default=defaults["latent_dim"])
    p.add_argument("--target_psnr", type=float, default=defaults["target_psnr"], help="PSNR target of the agent's image-level reward (dB)")
    p.add_argument("--train_files_path", default=None)
    p.add_argument("--test_files_path", default=None)

    r = parser.add_argument_group("run")
    r.add_argument("--out_dir", default=None, help=f"results, figures, checkpoints (default runs/{defaults['name']})")
    r.add_argument("--model_dir", default=None, help="where trained models are saved (default <out_dir>/model)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--noise", default=defaults["noise"], help=f"noise model: {', '.join(NOISE_MODELS)}")
    r.add_argument("--noise_level", default=None, help="gaussian_var: variance (0.02); sigma: std in 0..255 (25); poisson_gaussian: a,b (0.005,0.0005)")
    r.add_argument("--recursions", type=int, default=1, help="self-enhancement rounds after round 0")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out_dir")
    r.add_argument("--baselines", nargs="*", default=["nlm", "tv", "bm3d"], help=f"any of {', '.join(BASELINES)}")
    r.add_argument("--authors_weights", default=None, help="the authors' released VAE folder (celeba_{y,u,v}_no)")
    r.add_argument("--smoke", action="store_true", help="a short run: tiny budgets everywhere (16 training, 2 test images, 2 epochs)")
    r.add_argument("--max_train_images", type=int, default=None)
    r.add_argument("--max_test_images", type=int, default=None)
    r.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored", "multiworker"), help="tf.distribute strategy")

    m = parser.add_argument_group("method")
    m.add_argument("--block_size", type=int, default=16)
    m.add_argument("--overlap", type=int, default=4)
    m.add_argument("--batch_size", type=int, default=128, help="patch pairs per VAE step (global, over all replicas)")
    m.add_argument("--learning_rate", type=float, default=2e-3, help="Adam rate of the VAE")
    m.add_argument("--bn_momentum", type=float, default=0.9, help="BatchNorm momentum of the encoders (authors: 0.99, for long runs)")
    m.add_argument("--images_per_batch", type=int, default=8, help="images split into patches at once")
    m.add_argument("--finetune_epochs", type=int, default=None, help="VAE epochs in rounds >= 1 (default: half of --epoch)")
    m.add_argument("--shared_encoder", action="store_true", help="one encoder with three latent heads (paper figure)")
    m.add_argument("--lambda_kl", type=float, default=1e-3)
    m.add_argument("--lambda_latent", type=float, default=1e-2)
    m.add_argument("--lambda_eq", type=float, default=0.1, help="weight of the D4 equivariance loss")
    m.add_argument("--symmetrise", action="store_true", help="exact D4-equivariant mode at inference")
    m.add_argument("--num_clusters", type=int, default=16)
    m.add_argument("--cluster_cap", type=int, default=4096, help="clean latents kept per cluster for neighbour search")
    m.add_argument("--cluster_images", type=int, default=2000, help="training images encoded into the latent bank")
    m.add_argument("--knn", type=int, default=8, help="clean neighbours averaged per patch")
    m.add_argument("--rl_steps", type=int, default=3, help="filtering steps per patch")
    m.add_argument("--gate", default="subspace", help="action gates: subspace (3) or latent (3 x latent_dim)")
    m.add_argument("--kl_max", type=float, default=0.01, help="trust region: max mean KL per actor update")
    m.add_argument("--action_low", type=float, default=-1.0,
                   help="lower end of the actor's squashed range; the env clips to [0, 1], so gates can be exactly 0 "
                        "(at -1 the untrained policy's mean action is gate 0: it starts as a no-op)")
    m.add_argument("--lambda_db", type=float, default=1.0, help="weight of the de-blocking reward term")
    m.add_argument("--agent_episodes", type=int, default=None, help="SAC episodes per round (default 40, 15 in rounds >= 1; 20 and 10 on the embedded sample)")
    m.add_argument("--agent_images", type=int, default=16, help="training images the agent trains on")
    m.add_argument("--agent_check_images", type=int, default=16,
                   help="held-out training pairs (after the agent's) on which the agent must beat the VAE alone, "
                        "or the round filters with the VAE alone; 0 keeps the agent unchecked")
    m.add_argument("--images_per_episode", type=int, default=2)
    m.add_argument("--updates_per_step", type=int, default=16)
    m.add_argument("--enhance_images", type=int, default=None, help="training images enhanced per round (default: all; 50 on the embedded sample)")


def validate_common(args: argparse.Namespace, defaults: dict) -> None:
    """Everything that can be checked before any training; DataError naming the flag."""
    check_patch_settings(args.block_size, args.overlap)
    # None: the dataset script picks (SIDD: real pairs, or Poisson-Gaussian on the sample).
    args.noise_config = parse_noise(args.noise, args.noise_level) if args.noise is not None else None
    for flag in ("latent_dim", "batch_size", "num_clusters", "knn", "rl_steps", "images_per_batch", "agent_images"):
        if getattr(args, flag) < 1:
            raise DataError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    for flag in ("recursions", "agent_check_images"):
        if getattr(args, flag) < 0:
            raise DataError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    unknown = [b for b in args.baselines if b not in BASELINES]
    if unknown:
        raise DataError(f"--baselines: unknown {unknown}; choose from {', '.join(BASELINES)}")
    if "authors" in args.baselines and not args.authors_weights:
        raise DataError("--baselines authors needs --authors_weights DIR")
    if args.authors_weights and not Path(args.authors_weights).is_dir():
        raise DataError(f"--authors_weights {args.authors_weights}: no such folder")
    if args.authors_weights and "authors" not in args.baselines:
        args.baselines = [*args.baselines, "authors"]
    args.out_dir = Path(args.out_dir or Path("runs") / defaults["name"])
    args.model_dir = Path(args.model_dir) if args.model_dir else args.out_dir / "model"
    for flag, folder in (("--out_dir", args.out_dir), ("--model_dir", args.model_dir)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise DataError(f"{flag} {folder}: cannot be written ({exc.strerror or exc})") from None
    sample = args.train_files_path is None
    if args.epoch is None:
        args.epoch = defaults["sample_epoch"] if sample else defaults["epoch"]
    if sample and not args.smoke:  # the embedded sample's run should take about ten minutes on 2 cores
        args.enhance_images = args.enhance_images or SAMPLE_ENHANCE_IMAGES
        args.agent_episodes_by_round = list(SAMPLE_AGENT_EPISODES)
    else:
        args.agent_episodes_by_round = list(AGENT_EPISODES)
    if args.smoke:
        args.epoch = min(args.epoch, 2)
        args.max_train_images = min(args.max_train_images or 16, 16)
        args.max_test_images = min(args.max_test_images or 2, 2)
        args.agent_images, args.images_per_episode, args.updates_per_step = 4, 2, 4
        args.agent_check_images = min(args.agent_check_images, 4)
        args.cluster_images = min(args.cluster_images, 8)
        args.recursions = min(args.recursions, 1)
        args.agent_episodes = args.agent_episodes or 3
        args.batch_size = min(args.batch_size, 128)
    if args.finetune_epochs is None:
        args.finetune_epochs = max(1, args.epoch // 2)
    if args.epoch < 1:
        raise DataError(f"--epoch must be at least 1, got {args.epoch}")


# ----- data ----------------------------------------------------------------------------------------
@dataclass
class RunData:
    """What a dataset script hands to the pipeline."""

    description: str
    train_pairs: Callable[[], object]  # () -> tf.data.Dataset of (noisy, clean) float images, one pass
    test: TestSet
    colour: bool = True
    benchmark_blocks: np.ndarray | None = None  # SIDD benchmark noisy blocks (40, 32, 256, 256, 3)


# ----- run state -----------------------------------------------------------------------------------
@dataclass
class RunState:
    """Finished phases, persisted in <out_dir>/state.json for --resume."""

    path: Path
    done: dict = field(default_factory=dict)

    @classmethod
    def open(cls, out_dir: Path, resume: bool, config: dict) -> "RunState":
        path = out_dir / "state.json"
        if resume and path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("config") != config:
                changed = sorted(k for k in set(config) | set(saved.get("config", {})) if config.get(k) != saved.get("config", {}).get(k))
                raise DataError(f"--resume: {out_dir} was started with different settings ({', '.join(changed)})")
            return cls(path, saved.get("done", {}))
        state = cls(path)
        state.config = config
        state.save()
        return state

    def save(self) -> None:
        config = getattr(self, "config", None)
        if config is None and self.path.is_file():
            config = json.loads(self.path.read_text()).get("config")
        self.config = config
        atomic_write_json(self.path, {"config": config, "done": self.done})

    def finished(self, phase: str) -> bool:
        return phase in self.done

    def mark(self, phase: str, info: dict | None = None) -> None:
        self.done[phase] = info or {}
        self.save()


def _phase_seed(seed: int, round_index: int, phase: str) -> int:
    return seed * 1000 + round_index * 10 + PHASE_SEEDS[phase]


def _seed_everything(seed: int) -> None:
    from utils import set_seeds

    set_seeds(seed)


# ----- one round's models ------------------------------------------------------------------------------
@dataclass
class RoundModels:
    vae: object
    clusters: object
    agent: object  # the trained agent (also the warm start of the next round's)
    use_agent: bool = True  # False: it lowered PSNR on held-out training pairs; filter with the VAE alone

    @property
    def policy(self):
        """The agent this round filters with, or None for the VAE alone (all gates 0)."""
        return self.agent if self.use_agent else None


def _vae_config(args):
    from models.vae import VAEConfig

    return VAEConfig(
        block_size=args.block_size, latent_dim=args.latent_dim, shared_encoder=args.shared_encoder,
        channels=("Y", "U", "V") if args.colour else ("Y",),
        lambda_kl=args.lambda_kl, lambda_latent=args.lambda_latent, lambda_eq=args.lambda_eq,
        bn_momentum=args.bn_momentum,
    )


def _env_config(args):
    from rl.envs.latent_filter import FilterEnvConfig

    return FilterEnvConfig(steps=args.rl_steps, gate=args.gate, block_size=args.block_size,
                           overlap=args.overlap, target_psnr=args.target_psnr, lambda_db=args.lambda_db)


def _round_dir(args, r: int) -> Path:
    return args.model_dir / f"round{r}"


def _enhanced_pairs(args, r: int):
    """Round r's enhanced training inputs beside their clean targets, as (input, clean) float pairs."""
    import tensorflow as tf

    from data.celeba import celeba_dataset

    c = 3 if args.colour else 1  # enhanced records hold (enhanced, clean) side by side: 2c channels
    enhanced = celeba_dataset(args.out_dir / "enhanced" / f"round{r}", expect_channels=2 * c)
    return enhanced.map(lambda x: (tf.cast(x[..., :c], tf.float32) / 255.0, tf.cast(x[..., c:], tf.float32) / 255.0))


def _round_input_pairs(args, data: RunData, r: int):
    """The (input, clean) pairs round r is applied to: noisy ones in round 0, round r-1's outputs after."""
    if r:
        return _enhanced_pairs(args, r - 1)
    return data.train_pairs().take(args.max_train_images) if args.max_train_images else data.train_pairs()


def _batched_pairs(args, data: RunData, r: int):
    """The training stream of round r: original pairs, plus enhanced inputs of rounds < r."""
    streams = [_round_input_pairs(args, data, 0)] + [_enhanced_pairs(args, previous) for previous in range(r)]
    mixed = streams[0]
    for other in streams[1:]:
        mixed = mixed.concatenate(other)
    return mixed.batch(args.images_per_batch, drop_remainder=False)


def train_round(args, data: RunData, r: int, state: RunState, previous: RoundModels | None, strategy) -> RoundModels:
    """Train (round 0) or fine-tune (round r >= 1) VAE + T, clusters and agent."""
    import tensorflow as tf

    from models.clusters import ClusterConfig, ClusterIndex, latent_stream_from_patches
    from models.io import load_clusters, load_model, save_model
    from models.training import TrainConfig, train_vae
    from models.vae import build_vae
    from rl.envs.latent_filter import AgentTrainConfig, LatentFilterEnv, latent_model_from_vae, train_agent
    from rl.sac import SACAgent, SACConfig
    from utils import TensorBoardLogger

    round_dir = _round_dir(args, r)
    work = args.out_dir / "work" / f"round{r}"

    # VAE + T
    if state.finished(f"round{r}/vae"):
        vae = load_model(round_dir / "vae")
        LOG.info("round %d: VAE loaded from %s (finished earlier)", r, round_dir / "vae")
    else:
        _seed_everything(_phase_seed(args.seed, r, "vae"))
        with strategy.scope():
            vae = build_vae(_vae_config(args))
            if previous is not None:
                vae(tf.zeros([1, args.block_size, args.block_size, len(vae.cfg.channels)]))
                vae.set_weights(previous.vae.get_weights())
        epochs = args.epoch if r == 0 else args.finetune_epochs
        cfg = TrainConfig(epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                          overlap=args.overlap, seed=_phase_seed(args.seed, r, "vae"), progress=True)
        LOG.info("round %d: training the VAE for %d epoch(s)", r, epochs)
        history = train_vae(vae, _batched_pairs(args, data, r), cfg, work / "vae", resume=args.resume, strategy=strategy)
        save_model(vae, round_dir / "vae")
        state.mark(f"round{r}/vae", {"history": history})
    _stop_if_asked(args, f"round{r}/vae")

    # Latent clusters of clean training patches
    if state.finished(f"round{r}/clusters"):
        clusters = load_clusters(round_dir / "vae")
    else:
        _seed_everything(_phase_seed(args.seed, r, "clusters"))
        LOG.info("round %d: clustering clean latents (%d clusters)", r, args.num_clusters)
        stream = latent_stream_from_patches(vae, lambda: _clean_patch_batches(args, data))
        clusters = ClusterIndex.build(stream, ClusterConfig(num_clusters=args.num_clusters, cap=args.cluster_cap,
                                                            seed=_phase_seed(args.seed, r, "clusters")))
        save_model(vae, round_dir / "vae", clusters=clusters)
        state.mark(f"round{r}/clusters")
    _stop_if_asked(args, f"round{r}/clusters")

    # Agent
    env = LatentFilterEnv(latent_model_from_vae(vae, clusters, k=args.knn), _env_config(args))
    if state.finished(f"round{r}/agent"):
        agent = SACAgent.load(round_dir / "agent")
    else:
        seed = _phase_seed(args.seed, r, "agent")
        _seed_everything(seed)
        agent = SACAgent(env.state_dim, env.action_dim, SACConfig(kl_max=args.kl_max, action_low=args.action_low), seed=seed)
        if previous is not None:
            _copy_agent(previous.agent, agent)
        pairs = _agent_images(args, data, r)
        if pairs is None:
            raise DataError("the training set is empty")
        noisy, clean = pairs
        episodes = args.agent_episodes or args.agent_episodes_by_round[min(r, 1)]
        LOG.info("round %d: training the agent, %d episodes on %d images", r, episodes, len(noisy))
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc=f"agent round {r}", disable=not sys.stderr.isatty())
        history = train_agent(
            env, agent, noisy, clean,
            AgentTrainConfig(episodes=episodes, images_per_episode=args.images_per_episode,
                             updates_per_step=args.updates_per_step, seed=seed),
            logger=TensorBoardLogger(work / "agent_tensorboard"),
            progress=lambda e, m: (bar.update(1), bar.set_postfix(psnr=f"{m['psnr']:.2f}", kl=f"{m.get('kl', 0):.4f}")),
        )
        bar.close()
        agent.save(round_dir / "agent")
        state.mark(f"round{r}/agent", {"history": history[-5:]})
    _stop_if_asked(args, f"round{r}/agent")
    return RoundModels(vae, clusters, agent, use_agent=_check_agent(args, data, r, env, agent, state))


def _check_agent(args, data: RunData, r: int, env, agent, state: RunState) -> bool:
    """Keep the agent only if it beats the VAE alone on held-out training pairs (never test data).

    SAC on a few episodes can end on a policy that hurts; the pairs after the
    agent's own training images decide, so a harmful policy is not shipped.
    """
    from rl.envs.latent_filter import filter_images, image_psnr

    phase = f"round{r}/agent_check"
    if not args.agent_check_images:
        return True
    if state.finished(phase):
        return bool(state.done[phase]["kept"])
    pairs = _agent_images(args, data, r, skip=args.agent_images, take=args.agent_check_images)
    if pairs is None:
        LOG.warning("round %d: no training pairs left after the agent's %d to check it on; keeping the agent",
                    r, args.agent_images)
        return True
    noisy, clean = pairs
    vae_psnr = float(image_psnr(clean, filter_images(noisy, None, env.model, env.cfg)).mean())
    agent_psnr = float(image_psnr(clean, filter_images(noisy, agent, env.model, env.cfg)).mean())
    kept = agent_psnr > vae_psnr
    LOG.log(logging.INFO if kept else logging.WARNING,
            "round %d: on %d held-out training pairs the agent gives %.3f dB, the VAE alone %.3f dB: %s",
            r, len(noisy), agent_psnr, vae_psnr,
            "agent kept" if kept else "agent dropped, this round filters with the VAE alone (--agent_check_images 0 keeps it)")
    state.mark(phase, {"images": len(noisy), "vae_psnr": vae_psnr, "agent_psnr": agent_psnr, "kept": kept})
    return kept


def _copy_agent(source, target) -> None:
    for src, dst in ((source.actor, target.actor), (source.q1, target.q1), (source.q2, target.q2),
                     (source.q1_target, target.q1_target), (source.q2_target, target.q2_target)):
        for a, b in zip(src.trainable_variables, dst.trainable_variables):
            b.assign(a)
    target.log_alpha.assign(source.log_alpha)


def _clean_patch_batches(args, data: RunData):
    """Clean training images -> model-space patch batches, at most --cluster_images images."""
    from data.color import rgb_to_yuv
    from data.patches import split_patches

    ds = data.train_pairs().map(lambda n, c: c).take(args.cluster_images).batch(args.images_per_batch)
    for clean in ds:
        space = rgb_to_yuv(clean) if args.colour else clean
        patches, _ = split_patches(space, args.block_size, args.overlap)
        yield patches


def _agent_images(args, data: RunData, r: int, skip: int = 0, take: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(input, clean) training pairs of round r's inputs as stacked arrays, or None when there are none."""
    pairs = list(_round_input_pairs(args, data, r).skip(skip).take(take or args.agent_images).as_numpy_iterator())
    if not pairs:
        return None
    noisy, clean = zip(*pairs)
    return np.stack(noisy), np.stack(clean)


def enhance_training_set(args, data: RunData, r: int, models: RoundModels, state: RunState) -> None:
    """Write round r's outputs on its training inputs (round r+1's inputs) beside their clean targets (2c-channel records)."""
    from data.celeba import write_tfrecords
    from data.images import to_uint8
    from rl.envs.latent_filter import filter_images, latent_model_from_vae

    phase = f"round{r}/enhance"
    if state.finished(phase):
        return
    latent = latent_model_from_vae(models.vae, models.clusters, k=args.knn)
    ds = _round_input_pairs(args, data, r)  # round r's outputs are round r+1's inputs, as at test time
    if args.enhance_images:
        ds = ds.take(args.enhance_images)
    ds = ds.batch(args.images_per_batch)

    def records():
        for noisy, clean in ds:
            out = filter_images(noisy.numpy(), models.policy, latent, _env_config(args))
            for e, c in zip(to_uint8(out), to_uint8(clean.numpy())):
                yield np.concatenate([e, c], axis=-1)

    LOG.info("round %d: enhancing the training inputs for round %d", r, r + 1)
    write_tfrecords(records(), args.out_dir / "enhanced" / f"round{r}", prefix="enhanced", images_per_shard=500)
    state.mark(phase)


def _stop_if_asked(args, phase: str) -> None:
    """Testing hook: simulate Ctrl-C right after a phase (RSE_RL_STOP_AFTER=phase)."""
    if os.environ.get("RSE_RL_STOP_AFTER") == phase:
        raise KeyboardInterrupt


# ----- evaluation ----------------------------------------------------------------------------------
def evaluate(args, data: RunData, rounds: list[RoundModels]) -> dict:
    """Score every stage on the test set in one streaming pass; returns the report dict."""
    from evaluation import ssim, psnr, uqi
    from models.equivariance import relative_equivariance_error
    from rl.envs.latent_filter import filter_images, latent_model_from_vae
    from data.images import to_uint8

    env_cfg = _env_config(args)
    latents = [latent_model_from_vae(m.vae, m.clusters, k=args.knn) for m in rounds]
    baselines = _baseline_functions(args)
    stage_names = ["noisy input", *baselines.keys(), "VAE", "VAE + agent (round 0)"]
    stage_names += [f"round {r}" for r in range(1, len(rounds))]
    per_image: list[dict] = []
    timings = {name: 0.0 for name in stage_names}
    examples: dict[str, list[np.ndarray]] = {}
    from tqdm import tqdm

    # Untimed warm-up on the first test image: the inference graphs compile once per input
    # shape, and that one-off cost would otherwise land on whichever stage runs first.
    for pair in itertools.islice(data.test.open(), 1):
        for name in COMPILED_BASELINES & baselines.keys():
            baselines[name](pair.noisy)
        for models, latent in zip(rounds, latents):  # compiles what the VAE alone uses, too
            filter_images(pair.noisy[None], models.policy, latent, env_cfg)
    for pair in tqdm(data.test.open(), total=data.test.size, desc="evaluating", disable=not sys.stderr.isatty()):
        outputs: dict[str, np.ndarray] = {"noisy input": pair.noisy}
        for name, fn in baselines.items():
            start = time.perf_counter()
            outputs[name] = fn(pair.noisy)
            timings[name] += time.perf_counter() - start
        start = time.perf_counter()
        outputs["VAE"] = filter_images(pair.noisy[None], None, latents[0], env_cfg)[0]
        timings["VAE"] += time.perf_counter() - start
        current = pair.noisy
        for r, (models, latent) in enumerate(zip(rounds, latents)):
            start = time.perf_counter()
            current = filter_images(current[None], models.policy, latent, env_cfg)[0]
            name = "VAE + agent (round 0)" if r == 0 else f"round {r}"
            timings[name] += time.perf_counter() - start
            outputs[name] = current
        if pair.clean is not None:
            for name, out in outputs.items():
                per_image.append({"image": pair.name, "stage": name, "psnr": psnr(pair.clean, out),
                                  "ssim": ssim(pair.clean, out), "uqi": uqi(pair.clean, out)})
        if len(examples.get("clean", [])) < 3:
            examples.setdefault("clean", []).append(to_uint8(pair.clean) if pair.clean is not None else to_uint8(pair.noisy))
            for name, out in outputs.items():
                examples.setdefault(name, []).append(to_uint8(out))
    stage_rows = []
    for name in stage_names:
        rows = [row for row in per_image if row["stage"] == name]
        stage = {"stage": name}
        for metric in ("psnr", "ssim", "uqi"):
            stage[metric] = float(np.mean([row[metric] for row in rows])) if rows else None
        stage["eq_error"] = None
        stage["seconds_per_image"] = timings[name] / max(1, data.test.size)
        stage_rows.append(stage)
    # Relative equivariance error of the patch denoiser, on patches of the first example.
    probe = _probe_patches(args, examples["noisy input"][0])
    for stage in stage_rows:
        if stage["stage"] == "VAE":
            stage["eq_error"] = relative_equivariance_error(rounds[0].vae.denoise_fn, probe)
            if args.symmetrise:
                stage["eq_error_exact"] = relative_equivariance_error(
                    lambda x: rounds[0].vae.denoise_patches(x, symmetrise=True), probe)
    return {"stages": stage_rows, "per_image": per_image, "examples": examples}


def _probe_patches(args, image_uint8: np.ndarray) -> np.ndarray:
    from data.color import rgb_to_yuv
    from data.patches import split_patches

    img = image_uint8.astype(np.float32)[None] / 255.0
    patches, _ = split_patches(rgb_to_yuv(img) if args.colour else img, args.block_size, args.overlap)
    return patches[:512]


def _baseline_functions(args) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Classical baselines (scikit-image NLM and TV, BM3D if installed, the authors' VAE)."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    from rl.envs.latent_filter import noise_estimate

    def sigma_of(img):
        """Blind noise std (the same Immerkaer estimate the agent sees), as the baselines get no oracle."""
        return float(noise_estimate(img[None]).mean())

    def axis(img):
        return -1

    functions: dict[str, Callable] = {}
    if "nlm" in args.baselines:
        functions["non-local means"] = lambda img: denoise_nl_means(
            img, h=0.8 * sigma_of(img), sigma=sigma_of(img), fast_mode=True, patch_size=5,
            patch_distance=6, channel_axis=axis(img)).astype(np.float32).reshape(img.shape)  # NLM drops a single channel
    if "tv" in args.baselines:
        functions["TV (Chambolle)"] = lambda img: denoise_tv_chambolle(
            img, weight=max(0.02, 0.7 * sigma_of(img)), channel_axis=axis(img)).astype(np.float32)
    if "bm3d" in args.baselines:
        try:
            import bm3d  # noqa: F401  (optional: free for non-commercial use only)

            def run_bm3d(img):
                sigma = sigma_of(img)
                if img.shape[-1] == 3:
                    return np.clip(bm3d.bm3d_rgb(img, sigma), 0, 1).astype(np.float32)
                return np.clip(bm3d.bm3d(img[..., 0], sigma), 0, 1)[..., None].astype(np.float32)

            functions["BM3D"] = run_bm3d
        except ImportError:
            LOG.warning("BM3D baseline skipped: the optional 'bm3d' package is not installed "
                        "(pip install bm3d; free for non-commercial use only)")
    if "authors" in args.baselines and args.authors_weights:
        from models.io import import_authors_weights
        from models.vae import denoise_image

        authors = import_authors_weights(args.authors_weights)
        functions[AUTHORS_STAGE] = lambda img: denoise_image(authors, img, overlap=args.overlap)
    return functions


# ----- the whole run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace, data: RunData, strategy=None) -> dict:
    """Train every round, evaluate every stage, write the report; returns the report.

    `strategy`: made by `main` before any TF op runs (MultiWorkerMirroredStrategy must
    be created at program start); None: `get_strategy(args.strategy)` here.
    """
    import tensorflow as tf

    from evaluation import format_table, write_report
    from utils import get_strategy

    args.colour = data.colour
    tf.config.experimental.enable_op_determinism()
    strategy = strategy or get_strategy(args.strategy)
    config = _config_dict(args)
    state = RunState.open(args.out_dir, args.resume, config)
    started = time.perf_counter()
    rounds: list[RoundModels] = []
    for r in range(args.recursions + 1):
        rounds.append(train_round(args, data, r, state, rounds[-1] if rounds else None, strategy))
        if r < args.recursions:
            enhance_training_set(args, data, r, rounds[-1], state)
    train_seconds = time.perf_counter() - started
    report = evaluate(args, data, rounds)
    report["timings"] = {"train_seconds": train_seconds, "total_seconds": time.perf_counter() - started}
    report["config"] = config
    report["data"] = data.description
    report["agent_checks"] = {f"round{r}": state.done.get(f"round{r}/agent_check") for r in range(len(rounds))}
    if data.benchmark_blocks is not None:
        report["submission"] = str(_write_benchmark_submission(args, data, rounds))
    write_report(args.out_dir, report)
    print(format_table(report["stages"], ["stage", "psnr", "ssim", "uqi", "eq_error", "seconds_per_image"],
                       title=f"RSE-RL on {data.description}"))
    for r, models in enumerate(rounds):
        if not models.use_agent:
            print(f"round {r}: the agent lowered PSNR on held-out training pairs and was dropped; "
                  f"this round filtered with the VAE alone (results.json: agent_checks)")
    print(f"results: {args.out_dir / 'results.json'}")
    return report


def _write_benchmark_submission(args, data: RunData, rounds: list[RoundModels]) -> Path:
    from data.sidd import write_sidd_submission
    from data.images import to_uint8
    from rl.envs.latent_filter import filter_images, latent_model_from_vae

    blocks = data.benchmark_blocks
    flat = blocks.reshape(-1, *blocks.shape[-3:]).astype(np.float32) / 255.0
    for models in rounds:
        flat = filter_images(flat, models.policy, latent_model_from_vae(models.vae, models.clusters, k=args.knn), _env_config(args))
    return write_sidd_submission(to_uint8(flat).reshape(blocks.shape), args.out_dir)


def _config_dict(args) -> dict:
    skip = {"resume", "noise_config", "colour"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items()) if k not in skip and not callable(v)}


def main(build_data: Callable[[argparse.Namespace], RunData], parser: argparse.ArgumentParser,
         defaults: dict, argv=None, validate_dataset: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Entry point of the experiment scripts: flags, checks, run; clean errors and exit codes."""
    from utils import setup_logging

    args = parser.parse_args(argv)
    setup_logging()
    try:
        validate_common(args, defaults)
        if validate_dataset is not None:
            validate_dataset(args)
        from utils import get_strategy

        strategy = get_strategy(args.strategy)  # before build_data runs TF ops (multi-worker needs it first)
        data = build_data(args)
        run(args, data, strategy)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished phases and the last VAE epoch checkpoint are saved in {args.out_dir}; "
              f"rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    return 0
