"""Trust-region soft actor-critic with TensorFlow Probability distributions: the agent that
chooses, per patch, how strongly to pull its latent toward its clean neighbours.

Actor: a diagonal Gaussian over pre-squash actions u, mapped to [action_low, 1]^m by a
tanh bijector (`squash_bijector`; the filtering environment clips to [0, 1]). Critics: twin Q networks with Polyak-averaged
targets (clipped double-Q). Temperature: log(alpha) learned so the policy's
entropy tracks `target_entropy` (default -m).

Trust region: every actor update must keep the batch's mean
KL(pi_old(.|s) || pi_new(.|s)) <= kl_max. The optimizer's step is proposed,
its KL is measured on the batch, and the step is halved until it is within the
bound (up to `backtrack_tries` halvings, else the step is rejected and the actor
keeps its old weights). Because the squashing map is a bijection, the KL of the
squashed policies equals the closed-form KL of the pre-squash Gaussians.

Networks are plain `tf.Module`s of `tf.Variable`s (checkpointable, no Keras
layer tracing); the optimizers are Keras Adam, one per variable set.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from data.errors import ConfigError, DataError
from utils import atomic_write_json

tfd = tfp.distributions
tfb = tfp.bijectors

CONFIG_FILE = "sac_config.json"
CHECKPOINT_PREFIX = "sac"


@dataclass
class SACConfig:
    """Hyper-parameters of the agent; `target_entropy=None` means -action_dim."""

    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    init_alpha: float = 0.1
    target_entropy: float | None = None
    trust_region: bool = True
    kl_max: float = 0.01
    backtrack_tries: int = 10
    backtrack_factor: float = 0.5
    batch_size: int = 256
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    # Lower end of the squashed action range [action_low, 1]. The filtering env clips to [0, 1], so at
    # -1 a gate can be exactly 0 and the untrained policy's mean action is gate 0 (a no-op to start from).
    action_low: float = -1.0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.kl_max <= 0:
            raise ConfigError(f"--kl_max must be positive, got {self.kl_max}")
        if not 0 < self.backtrack_factor < 1:
            raise ConfigError(f"backtrack_factor must be in (0, 1), got {self.backtrack_factor}")
        if not 0 < self.tau <= 1:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau}")
        if not 0 <= self.gamma <= 1:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")


class ScalarLogger(Protocol):
    """Anything that records named scalars (TensorBoard, a list in tests...)."""

    def scalar(self, name: str, value: float, step: int) -> None: ...


class MLP(tf.Module):
    """ReLU multilayer perceptron with Glorot-uniform init from a numpy Generator."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int,
                 rng: np.random.Generator, out_scale: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        dims = [in_dim, *hidden, out_dim]
        self.kernels = []
        self.biases = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            if i == len(dims) - 2:
                limit *= out_scale
            w = rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
            self.kernels.append(tf.Variable(w, name=f"kernel_{i}"))
            self.biases.append(tf.Variable(np.zeros(fan_out, np.float32), name=f"bias_{i}"))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        last = len(self.kernels) - 1
        for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
            x = tf.matmul(x, w) + b
            if i < last:
                x = tf.nn.relu(x)
        return x


def squash_bijector(low: float = 0.0) -> tfb.Bijector:
    """u in R^m -> a = low + (1 - low) * 0.5 * (tanh(u) + 1) in (low, 1)^m.

    low < 0 lets an environment that clips actions to [0, 1] receive an exact 0 (a
    "do nothing" action) from a whole region of u, not only in the limit u -> -inf.
    """
    half = 0.5 * (1.0 - low)
    return tfb.Chain([tfb.Shift(low + half), tfb.Scale(half), tfb.Tanh()])


class SACAgent:
    """Soft actor-critic over states in R^state_dim and actions in [0, 1]^action_dim."""

    def __init__(self, state_dim: int, action_dim: int, cfg: SACConfig | None = None,
                 seed: int = 0) -> None:
        self.cfg = cfg or SACConfig()
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.seed = int(seed)
        self.target_entropy = float(
            -self.action_dim if self.cfg.target_entropy is None else self.cfg.target_entropy
        )
        rng = np.random.default_rng(seed)
        hidden = self.cfg.hidden
        self.actor = MLP(state_dim, hidden, 2 * action_dim, rng, out_scale=0.01, name="actor")
        sa_dim = state_dim + action_dim
        self.q1 = MLP(sa_dim, hidden, 1, rng, name="q1")
        self.q2 = MLP(sa_dim, hidden, 1, rng, name="q2")
        self.q1_target = MLP(sa_dim, hidden, 1, rng, name="q1_target")
        self.q2_target = MLP(sa_dim, hidden, 1, rng, name="q2_target")
        for target, source in ((self.q1_target, self.q1), (self.q2_target, self.q2)):
            for vt, v in zip(target.trainable_variables, source.trainable_variables):
                vt.assign(v)
        self.log_alpha = tf.Variable(np.log(self.cfg.init_alpha), dtype=tf.float32, name="log_alpha")
        self.noise = tf.random.Generator.from_seed(seed)
        self.updates = tf.Variable(0, dtype=tf.int64, name="updates")
        # Fixed input normaliser of actor and critics: states are (s - shift) / scale (see fit_state_normaliser).
        self.state_shift = tf.Variable(np.zeros(state_dim, np.float32), trainable=False, name="state_shift")
        self.state_scale = tf.Variable(np.ones(state_dim, np.float32), trainable=False, name="state_scale")

        self._actor_vars = list(self.actor.trainable_variables)
        self._critic_vars = list(self.q1.trainable_variables) + list(self.q2.trainable_variables)
        self._target_vars = (list(self.q1_target.trainable_variables)
                             + list(self.q2_target.trainable_variables))
        self.actor_opt = keras.optimizers.Adam(self.cfg.actor_lr)
        self.critic_opt = keras.optimizers.Adam(self.cfg.critic_lr)
        self.alpha_opt = keras.optimizers.Adam(self.cfg.alpha_lr)
        self.actor_opt.build(self._actor_vars)
        self.critic_opt.build(self._critic_vars)
        self.alpha_opt.build([self.log_alpha])

        spec = tf.TensorSpec([None, self.state_dim], tf.float32)
        self._act_mean = tf.function(self._deterministic_action, input_signature=[spec])
        self._act_sample = tf.function(self._sampled_action, input_signature=[spec])
        batch_spec = [
            spec,
            tf.TensorSpec([None, self.action_dim], tf.float32),
            tf.TensorSpec([None], tf.float32),
            spec,
            tf.TensorSpec([None], tf.float32),
        ]
        self._update = tf.function(self._update_step, input_signature=batch_spec)

    # ----- policy -------------------------------------------------------------
    def fit_state_normaliser(self, states: np.ndarray, min_std: float = 1e-6) -> None:
        """Standardise every state feature by its mean and std over `states` (fixed from then on).

        The state mixes latents, distances to clean neighbours, noise estimates and one-hots; without a
        common scale the first layer sees mostly the largest features. Fitted once on the
        training images' first states; kept by `save` and copied by a warm start. A feature
        that does not vary in `states` (the step one-hot of a first step) is only centred:
        dividing by its near-zero std would blow it up on later steps.
        """
        x = np.asarray(states, np.float64).reshape(-1, self.state_dim)
        std = x.std(axis=0)
        self.state_shift.assign(x.mean(axis=0).astype(np.float32))
        self.state_scale.assign(np.where(std > min_std, std, 1.0).astype(np.float32))

    def _normalised(self, states: tf.Tensor) -> tf.Tensor:
        return (states - self.state_shift) / self.state_scale

    def gaussian(self, states: tf.Tensor) -> tfd.Distribution:
        """The pre-squash Gaussian pi(u|s) (diagonal, one event of size m per state)."""
        out = self.actor(self._normalised(states))
        mean, raw_log_std = tf.split(out, 2, axis=-1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (tf.tanh(raw_log_std) + 1.0)
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(log_std))

    def policy(self, states: tf.Tensor) -> tfd.Distribution:
        """The squashed policy pi(a|s) over [0, 1]^m."""
        return tfd.TransformedDistribution(self.gaussian(states), squash_bijector(self.cfg.action_low))

    def _sample_with_log_prob(self, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Reparameterised action sample and its log-density, computed from u for stability."""
        base = self.gaussian(states)
        u = base.sample(seed=self.noise.uniform_full_int([2], dtype=tf.int32))
        bij = squash_bijector(self.cfg.action_low)
        log_prob = base.log_prob(u) - bij.forward_log_det_jacobian(u, event_ndims=1)
        return bij.forward(u), log_prob

    def _deterministic_action(self, states: tf.Tensor) -> tf.Tensor:
        return squash_bijector(self.cfg.action_low).forward(self.gaussian(states).mean())

    def _sampled_action(self, states: tf.Tensor) -> tf.Tensor:
        return self._sample_with_log_prob(states)[0]

    def act(self, states, deterministic: bool = False) -> np.ndarray:
        """Actions (B, m) in [0, 1] for states (B, state_dim); the mean action if deterministic."""
        states = tf.convert_to_tensor(np.asarray(states, np.float32).reshape(-1, self.state_dim))
        fn = self._act_mean if deterministic else self._act_sample
        return fn(states).numpy()

    def _mean_kl(self, states: tf.Tensor, old: tfd.Distribution) -> tf.Tensor:
        return tf.reduce_mean(old.kl_divergence(self.gaussian(states)))

    # ----- learning -----------------------------------------------------------
    def _q_min(self, q_a: MLP, q_b: MLP, states: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        sa = tf.concat([self._normalised(states), actions], axis=-1)
        return tf.minimum(q_a(sa), q_b(sa))[:, 0]

    def _update_step(self, s, a, r, s2, d):
        cfg = self.cfg
        alpha = tf.exp(self.log_alpha)

        # Critics: clipped double-Q soft Bellman target.
        a2, logp2 = self._sample_with_log_prob(s2)
        soft_v = self._q_min(self.q1_target, self.q2_target, s2, a2) - alpha * logp2
        y = tf.stop_gradient(r + cfg.gamma * (1.0 - d) * soft_v)
        sa = tf.concat([self._normalised(s), a], axis=-1)
        with tf.GradientTape() as tape:
            q1 = self.q1(sa)[:, 0]
            q2 = self.q2(sa)[:, 0]
            critic_loss = 0.5 * (tf.reduce_mean((q1 - y) ** 2) + tf.reduce_mean((q2 - y) ** 2))
        grads = tape.gradient(critic_loss, self._critic_vars)
        self.critic_opt.apply_gradients(zip(grads, self._critic_vars))

        # Actor: proposed step, then backtracking into the KL trust region.
        old_gauss = self.gaussian(s)
        old_dist = tfd.MultivariateNormalDiag(
            loc=tf.stop_gradient(old_gauss.mean()), scale_diag=tf.stop_gradient(old_gauss.stddev())
        )
        old_vars = [tf.identity(v) for v in self._actor_vars]
        with tf.GradientTape() as tape:
            act, logp = self._sample_with_log_prob(s)
            actor_loss = tf.reduce_mean(alpha * logp - self._q_min(self.q1, self.q2, s, act))
        grads = tape.gradient(actor_loss, self._actor_vars)
        self.actor_opt.apply_gradients(zip(grads, self._actor_vars))
        proposed_kl = self._mean_kl(s, old_dist)
        scale = tf.constant(1.0)
        if cfg.trust_region:
            deltas = [v - o for v, o in zip(self._actor_vars, old_vars)]
            kl = proposed_kl
            tries = tf.constant(0)
            while kl > cfg.kl_max and tries < cfg.backtrack_tries:
                scale = scale * cfg.backtrack_factor
                for v, o, dv in zip(self._actor_vars, old_vars, deltas):
                    v.assign(o + scale * dv)
                kl = self._mean_kl(s, old_dist)
                tries += 1
            scale = tf.where(kl <= cfg.kl_max, scale, 0.0)  # still outside: reject the step
            for v, o, dv in zip(self._actor_vars, old_vars, deltas):
                v.assign(o + scale * dv)
        kl = self._mean_kl(s, old_dist)  # measured on the weights actually kept

        # Temperature toward the target entropy.
        entropy_gap = tf.stop_gradient(logp + self.target_entropy)
        with tf.GradientTape() as tape:
            alpha_loss = -tf.reduce_mean(self.log_alpha * entropy_gap)
        grads = tape.gradient(alpha_loss, [self.log_alpha])
        self.alpha_opt.apply_gradients(zip(grads, [self.log_alpha]))

        # Polyak-averaged target critics.
        online = self._critic_vars
        for vt, v in zip(self._target_vars, online):
            vt.assign((1.0 - cfg.tau) * vt + cfg.tau * v)
        self.updates.assign_add(1)
        return {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss,
            "alpha": tf.exp(self.log_alpha),
            "kl": kl,
            "proposed_kl": proposed_kl,
            "step_scale": scale,
            "entropy": -tf.reduce_mean(logp),
            "q_mean": tf.reduce_mean(q1),
        }

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient update (critics, actor within the trust region, temperature, targets).

        `batch` has the keys of `rl.replay.ReplayBuffer.sample`. Returns the
        update's scalars: losses, alpha, the measured KL of the kept actor step,
        the KL the unconstrained step would have had, the step scale kept.
        """
        out = self._update(
            tf.convert_to_tensor(batch["states"], tf.float32),
            tf.convert_to_tensor(batch["actions"], tf.float32),
            tf.convert_to_tensor(batch["rewards"], tf.float32),
            tf.convert_to_tensor(batch["next_states"], tf.float32),
            tf.convert_to_tensor(batch["dones"], tf.float32),
        )
        return {k: float(v) for k, v in out.items()}

    # ----- persistence --------------------------------------------------------
    def _checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            actor=self.actor, q1=self.q1, q2=self.q2, q1_target=self.q1_target,
            q2_target=self.q2_target, log_alpha=self.log_alpha, updates=self.updates,
            state_shift=self.state_shift, state_scale=self.state_scale,
            noise=self.noise, actor_opt=self.actor_opt, critic_opt=self.critic_opt,
            alpha_opt=self.alpha_opt,
        )

    def save(self, directory: str | Path) -> Path:
        """Write the config (JSON) and all weights and optimizer state (tf checkpoint)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"state_dim": self.state_dim, "action_dim": self.action_dim, "seed": self.seed,
                "config": dataclasses.asdict(self.cfg)}
        atomic_write_json(directory / CONFIG_FILE, meta)
        self._checkpoint().write(str(directory / CHECKPOINT_PREFIX))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SACAgent":
        """Rebuild an agent saved by `save`; its actions equal the saved agent's."""
        directory = Path(directory)
        cfg_path = directory / CONFIG_FILE
        if not cfg_path.is_file():
            raise DataError(f"{cfg_path}: no saved SAC agent here ({CONFIG_FILE} missing)")
        try:
            meta = json.loads(cfg_path.read_text())
            cfg = SACConfig(**meta["config"])
            agent = cls(meta["state_dim"], meta["action_dim"], cfg, seed=meta["seed"])
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise DataError(f"{cfg_path}: not a valid SAC agent config ({exc})") from exc
        try:
            agent._checkpoint().read(str(directory / CHECKPOINT_PREFIX)).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as exc:
            raise DataError(f"{directory}: cannot read the SAC checkpoint ({exc})") from exc
        return agent
