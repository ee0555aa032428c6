"""R3L/R3N networks and the DnCNN MatConvNet importer."""
import numpy as np
import pytest
import tensorflow as tf

from data.errors import DataError
from models.dncnn_import import R3L_FROM_DNCNN, init_from_dncnn, load_dncnn_mat
from models.r3l_net import R3LNet, R3LNetConfig, R3NNet
from rl.envs.residual import greedy_denoise
from tests.matconvnet import random_dncnn, write_matconvnet_dncnn

DNCNN = "weights/dncnn/dncnn_gray_sigma25.mat"


def test_r3l_net_is_fully_convolutional_with_per_pixel_heads():
    net = R3LNet(R3LNetConfig(width=8)).build_for()
    logits, values = net(tf.zeros([2, 13, 17, 1]))
    assert logits.shape == (2, 13, 17, 1, 27) and values.shape == (2, 13, 17, 1)
    names = net.named_convs()
    assert [names[f"conv{i}"].dilation_rate[0] for i in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert [names[f"pi{i}"].dilation_rate[0] for i in (5, 6, 7)] == [3, 2, 1]
    assert [names[f"v{i}"].dilation_rate[0] for i in (5, 6, 7)] == [3, 2, 1]
    np.testing.assert_allclose(net.policy_logits(tf.ones([1, 9, 9, 1])), net(tf.ones([1, 9, 9, 1]))[0], atol=1e-6)


def test_r3n_steps_are_bounded_residuals():
    net = R3NNet(R3LNetConfig(width=8), steps=6).build_for()
    x = tf.random.uniform([1, 10, 10, 1], seed=1)
    out = net(x)
    assert out.shape == x.shape
    assert float(tf.reduce_max(tf.abs(out - x))) <= 6 * 13 / 255 + 1e-6


def test_greedy_inference_with_a_network_is_deterministic():
    tf.keras.utils.set_random_seed(0)
    net = R3LNet(R3LNetConfig(width=8, policy_init="he")).build_for()
    noisy = np.random.default_rng(0).uniform(size=(1, 16, 16, 1)).astype(np.float32)
    a = greedy_denoise(net.policy_logits, noisy).numpy()
    np.testing.assert_array_equal(a, greedy_denoise(net.policy_logits, noisy).numpy())
    assert not np.array_equal(a, noisy)  # the untrained He-initialised policy does act


def test_noop_policy_init_starts_at_the_identity_with_an_ordinal_ramp():
    net = R3LNet(R3LNetConfig(width=8)).build_for()
    noisy = np.random.default_rng(0).uniform(size=(2, 12, 12, 1)).astype(np.float32)
    for rule in ("argmax", "mean"):
        np.testing.assert_array_equal(greedy_denoise(net.policy_logits, noisy, rule=rule).numpy(), noisy)
    logits = net.policy_logits(noisy).numpy()
    ramp = logits - np.where(np.arange(27) == 13, 2.0, 0.0)  # minus the no-op bias: (a - 13)/13 * z per pixel
    slope = ramp[..., 26:27] / 1.0
    np.testing.assert_allclose(ramp, slope * (np.arange(27) - 13) / 13, atol=1e-5)
    assert 0 < np.abs(slope).max() < 0.2  # small: the mean rule starts at the identity too
    probs = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(probs[..., 13], np.exp(2.0) / (np.exp(2.0) + 26), rtol=0.2)


def test_mixed_bfloat16_keeps_float32_variables_and_outputs_close_to_float32():
    noisy = np.random.default_rng(1).uniform(size=(2, 16, 16, 1)).astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    full = R3LNet(R3LNetConfig(width=16, policy_init="he")).build_for()
    mixed = R3LNet(R3LNetConfig(width=16, policy_init="he", precision="mixed_bfloat16")).build_for()
    mixed.set_weights(full.get_weights())
    assert all(v.dtype == "float32" for v in mixed.weights)
    (l32, v32), (l16, v16) = full(noisy), mixed(noisy)
    assert l16.dtype == tf.float32 and v16.dtype == tf.float32
    scale = float(tf.reduce_max(tf.abs(l32)))
    assert float(tf.reduce_max(tf.abs(l16 - l32))) < 0.05 * scale  # bfloat16 has 8 bits of mantissa
    assert float(tf.reduce_max(tf.abs(l16 - l32))) > 0  # and really is computed in bfloat16


def test_dncnn_import_maps_layers_to_the_right_shapes(shared_data):
    convs = load_dncnn_mat(shared_data / DNCNN)
    assert len(convs) == 17
    assert convs[0][0].shape == (3, 3, 1, 64) and convs[-1][0].shape == (3, 3, 64, 1)
    assert all(k.shape == (3, 3, 64, 64) and b.shape == (64,) for k, b in convs[1:-1])
    net = R3LNet().build_for()
    used = init_from_dncnn(net, shared_data / DNCNN)
    assert used == R3L_FROM_DNCNN
    named = net.named_convs()
    for name, index in used.items():
        np.testing.assert_array_equal(named[name].kernel.numpy(), convs[index - 1][0])
        np.testing.assert_array_equal(named[name].bias.numpy(), convs[index - 1][1])
    r3n = R3NNet().build_for()
    assert set(init_from_dncnn(r3n, shared_data / DNCNN)) == {"conv2", "conv3", "conv4", "pi5", "pi6"}


def test_dncnn_kernels_are_oriented_correctly(shared_data):
    """The imported 17 layers, run as DnCNN (residual output), must denoise: a wrong transpose would not."""
    from skimage import data

    convs = load_dncnn_mat(shared_data / DNCNN)
    clean = data.camera()[200:296, 200:296].astype(np.float32)[None, :, :, None] / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    x = tf.constant(noisy)
    for i, (k, b) in enumerate(convs):
        x = tf.nn.conv2d(x, k, 1, "SAME") + b
        x = tf.nn.relu(x) if i < len(convs) - 1 else x
    denoised = noisy - x.numpy()
    psnr = lambda a: 10 * np.log10(1 / np.mean((a - clean) ** 2))
    assert psnr(denoised) > psnr(noisy) + 6


def test_matconvnet_file_round_trips_through_the_importer(tmp_path):
    """A MatConvNet-layout file built here (no ../shared needed): kernels come back as written,
    the last layer's dropped singleton restored, and every R3L layer gets its mapped conv."""
    convs = random_dncnn(width=4)
    write_matconvnet_dncnn(tmp_path / "tiny.mat", convs)
    loaded = load_dncnn_mat(tmp_path / "tiny.mat")
    assert len(loaded) == 17 and loaded[-1][0].shape == (3, 3, 4, 1)
    for (k, b), (k2, b2) in zip(convs, loaded, strict=True):
        np.testing.assert_array_equal(k, k2)
        np.testing.assert_array_equal(b, b2)
    net = R3LNet(R3LNetConfig(width=4)).build_for()
    assert init_from_dncnn(net, tmp_path / "tiny.mat") == R3L_FROM_DNCNN
    named = net.named_convs()
    for name, index in R3L_FROM_DNCNN.items():
        np.testing.assert_array_equal(named[name].kernel.numpy(), convs[index - 1][0])


def test_dncnn_denoiser_subtracts_the_predicted_noise(tmp_path):
    """Known values: all kernels zero, last bias 0.1 -> the network predicts noise 0.1 everywhere."""
    from models.dncnn_import import dncnn_denoiser

    convs = [(np.zeros_like(k), np.zeros_like(b)) for k, b in random_dncnn(width=4)]
    convs[-1] = (convs[-1][0], np.array([0.1], np.float32))
    write_matconvnet_dncnn(tmp_path / "tiny.mat", convs)
    noisy = np.random.default_rng(0).uniform(size=(1, 9, 7, 1)).astype(np.float32)
    np.testing.assert_allclose(dncnn_denoiser(tmp_path / "tiny.mat")(noisy).numpy(), noisy - 0.1, atol=1e-6)


def test_a_file_that_is_not_a_dncnn_is_a_clear_error(tmp_path):
    from models.dncnn_import import dncnn_denoiser

    convs = random_dncnn(width=4)
    convs[5] = (convs[5][0][:, :, :3], convs[5][1])  # breaks the channel chain
    write_matconvnet_dncnn(tmp_path / "broken.mat", convs)
    with pytest.raises(DataError, match="broken.mat: conv 6"):
        dncnn_denoiser(tmp_path / "broken.mat")


def test_dncnn_import_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dncnn_mat(tmp_path / "missing.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="bad.mat"):
        load_dncnn_mat(bad)
