"""PPO-clip: the surrogate and GAE against independent computations, and learning on tiny data."""
import numpy as np
import pytest
import tensorflow as tf

from models.r3l_net import R3LNet, R3LNetConfig
from rl.envs.residual import ResidualRecoveryEnv, greedy_denoise
from rl.ppo import PPO, PPOConfig, RolloutBuffer, clipped_surrogate_loss, compute_gae


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


def test_rollout_buffer_is_reused_and_filled():
    net = R3LNet(R3LNetConfig(width=8)).build_for()
    ppo = PPO(net, PPOConfig(update_passes=1), seed=0)
    env = ResidualRecoveryEnv(steps=3)
    clean = np.full((2, 8, 8, 1), 0.5, np.float32)
    buf = ppo.collect(env, clean, clean + 0.05)
    assert buf.length == 3 and buf.dones.tolist() == [False, False, True]
    assert buf.actions.shape == (3, 2, 8, 8, 1) and buf.actions.min() >= 0 and buf.actions.max() < 27
    np.testing.assert_allclose(buf.states[0], clean + 0.05)
    assert ppo.collect(env, clean, clean + 0.05) is buf  # preallocated once


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_short_ppo_run_raises_psnr_above_noisy_input():
    """Tiny data: noise is a +8/255 offset plus mild Gaussian noise; the agent must learn to remove it."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    net = R3LNet(R3LNetConfig(width=16)).build_for()
    ppo = PPO(net, PPOConfig(update_passes=4, total_episodes=40, learning_rate=3e-3), seed=0)
    env = ResidualRecoveryEnv(steps=2)

    def batch():
        clean = rng.uniform(0.2, 0.8, size=(8, 1, 1, 1)) * np.ones((8, 12, 12, 1))
        noisy = clean + 8 / 255 + rng.normal(0, 2 / 255, clean.shape)
        return clean.astype(np.float32), noisy.astype(np.float32)

    clean, noisy = batch()
    before = _psnr(greedy_denoise(net.policy_logits, noisy, steps=2).numpy(), clean)
    returns = [ppo.train_episode(env, *batch())["episode_return"] for _ in range(40)]
    after = _psnr(greedy_denoise(net.policy_logits, noisy, steps=2).numpy(), clean)
    assert np.mean(returns[-5:]) > np.mean(returns[:5])
    assert after > _psnr(noisy, clean) + 1.0, (before, after, _psnr(noisy, clean))
