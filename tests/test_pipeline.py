"""Pipeline pieces below the CLI: the do-no-harm checks on the trained agent and on each recursion round,
and how rounds chain."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from data.celeba import write_tfrecords
from evaluation import batch_psnr
from pipeline import RunConfig
from pipeline.agent import check_agent
from pipeline.rounds import RoundModels, check_round
from pipeline.state import RunState
from pipeline.streams import AgentWindows, agent_pairs, agent_windows, round_input_pairs, vae_training_images
from rl.envs.latent_filter import LatentFilterEnv
from rl.inference import filter_images
from tests.test_latent_filter import _cfg, _crops, _noisy, _toy_model


class FullPull:
    """A stand-in agent that always pulls every latent all the way to its neighbours."""

    def act(self, states, deterministic=True):
        return np.ones((len(states), 3), np.float32)


class MustNotBeAsked:
    """An agent whose use fails the test: a resumed check must reuse its saved decision."""

    def act(self, states, deterministic=True):
        raise AssertionError("the agent check ran again instead of reusing its saved decision")


def _setup(tmp_path, bank_images):
    clean = _crops(6)
    noisy = _noisy(clean)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy, clean)))
    cfg = RunConfig(agent_check_images=4, agent_images=2, env=_cfg(action="knn"))
    env = LatentFilterEnv(_toy_model(bank_images(clean)), cfg.env)
    return cfg, data, env, RunState(tmp_path / "state.json"), noisy, clean


def test_agent_that_helps_on_held_out_pairs_is_kept(tmp_path):
    cfg, data, env, state, _, _ = _setup(tmp_path, lambda clean: clean)  # neighbours: the clean patches
    assert check_agent(cfg, data, 0, FullPull(), env.model, state)
    check = state.done["round0/agent_check"]
    assert check["kept"] and check["images"] == 4 and check["agent_psnr"] > check["vae_psnr"]


def test_agent_that_hurts_is_dropped_and_the_decision_survives_resume(tmp_path):
    cfg, data, env, state, noisy, clean = _setup(tmp_path, lambda clean: np.zeros_like(clean))  # neighbours: black patches
    assert not check_agent(cfg, data, 0, FullPull(), env.model, state)
    check = state.done["round0/agent_check"]
    held_out = slice(2, 6)  # the pairs after the agent's own two
    expected_vae = batch_psnr(clean[held_out], filter_images(noisy[held_out], None, env.model, env.cfg)).mean()
    np.testing.assert_allclose(check["vae_psnr"], expected_vae, rtol=1e-6)
    assert check["agent_psnr"] < check["vae_psnr"]
    # Resumed: the saved decision is reused, the agent is not run again.
    reopened = RunState.open(tmp_path, resume=True, config=state.config)
    assert not check_agent(cfg, data, 0, MustNotBeAsked(), env.model, reopened)


def test_check_off_or_a_single_training_pair_keeps_the_agent(tmp_path):
    cfg, data, env, state, noisy, clean = _setup(tmp_path, np.zeros_like)  # an agent that hurts
    assert check_agent(dataclasses.replace(cfg, agent_check_images=0), data, 0, FullPull(), env.model, state)
    one = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy[:1], clean[:1])))
    assert check_agent(cfg, one, 0, FullPull(), env.model, state)
    assert "round0/agent_check" not in state.done


def test_too_few_pairs_for_both_windows_are_split_in_the_same_ratio_and_still_checked(tmp_path):
    cfg, data, env, state, noisy, clean = _setup(tmp_path, np.zeros_like)  # 6 pairs, an agent that hurts
    small = dataclasses.replace(cfg, agent_images=8, agent_check_images=8)  # wants 16
    assert agent_windows(small, data, 0) == AgentWindows(train=3, check=3)
    assert agent_windows(dataclasses.replace(small, agent_check_images=2), data, 0) == AgentWindows(5, 1)
    assert agent_windows(cfg, data, 0) == AgentWindows(2, 4)  # enough pairs: the flags as given
    assert not check_agent(small, data, 0, FullPull(), env.model, state)  # checked, and dropped
    check = state.done["round0/agent_check"]
    expected_vae = batch_psnr(clean[3:], filter_images(noisy[3:], None, env.model, env.cfg)).mean()
    np.testing.assert_allclose(check["vae_psnr"], expected_vae, rtol=1e-6)
    assert check["images"] == 3


def test_round_r_inputs_are_round_r_minus_1_outputs(tmp_path):
    clean = _crops(5)
    noisy = _noisy(clean)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy, clean)))
    cfg = RunConfig(max_train_images=3, agent_images=2, out_dir=tmp_path)
    round0 = list(round_input_pairs(cfg, data, 0).as_numpy_iterator())
    assert len(round0) == 3  # --max_train_images caps round 0
    np.testing.assert_array_equal(round0[2][0], noisy[2])

    enhanced = np.clip(clean[:4] + 0.25, 0, 1)  # stands in for round 0's outputs, as enhance_training_set writes them
    u8 = lambda x: np.rint(x * 255).astype(np.uint8)
    write_tfrecords((np.concatenate([u8(e), u8(c)], -1) for e, c in zip(enhanced, clean[:4])),
                    tmp_path / "enhanced" / "round0", prefix="enhanced")
    inputs, targets = agent_pairs(cfg, data, 1)
    np.testing.assert_array_equal(inputs, u8(enhanced[:2]) / np.float32(255))
    np.testing.assert_array_equal(targets, u8(clean[:2]) / np.float32(255))
    held_out = agent_pairs(cfg, data, 1, skip=2, take=5)
    assert len(held_out[0]) == 2  # only what is left after the agent's own pairs
    assert agent_pairs(cfg, data, 1, skip=4) is None


def _write_round0_outputs(tmp_path, outputs, clean):
    u8 = lambda x: np.rint(x * 255).astype(np.uint8)  # noqa: E731
    write_tfrecords((np.concatenate([u8(e), u8(c)], -1) for e, c in zip(outputs, clean)),
                    tmp_path / "enhanced" / "round0", prefix="enhanced")


def _round(bank: np.ndarray, kept: bool = True) -> RoundModels:
    """A round that filters with the toy model and the full pull toward `bank`'s patches."""
    return RoundModels(None, None, FullPull(), _toy_model(bank), kept=kept)


def test_round_that_hurts_is_not_applied_and_the_decision_survives_resume(tmp_path):
    clean = _crops(6)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((_noisy(clean), clean)))
    cfg = RunConfig(agent_check_images=3, agent_images=2, env=_cfg(action="knn"), out_dir=tmp_path)
    round0_out = _noisy(clean, sigma=0.03, seed=5)
    _write_round0_outputs(tmp_path, round0_out, clean)
    state = RunState(tmp_path / "state.json")
    worse = _round(np.zeros_like(clean))  # pulls every patch to black
    assert not check_round(cfg, data, 1, worse, state)
    check = state.done["round1/round_check"]
    held_out = slice(2, 5)
    inputs = np.rint(round0_out[held_out] * 255) / 255
    np.testing.assert_allclose(check["input_psnr"], batch_psnr(clean[held_out], inputs).mean(), atol=0.02)
    assert check["output_psnr"] < check["input_psnr"] and check["images"] == 3
    worse.kept = False
    np.testing.assert_array_equal(worse.apply(inputs, cfg), inputs)  # not applied: its input passes through
    reopened = RunState.open(tmp_path, resume=True, config=state.config)
    assert not check_round(cfg, data, 1, RoundModels(None, None, MustNotBeAsked(), None), reopened)


def test_round_that_helps_is_kept(tmp_path):
    clean = _crops(6)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((_noisy(clean), clean)))
    cfg = RunConfig(agent_check_images=3, agent_images=2, env=_cfg(action="knn"), out_dir=tmp_path)
    _write_round0_outputs(tmp_path, _noisy(clean, sigma=0.05, seed=5), clean)
    state = RunState(tmp_path / "state.json")
    assert check_round(cfg, data, 1, _round(clean), state)  # pulls every patch to its clean neighbours
    check = state.done["round1/round_check"]
    assert check["kept"] and check["output_psnr"] > check["input_psnr"] + 3


def test_later_rounds_fine_tune_without_the_held_out_pairs(tmp_path):
    clean = _crops(6)
    noisy = _noisy(clean)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy, clean)))
    cfg = RunConfig(agent_check_images=2, agent_images=2, out_dir=tmp_path)
    marked = np.stack([np.full_like(c, i / 10) for i, c in enumerate(clean)])  # image i's output is the value i/10
    _write_round0_outputs(tmp_path, marked, clean)
    def inputs(cfg):
        return np.concatenate([x for x, _ in vae_training_images(cfg, data, 1).as_numpy_iterator()])

    outputs_only = inputs(cfg)  # the default: round 0's outputs minus the two held-out ones
    assert sorted(np.round(x.mean() * 10).astype(int) for x in outputs_only) == [0, 1, 4, 5]
    everything = inputs(dataclasses.replace(cfg, finetune_data="all"))  # and all noisy pairs before them
    assert len(everything) == 6 + 4
    np.testing.assert_array_equal(everything[:6], noisy)
    np.testing.assert_array_equal(everything[6:], outputs_only)


def test_agent_and_check_windows_do_not_depend_on_the_phase_seed():
    """Every phase sets TensorFlow's global seed; a shuffled training stream must still be cut into
    the same agent and held-out windows, so the check images never overlap the agent's."""
    clean = _crops(12)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((_noisy(clean), clean)).shuffle(12, seed=5))
    cfg = RunConfig(agent_images=4, agent_check_images=4, seed=0)
    windows = []
    for phase_seed in (1, 2, 3):
        tf.random.set_seed(phase_seed)
        train = agent_pairs(cfg, data, 0)[1]
        tf.random.set_seed(phase_seed + 10)
        check = agent_pairs(cfg, data, 0, skip=4, take=4)[1]
        windows.append((train, check))
    for train, check in windows[1:]:
        np.testing.assert_array_equal(train, windows[0][0])
        np.testing.assert_array_equal(check, windows[0][1])
    seen = {c.tobytes() for c in windows[0][0]}
    assert not any(c.tobytes() in seen for c in windows[0][1])


def test_round0_vae_stream_with_fresh_noise_and_shifts_changes_every_epoch():
    """--fresh_noise --augment_shift: each pass over round 0's VAE stream gives new noise and new
    moves of the same clean images (the targets stay the images, moved); without them every pass
    is the same."""
    from data.noise import parse_noise

    clean = _crops(4)
    noisy = _noisy(clean)
    data = SimpleNamespace(train_pairs=lambda: tf.data.Dataset.from_tensor_slices((noisy, clean)))
    plain = RunConfig(images_per_batch=2)
    one = [x for x, _ in vae_training_images(plain, data, 0).as_numpy_iterator()]
    two = [x for x, _ in vae_training_images(plain, data, 0).as_numpy_iterator()]
    np.testing.assert_array_equal(np.concatenate(one), noisy)
    np.testing.assert_array_equal(np.concatenate(two), noisy)

    cfg = dataclasses.replace(plain, fresh_noise=True, augment_shift=3, noise=parse_noise("gaussian_var", 0.01))
    stream = vae_training_images(cfg, data, 0)
    passes = [[np.concatenate(p) for p in zip(*stream.as_numpy_iterator())] for _ in range(2)]
    (noisy1, clean1), (noisy2, clean2) = passes
    assert not np.allclose(noisy1, noisy) and not np.allclose(noisy1, noisy2)
    residual = noisy1 - clean1  # the new noise sits on the moved clean image
    assert 0.05 < residual.std() < 0.15 and abs(residual.mean()) < 0.02
    assert not np.array_equal(clean1, clean2) or not np.array_equal(clean1, clean)  # moved at random
    for moved, image in zip(clean1, clean):  # each target is a shift (and maybe a mirror) of its image
        h, w = image.shape[:2]
        padded = np.pad(image, [(0, 3), (0, 3), (0, 0)], mode="reflect")
        assert any(np.array_equal(moved, c) for dy in range(4) for dx in range(4)
                   for c in (padded[dy:dy + h, dx:dx + w], padded[dy:dy + h, dx:dx + w][:, ::-1]))
