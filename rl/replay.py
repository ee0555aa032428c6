"""Fixed-capacity replay buffer in preallocated numpy arrays.

The patch-filtering environment produces thousands of transitions per step (one
per patch), so transitions are added as whole batches: a vectorised write that
wraps around the ring, never a Python loop per transition.
"""
from __future__ import annotations

import numpy as np

from data.errors import ConfigError, DataError

FIELDS = ("states", "actions", "rewards", "next_states", "dones")


class ReplayBuffer:
    """Ring buffer of (state, action, reward, next_state, done) transitions."""

    def __init__(self, capacity: int, state_dim: int, action_dim: int) -> None:
        if capacity <= 0:
            raise ConfigError(f"replay capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.states = np.zeros((capacity, state_dim), np.float32)
        self.actions = np.zeros((capacity, action_dim), np.float32)
        self.rewards = np.zeros((capacity,), np.float32)
        self.next_states = np.zeros((capacity, state_dim), np.float32)
        self.dones = np.zeros((capacity,), np.float32)
        self._next = 0  # index the next transition is written to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, states, actions, rewards, next_states, dones) -> None:
        """Append a batch of B transitions; the oldest are overwritten when full.

        When B exceeds the capacity only the last `capacity` transitions are kept.
        """
        batch = {
            "states": np.asarray(states, np.float32).reshape(-1, self.state_dim),
            "actions": np.asarray(actions, np.float32).reshape(-1, self.action_dim),
            "rewards": np.asarray(rewards, np.float32).reshape(-1),
            "next_states": np.asarray(next_states, np.float32).reshape(-1, self.state_dim),
            "dones": np.broadcast_to(np.asarray(dones, np.float32), np.shape(rewards)).reshape(-1),
        }
        n = batch["rewards"].shape[0]
        for name, arr in batch.items():
            if arr.shape[0] != n:
                raise DataError(
                    f"replay add: '{name}' has {arr.shape[0]} rows but rewards has {n}"
                )
        if n > self.capacity:
            batch = {k: v[-self.capacity:] for k, v in batch.items()}
            self._next = (self._next + n - self.capacity) % self.capacity
            n = self.capacity
        idx = (self._next + np.arange(n)) % self.capacity
        for name, arr in batch.items():
            getattr(self, name)[idx] = arr
        self._next = int((self._next + n) % self.capacity)
        self._size = min(self._size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform sample (with replacement) of `batch_size` stored transitions."""
        if self._size == 0:
            raise DataError("replay sample: the buffer is empty")
        idx = rng.integers(0, self._size, size=batch_size)
        return {name: getattr(self, name)[idx] for name in FIELDS}
