"""Trust-region SAC: learns a bandit's known optimum, keeps every actor step in the
KL trust region (and demonstrably would not without it), saves and loads exactly."""
import numpy as np
import pytest

from data.errors import ConfigError, DataError
from rl.replay import ReplayBuffer
from rl.sac import SACAgent, SACConfig
from utils import TensorBoardLogger

# Two contexts (one-hot states), each with its own optimal action in [0, 1]^3.
TARGETS = np.array([[0.2, 0.7, 0.9], [0.8, 0.3, 0.5]], np.float32)
CONTEXTS = np.eye(2, dtype=np.float32)


def _run_bandit(cfg: SACConfig, updates: int, seed: int = 0):
    """Play the contextual quadratic bandit r = -10 ||a - a*(s)||^2; one update per round."""
    agent = SACAgent(2, 3, cfg, seed=seed)
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(10_000, 2, 3)
    logs = []
    for _ in range(updates):
        ctx = rng.integers(0, 2, size=16)
        s = CONTEXTS[ctx]
        a = agent.act(s)
        r = -10.0 * ((a - TARGETS[ctx]) ** 2).sum(axis=1)
        buf.add(s, a, r, s, np.ones(16))
        logs.append(agent.update(buf.sample(cfg.batch_size, rng)))
    return agent, logs


def _bandit_cfg(**overrides) -> SACConfig:
    base = dict(hidden=(64, 64), actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-3,
                batch_size=128, gamma=0.0, action_low=0.0)  # actions in [0, 1]^3, the targets' box
    base.update(overrides)
    return SACConfig(**base)


def test_sac_reaches_bandit_optimum():
    agent, logs = _run_bandit(_bandit_cfg(), updates=600)
    start = np.abs(0.5 - TARGETS).max()  # the initial mean action is ~0.5 everywhere
    err = np.abs(agent.act(CONTEXTS, deterministic=True) - TARGETS).max()
    assert start > 0.25
    assert err < 0.05, f"mean action {agent.act(CONTEXTS, True)} vs optimum {TARGETS}"
    assert all(np.isfinite(list(log.values())).all() for log in logs)
    assert {"kl", "actor_loss", "critic_loss", "alpha_loss", "alpha"} <= set(logs[-1])


def test_trust_region_bounds_every_actor_step():
    # A large actor learning rate makes unconstrained Adam steps leave the region.
    kl_max = 0.01
    _, on = _run_bandit(_bandit_cfg(actor_lr=0.05, kl_max=kl_max), updates=40)
    _, off = _run_bandit(_bandit_cfg(actor_lr=0.05, kl_max=kl_max, trust_region=False), updates=40)
    kl_on = np.array([log["kl"] for log in on])
    kl_off = np.array([log["kl"] for log in off])
    assert kl_on.max() <= kl_max + 1e-5, kl_on.max()
    assert kl_off.max() > kl_max, kl_off.max()
    # the constraint was active: some proposed steps were too big and got scaled down
    assert any(log["proposed_kl"] > kl_max and log["step_scale"] < 1 for log in on)
    # without the trust region the measured KL is the proposed step's KL
    np.testing.assert_allclose([l["kl"] for l in off], [l["proposed_kl"] for l in off], rtol=1e-4, atol=1e-7)


def test_save_load_gives_same_actions(tmp_path):
    agent, _ = _run_bandit(_bandit_cfg(hidden=(16,)), updates=5, seed=3)
    states = np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)
    agent.save(tmp_path / "agent")
    loaded = SACAgent.load(tmp_path / "agent")
    np.testing.assert_array_equal(agent.act(states, True), loaded.act(states, True))
    # the sampling generator's state is restored too: same stochastic actions
    np.testing.assert_array_equal(agent.act(states), loaded.act(states))
    assert loaded.cfg == agent.cfg and int(loaded.updates.numpy()) == 5
    # a fresh agent with another seed acts differently (the comparison is not vacuous)
    other = SACAgent(2, 3, agent.cfg, seed=4)
    assert not np.allclose(other.act(states, True), agent.act(states, True))


def test_actions_in_unit_box_and_bad_config():
    agent = SACAgent(4, 5, SACConfig(hidden=(8,), action_low=0.0), seed=0)
    a = agent.act(np.random.default_rng(0).normal(size=(100, 4)) * 100)
    assert a.shape == (100, 5) and a.min() >= 0 and a.max() <= 1
    low = SACAgent(4, 5, SACConfig(hidden=(8,)), seed=0).act(np.random.default_rng(0).normal(size=(100, 4)) * 100)
    assert low.min() >= -1 and low.max() <= 1 and low.min() < 0  # the default range [-1, 1]
    with pytest.raises(ConfigError, match="kl_max"):
        SACConfig(kl_max=0)
    with pytest.raises(DataError, match="no saved SAC agent"):
        SACAgent.load("/nonexistent/agent")


def test_tensorboard_logger_writes_events(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb")
    logger.scalars({"kl": 0.1, "alpha": 0.2}, step=0, prefix="sac/")
    logger.flush()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    from tensorflow.core.util import event_pb2
    import tensorflow as tf

    values = {}
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(raw.numpy())
            for v in event.summary.value:
                assert v.metadata.plugin_data.plugin_name == "scalars"
                values[v.tag] = float(tf.make_ndarray(v.tensor))
    assert values == pytest.approx({"sac/kl": 0.1, "sac/alpha": 0.2})
