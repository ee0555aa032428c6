"""PPO-clip for batch image environments with per-pixel categorical actions.

The agent is a fully convolutional network: every pixel (and channel) of every
image in the batch is one agent choosing one of A actions, with its own reward and
value (as in R3L, arXiv 2107.05318). Any image task can reuse this trainer by
supplying an environment with the `BatchImageEnv` protocol and a network
`images (B,H,W,C) -> (logits (..., A), values (...))` whose logits' leading shape
is the action shape and equals the values' shape (e.g. (B,H,W,C)).

One episode = one rollout of `env.episode_length` steps over a batch, stored in
preallocated arrays; then advantages by GAE(gamma, lambda) computed once from the
rollout-time values, and `update_passes` passes of the clipped surrogate + value
loss (+ optional entropy bonus) over the rollout, in compiled train steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tensorflow as tf


class BatchImageEnv(Protocol):
    """What PPO needs from an environment; states are image batches (B,H,W,C)."""

    num_actions: int
    episode_length: int

    def reset(self, clean, noisy) -> tf.Tensor:
        """Start an episode; returns the first state. `clean` is the reward's reference."""

    def step(self, actions) -> tuple[tf.Tensor, tf.Tensor, bool]:
        """Apply per-pixel actions; returns (next state, per-pixel reward, episode done)."""


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters; defaults are the R3L authors' (PPO_batch.py)."""

    clip: float = 0.5
    gamma: float = 0.95
    gae_lambda: float = 1.0
    update_passes: int = 15
    minibatches: int = 1  # per pass; 1 = the whole rollout in one step, as the authors do
    learning_rate: float = 1e-3
    lr_power: float = 0.9  # polynomial decay to 0 over total_episodes
    total_episodes: int = 30000
    value_coef: float = 1.0
    entropy_coef: float = 0.0
    huber_delta: float = 1.0  # value loss: smooth L1, as the authors
    normalize_advantages: bool = False


def clipped_surrogate_loss(logp_new, logp_old, advantages, clip: float) -> tf.Tensor:
    """-mean(min(ratio * A, clip(ratio, 1-eps, 1+eps) * A)), ratio = exp(logp_new - logp_old)."""
    ratio = tf.exp(logp_new - logp_old)
    unclipped = ratio * advantages
    clipped = tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages
    return -tf.reduce_mean(tf.minimum(unclipped, clipped))


def compute_gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
                gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns, time first.

    rewards, values: (T, ...); dones: (T,) bool, True when the episode ended with
    step t (no bootstrap past it); last_values: (...) value of the state after step T-1.
    Returns (advantages, returns = advantages + values), float32.
    """
    advantages = np.zeros_like(values, dtype=np.float32)
    running = np.zeros_like(last_values, dtype=np.float32)
    next_values = last_values
    for t in range(rewards.shape[0] - 1, -1, -1):  # loop over time only; pixels are vectorised
        mask = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * mask * next_values - values[t]
        running = delta + gamma * lam * mask * running
        advantages[t] = running
        next_values = values[t]
    return advantages, (advantages + values).astype(np.float32)


class RolloutBuffer:
    """Preallocated storage for one rollout of `steps` steps, time first."""

    def __init__(self, steps: int, state_shape: tuple[int, ...], action_shape: tuple[int, ...]):
        self.steps = steps
        self.states = np.zeros((steps, *state_shape), np.float32)
        self.actions = np.zeros((steps, *action_shape), np.int32)
        self.logp = np.zeros((steps, *action_shape), np.float32)
        self.values = np.zeros((steps, *action_shape), np.float32)
        self.rewards = np.zeros((steps, *action_shape), np.float32)
        self.dones = np.zeros((steps,), bool)
        self.last_values = np.zeros(action_shape, np.float32)
        self.length = 0

    def fits(self, steps: int, state_shape, action_shape) -> bool:
        return self.steps == steps and self.states.shape[1:] == tuple(state_shape) and self.actions.shape[1:] == tuple(action_shape)


def _log_probs(logits, actions):
    logp_all = tf.nn.log_softmax(logits, axis=-1)
    return tf.reduce_sum(logp_all * tf.one_hot(actions, tf.shape(logits)[-1], dtype=logits.dtype), axis=-1), logp_all


class PPO:
    """PPO-clip trainer around a per-pixel policy/value network."""

    def __init__(self, network: tf.keras.Model, config: PPOConfig = PPOConfig(), seed: int = 0):
        self.network = network
        self.config = config
        decay_steps = max(1, config.total_episodes * config.update_passes * config.minibatches)
        schedule = tf.keras.optimizers.schedules.PolynomialDecay(
            config.learning_rate, decay_steps, end_learning_rate=0.0, power=config.lr_power)
        self.optimizer = tf.keras.optimizers.Adam(schedule)
        self.rng = tf.random.Generator.from_seed(seed)
        self._shuffle = np.random.default_rng(seed)
        self.buffer: RolloutBuffer | None = None
        self._act = tf.function(self._act_impl, reduce_retracing=True)
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True)

    # -- acting --------------------------------------------------------------
    def _act_impl(self, states):
        logits, values = self.network(states)
        gumbel = -tf.math.log(-tf.math.log(self.rng.uniform(tf.shape(logits), 1e-12, 1.0)))
        actions = tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)  # Gumbel-max sampling
        logp, _ = _log_probs(logits, actions)
        return actions, logp, values

    def act(self, states) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Sample per-pixel actions; returns (actions, their log-probabilities, values)."""
        return self._act(tf.convert_to_tensor(states, tf.float32))

    def collect(self, env: BatchImageEnv, clean, noisy) -> RolloutBuffer:
        """Run one episode over the batch and store it (the buffer is reused across episodes)."""
        state = env.reset(clean, noisy)
        steps = env.episode_length
        actions, logp, values = self.act(state)
        if self.buffer is None or not self.buffer.fits(steps, state.shape, actions.shape):
            self.buffer = RolloutBuffer(steps, tuple(state.shape), tuple(actions.shape))
        buf = self.buffer
        for t in range(steps):
            if t > 0:
                actions, logp, values = self.act(state)
            buf.states[t] = state
            buf.actions[t] = actions
            buf.logp[t] = logp
            buf.values[t] = values
            state, reward, done = env.step(actions)
            buf.rewards[t] = reward
            buf.dones[t] = done
            buf.length = t + 1
            if done:
                break
        buf.last_values[...] = 0.0 if buf.dones[buf.length - 1] else self.act(state)[2]
        return buf

    # -- learning ------------------------------------------------------------
    def _train_step_impl(self, states, actions, logp_old, advantages, returns):
        cfg = self.config
        with tf.GradientTape() as tape:
            logits, values = self.network(states, training=True)
            logp, logp_all = _log_probs(logits, actions)
            policy_loss = clipped_surrogate_loss(logp, logp_old, advantages, cfg.clip)
            err = tf.abs(values - returns)
            quad = tf.minimum(err, cfg.huber_delta)
            value_loss = tf.reduce_mean(0.5 * quad * quad + cfg.huber_delta * (err - quad))
            entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(logp_all) * logp_all, axis=-1))
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
        variables = self.network.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        clip_frac = tf.reduce_mean(tf.cast(tf.abs(tf.exp(logp - logp_old) - 1.0) > cfg.clip, tf.float32))
        return {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                "clip_fraction": clip_frac}

    def update(self, buffer: RolloutBuffer | None = None) -> dict[str, float]:
        """GAE once, then `update_passes` passes of minibatch steps over the rollout's images."""
        cfg = self.config
        buf = buffer or self.buffer
        n = buf.length
        adv, ret = compute_gae(buf.rewards[:n], buf.values[:n], buf.dones[:n], buf.last_values, cfg.gamma, cfg.gae_lambda)
        if cfg.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        flat = lambda a: a.reshape((-1, *a.shape[2:]))  # (T, B, ...) -> (T*B, ...)
        data = [flat(buf.states[:n]), flat(buf.actions[:n]), flat(buf.logp[:n]), flat(adv), flat(ret)]
        total = data[0].shape[0]
        size = max(1, -(-total // cfg.minibatches))
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.update_passes):
            order = self._shuffle.permutation(total) if cfg.minibatches > 1 else np.arange(total)
            for start in range(0, total, size):
                idx = order[start:start + size]
                out = self._train_step(*(tf.constant(a[idx]) for a in data))
                for k, v in out.items():
                    stats.setdefault(k, []).append(float(v))
        return {k: float(np.mean(v)) for k, v in stats.items()}

    def train_episode(self, env: BatchImageEnv, clean, noisy) -> dict[str, float]:
        """One rollout + update; returns the losses and the mean per-pixel episode return."""
        buf = self.collect(env, clean, noisy)
        stats = self.update(buf)
        stats["episode_return"] = float(buf.rewards[:buf.length].sum(axis=0).mean())
        return stats
