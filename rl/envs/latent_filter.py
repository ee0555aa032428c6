"""The patch-filtering environment of RSE-RL, vectorised over all patches of a batch of images.

The agent's training loop is `rl.agent_training`, inference `rl.inference`, and the
adapter from the project's VAE and cluster index `rl.vae_adapter`.

Episode (per patch, all patches of the batch at once): the latent t_0 = T(encode(noisy
patch)) (what the VAE alone decodes) is filtered for `steps` steps by an action a per
patch (`action`):
  gain:     t <- t * (1 + beta * a), a in [-1, 1]^(S*L): a per-dimension gain, the authors'
            own lever (their environment rescaled T's weights per latent dimension) made per
            patch and state-dependent (the default);
  residual: t <- t + beta * s * a, a in [-1, 1]^(S*L), s the per-dimension std of the clean
            latent bank;
  knn:      t <- t + a * (mean of the k clean neighbours of t in its cluster - t), a in
            [0, 1]^m with m = S gates (`gate="subspace"`) or S*L (`gate="latent"`): the
            earlier design, kept for comparison.
beta is `action_scale`. a = 0 leaves every latent unchanged, so an untrained policy whose
mean action is 0 is the VAE alone.

State per patch (concatenated, float32):
  t flattened (S*L) | the current latents of its 4 neighbouring patches, up, down, left,
  right (4*S*L; zeros at the image border) | distance to its cluster centre (S) | mean
  distance to its k clean neighbours (S) | cluster id, one-hot per subspace (S*K) | noise
  estimate of the noisy input patch per channel (S; MAD of Immerkaer's high-pass) | step
  index, one-hot (steps).
T looks at one patch at a time; the neighbours' latents are what it cannot see. (The seam
disagreement with each neighbour was measured as a state feature too and left out: it
added nothing measurable and costs a decode of every patch per step, docs/agent.md.)

Reward (training only; needs the clean images), each term reported separately:
  mse:     mse_scale * (MSE_{t-1} - MSE_t), the per-patch decrease of the MSE of
           the decoded patch to the clean patch (model colour space, [0, 1] units);
  psnr:    at the last step, the authors' clip(1.25 * (PSNR - target_psnr) + 5, -15, 5)
           with PSNR of the merged RGB image, broadcast to the image's patches;
  deblock: at the last step, -lambda_db * mse_scale * the patch's mean squared
           disagreement with its neighbours over their shared overlaps.
The de-blocking term needs no ground truth; inference (`rl.inference.filter_images`)
takes none and uses the deterministic (mean) action.

The environment only depends on `LatentModel`, a bundle of callables, so it is
independent of the VAE and cluster implementations (`rl.vae_adapter` adapts
`models.vae.RSEVAE` + `models.clusters.ClusterIndex`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import tensorflow as tf

from data.color import from_model_space, to_model_space
from data.errors import ConfigError, DataError
from data.patches import PatchGrid, merge_patches, split_patches
from evaluation import batch_psnr

ACTIONS = ("gain", "residual", "knn")
GATES = ("subspace", "latent")  # the knn action's gates
NEIGHBOURS = ("up", "down", "left", "right")


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
    latent_scale: Any = None  # (S, L) per-dimension std of the clean latents; the residual action needs it


@dataclass
class FilterEnvConfig:
    """Episode, state and reward settings (`--target_psnr`, `--lambda_db`, ...)."""

    steps: int = 3
    action: str = "gain"
    action_scale: float = 0.1  # beta of the gain and residual actions
    gate: str = "subspace"  # the knn action's gates
    block_size: int = 16
    overlap: int = 4
    target_psnr: float = 30.0
    lambda_db: float = 1.0
    mse_scale: float = 1e4  # reward units per unit of patch MSE: a 1 dB gain on a ~26 dB patch earns ~5

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"--action must be one of {ACTIONS}, got {self.action!r}")
        if self.action_scale <= 0:
            raise ConfigError(f"--action_scale must be positive, got {self.action_scale}")
        if self.gate not in GATES:
            raise ConfigError(f"--gate must be one of {GATES}, got {self.gate!r}")
        if self.steps < 1:
            raise ConfigError(f"--rl_steps must be at least 1, got {self.steps}")
        if self.lambda_db < 0:
            raise ConfigError(f"--lambda_db must be >= 0, got {self.lambda_db}")


class StepResult(NamedTuple):
    states: np.ndarray | None  # (P, state_dim) next states; None at the end of an inference episode
    rewards: np.ndarray | None  # (P,) total reward; None without ground truth
    done: bool
    terms: dict[str, np.ndarray]  # per-patch reward terms (empty without ground truth)
    metrics: dict[str, float]  # means of the terms, image PSNR, mean action...


# ----- pure functions -------------------------------------------------------------------------
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


def apply_action(z, a, cfg: FilterEnvConfig, latent_scale=None, neighbour_mean=None) -> tf.Tensor:
    """One filtering step on latents z (P, S, L) with actions a (P, m) already in the action's range."""
    z = tf.convert_to_tensor(z, tf.float32)
    a = tf.convert_to_tensor(a, tf.float32)
    shape = tf.shape(z)
    if cfg.action == "gain":
        return z * (1.0 + cfg.action_scale * tf.reshape(a, shape))
    if cfg.action == "residual":
        if latent_scale is None:
            raise ConfigError("--action residual needs the per-dimension std of the clean latents (latent_scale)")
        return z + cfg.action_scale * tf.convert_to_tensor(latent_scale, tf.float32) * tf.reshape(a, shape)
    gates = a[:, :, None] if cfg.gate == "subspace" else tf.reshape(a, shape)
    return z + gates * (tf.convert_to_tensor(neighbour_mean, tf.float32) - z)


def neighbour_latents(z, grid: PatchGrid) -> np.ndarray:
    """(P, S, L) latents of the patches of a grid -> (P, 4, S*L): the latents of each patch's up,
    down, left and right neighbour, zeros where the patch is on the image border."""
    x = np.asarray(z, np.float32)
    n = x.shape[0] // grid.patches_per_image
    x = np.pad(x.reshape(n, grid.n_rows, grid.n_cols, -1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    sides = (x[:, :-2, 1:-1], x[:, 2:, 1:-1], x[:, 1:-1, :-2], x[:, 1:-1, 2:])  # NEIGHBOURS order
    return np.stack(sides, axis=3).reshape(n * grid.patches_per_image, len(NEIGHBOURS), -1)


# ----- the environment --------------------------------------------------------------------------
class LatentFilterEnv:
    """Batch environment: every patch of a batch of images is one agent, all stepped at once."""

    def __init__(self, model: LatentModel, cfg: FilterEnvConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg or FilterEnvConfig()
        s, l, k = model.num_subspaces, model.latent_dim, model.num_clusters
        if self.cfg.action == "residual" and model.latent_scale is None:
            raise ConfigError("--action residual needs the per-dimension std of the clean latents (latent_scale)")
        knn_subspace = self.cfg.action == "knn" and self.cfg.gate == "subspace"
        self.action_dim = s if knn_subspace else s * l
        self.action_low = 0.0 if self.cfg.action == "knn" else -1.0  # actions are clipped to [action_low, 1]
        neighbours = len(NEIGHBOURS)
        self.state_dim = s * l + neighbours * s * l + s + s + s * k + s + self.cfg.steps
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
        self._decoded: np.ndarray | None = None  # decoded when first needed
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
        """Apply one filtering step with actions (P, m), clipped to [action_low, 1]."""
        if self.t >= self.cfg.steps:
            raise DataError("the episode is over: call reset() first")
        a = np.clip(np.asarray(actions, np.float32), self.action_low, 1.0)
        p = int(self.z.shape[0])
        if a.shape != (p, self.action_dim):
            raise DataError(f"actions must have shape ({p}, {self.action_dim}), got {a.shape}")
        pull = self._neighbours().mean if self.cfg.action == "knn" else None  # the only action that searches
        self.z = apply_action(self.z, a, self.cfg, self.model.latent_scale, pull)
        self.t += 1
        done = self.t == self.cfg.steps
        self._nb, self._decoded = None, None
        metrics = {"mean_action": float(a.mean()), "mean_abs_action": float(np.abs(a).mean())}
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
            psnr = batch_psnr(self._clean, images)
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
        """Current decoded patches (P, b, b, S), model colour space (decoded once per step)."""
        if self._decoded is None:
            self._decoded = np.asarray(self.model.decode(self.z), np.float32)
        return self._decoded

    def current_images(self) -> np.ndarray:
        """The current estimate as (N, H, W, C) RGB (or grey) images in [0, 1]."""
        return from_model_space(merge_patches(self.decoded(), self.grid))

    # -- internals ----------------------------------------------------------------
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
            neighbour_latents(self.z, self.grid).reshape(p, -1),
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
