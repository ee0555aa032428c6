"""PPO-clip for batch image environments with per-pixel categorical actions, and a cloning warm start.

Length (over 400 lines): the compiled episode, the eager reference path it is tested against
and the cloning warm start share one set of losses; split, one algorithm would live in three files.

The agent is a fully convolutional network: every pixel (and channel) of every
image in the batch is one agent choosing one of A actions, with its own reward and
value (as in R3L, arXiv 2107.05318). Any image task can reuse this trainer by
supplying an environment with the `BatchImageEnv` protocol and a network
`images (B,H,W,C) -> (logits (..., A), values (...))` whose logits' leading shape
is the action shape and equals the values' shape (e.g. (B,H,W,C)).

One episode = one rollout of `env.episode_length` steps over a batch; advantages by
GAE(gamma, lambda) computed once from the rollout-time values; then `update_passes`
passes of the clipped surrogate + value loss (+ optional entropy bonus). The whole
episode (rollout, GAE, every pass) is one compiled call (`train_episode`): no host
round trip per step or per pass. `train_episode_eager` is the step-by-step path
(host GAE, one call per step and per pass), kept as the reference the compiled path
is tested and benchmarked against.

The deterministic (test-time) policy takes, per pixel, either the most probable action
(`argmax`, the R3L authors') or the action nearest the policy's mean action index (`mean`,
for ordinal actions such as residuals): under a squared-error reward the best single
action for an uncertain pixel is the mean, while the mode of a clipped residual
distribution sits at the clip (+-13) until the policy is confident.

`clone_episode` is the warm start (DAgger-style behaviour cloning): one rollout of the
current deterministic policy, i.e. the states it meets at test time; one step
of cross-entropy toward the environment's expert actions at those states
(`env.expert_actions(state, target)`) plus the value loss toward that rollout's
discounted returns (one rollout and one forward pass per episode: the cheap choice; PPO's
value loss then adapts the values to the sampled policy). Losses are sums over the global batch divided by its size, so the
same steps run unchanged under a `tf.distribute` strategy (`strategy=`): the rollout
runs once, each update splits its batch across the replicas.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import tensorflow as tf


class BatchImageEnv(Protocol):
    """What PPO needs from an environment; states are image batches (B,H,W,C)."""

    num_actions: int
    episode_length: int

    def transition(self, state, actions, reference) -> tuple[tf.Tensor, tf.Tensor]:
        """Pure TensorFlow step (traced into the compiled rollout): (next state, per-pixel reward)."""

    def reset(self, noisy, clean) -> tf.Tensor:
        """Eager form: start an episode from `noisy`; `clean` is the reward's reference."""

    def step(self, actions) -> tuple[tf.Tensor, tf.Tensor, bool]:
        """Eager form: apply per-pixel actions; returns (next state, per-pixel reward, episode done)."""


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
    clone_learning_rate: float = 1e-3  # warm start (its own Adam)
    clone_decay_episodes: int = 0  # 0: constant warm-start rate; N: polynomial decay (lr_power) to 0 over N clone episodes
    action_rule: str = "mean"  # deterministic policy: "mean" (nearest the mean action) or "argmax"
    clone_mean_coef: float = 30.0  # warm start: weight of the squared error of the mean action index (/ A//2)

    def __post_init__(self):
        if self.action_rule not in ACTION_RULES:
            raise ValueError(f"--action_rule: {self.action_rule!r} is not one of {', '.join(ACTION_RULES)}")


def decaying_rate(learning_rate: float, decay_steps: int, power: float = 0.9):
    """Adam's rate: constant (decay_steps 0), or decaying polynomially to 0 over `decay_steps`
    updates (the authors' schedule for PPO and R3N; for the warm start, so that the cloned
    policy settles instead of ending wherever a constant rate left it)."""
    if decay_steps <= 0:
        return learning_rate
    return tf.keras.optimizers.schedules.PolynomialDecay(learning_rate, decay_steps, 0.0, power=power)


class Rollout(NamedTuple):
    """One episode, time first: states (T,B,H,W,C); actions, logp, values, rewards (T, *action shape)."""

    states: tf.Tensor
    actions: tf.Tensor
    logp: tf.Tensor
    values: tf.Tensor
    rewards: tf.Tensor


ACTION_RULES = ("mean", "argmax")
STAT_NAMES = ("loss", "policy_loss", "value_loss", "entropy", "clip_fraction")
CLONE_STAT_NAMES = ("clone_loss", "cross_entropy", "value_loss", "expert_agreement")


def deterministic_actions(logits, rule: str = "mean") -> tf.Tensor:
    """The deterministic policy's actions (int32): the most probable one (`argmax`) or, for
    ordinal actions, the one nearest the mean action index under the policy (`mean`)."""
    if rule == "argmax":
        return tf.argmax(logits, -1, output_type=tf.int32)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), -1)
    index = tf.range(tf.shape(logits)[-1], dtype=tf.float32)
    return tf.cast(tf.round(tf.reduce_sum(probs * index, -1)), tf.int32)


def clipped_surrogate_loss(logp_new, logp_old, advantages, clip: float) -> tf.Tensor:
    """-mean(min(ratio * A, clip(ratio, 1-eps, 1+eps) * A)), ratio = exp(logp_new - logp_old)."""
    ratio = tf.exp(logp_new - logp_old)
    unclipped = ratio * advantages
    clipped = tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages
    return -tf.reduce_mean(tf.minimum(unclipped, clipped))


def compute_gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
                gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns, time first (host version, any episode ends).

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


def episode_gae(rewards: tf.Tensor, values: tf.Tensor, gamma: float, lam: float) -> tuple[tf.Tensor, tf.Tensor]:
    """GAE for one rollout that ends with its last step (no bootstrap), in TensorFlow.

    rewards, values: (T, ...) with a static T. Returns (advantages, returns), time first.
    """
    running = tf.zeros_like(rewards[0])
    next_values = tf.zeros_like(values[0])
    advantages = []
    for t in range(rewards.shape[0] - 1, -1, -1):  # static T (6): unrolled in the graph
        running = rewards[t] + gamma * next_values - values[t] + gamma * lam * running
        advantages.append(running)
        next_values = values[t]
    advantages = tf.stack(advantages[::-1])
    return advantages, advantages + values


class RolloutBuffer:
    """Preallocated host storage for one rollout of `steps` steps, time first (the eager path)."""

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


def _flat(x: tf.Tensor) -> tf.Tensor:
    """(T, B, ...) -> (T*B, ...)."""
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def _huber_sum(err, delta: float) -> tf.Tensor:
    err = tf.abs(err)
    quad = tf.minimum(err, delta)
    return tf.reduce_sum(0.5 * quad * quad + delta * (err - quad))


class PPO:
    """PPO-clip trainer (and cloning warm start) around a per-pixel policy/value network.

    Build the network inside `strategy.scope()` when passing a strategy; the
    optimizers are created in that scope here. The sampling RNG (`rng`) and both
    optimizers belong in a checkpoint together with the network.
    """

    def __init__(self, network: tf.keras.Model, env: BatchImageEnv, config: PPOConfig = PPOConfig(),
                 seed: int = 0, strategy: tf.distribute.Strategy | None = None):
        self.network = network
        self.env = env
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        decay_steps = max(1, config.total_episodes * config.update_passes * config.minibatches)
        with self.strategy.scope():
            self.optimizer = tf.keras.optimizers.Adam(decaying_rate(config.learning_rate, decay_steps, config.lr_power))
            self.clone_optimizer = tf.keras.optimizers.Adam(
                decaying_rate(config.clone_learning_rate, config.clone_decay_episodes, config.lr_power))
            self.optimizer.build(network.trainable_variables)
            self.clone_optimizer.build(network.trainable_variables)
        self.rng = tf.random.Generator.from_seed(seed)
        self.buffer: RolloutBuffer | None = None
        self._distributed = self.strategy.num_replicas_in_sync > 1
        self._act = tf.function(self._act_impl, reduce_retracing=True)
        self._rollout = tf.function(self._rollout_impl, reduce_retracing=True)
        self._episode = tf.function(self._episode_impl, reduce_retracing=True)
        self._clone = tf.function(self._clone_impl, reduce_retracing=True)
        self._ppo_data = tf.function(self._ppo_data_impl, reduce_retracing=True)
        self._clone_data = tf.function(self._clone_data_impl, reduce_retracing=True)
        self._ppo_step = tf.function(self._ppo_step_impl, reduce_retracing=True)
        self._dist_steps = {}

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

    def _rollout_impl(self, noisy, clean) -> Rollout:
        state, steps = noisy, []
        for _ in range(self.env.episode_length):  # static length: unrolled in the graph
            actions, logp, values = self._act_impl(state)
            next_state, reward = self.env.transition(state, actions, clean)
            steps.append((state, actions, logp, values, reward))
            state = next_state
        return Rollout(*(tf.stack(parts) for parts in zip(*steps)))

    def collect(self, noisy, clean) -> Rollout:
        """One compiled rollout of the current policy over the batch (tensors, time first)."""
        return self._rollout(tf.convert_to_tensor(noisy, tf.float32), tf.convert_to_tensor(clean, tf.float32))

    def collect_eager(self, noisy, clean) -> RolloutBuffer:
        """The same rollout one host call per step, through env.reset/env.step, into a reused buffer."""
        env = self.env
        state = env.reset(noisy, clean)
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

    # -- one optimisation step (per replica; losses normalised by the global batch) -------
    def _ppo_step_impl(self, states, actions, logp_old, advantages, returns, count):
        cfg = self.config
        count = tf.cast(count, tf.float32)
        with tf.GradientTape() as tape:
            logits, values = self.network(states, training=True)
            logp, logp_all = _log_probs(logits, actions)
            ratio = tf.exp(logp - logp_old)
            surrogate = tf.minimum(ratio * advantages, tf.clip_by_value(ratio, 1.0 - cfg.clip, 1.0 + cfg.clip) * advantages)
            policy_loss = -tf.reduce_sum(surrogate) / count
            value_loss = _huber_sum(values - returns, cfg.huber_delta) / count
            entropy = -tf.reduce_sum(tf.exp(logp_all) * logp_all) / count
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
        variables = self.network.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        clip_frac = tf.reduce_sum(tf.cast(tf.abs(ratio - 1.0) > cfg.clip, tf.float32)) / count
        return tf.stack([loss, policy_loss, value_loss, entropy, clip_frac])

    def _clone_step_impl(self, states, expert, returns, count):
        cfg = self.config
        count = tf.cast(count, tf.float32)
        with tf.GradientTape() as tape:
            logits, values = self.network(states, training=True)
            cross_entropy = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(expert, logits)) / count
            value_loss = _huber_sum(values - returns, cfg.huber_delta) / count
            loss = cross_entropy + cfg.value_coef * value_loss
            if cfg.clone_mean_coef:
                half = float(self.env.num_actions // 2)
                index = tf.range(self.env.num_actions, dtype=tf.float32)
                mean_action = tf.reduce_sum(tf.nn.softmax(logits) * index, -1)
                mean_error = tf.reduce_sum(tf.square((mean_action - tf.cast(expert, tf.float32)) / half)) / count
                loss += cfg.clone_mean_coef * mean_error
        variables = self.network.trainable_variables
        self.clone_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        agree = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), expert), tf.float32)) / count
        return tf.stack([loss, cross_entropy, value_loss, agree])

    # -- the data one episode's updates train on -------------------------------------------
    def _ppo_data_impl(self, noisy, clean):
        cfg = self.config
        roll = self._rollout_impl(noisy, clean)
        advantages, returns = episode_gae(roll.rewards, roll.values, cfg.gamma, cfg.gae_lambda)
        if cfg.normalize_advantages:
            advantages = (advantages - tf.reduce_mean(advantages)) / (tf.math.reduce_std(advantages) + 1e-8)
        data = tuple(_flat(x) for x in (roll.states, roll.actions, roll.logp, advantages, returns))
        return data, tf.reduce_mean(tf.reduce_sum(roll.rewards, 0))

    def _greedy_rollout(self, noisy, reference):
        """States and rewards of the deterministic policy's rollout (config.action_rule), time first."""
        state, states, rewards = noisy, [], []
        for _ in range(self.env.episode_length):
            states.append(state)
            logits, _ = self.network(state)
            actions = deterministic_actions(logits, self.config.action_rule)
            state, reward = self.env.transition(state, actions, reference)
            rewards.append(reward)
        return tf.stack(states), tf.stack(rewards)

    def _clone_data_impl(self, noisy, clean, target):
        states, rewards = self._greedy_rollout(noisy, clean)
        expert = self.env.expert_actions(states, target[None])
        _, returns = episode_gae(rewards, tf.zeros_like(rewards), self.config.gamma, 1.0)
        data = tuple(_flat(x) for x in (states, expert, returns))
        return data, tf.reduce_mean(tf.reduce_sum(rewards, 0))

    def _order(self, n):
        """This pass's minibatch order: a permutation from the checkpointed RNG (identity for 1 minibatch)."""
        if self.config.minibatches == 1:
            return tf.range(n)
        return tf.argsort(self.rng.uniform([n]))

    # -- compiled episodes (one strategy device) -------------------------------------------
    def _episode_impl(self, noisy, clean):
        cfg = self.config
        data, episode_return = self._ppo_data_impl(noisy, clean)
        n = tf.shape(data[0])[0]
        size = (n + cfg.minibatches - 1) // cfg.minibatches
        totals = tf.zeros([len(STAT_NAMES)])
        for _ in tf.range(cfg.update_passes):
            order = self._order(n)
            for m in range(cfg.minibatches):  # static count: unrolled
                idx = order[m * size:(m + 1) * size]
                batch = [tf.gather(x, idx) for x in data]
                totals += self._ppo_step_impl(*batch, tf.size(batch[1]))
        return totals / float(cfg.update_passes * cfg.minibatches), episode_return

    def _clone_impl(self, noisy, clean, target):
        data, episode_return = self._clone_data_impl(noisy, clean, target)
        return self._clone_step_impl(*data, tf.size(data[1])), episode_return

    # -- distributed steps: the batch split across replicas -----------------------------------
    def _split(self, arrays):
        replicas = self.strategy.num_replicas_in_sync
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tuple(a[ctx.replica_id_in_sync_group::replicas] for a in arrays))

    def _dist_step(self, kind: str):
        if kind not in self._dist_steps:
            step = self._ppo_step_impl if kind == "ppo" else self._clone_step_impl

            @tf.function
            def run(per_replica, count):
                out = self.strategy.run(lambda args: step(*args, count), args=(per_replica,))
                return self.strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

            self._dist_steps[kind] = run
        return self._dist_steps[kind]

    def _distributed_episode(self, noisy, clean):
        cfg = self.config
        data, episode_return = self._ppo_data(noisy, clean)
        data = [x.numpy() for x in data]
        n = data[0].shape[0]
        size = -(-n // cfg.minibatches)
        totals = np.zeros(len(STAT_NAMES))
        for _ in range(cfg.update_passes):
            order = self._order(n).numpy()
            for m in range(cfg.minibatches):
                idx = order[m * size:(m + 1) * size]
                batch = [x[idx] for x in data]
                totals += self._dist_step("ppo")(self._split(batch), batch[1].size).numpy()
        return totals / (cfg.update_passes * cfg.minibatches), episode_return

    # -- public training calls -----------------------------------------------------------------
    def train_episode(self, noisy, clean) -> dict[str, float]:
        """One compiled rollout + GAE + every update pass; losses (pass means) and the mean episode return."""
        noisy, clean = tf.convert_to_tensor(noisy, tf.float32), tf.convert_to_tensor(clean, tf.float32)
        if self._distributed:
            stats, episode_return = self._distributed_episode(noisy, clean)
        else:
            stats, episode_return = self._episode(noisy, clean)
        out = {k: float(v) for k, v in zip(STAT_NAMES, np.asarray(stats))}
        out["episode_return"] = float(episode_return)
        return out

    def clone_episode(self, noisy, clean, target) -> dict[str, float]:
        """Warm start: one rollout of the current policy, one cloning step toward `target`'s expert actions
        (cross-entropy) and the rollout's discounted returns (value); losses and the mean episode return."""
        args = [tf.convert_to_tensor(x, tf.float32) for x in (noisy, clean, target)]
        if self._distributed:
            data, episode_return = self._clone_data(*args)
            data = [x.numpy() for x in data]
            stats = self._dist_step("clone")(self._split(data), data[1].size)
        else:
            stats, episode_return = self._clone(*args)
        out = {k: float(v) for k, v in zip(CLONE_STAT_NAMES, np.asarray(stats))}
        out["episode_return"] = float(episode_return)
        return out

    def update_eager(self, buffer: RolloutBuffer | None = None) -> dict[str, float]:
        """Host GAE once, then `update_passes` passes of one compiled step per minibatch (the reference path)."""
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
        totals = np.zeros(len(STAT_NAMES))
        for _ in range(cfg.update_passes):
            order = self._order(total).numpy()
            for start in range(0, total, size):
                batch = [tf.constant(a[order[start:start + size]]) for a in data]
                totals += self._ppo_step(*batch, tf.size(batch[1])).numpy()
        return {k: float(v) for k, v in zip(STAT_NAMES, totals / (cfg.update_passes * cfg.minibatches))}

    def train_episode_eager(self, noisy, clean) -> dict[str, float]:
        """The step-by-step path (one host call per step and per pass); same results as `train_episode`."""
        buf = self.collect_eager(noisy, clean)
        stats = self.update_eager(buf)
        stats["episode_return"] = float(buf.rewards[:buf.length].sum(axis=0).mean())
        return stats
