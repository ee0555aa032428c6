"""R3L and R3N training runs: one config, the warm start, the training loop with learning curves, the denoiser.

Shared by experiment_r3l.py (the command line) and bench/quality.py, so neither
imports the other's internals. A run is `warm_start_episodes` episodes of warm start
followed by `episodes` episodes of the method's own training, on one episode counter
(checkpointed, so `--resume` continues either phase):

- R3L warm start (`oracle` or `dncnn`): `PPO.clone_episode`, cross-entropy toward the
  residual that moves each visited pixel toward the target image, plus the value head
  regressed on the cloned policy's discounted returns. Then PPO (`PPO.train_episode`).
- R3N gets the same starting point: the same number of MSE steps on the same batches
  toward the same target image, then MSE toward the clean image.

The target image is the clean training crop (`oracle`: clean images already drive
R3L's reward) or DnCNN-25's estimate from the noisy crop alone (`dncnn`). Every
`eval_every` episodes (and at the end of each phase) the mean episode return (R3N: the
MSE) and the PSNR of a small fixed validation set go to TensorBoard and to the
learning curve (`figures/learning_curve.png`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

import evaluation
from data.errors import DataError
from rl.ppo import PPO, PPOConfig

METHODS = ("r3l", "r3n")
WARM_STARTS = ("none", "oracle", "dncnn")


@dataclass(frozen=True)
class R3LRunConfig:
    """Everything a training run needs; built once from the flags at the script boundary."""

    method: str = "r3l"
    sigma: float = 25.0
    episodes: int = 10  # after the warm start: PPO episodes (R3L) or MSE steps (R3N)
    warm_start: str = "oracle"
    warm_start_episodes: int = 200
    init_dncnn: str | None = None  # DnCNN .mat: copied into the dilated layers, and the `dncnn` teacher
    batch_size: int = 8
    crop: int = 32
    steps: int = 6
    precision: str = "mixed_bfloat16"
    policy_init: str = "noop"
    ppo: PPOConfig = field(default_factory=PPOConfig)
    seed: int = 0
    eval_every: int = 25
    save_every: int = 100
    max_train_minutes: float | None = None  # wall clock
    max_train_cpu_minutes: float | None = None  # process CPU time (all threads): the budget on a shared machine

    def __post_init__(self):
        if self.method not in METHODS:
            raise DataError(f"--method: {self.method!r} is not one of {', '.join(METHODS)}")
        if self.warm_start not in WARM_STARTS:
            raise DataError(f"--warm_start: {self.warm_start!r} is not one of {', '.join(WARM_STARTS)}")
        if self.warm_start == "dncnn" and not self.init_dncnn:
            raise DataError("--warm_start dncnn needs --init_dncnn PATH (the DnCNN-25 .mat whose estimates are cloned)")

    @property
    def warm_episodes(self) -> int:
        """Warm-start episodes actually run (0 without a warm start)."""
        return 0 if self.warm_start == "none" else self.warm_start_episodes

    @property
    def total_episodes(self) -> int:
        return self.warm_episodes + self.episodes


def random_batch(images: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """`batch` random crops (uint8 (B,crop,crop,C)) with a random flip/90-degree rotation each."""
    out = np.empty((batch, crop, crop, images[0].shape[2]), np.uint8)
    for b, i in enumerate(rng.integers(0, len(images), batch)):  # one crop per batch item, not per pixel
        img = images[i]
        y = rng.integers(0, img.shape[0] - crop + 1)
        x = rng.integers(0, img.shape[1] - crop + 1)
        patch = np.rot90(img[y:y + crop, x:x + crop], rng.integers(0, 4))
        out[b] = patch[:, ::-1] if rng.integers(0, 2) else patch
    return out


def validation_set(images: list[np.ndarray], sigma: float, seed: int, count: int = 3, size: int = 128):
    """The learning curve's fixed validation pairs (noisy, clean), float (N,s,s,C): centre crops of
    the first `count` images, noise seeded once, so successive points are comparable."""
    from data.noise import add_noise, parse_noise

    size = min([size] + [min(im.shape[:2]) for im in images[:count]])
    crops = np.stack([im[(im.shape[0] - size) // 2:][:size, (im.shape[1] - size) // 2:][:, :size] for im in images[:count]])
    noisy = add_noise(crops, parse_noise("sigma", sigma), (seed, 4242))
    return noisy, crops.astype(np.float32) / 255.0


def batch_psnr(clean: np.ndarray, image: np.ndarray) -> float:
    """Mean PSNR (dB) over a batch of [0,1] images, the output clipped and quantised as when saved."""
    out = np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0
    return float(np.mean(evaluation.batch_psnr(clean, out)))


def network_checkpoint(net, **trackables) -> tf.train.Checkpoint:
    """Checkpoint of the network weights (tracked by name: tf.train.Checkpoint does not see
    inside a Keras 3 model) plus any other trackables (optimizers, RNG, episode counter)."""
    weights = tf.train.Checkpoint(**{v.path.replace("/", "."): v for v in net.weights})
    return tf.train.Checkpoint(weights=weights, **trackables)


def make_denoiser(net, method: str, steps: int, channels: int = 1, rule: str = "mean") -> Callable:
    """Compiled inference on noisy images (B,H,W,C) in [0,1]: R3L's deterministic policy
    (`rule`, see rl.ppo.deterministic_actions) or R3N's unrolled net."""
    from rl.envs.residual import greedy_denoise

    spec = [tf.TensorSpec([None, None, None, channels], tf.float32)]
    if method == "r3l":
        return tf.function(lambda x: greedy_denoise(net.policy_logits, x, steps=steps, rule=rule), input_signature=spec)
    return tf.function(lambda x: net(x), input_signature=spec)


class R3NTrainer:
    """MSE training of R3N (`step`), with its own optimizer for the warm start (`warm_step`)."""

    def __init__(self, net, learning_rate: float, total_steps: int, strategy: tf.distribute.Strategy,
                 warm_decay_steps: int = 0):
        """The warm start's MSE steps run at `learning_rate` (--lr), like the MSE training after it."""
        from rl.ppo import decaying_rate

        self.net = net
        self.strategy = strategy
        with strategy.scope():
            self.optimizer = tf.keras.optimizers.Adam(decaying_rate(learning_rate, max(1, total_steps)))
            self.warm_optimizer = tf.keras.optimizers.Adam(decaying_rate(learning_rate, warm_decay_steps))
            self.optimizer.build(net.trainable_variables)
            self.warm_optimizer.build(net.trainable_variables)
        self._steps = {warm: self._compile(self.warm_optimizer if warm else self.optimizer) for warm in (False, True)}

    def _compile(self, optimizer):
        net, strategy = self.net, self.strategy

        def replica_step(noisy, target, count):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(net(noisy, training=True) - target)) / count
            optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
            return loss

        @tf.function(reduce_retracing=True)
        def step(noisy, target, count):
            if strategy.num_replicas_in_sync == 1:
                return replica_step(noisy, target, count)
            out = strategy.run(replica_step, args=(noisy, target, count))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

        return step

    def _run(self, noisy, target, warm: bool) -> float:
        count = tf.constant(float(np.size(noisy)))
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            noisy, target = self.strategy.experimental_distribute_values_from_function(
                lambda ctx: (noisy[ctx.replica_id_in_sync_group::replicas], target[ctx.replica_id_in_sync_group::replicas]))
        return float(self._steps[warm](noisy, target, count))

    def step(self, noisy, clean) -> dict[str, float]:
        return {"mse": self._run(noisy, clean, warm=False)}

    def warm_step(self, noisy, target) -> dict[str, float]:
        return {"warm_mse": self._run(noisy, target, warm=True)}


class R3LRun:
    """One R3L or R3N training run: network (DnCNN-initialised if asked), trainer, checkpoint."""

    def __init__(self, cfg: R3LRunConfig, channels: int = 1, strategy: tf.distribute.Strategy | None = None):
        from models.r3l_net import R3LNet, R3LNetConfig, R3NNet
        from rl.envs.residual import ResidualRecoveryEnv

        self.cfg = cfg
        self.channels = channels
        self.strategy = strategy or tf.distribute.get_strategy()
        net_cfg = R3LNetConfig(channels=channels, precision=cfg.precision, policy_init=cfg.policy_init)
        with self.strategy.scope():
            if cfg.method == "r3l":
                self.net = R3LNet(net_cfg).build_for()
            else:
                self.net = R3NNet(net_cfg, steps=cfg.steps).build_for()
        self.dncnn_layers: dict[str, int] = {}
        self.teacher = None
        if cfg.init_dncnn:
            from models.dncnn_import import dncnn_denoiser, init_from_dncnn

            if cfg.warm_start == "dncnn":
                self.teacher = dncnn_denoiser(cfg.init_dncnn, channels)  # checks it is a DnCNN first
            self.dncnn_layers = init_from_dncnn(self.net, cfg.init_dncnn)
        self.episode = tf.Variable(0, dtype=tf.int64, trainable=False)
        if cfg.method == "r3l":
            self.env = ResidualRecoveryEnv(steps=cfg.steps)
            self.ppo = PPO(self.net, self.env, cfg.ppo, seed=cfg.seed, strategy=self.strategy)
            self.r3n = None
            extra = {"optimizer": self.ppo.optimizer, "clone_optimizer": self.ppo.clone_optimizer, "rng": self.ppo.rng}
        else:
            self.ppo = None
            self.r3n = R3NTrainer(self.net, cfg.ppo.learning_rate, cfg.episodes, self.strategy,
                                  cfg.ppo.clone_decay_episodes)
            extra = {"optimizer": self.r3n.optimizer, "clone_optimizer": self.r3n.warm_optimizer}
        self.checkpoint = network_checkpoint(self.net, episode=self.episode, **extra)
        self.warm_weights: list[np.ndarray] | None = None

    # -- one episode -------------------------------------------------------------------
    def warm_target(self, noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """The image the warm start clones toward: the clean crop (oracle) or DnCNN's estimate
        from `noisy` alone (dncnn: `clean` is never read)."""
        if self.cfg.warm_start == "dncnn":
            return self.teacher(tf.convert_to_tensor(noisy, tf.float32)).numpy()
        return clean

    def run_episode(self, episode: int, noisy: np.ndarray, clean: np.ndarray) -> dict[str, float]:
        """Episode `episode` of the run (warm start first), on one batch of [0,1] images."""
        if episode < self.cfg.warm_episodes:
            target = self.warm_target(noisy, clean)
            if self.ppo is not None:
                return self.ppo.clone_episode(noisy, clean, target)
            return self.r3n.warm_step(noisy, target)
        if self.ppo is not None:
            return self.ppo.train_episode(noisy, clean)
        return self.r3n.step(noisy, clean)

    def denoiser(self) -> Callable:
        return make_denoiser(self.net, self.cfg.method, self.cfg.steps, self.channels, self.cfg.ppo.action_rule)

    # -- the training loop -------------------------------------------------------------
    def train(self, train_images: list[np.ndarray], out_dir: str | Path, validation=None,
              manager: tf.train.CheckpointManager | None = None, progress: bool = True) -> dict:
        """Train from the checkpointed episode to the end (or the time budget); curves and checkpoints.

        `validation`: (noisy, clean) float batches for the learning curve's PSNR (None: no PSNR).
        Returns a summary: episodes run/done, seconds, CPU seconds, the curve points, last means.
        """
        import sys

        from tqdm import tqdm

        from data.noise import add_noise, parse_noise
        from utils import TensorBoardLogger

        cfg = self.cfg
        out_dir = Path(out_dir)
        noise = parse_noise("sigma", cfg.sigma)
        logger = TensorBoardLogger(out_dir / "tensorboard")
        denoise = self.denoiser()
        start = int(self.episode.numpy())
        if start >= cfg.warm_episodes > 0:
            self.warm_weights = self._load_warm_weights(out_dir)
        t0, c0 = time.time(), time.process_time()
        history, window, curve = [], [], []

        def point(episode: int) -> None:
            phase = "warm start" if episode <= cfg.warm_episodes and cfg.warm_episodes else cfg.method.upper()
            values = {}
            if window:
                values = {k: float(np.mean([w[k] for w in window if k in w])) for k in window[-1]}
            if validation is not None:
                values["val_psnr"] = batch_psnr(validation[1], denoise(validation[0]).numpy())
            curve.append({"episode": episode, "phase": phase, **values})
            logger.scalars(values, episode, prefix="train/" if phase != "warm start" else "warm_start/")
            logger.flush()
            window.clear()

        if start == 0 and validation is not None:
            point(0)
        bar = tqdm(range(start, cfg.total_episodes), initial=start, total=cfg.total_episodes,
                   desc=f"train {cfg.method}", mininterval=10, file=sys.stderr, disable=not progress)
        for episode in bar:
            rng = np.random.default_rng([cfg.seed, episode])  # per-episode stream: resuming reproduces it
            clean_u8 = random_batch(train_images, cfg.batch_size, cfg.crop, rng)
            clean = clean_u8.astype(np.float32) / 255.0
            noisy = add_noise(clean_u8, noise, rng)
            stats = self.run_episode(episode, noisy, clean)
            history.append(stats)
            window.append(stats)
            bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items() if k in ("episode_return", "mse", "warm_mse")})
            self.episode.assign(episode + 1)
            done = episode + 1
            if done == cfg.warm_episodes:
                self.warm_weights = [w.numpy() for w in self.net.weights]
                self._save_warm_weights(out_dir)
            out_of_time = self._out_of_time(t0, c0)
            if done % cfg.eval_every == 0 or done == cfg.warm_episodes or done == cfg.total_episodes or out_of_time:
                point(done)
            if manager is not None and (done % cfg.save_every == 0 or done == cfg.total_episodes or out_of_time):
                manager.save(checkpoint_number=done)
            if out_of_time:
                bar.write(f"stopping at episode {done}: training budget reached")
                break
        bar.close()
        last = [h for h in history if "warm_mse" not in h and "clone_loss" not in h][-50:]  # the method's own episodes
        summary = {k: float(np.mean([h[k] for h in last])) for k in (last[0] if last else {})}
        return {"episodes_run": len(history), "episodes_done": int(self.episode.numpy()),
                "warm_start_episodes": cfg.warm_episodes, "train_seconds": time.time() - t0,
                "train_cpu_seconds": time.process_time() - c0, "last50_mean": summary, "curve": curve}

    def _out_of_time(self, t0: float, c0: float) -> bool:
        cfg = self.cfg
        wall = cfg.max_train_minutes is not None and (time.time() - t0) / 60 >= cfg.max_train_minutes
        cpu = cfg.max_train_cpu_minutes is not None and (time.process_time() - c0) / 60 >= cfg.max_train_cpu_minutes
        return wall or cpu

    def _save_warm_weights(self, out_dir: Path) -> None:
        from utils import atomic_write

        arrays = {f"w{i}": w for i, w in enumerate(self.warm_weights)}
        atomic_write(out_dir / "warm_start_weights.npz", lambda fh: np.savez(fh, **arrays), mode="wb")

    def _load_warm_weights(self, out_dir: Path) -> list[np.ndarray] | None:
        path = out_dir / "warm_start_weights.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            return [z[f"w{i}"] for i in range(len(z.files))]

    def warm_start_denoiser(self) -> Callable | None:
        """The warm start alone (weights saved when it ended) as a denoiser on a copy of the network."""
        if self.warm_weights is None:
            return None
        from models.r3l_net import R3LNet, R3LNetConfig, R3NNet

        net_cfg = R3LNetConfig(channels=self.channels, precision=self.cfg.precision, policy_init=self.cfg.policy_init)
        net = R3LNet(net_cfg) if self.cfg.method == "r3l" else R3NNet(net_cfg, steps=self.cfg.steps)
        net.build_for()
        net.set_weights(self.warm_weights)
        return make_denoiser(net, self.cfg.method, self.cfg.steps, self.channels, self.cfg.ppo.action_rule)


def write_learning_curve(path: str | Path, curve: list[dict], method: str, noisy_psnr: float | None = None) -> None:
    """Two panels against the episode: mean episode return (R3N: training MSE) and validation PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils import atomic_write

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for phase, style in (("warm start", "o--"), (method.upper(), "o-")):
        pts = [p for p in curve if p["phase"] == phase]
        for ax, keys in ((top, ("episode_return", "mse", "warm_mse")), (bottom, ("val_psnr",))):
            for k in keys:
                xs = [p["episode"] for p in pts if k in p]
                if xs:
                    ax.plot(xs, [p[k] for p in pts if k in p], style, ms=3, label=f"{phase}: {k}")
    warm = [p["episode"] for p in curve if p["phase"] == "warm start"]
    for ax in (top, bottom):
        if warm and max(warm) > 0:
            ax.axvline(max(warm), color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if noisy_psnr is not None:
        bottom.axhline(noisy_psnr, color="red", lw=0.8, ls="--", label="noisy input")
        bottom.legend(fontsize=8)
    top.set_ylabel("mean episode return" if method == "r3l" else "training MSE")
    bottom.set_ylabel("validation PSNR (dB)")
    bottom.set_xlabel("episode (warm start, then " + method.upper() + ")")
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100, bbox_inches="tight"), mode="wb")
    plt.close(fig)
