"""PPO-clip: the surrogate and GAE against independent computations, and learning on tiny data."""
import numpy as np
import pytest
import tensorflow as tf

from models.r3l_net import R3LNet, R3LNetConfig
from rl.envs.residual import ResidualRecoveryEnv, greedy_denoise
from rl.ppo import PPO, PPOConfig, RolloutBuffer, clipped_surrogate_loss, compute_gae, deterministic_actions, episode_gae


def test_clipped_surrogate_matches_hand_computed_example():
    ratios = np.array([2.0, 0.25, 1.2, 0.4])
    advantages = np.array([1.0, 1.0, -1.0, -1.0])
    logp_old = np.log(np.array([0.1, 0.4, 0.5, 0.5]))
    logp_new = logp_old + np.log(ratios)
    # eps = 0.5: min(2*1, 1.5*1)=1.5; min(0.25, 0.5)=0.25; min(-1.2, -1.2)=-1.2; min(-0.4, -0.5)=-0.5
    expected = -(1.5 + 0.25 - 1.2 - 0.5) / 4
    loss = clipped_surrogate_loss(tf.constant(logp_new, tf.float32), tf.constant(logp_old, tf.float32),
                                  tf.constant(advantages, tf.float32), 0.5)
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def _direct_gae(rewards, values, dones, last_values, gamma, lam):
    """A_t = sum_k (gamma*lam)^k delta_{t+k}, stopping at the end of the episode: explicit double loop."""
    T = len(rewards)
    nxt = [values[t + 1] if t + 1 < T else last_values for t in range(T)]
    deltas = [rewards[t] + gamma * (0.0 if dones[t] else 1.0) * nxt[t] - values[t] for t in range(T)]
    adv = []
    for t in range(T):
        total, factor = np.zeros_like(values[0]), 1.0
        for k in range(t, T):
            total = total + factor * deltas[k]
            if dones[k]:
                break
            factor *= gamma * lam
        adv.append(total)
    return np.stack(adv)


@pytest.mark.parametrize("lam", [1.0, 0.9])
def test_gae_matches_direct_computation(lam):
    rng = np.random.default_rng(0)
    T, shape = 6, (2, 3, 3, 1)
    rewards = rng.normal(size=(T, *shape)).astype(np.float32)
    values = rng.normal(size=(T, *shape)).astype(np.float32)
    last = rng.normal(size=shape).astype(np.float32)
    dones = np.array([False, False, True, False, False, False])  # an episode boundary mid-rollout, bootstrap at the end
    adv, ret = compute_gae(rewards, values, dones, last, 0.95, lam)
    np.testing.assert_allclose(adv, _direct_gae(rewards, values, dones, last, 0.95, lam), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, adv + values, rtol=1e-6)


def test_gae_lambda_one_gives_discounted_returns():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(4, 5)).astype(np.float32)
    values = rng.normal(size=(4, 5)).astype(np.float32)
    dones = np.array([False, False, False, True])
    _, ret = compute_gae(rewards, values, dones, np.zeros(5, np.float32), 0.9, 1.0)
    expected = [sum(0.9 ** (k - t) * rewards[k] for k in range(t, 4)) for t in range(4)]
    np.testing.assert_allclose(ret, np.stack(expected), rtol=1e-5, atol=1e-5)


def test_episode_gae_in_tensorflow_matches_the_host_version():
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(6, 2, 3)).astype(np.float32)
    values = rng.normal(size=(6, 2, 3)).astype(np.float32)
    dones = np.array([False] * 5 + [True])
    for lam in (1.0, 0.8):
        adv, ret = episode_gae(tf.constant(rewards), tf.constant(values), 0.95, lam)
        ref_adv, ref_ret = compute_gae(rewards, values, dones, np.zeros((2, 3), np.float32), 0.95, lam)
        np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret.numpy(), ref_ret, rtol=1e-5, atol=1e-5)


def test_deterministic_actions_argmax_and_mean():
    logits = np.log(np.array([[0.5, 0.0, 0.5], [0.1, 0.7, 0.2], [0.0, 0.3, 0.7]]) + 1e-12).astype(np.float32)
    assert deterministic_actions(logits, "argmax").numpy().tolist() == [0, 1, 2]
    assert deterministic_actions(logits, "mean").numpy().tolist() == [1, 1, 2]  # means 1.0, 1.1, 1.7


def _ppo(steps=3, seed=0, policy_init="he", **cfg):
    tf.keras.utils.set_random_seed(seed)
    net = R3LNet(R3LNetConfig(width=8, policy_init=policy_init)).build_for()
    return PPO(net, ResidualRecoveryEnv(steps=steps), PPOConfig(**cfg), seed=seed)


def _pair(shape=(3, 10, 10, 1), seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.2, 0.8, size=shape).astype(np.float32)
    return (clean + rng.normal(0, 0.08, shape)).astype(np.float32), clean


def test_rollout_buffer_is_reused_and_filled():
    ppo = _ppo(update_passes=1)
    clean = np.full((2, 8, 8, 1), 0.5, np.float32)
    buf = ppo.collect_eager(clean + 0.05, clean)
    assert buf.length == 3 and buf.dones.tolist() == [False, False, True]
    assert buf.actions.shape == (3, 2, 8, 8, 1) and buf.actions.min() >= 0 and buf.actions.max() < 27
    np.testing.assert_allclose(buf.states[0], clean + 0.05)
    assert ppo.collect_eager(clean + 0.05, clean) is buf  # preallocated once


def test_compiled_and_eager_rollouts_give_the_same_actions_and_returns():
    noisy, clean = _pair()
    compiled = _ppo(steps=4).collect(noisy, clean)
    eager = _ppo(steps=4).collect_eager(noisy, clean)  # same seed: same network, same sampling stream
    np.testing.assert_array_equal(compiled.actions.numpy(), eager.actions)
    np.testing.assert_allclose(compiled.rewards.numpy(), eager.rewards, atol=1e-5)
    np.testing.assert_allclose(compiled.rewards.numpy().sum(0), eager.rewards.sum(0), atol=1e-5)
    np.testing.assert_allclose(compiled.states.numpy(), eager.states, atol=1e-6)


def test_compiled_episode_trains_like_the_eager_path():
    noisy, clean = _pair()
    a, b = _ppo(update_passes=3, minibatches=2), _ppo(update_passes=3, minibatches=2)
    for _ in range(2):
        sa, sb = a.train_episode(noisy, clean), b.train_episode_eager(noisy, clean)
        assert sa == pytest.approx(sb, rel=1e-4, abs=1e-5)
    for wa, wb in zip(a.network.weights, b.network.weights, strict=True):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), atol=1e-5)


def test_short_cloning_warm_start_moves_the_policy_toward_its_target():
    """Tiny data: clean constant patches, noisy = clean + 9/255 offset + mild noise; target = clean."""
    rng = np.random.default_rng(0)
    ppo = _ppo(steps=2, policy_init="noop", clone_learning_rate=3e-3)

    def batch():
        clean = rng.uniform(0.2, 0.8, size=(8, 1, 1, 1)) * np.ones((8, 12, 12, 1))
        noisy = clean + 9 / 255 + rng.normal(0, 2 / 255, clean.shape)
        return noisy.astype(np.float32), clean.astype(np.float32)

    noisy, clean = batch()
    stats = []
    for _ in range(30):
        n, c = batch()
        stats.append(ppo.clone_episode(n, c, c))
    assert stats[-1]["expert_agreement"] > stats[0]["expert_agreement"]
    out = greedy_denoise(ppo.network.policy_logits, noisy, steps=2, rule="mean").numpy()  # the default rule
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


def test_decaying_warm_start_rate_stops_moving_the_weights_after_its_episodes():
    """clone_decay_episodes N: the rate reaches 0 after N clone updates; a constant rate keeps moving."""
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (4, 10, 10, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.05, clean.shape)).astype(np.float32)

    def change_in_fourth_episode(decay: int) -> float:
        ppo = _ppo(steps=2, clone_learning_rate=3e-3, clone_decay_episodes=decay)
        for _ in range(3):
            ppo.clone_episode(noisy, clean, clean)
        before = [w.numpy() for w in ppo.network.trainable_weights]
        ppo.clone_episode(noisy, clean, clean)
        return max(float(np.max(np.abs(w.numpy() - b))) for w, b in zip(ppo.network.trainable_weights, before))

    assert change_in_fourth_episode(3) == 0.0
    assert change_in_fourth_episode(0) > 1e-6


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_short_ppo_run_raises_psnr_above_noisy_input():
    """Tiny data: noise is a +8/255 offset plus mild Gaussian noise; the agent must learn to remove it."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    net = R3LNet(R3LNetConfig(width=16, policy_init="he")).build_for()
    ppo = PPO(net, ResidualRecoveryEnv(steps=2), PPOConfig(update_passes=4, total_episodes=40, learning_rate=3e-3), seed=0)

    def batch():
        clean = rng.uniform(0.2, 0.8, size=(8, 1, 1, 1)) * np.ones((8, 12, 12, 1))
        noisy = clean + 8 / 255 + rng.normal(0, 2 / 255, clean.shape)
        return noisy.astype(np.float32), clean.astype(np.float32)

    noisy, clean = batch()
    returns = [ppo.train_episode(*batch())["episode_return"] for _ in range(40)]
    after = _psnr(greedy_denoise(net.policy_logits, noisy, steps=2).numpy(), clean)
    assert np.mean(returns[-5:]) > np.mean(returns[:5])
    assert after > _psnr(noisy, clean) + 1.0, (after, _psnr(noisy, clean))


_MIRRORED = """
import sys, json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from models.r3l_net import R3LNet, R3LNetConfig
from rl.envs.residual import ResidualRecoveryEnv
from rl.ppo import PPO, PPOConfig

def train(strategy):
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        net = R3LNet(R3LNetConfig(width=8, policy_init="he")).build_for()
    ppo = PPO(net, ResidualRecoveryEnv(steps=3), PPOConfig(update_passes=2, minibatches=2), seed=0, strategy=strategy)
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (4, 10, 10, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.08, clean.shape)).astype(np.float32)
    stats = [ppo.clone_episode(noisy, clean, clean), ppo.train_episode(noisy, clean), ppo.train_episode(noisy, clean)]
    return [w.numpy() for w in net.weights], stats, strategy.num_replicas_in_sync

single = train(tf.distribute.get_strategy())
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
mirrored = train(tf.distribute.MirroredStrategy(devices))
diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single[0], mirrored[0]))
print(json.dumps({"diff": diff, "replicas": mirrored[2], "single": single[1], "mirrored": mirrored[1]}))
"""


def test_mirrored_strategy_on_two_cpu_devices_matches_one_device():
    """Warm start + PPO under MirroredStrategy (two logical CPUs, in a subprocess) = one device to 1e-5."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _MIRRORED], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["diff"] < 1e-5, result
    for a, b in zip(result["single"], result["mirrored"]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
