"""Save/load round trip, and the import of the authors' released weights: on Keras 2 SavedModels
of their layout built here (every user runs it), and on the real files when ../shared is present."""
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data.errors import ConfigError, DataError
from models.clusters import ClusterConfig, ClusterIndex
from models.io import find_authors_channel_dirs, import_authors_weights, load_any, load_clusters, load_model, save_model
from models.vae import VAEConfig, build_vae


def test_save_load_gives_identical_outputs(tmp_path):
    tf.random.set_seed(0)
    cfg = VAEConfig(latent_dim=8, shared_encoder=True, lambda_eq=0.5, conv_filters=(4, 8, 8, 8), dense_units=16)
    model = build_vae(cfg)
    x = np.random.default_rng(0).random((9, 16, 16, 3)).astype(np.float32)
    # Change BatchNorm statistics too (not only initial values).
    model.encoders[0].get_layer("encoder_bn").moving_mean.assign(np.arange(8, dtype=np.float32))
    bank = np.random.default_rng(1).normal(size=(100, 3, 8)).astype(np.float32)
    clusters = ClusterIndex.build(lambda: [bank], ClusterConfig(num_clusters=4, cap=30))
    save_model(model, tmp_path / "m", clusters=clusters)
    again = load_model(tmp_path / "m")
    assert again.cfg == cfg
    np.testing.assert_array_equal(again.denoise_patches(x).numpy(), model.denoise_patches(x).numpy())
    np.testing.assert_array_equal(load_clusters(tmp_path / "m").centres, clusters.centres)
    assert load_clusters(tmp_path) is None


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not a saved model"):
        load_model(tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        load_any(None, None)
    (tmp_path / "celeba_y_no" / "encoder").mkdir(parents=True)
    with pytest.raises(DataError, match="channel"):
        find_authors_channel_dirs(tmp_path)


@pytest.mark.parametrize("source", ["importer", "shipped"])
def test_importer_and_shipped_weights_reproduce_the_authors_savedmodels(shared_data, source):
    """Both the importer and the file shipped in the repository give the SavedModels' outputs."""
    base = shared_data / "weights" / "rse_rl_authors"
    _check_outputs(import_authors_weights(base) if source == "importer" else load_model("authors"), base, atol=1e-5)


def _authors_style_savedmodels(folder, latent: int, seed: int) -> None:
    """Keras 2 (tf_keras) SavedModels laid out like the authors' release: per channel
    `celeba_<c>_no/{encoder,transform,decoder}`, their layer order and activations (softplus
    log-variance head after the mean head `z`, ReLU at the end of T, 3 decoder outputs).
    Saving is the slow part, so the U and V folders are copies of Y's (the real-file test
    below checks that each channel lands in its own subspace)."""
    import tf_keras as k2

    k2.utils.set_random_seed(seed)
    for c in "y":
        x = k2.Input((16, 16, 1))
        h = x
        for filters, stride in zip((16, 32, 64, 72), (1, 2, 2, 1)):
            h = k2.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(h)
        h = k2.layers.BatchNormalization(epsilon=1e-3)(h)
        h = k2.layers.Dense(128, activation="relu")(k2.layers.Flatten()(h))
        encoder = k2.Model(x, [k2.layers.Dense(latent, name="z")(h), k2.layers.Dense(latent, activation="softplus")(h)])
        bn = encoder.layers[5]  # non-trivial statistics, so inference-mode BatchNorm is checked too
        bn.set_weights([w + np.random.default_rng(seed).uniform(0.5, 1.5, w.shape).astype(np.float32) for w in bn.get_weights()])
        t_in = k2.Input((latent,))
        t = t_in
        for _ in range(3):
            t = k2.layers.Dense(latent, activation="relu")(t)
        d_in = k2.Input((latent,))
        d = k2.layers.Reshape((4, 4, 256))(k2.layers.Dense(4 * 4 * 256, activation="relu")(d_in))
        for filters, stride in zip((72, 48, 32, 16), (1, 2, 1, 2)):
            d = k2.layers.Conv2DTranspose(filters, 3, strides=stride, padding="same", activation="relu")(d)
        d = k2.layers.Conv2DTranspose(3, 3, padding="same", activation="sigmoid")(d)
        for name, model in (("encoder", encoder), ("transform", k2.Model(t_in, t)), ("decoder", k2.Model(d_in, d))):
            model.save(str(folder / f"celeba_{c}_no" / name), save_format="tf")
    for c in "uv":
        shutil.copytree(folder / "celeba_y_no", folder / f"celeba_{c}_no")


def _reference_outputs(base, x):
    """What the SavedModels themselves compute (their serving signatures), per channel."""
    def call(path, value):
        sig = tf.saved_model.load(str(path)).signatures["serving_default"]
        (name,) = sig.structured_input_signature[1].keys()
        return sig(**{name: tf.constant(value)})

    for s, c in enumerate("yuv"):
        d = base / f"celeba_{c}_no"
        enc = call(d / "encoder", x[..., s:s + 1])
        (lv_key,) = [k for k in enc if k != "z"]  # the mean head is the layer named z
        (t_ref,) = call(d / "transform", enc["z"].numpy()).values()
        (out_ref,) = call(d / "decoder", t_ref.numpy()).values()
        yield s, enc["z"].numpy(), enc[lv_key].numpy(), t_ref.numpy(), out_ref.numpy()[..., 0]


def _check_import(base, atol):
    return _check_outputs(import_authors_weights(base), base, atol)


def _check_outputs(model, base, atol):
    x = np.random.default_rng(0).random((64, 16, 16, 3)).astype(np.float32)
    mean, logvar = model.encode(x)
    t = model.transform(mean)
    out = model.decode(t)
    for s, mean_ref, logvar_ref, t_ref, out_ref in _reference_outputs(base, x):
        np.testing.assert_allclose(mean[:, s].numpy(), mean_ref, atol=atol)
        np.testing.assert_allclose(logvar[:, s].numpy(), logvar_ref, atol=atol)
        np.testing.assert_allclose(t[:, s].numpy(), t_ref, atol=atol)
        np.testing.assert_allclose(out[..., s].numpy(), out_ref, atol=atol)
    return model


def test_importer_reproduces_authors_style_savedmodels(tmp_path):
    _authors_style_savedmodels(tmp_path, latent=8, seed=0)
    model = _check_import(tmp_path, atol=1e-5)
    assert model.cfg.latent_dim == 8 and model.cfg.decoder_out_channels == 3
    # a release whose layers do not fit the architecture is refused, naming the file
    shutil.rmtree(tmp_path / "celeba_u_no" / "transform")
    shutil.copytree(tmp_path / "celeba_u_no" / "decoder", tmp_path / "celeba_u_no" / "transform")
    with pytest.raises(DataError, match=r"celeba_u_no/transform: \d+ variables, expected 6"):
        import_authors_weights(tmp_path)


def test_shipped_authors_weights_load_by_name_and_denoise():
    """The weights in the repository load with no other file and denoise a photo they never saw."""
    from skimage import data as skdata

    from data.images import to_uint8
    from data.noise import add_noise, parse_noise
    from evaluation import psnr
    from models.io import SHIPPED_WEIGHTS, read_config
    from models.vae import denoise_image

    import cv2

    assert (SHIPPED_WEIGHTS["authors"] / "LICENSE").read_text().startswith("The RSE-RL authors'")
    model = load_model("authors")
    assert read_config("authors") == model.cfg and model.cfg.decoder_out_channels == 3
    clean = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    noisy = add_noise(clean, parse_noise("gaussian_var", 0.02), 0)
    out = to_uint8(denoise_image(model, noisy))
    assert psnr(clean, out) > psnr(clean, to_uint8(noisy)) + 4.0  # measured: 17.87 -> 23.57 dB


def test_unknown_name_or_folder_is_one_line_naming_the_flag(tmp_path):
    from models.io import resolve_model_dir

    with pytest.raises(DataError, match=r"^--init_from nonesuch: not a saved model .*shipped one \(authors\)"):
        resolve_model_dir("nonesuch", "--init_from")
