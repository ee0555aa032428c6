"""Save/load round trip, and the import of the authors' released weights."""
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
    model = import_authors_weights(base) if source == "importer" else load_model("authors")
    x = np.random.default_rng(0).random((64, 16, 16, 3)).astype(np.float32)
    mean, logvar = model.encode(x)
    t = model.transform(mean)
    out = model.decode(t)

    def call(path, value):
        sig = tf.saved_model.load(str(path)).signatures["serving_default"]
        (name,) = sig.structured_input_signature[1].keys()
        return sig(**{name: tf.constant(value)})

    for s, c in enumerate("yuv"):
        d = base / f"celeba_{c}_no"
        enc = call(d / "encoder", x[..., s:s + 1])
        (lv_key,) = [k for k in enc if k != "z"]
        np.testing.assert_allclose(mean[:, s].numpy(), enc["z"].numpy(), atol=1e-5)
        np.testing.assert_allclose(logvar[:, s].numpy(), enc[lv_key].numpy(), atol=1e-5)
        (t_ref,) = call(d / "transform", enc["z"].numpy()).values()
        np.testing.assert_allclose(t[:, s].numpy(), t_ref.numpy(), atol=1e-5)
        (out_ref,) = call(d / "decoder", t_ref.numpy()).values()
        np.testing.assert_allclose(out[..., s].numpy(), out_ref.numpy()[..., 0], atol=1e-5)


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
