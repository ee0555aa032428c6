"""Replay buffer: wrap-around keeps exactly the newest transitions; sampling is uniform."""
import numpy as np
import pytest

from data.errors import ConfigError, DataError
from rl.replay import ReplayBuffer


def _batch(start: int, n: int, state_dim: int = 2, action_dim: int = 3):
    ids = np.arange(start, start + n, dtype=np.float32)
    return (
        np.repeat(ids[:, None], state_dim, 1),
        np.repeat(ids[:, None], action_dim, 1) * 10,
        ids,
        np.repeat(ids[:, None], state_dim, 1) + 0.5,
        (ids % 2 == 0).astype(np.float32),
    )


def _stored_ids(buf: ReplayBuffer) -> set:
    return set(buf.rewards[: len(buf)].tolist())


def test_wraps_around_and_keeps_newest():
    buf = ReplayBuffer(capacity=7, state_dim=2, action_dim=3)
    buf.add(*_batch(0, 5))
    assert len(buf) == 5 and _stored_ids(buf) == set(range(5))
    buf.add(*_batch(5, 4))  # 9 written into 7 slots: 0 and 1 overwritten
    assert len(buf) == 7
    assert _stored_ids(buf) == set(range(2, 9))
    # every stored row is internally consistent (fields written at the same index)
    np.testing.assert_array_equal(buf.states[:, 0], buf.rewards)
    np.testing.assert_array_equal(buf.actions[:, 2], buf.rewards * 10)
    np.testing.assert_array_equal(buf.next_states[:, 1], buf.rewards + 0.5)
    np.testing.assert_array_equal(buf.dones, (buf.rewards % 2 == 0))


def test_batch_larger_than_capacity_matches_sequential_adds():
    big = ReplayBuffer(capacity=5, state_dim=2, action_dim=3)
    big.add(*_batch(0, 3))
    big.add(*_batch(3, 12))
    seq = ReplayBuffer(capacity=5, state_dim=2, action_dim=3)
    seq.add(*_batch(0, 3))
    for i in range(3, 15):
        seq.add(*_batch(i, 1))
    np.testing.assert_array_equal(big.rewards, seq.rewards)
    np.testing.assert_array_equal(big.states, seq.states)
    assert _stored_ids(big) == set(range(10, 15))
    big.add(*_batch(15, 1))
    seq.add(*_batch(15, 1))
    np.testing.assert_array_equal(big.rewards, seq.rewards)


def test_sampling_is_uniform_and_seeded():
    buf = ReplayBuffer(capacity=10, state_dim=2, action_dim=3)
    buf.add(*_batch(0, 4))
    s1 = buf.sample(4000, np.random.default_rng(0))
    s2 = buf.sample(4000, np.random.default_rng(0))
    np.testing.assert_array_equal(s1["rewards"], s2["rewards"])
    counts = np.bincount(s1["rewards"].astype(int), minlength=10)
    assert counts[4:].sum() == 0  # never samples unfilled slots
    assert np.all(np.abs(counts[:4] / 4000 - 0.25) < 0.03)
    np.testing.assert_array_equal(s1["states"][:, 0], s1["rewards"])


def test_bad_input_raises_data_error():
    buf = ReplayBuffer(capacity=4, state_dim=2, action_dim=3)
    with pytest.raises(DataError, match="empty"):
        buf.sample(1, np.random.default_rng(0))
    s, a, r, ns, d = _batch(0, 3)
    with pytest.raises(DataError, match="actions"):
        buf.add(s, a[:2], r, ns, d)
    with pytest.raises(ConfigError, match="capacity"):
        ReplayBuffer(0, 2, 3)
