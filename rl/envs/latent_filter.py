"""The patch-filtering environment of RSE-RL (SPEC §2.6-2.7), vectorised over all
patches of a batch of images, plus the agent's training loop and inference path.

Episode (per patch, all patches of the batch at once): the latent
z_0 = T(encode(noisy patch)) (what the VAE alone decodes) is filtered for
`steps` steps by z <- z + a * (mean of its k clean neighbours - z), a in [0, 1]^m
chosen per patch; m = S gates (one per Y/U/V subspace, `gate="subspace"`) or
m = S * L (one per latent dimension, `gate="latent"`). The neighbours are
re-queried from the current z at every step.

State per patch (concatenated, float32):
  z flattened (S*L) | distance to its cluster centre (S) | mean distance to its
  k clean neighbours (S) | cluster id, one-hot per subspace (S*K) | noise
  estimate of the noisy input patch per channel (S; MAD of Immerkaer's
  high-pass, an estimate of the noise std) | step index, one-hot (steps).

Reward (training only; needs the clean images), each term reported separately:
  mse:     mse_scale * (MSE_{t-1} - MSE_t), the per-patch decrease of the MSE of
           the decoded patch to the clean patch (model colour space, [0, 1] units);
  psnr:    at the last step, the authors' clip(1.25 * (PSNR - target_psnr) + 5, -15, 5)
           with PSNR of the merged RGB image, broadcast to the image's patches;
  deblock: at the last step, -lambda_db * mse_scale * the patch's mean squared
           disagreement with its neighbours over their shared overlaps.
The de-blocking term needs no ground truth; inference (`filter_images`) takes
none and uses the deterministic (mean) action.

The environment only depends on `LatentModel`, a bundle of callables, so it is
independent of the VAE and cluster implementations; `latent_model_from_vae`
adapts `models.vae.RSEVAE` + `models.clusters.ClusterIndex`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import tensorflow as tf

from data.color import rgb_to_yuv, yuv_to_rgb
from data.errors import DataError
from data.patches import PatchGrid, merge_patches, split_patches
from rl.replay import ReplayBuffer

GATES = ("subspace", "latent")


class Neighbours(NamedTuple):
    """What the clean-latent bank says about each latent t (P, S, L)."""

    mean: Any  # (P, S, L) mean of the k nearest clean latents in t's cluster
    cluster_id: Any  # (P, S) int, index of the nearest cluster centre
    dist_to_centre: Any  # (P, S) distance of t to that centre
    mean_dist: Any  # (P, S) mean distance of t to its k neighbours


@dataclass(frozen=True)
class LatentModel:
    """The latent model as the environment sees it (patches in the model's colour space)."""

    encode: Callable[[Any], Any]  # (P, b, b, S) patches -> (P, S, L) latents (deterministic)
    transform: Callable[[Any], Any]  # (P, S, L) noisy latents -> (P, S, L) clean estimates
    decode: Callable[[Any], Any]  # (P, S, L) -> (P, b, b, S) patches
    knn: Callable[[Any], Neighbours]  # (P, S, L) -> Neighbours
    num_subspaces: int
    latent_dim: int
    num_clusters: int


@dataclass
class FilterEnvConfig:
    """Episode, state and reward settings (`--target_psnr`, `--lambda_db`, ...)."""

    steps: int = 3
    gate: str = "subspace"
    block_size: int = 16
    overlap: int = 4
    target_psnr: float = 30.0
    lambda_db: float = 1.0
    mse_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise DataError(f"--gate must be one of {GATES}, got {self.gate!r}")
        if self.steps < 1:
            raise DataError(f"--rl_steps must be at least 1, got {self.steps}")
        if self.lambda_db < 0:
            raise DataError(f"--lambda_db must be >= 0, got {self.lambda_db}")


class StepResult(NamedTuple):
    states: np.ndarray | None  # (P, state_dim) next states; None at the end of an inference episode
    rewards: np.ndarray | None  # (P,) total reward; None without ground truth
    done: bool
    terms: dict[str, np.ndarray]  # per-patch reward terms (empty without ground truth)
    metrics: dict[str, float]  # means of the terms, image PSNR, mean action...


# ----- pure functions -------------------------------------------------------------------------
def to_model_space(images: np.ndarray) -> np.ndarray:
    """RGB -> YUV for colour images; grey images are their own (Y) space."""
    return rgb_to_yuv(images) if images.shape[-1] == 3 else np.asarray(images, np.float32)


def from_model_space(images: np.ndarray) -> np.ndarray:
    """Inverse of `to_model_space`, clipped to [0, 1]."""
    out = yuv_to_rgb(images) if images.shape[-1] == 3 else images
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def image_psnr(clean: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(N,) PSNR in dB of float images in [0, 1] (data range 1)."""
    mse = np.mean((np.asarray(clean, np.float64) - np.asarray(test, np.float64)) ** 2, axis=(1, 2, 3))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def psnr_reward(psnr: np.ndarray, target_psnr: float) -> np.ndarray:
    """The authors' image-level term clip(1.25 * (PSNR - target) + 5, -15, 5)."""
    return np.clip(1.25 * (np.asarray(psnr) - target_psnr) + 5.0, -15.0, 5.0)


def noise_estimate(patches: np.ndarray) -> np.ndarray:
    """(P, b, b, C) -> (P, C) noise std estimate: median |Immerkaer high-pass| / (0.6745 * 6).

    The 3x3 kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] annihilates locally planar
    content and scales white noise std by 6; the median makes it robust to edges.
    """
    p = np.asarray(patches, np.float32)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    h, w = p.shape[1], p.shape[2]  # patches are square; whole images (the baselines' sigma) need not be
    hp = sum(k[i, j] * p[:, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    return (np.median(np.abs(hp), axis=(1, 2)) / (0.6745 * 6.0)).astype(np.float32)


def seam_disagreement(patches, grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared disagreement of neighbouring patches over their shared overlaps.

    The right `overlap` columns of a patch cover the same pixels as the left
    `overlap` columns of its right neighbour (likewise bottom rows / top rows).
    Returns (per patch (P,): mean over the seams the patch takes part in;
    per image (N,): mean over all seams of the image). Zero for unmodified
    patches of a split image.
    """
    p = np.asarray(patches, np.float32)
    b, o = grid.block, grid.overlap
    nh, nw = grid.n_rows, grid.n_cols
    n = p.shape[0] // (nh * nw)
    if o == 0 or (nh == 1 and nw == 1):
        return np.zeros(p.shape[0], np.float32), np.zeros(n, np.float32)
    p = p.reshape(n, nh, nw, b, b, p.shape[-1])
    horiz = np.mean((p[:, :, :-1, :, b - o:] - p[:, :, 1:, :, :o]) ** 2, axis=(3, 4, 5))  # (n, nh, nw-1)
    vert = np.mean((p[:, :-1, :, b - o:] - p[:, 1:, :, :o]) ** 2, axis=(3, 4, 5))  # (n, nh-1, nw)
    total = np.zeros((n, nh, nw), np.float32)
    count = np.zeros((nh, nw), np.float32)
    total[:, :, :-1] += horiz
    total[:, :, 1:] += horiz
    total[:, :-1] += vert
    total[:, 1:] += vert
    count[:, :-1] += 1
    count[:, 1:] += 1
    count[:-1] += 1
    count[1:] += 1
    per_patch = (total / np.maximum(count, 1)).reshape(-1)
    seams = horiz[0].size + vert[0].size
    per_image = (horiz.sum(axis=(1, 2)) + vert.sum(axis=(1, 2))) / seams
    return per_patch, per_image.astype(np.float32)


# ----- the environment --------------------------------------------------------------------------
class LatentFilterEnv:
    """Batch environment: every patch of a batch of images is one agent, all stepped at once."""

    def __init__(self, model: LatentModel, cfg: FilterEnvConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg or FilterEnvConfig()
        s, l, k = model.num_subspaces, model.latent_dim, model.num_clusters
        self.action_dim = s if self.cfg.gate == "subspace" else s * l
        self.state_dim = s * l + s + s + s * k + s + self.cfg.steps
        self._clean = None

    # -- episode ------------------------------------------------------------------
    def reset(self, noisy_images, clean_images=None) -> np.ndarray:
        """Start an episode on (N, H, W, C) noisy images in [0, 1]; returns the states (P, state_dim).

        `clean_images` (same shape) enables the reward; leave it out for inference.
        """
        self.start(noisy_images, clean_images)
        return self._states()

    def start(self, noisy_images, clean_images=None) -> None:
        """`reset` without computing the states (no neighbour search): for the VAE alone."""
        noisy = self._check_images(noisy_images, "noisy images")
        patches, self.grid = split_patches(to_model_space(noisy), self.cfg.block_size, self.cfg.overlap)
        if patches.shape[-1] != self.model.num_subspaces:
            raise DataError(f"images have {patches.shape[-1]} channels but the latent model has "
                            f"{self.model.num_subspaces} subspaces")
        self._noise = noise_estimate(patches)
        self.z = tf.convert_to_tensor(self.model.transform(self.model.encode(patches)), tf.float32)
        self._nb: Neighbours | None = None  # searched when first needed
        self.t = 0
        self._clean = None
        if clean_images is not None:
            clean = self._check_images(clean_images, "clean images")
            if clean.shape != noisy.shape:
                raise DataError(f"clean images {clean.shape} and noisy images {noisy.shape} differ in shape")
            self._clean = clean
            self._clean_patches, _ = split_patches(to_model_space(clean), self.cfg.block_size, self.cfg.overlap)
            self._mse = self._patch_mse(self.decoded())

    def step(self, actions) -> StepResult:
        """Apply one filtering step with actions (P, m) in [0, 1]."""
        if self.t >= self.cfg.steps:
            raise DataError("the episode is over: call reset() first")
        a = np.clip(np.asarray(actions, np.float32), 0.0, 1.0)
        p = int(self.z.shape[0])
        if a.shape != (p, self.action_dim):
            raise DataError(f"actions must have shape ({p}, {self.action_dim}), got {a.shape}")
        self.z = self.z + self._gates(a) * (tf.convert_to_tensor(self._neighbours().mean, tf.float32) - self.z)
        self.t += 1
        done = self.t == self.cfg.steps
        self._nb = None
        metrics = {"mean_action": float(a.mean())}
        if self._clean is None:  # inference: no next state after the last step (nothing acts on it)
            return StepResult(None if done else self._states(), None, done, {}, metrics)

        decoded = self.decoded()
        mse = self._patch_mse(decoded)
        terms = {"mse": self.cfg.mse_scale * (self._mse - mse)}
        self._mse = mse
        zeros = np.zeros(p, np.float32)
        terms["psnr"], terms["deblock"] = zeros, zeros
        if done:
            images = from_model_space(merge_patches(decoded, self.grid))
            psnr = image_psnr(self._clean, images)
            per_patch_seam, per_image_seam = seam_disagreement(decoded, self.grid)
            terms["psnr"] = np.repeat(psnr_reward(psnr, self.cfg.target_psnr),
                                      self.grid.patches_per_image).astype(np.float32)
            terms["deblock"] = (-self.cfg.lambda_db * self.cfg.mse_scale * per_patch_seam).astype(np.float32)
            metrics["psnr"] = float(psnr.mean())
            metrics["seam_msd"] = float(per_image_seam.mean())
        rewards = (terms["mse"] + terms["psnr"] + terms["deblock"]).astype(np.float32)
        metrics.update({f"reward_{k}": float(v.mean()) for k, v in terms.items()})
        metrics["reward"] = float(rewards.mean())
        return StepResult(self._states(), rewards, done, terms, metrics)

    def decoded(self) -> np.ndarray:
        """Current decoded patches (P, b, b, S), model colour space."""
        return np.asarray(self.model.decode(self.z), np.float32)

    def current_images(self) -> np.ndarray:
        """The current estimate as (N, H, W, C) RGB (or grey) images in [0, 1]."""
        return from_model_space(merge_patches(self.decoded(), self.grid))

    # -- internals ----------------------------------------------------------------
    def _gates(self, a: np.ndarray) -> tf.Tensor:
        s, l = self.model.num_subspaces, self.model.latent_dim
        a = tf.convert_to_tensor(a)
        return a[:, :, None] if self.cfg.gate == "subspace" else tf.reshape(a, (-1, s, l))

    def _patch_mse(self, decoded: np.ndarray) -> np.ndarray:
        return np.mean((decoded - self._clean_patches) ** 2, axis=(1, 2, 3)).astype(np.float32)

    def _neighbours(self) -> Neighbours:
        if self._nb is None:
            self._nb = self.model.knn(self.z)
        return self._nb

    def _states(self) -> np.ndarray:
        nb = self._neighbours()
        p = int(self.z.shape[0])
        k, steps = self.model.num_clusters, self.cfg.steps
        cluster_1hot = tf.one_hot(tf.cast(nb.cluster_id, tf.int32), k, dtype=tf.float32)
        step_1hot = np.zeros((p, steps), np.float32)
        step_1hot[:, min(self.t, steps - 1)] = 1.0
        parts = [
            tf.reshape(self.z, (p, -1)),
            tf.cast(nb.dist_to_centre, tf.float32),
            tf.cast(nb.mean_dist, tf.float32),
            tf.reshape(cluster_1hot, (p, -1)),
            self._noise,
            step_1hot,
        ]
        return tf.concat(parts, axis=1).numpy()

    @staticmethod
    def _check_images(images, what: str) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataError(f"{what}: expected (N, H, W, 1 or 3) float images, got shape {x.shape}")
        return x


# ----- inference -----------------------------------------------------------------------------
def filter_images(noisy_images, agent, latent_model: LatentModel,
                  cfg: FilterEnvConfig | None = None, batch_images: int = 8) -> np.ndarray:
    """Denoise images with VAE + agent (deterministic actions); no ground truth involved.

    `noisy_images`: an (N, H, W, C) array, or a sequence of (H, W, C) arrays of any
    sizes (each processed on its own). `agent=None` gives the VAE alone (all
    gates 0). Returns float32 images in [0, 1], in the input's layout.
    """
    env = LatentFilterEnv(latent_model, cfg)
    if isinstance(noisy_images, np.ndarray) and noisy_images.ndim == 4:
        batches = [noisy_images[i:i + batch_images] for i in range(0, len(noisy_images), batch_images)]
        return np.concatenate([_filter_batch(env, agent, b) for b in batches], axis=0)
    return [_filter_batch(env, agent, np.asarray(img)[None])[0] for img in noisy_images]


def _filter_batch(env: LatentFilterEnv, agent, noisy: np.ndarray) -> np.ndarray:
    if agent is None:  # all gates 0: the latents never move, no step (nor neighbour search) needed
        env.start(noisy)
        return env.current_images()
    states = env.reset(noisy)
    for _ in range(env.cfg.steps):
        states = env.step(agent.act(states, deterministic=True)).states
    return env.current_images()


# ----- training --------------------------------------------------------------------------------
@dataclass
class AgentTrainConfig:
    """The RL loop: episodes on random image batches, updates after every env step."""

    episodes: int = 100
    images_per_episode: int = 4
    updates_per_step: int = 32
    learning_starts: int | None = None  # transitions before the first update; None: one SAC batch
    buffer_capacity: int = 200_000
    seed: int = 0


def train_agent(env: LatentFilterEnv, agent, noisy_images: np.ndarray, clean_images: np.ndarray,
                cfg: AgentTrainConfig | None = None, logger=None,
                progress: Callable[[int, dict], None] | None = None) -> list[dict[str, float]]:
    """Train `agent` (an `rl.sac.SACAgent`) on (noisy, clean) image pairs; returns per-episode metrics.

    Every env step adds one transition per patch (hundreds to thousands), so the
    buffer passes `learning_starts` after the first step and SAC updates from
    the first episode on (the authors' loop never reached its first update).
    `logger` (an `rl.sac.ScalarLogger`) receives every update's scalars under
    `sac/` and every episode's metrics under `env/`.
    """
    cfg = cfg or AgentTrainConfig()
    noisy = np.asarray(noisy_images, np.float32)
    clean = np.asarray(clean_images, np.float32)
    if noisy.shape != clean.shape or noisy.ndim != 4:
        raise DataError(f"train_agent: noisy {noisy.shape} and clean {clean.shape} must be equal (N, H, W, C)")
    if agent.state_dim != env.state_dim or agent.action_dim != env.action_dim:
        raise DataError(f"agent dims ({agent.state_dim}, {agent.action_dim}) do not match the "
                        f"environment ({env.state_dim}, {env.action_dim})")
    rng = np.random.default_rng(cfg.seed)
    learning_starts = agent.cfg.batch_size if cfg.learning_starts is None else cfg.learning_starts
    buffer = ReplayBuffer(cfg.buffer_capacity, env.state_dim, env.action_dim)
    history = []
    for episode in range(cfg.episodes):
        idx = rng.choice(len(noisy), size=min(cfg.images_per_episode, len(noisy)), replace=False)
        states = env.reset(noisy[idx], clean[idx])
        totals: dict[str, float] = {}
        update_logs: list[dict[str, float]] = []
        done = False
        while not done:
            actions = agent.act(states)
            result = env.step(actions)
            done = result.done
            buffer.add(states, actions, result.rewards, result.states, float(done))
            states = result.states
            for name, value in result.metrics.items():
                if name.startswith("reward"):
                    totals[name] = totals.get(name, 0.0) + value
            if len(buffer) >= learning_starts:
                for _ in range(cfg.updates_per_step):
                    log = agent.update(buffer.sample(agent.cfg.batch_size, rng))
                    update_logs.append(log)
                    if logger is not None:
                        _log_scalars(logger, log, int(agent.updates.numpy()), "sac/")
        metrics = {f"return_{k[len('reward_'):] if k != 'reward' else 'total'}": v for k, v in totals.items()}
        metrics.update(psnr=result.metrics["psnr"], seam_msd=result.metrics["seam_msd"],
                       mean_action=result.metrics["mean_action"], updates=float(agent.updates.numpy()))
        if update_logs:
            for key in ("kl", "alpha", "critic_loss", "actor_loss"):
                metrics[key] = float(np.mean([u[key] for u in update_logs]))
            metrics["kl_max_seen"] = float(max(u["kl"] for u in update_logs))
        history.append(metrics)
        if logger is not None:
            _log_scalars(logger, metrics, episode, "env/")
        if progress is not None:
            progress(episode, metrics)
    return history


def _log_scalars(logger, values: dict[str, float], step: int, prefix: str) -> None:
    if hasattr(logger, "scalars"):
        logger.scalars(values, step, prefix=prefix)
    else:
        for name, value in values.items():
            logger.scalar(prefix + name, value, step)


# ----- adapter to the project's VAE and cluster index -------------------------------------------
def latent_model_from_vae(vae, index, k: int = 8) -> LatentModel:
    """Wrap `models.vae.RSEVAE` and `models.clusters.ClusterIndex` as a `LatentModel`.

    encode = the encoder mean (the deterministic latent), transform = T, decode =
    the per-subspace decoders; knn = the index's k nearest clean latents in the
    nearest cluster, with the distance to that cluster's centre.
    """
    if index.num_subspaces != vae.cfg.num_subspaces:
        raise DataError(f"cluster index has {index.num_subspaces} subspaces, the VAE {vae.cfg.num_subspaces}")

    def knn(t) -> Neighbours:
        mean, dists, ids, centre_d = index.query(t, k)
        finite = tf.math.is_finite(dists)
        mean_d = (tf.reduce_sum(tf.where(finite, dists, 0.0), -1)
                  / tf.maximum(tf.reduce_sum(tf.cast(finite, tf.float32), -1), 1.0))
        return Neighbours(mean, ids, centre_d, mean_d)

    compiled = vae.inference()  # XLA-compiled, shared by every LatentModel of this VAE
    return LatentModel(
        encode=compiled.encode,
        transform=compiled.transform,
        decode=compiled.decode,
        knn=knn,
        num_subspaces=vae.cfg.num_subspaces,
        latent_dim=vae.cfg.latent_dim,
        num_clusters=index.num_clusters,
    )
