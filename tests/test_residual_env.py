"""Residual-recovery environment: action mapping, reward bookkeeping, greedy inference without the clean image."""
import numpy as np
import pytest
import tensorflow as tf

from data.errors import DataError
from rl.envs.residual import ResidualRecoveryEnv, greedy_denoise


def test_actions_map_to_residuals_minus13_to_13_over_255():
    env = ResidualRecoveryEnv()
    assert env.num_actions == 27 and env.episode_length == 6
    np.testing.assert_allclose(env.residuals(np.array([0, 13, 26])).numpy(), np.array([-13, 0, 13]) / 255.0, rtol=1e-6)


def test_episode_rewards_sum_to_total_decrease_in_squared_error():
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(3, 9, 7, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    env = ResidualRecoveryEnv()
    state = env.reset(noisy, clean)
    total, done, steps = np.zeros_like(clean, dtype=np.float64), False, 0
    while not done:
        state, reward, done = env.step(rng.integers(0, 27, size=clean.shape))
        total += reward.numpy()
        steps += 1
    assert steps == 6
    decrease = 255.0 * ((clean.astype(np.float64) - noisy) ** 2 - (clean - state.numpy().astype(np.float64)) ** 2)
    np.testing.assert_allclose(total, decrease, atol=1e-4)


def test_step_moves_state_by_chosen_residual():
    env = ResidualRecoveryEnv(steps=2)
    clean = np.zeros((1, 2, 2, 1), np.float32)
    env.reset(clean + 0.5, clean)
    state, reward, done = env.step(np.full((1, 2, 2, 1), 20))  # +7/255
    np.testing.assert_allclose(state.numpy(), 0.5 + 7 / 255, rtol=1e-6)
    np.testing.assert_allclose(reward.numpy(), 255 * (0.25 - (0.5 + 7 / 255) ** 2), rtol=1e-5)
    assert not done and env.step(np.zeros((1, 2, 2, 1), np.int32))[2]


def test_transition_is_the_pure_form_of_step():
    rng = np.random.default_rng(3)
    clean = rng.uniform(size=(2, 5, 5, 1)).astype(np.float32)
    noisy = (clean + 0.1).astype(np.float32)
    actions = rng.integers(0, 27, size=clean.shape)
    env = ResidualRecoveryEnv()
    env.reset(noisy, clean)
    state, reward, _ = env.step(actions)
    state2, reward2 = env.transition(tf.constant(noisy), actions, tf.constant(clean))
    np.testing.assert_array_equal(state.numpy(), state2.numpy())
    np.testing.assert_array_equal(reward.numpy(), reward2.numpy())


def test_expert_targets_for_plus_20_are_13_then_7_then_zeros():
    env = ResidualRecoveryEnv()
    noisy = np.full((1, 1, 2, 1), 0.4, np.float32)
    target = noisy + np.array([20, -30], np.float32).reshape(1, 1, 2, 1) / 255
    residuals = env.expert_rollout(noisy, target).numpy()[:, 0, 0, :, 0] - 13
    assert residuals[:, 0].tolist() == [13, 7, 0, 0, 0, 0]
    assert residuals[:, 1].tolist() == [-13, -13, -4, 0, 0, 0]


def test_expert_action_rounds_to_the_nearest_step_and_clips():
    env = ResidualRecoveryEnv()
    image = np.zeros((1, 1, 4, 1), np.float32)
    target = np.array([2.4, -2.6, 100.0, -0.4], np.float32).reshape(1, 1, 4, 1) / 255
    assert (env.expert_actions(image, target).numpy().ravel() - 13).tolist() == [2, -3, 13, 0]


def test_step_before_reset_and_shape_mismatch_are_errors():
    env = ResidualRecoveryEnv()
    with pytest.raises(RuntimeError):
        env.step(np.zeros((1, 2, 2, 1), np.int32))
    with pytest.raises(DataError):
        env.reset(np.zeros((1, 3, 2, 1)), np.zeros((1, 2, 2, 1)))


def test_greedy_inference_is_deterministic_and_needs_only_the_noisy_image():
    def policy_logits(images):  # prefers residual +2/255 where the pixel is dark, -3/255 where bright
        plus2 = tf.one_hot(15, 27) * 5.0
        minus3 = tf.one_hot(10, 27) * 5.0
        dark = tf.cast(images < 0.5, tf.float32)[..., None]
        return dark * plus2 + (1 - dark) * minus3

    noisy = np.array([0.2, 0.9], np.float32).reshape(1, 1, 2, 1)
    out1 = greedy_denoise(policy_logits, noisy, steps=6).numpy()
    out2 = greedy_denoise(policy_logits, noisy, steps=6).numpy()
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_allclose(out1.ravel(), [0.2 + 12 / 255, 0.9 - 18 / 255], rtol=1e-6)
