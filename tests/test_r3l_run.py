"""rl.r3l: the warm start's targets, the run config's checks, the learning curve, checkpoint round trip."""
import numpy as np
import pytest
import tensorflow as tf

from data.errors import DataError
from rl.r3l import R3LRun, R3LRunConfig, network_checkpoint, random_batch, write_learning_curve
from tests.matconvnet import random_dncnn, write_matconvnet_dncnn


@pytest.fixture
def tiny_dncnn(tmp_path):
    """A DnCNN-shaped MatConvNet file (64 channels, as R3L's layers) whose last layer predicts noise 0.02."""
    convs = random_dncnn(width=64, scale=0.01)
    convs[-1] = (np.zeros_like(convs[-1][0]), np.array([0.02], np.float32))
    path = tmp_path / "dncnn.mat"
    write_matconvnet_dncnn(path, convs)
    return path


def test_dncnn_targets_never_read_the_clean_image(tiny_dncnn):
    run = R3LRun(R3LRunConfig(warm_start="dncnn", init_dncnn=str(tiny_dncnn), precision="float32"))
    noisy = np.random.default_rng(0).uniform(0.1, 0.9, (2, 16, 16, 1)).astype(np.float32)
    nan_clean = np.full_like(noisy, np.nan)
    target = run.warm_target(noisy, nan_clean)
    np.testing.assert_allclose(target, noisy - 0.02, atol=1e-6)  # DnCNN's estimate from the noisy image alone
    actions = run.env.expert_rollout(noisy, target).numpy()
    assert np.isfinite(actions).all() and actions[0].min() == 13 - 5 and actions[0].max() == 13 - 5  # -0.02*255 = -5.1
    assert run.dncnn_layers  # and the dilated layers were initialised from it


def test_oracle_targets_are_the_clean_image():
    run = R3LRun(R3LRunConfig(warm_start="oracle", precision="float32"))
    noisy, clean = np.zeros((1, 4, 4, 1), np.float32), np.ones((1, 4, 4, 1), np.float32)
    np.testing.assert_array_equal(run.warm_target(noisy, clean), clean)


def test_dncnn_warm_start_needs_its_weights():
    with pytest.raises(DataError, match="--warm_start dncnn needs --init_dncnn"):
        R3LRunConfig(warm_start="dncnn")
    with pytest.raises(DataError, match="--warm_start"):
        R3LRunConfig(warm_start="teacher")


def test_episode_counts_and_phases():
    cfg = R3LRunConfig(warm_start="oracle", warm_start_episodes=5, episodes=7)
    assert (cfg.warm_episodes, cfg.total_episodes) == (5, 12)
    none = R3LRunConfig(warm_start="none", warm_start_episodes=5, episodes=7)
    assert (none.warm_episodes, none.total_episodes) == (0, 7)


def test_training_writes_curve_and_warm_start_weights(tmp_path):
    """A tiny run: warm start then PPO, curve points at each phase end, warm weights kept apart."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 40, 1), dtype=np.uint8) for _ in range(3)]
    cfg = R3LRunConfig(warm_start="oracle", warm_start_episodes=2, episodes=2, batch_size=2, crop=16, eval_every=3)
    run = R3LRun(cfg)
    clean = images[0][None, :32, :32].astype(np.float32) / 255
    validation = (np.clip(clean + 0.1, 0, 1), clean)
    info = run.train(images, tmp_path, validation, progress=False)
    assert info["episodes_done"] == 4 and info["warm_start_episodes"] == 2
    assert [p["episode"] for p in info["curve"]] == [0, 2, 3, 4]
    assert [p["phase"] for p in info["curve"]] == ["warm start", "warm start", "R3L", "R3L"]
    assert all(np.isfinite(p["val_psnr"]) for p in info["curve"])
    assert "clone_loss" in info["curve"][1] and "clip_fraction" in info["curve"][3]
    assert (tmp_path / "warm_start_weights.npz").is_file() and list((tmp_path / "tensorboard").iterdir())
    warm = run.warm_start_denoiser()(validation[0]).numpy()
    final = run.denoiser()(validation[0]).numpy()
    assert warm.shape == final.shape == validation[0].shape
    write_learning_curve(tmp_path / "figures" / "curve.png", info["curve"], "r3l", noisy_psnr=20.0)
    assert (tmp_path / "figures" / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_random_batch_crops_from_the_images():
    images = [np.arange(30 * 30, dtype=np.uint8).reshape(30, 30, 1) % 251]
    batch = random_batch(images, 5, 8, np.random.default_rng(0))
    assert batch.shape == (5, 8, 8, 1) and batch.dtype == np.uint8
    flat = images[0][..., 0]
    for crop in batch[..., 0]:  # every crop is some flip/rotation of a window of the image
        variants = [np.rot90(c, k) for c in (crop, crop[:, ::-1]) for k in range(4)]
        assert any((flat[y:y + 8, x:x + 8] == v).all() for v in variants for y in range(23) for x in range(23))


def test_checkpoint_restores_network_weights(tmp_path):
    from models.r3l_net import R3LNet, R3LNetConfig

    def fresh():
        net = R3LNet(R3LNetConfig(width=4, policy_init="he")).build_for()
        optimizer = tf.keras.optimizers.Adam(1e-3)
        optimizer.build(net.trainable_variables)
        return net, optimizer

    saved, opt = fresh()
    path = network_checkpoint(saved, optimizer=opt).save(str(tmp_path / "ckpt"))
    stored = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    assert sum(k.startswith("weights/") for k in stored) == len(saved.weights)  # not only via the optimizer
    restored, opt2 = fresh()
    assert not np.array_equal(saved.weights[0].numpy(), restored.weights[0].numpy())
    network_checkpoint(restored, optimizer=opt2).restore(path).assert_existing_objects_matched()
    for a, b in zip(saved.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
