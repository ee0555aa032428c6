"""--precision mixed_bfloat16: layers compute in bfloat16, variables, outputs, losses and KL stay
float32, and PSNR matches float32 within 0.05 dB."""
import cv2
import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from data.errors import ConfigError
from data.images import to_uint8
from data.noise import add_noise, parse_noise
from evaluation import psnr
from models.io import load_model, with_precision
from models.training import TrainConfig, train_vae
from models.vae import VAEConfig, build_vae, denoise_image

TINY = dict(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16, deconv_filters=(8, 8, 8, 4))


def _photo(size: int = 64):
    clean = cv2.resize(skdata.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return clean, add_noise(clean, parse_noise("gaussian_var", 0.02), 0)


def test_mixed_model_keeps_float32_variables_and_outputs():
    tf.random.set_seed(0)
    model = build_vae(VAEConfig(**TINY, precision="mixed_bfloat16"))
    assert model.decoders[0].layers[-1].compute_dtype == "bfloat16"
    assert {v.dtype for v in model.weights} == {"float32"}
    x = np.random.default_rng(0).random((5, 16, 16, 3)).astype(np.float32)
    mean, logvar = model.encode(x)
    assert mean.dtype == logvar.dtype == model.decode(mean).dtype == tf.float32
    terms = model.losses_per_patch(x, x, g_index=tf.constant(3))
    assert all(t.dtype == tf.float32 for t in terms.values())


def test_mixed_training_runs_and_keeps_float32_variables(tmp_path):
    tf.random.set_seed(0)
    model = build_vae(VAEConfig(**TINY, precision="mixed_bfloat16"))
    clean = np.random.default_rng(0).random((4, 40, 40, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((clean, clean)).batch(2)
    history = train_vae(model, data, TrainConfig(epochs=1, batch_size=16, progress=False), tmp_path)
    assert np.isfinite(history["total"][0])
    assert {v.dtype for v in model.weights} == {"float32"}


def test_tiny_model_psnr_matches_float32_within_0_05_db():
    tf.random.set_seed(1)
    model = build_vae(VAEConfig(**TINY))
    clean, noisy = _photo()
    ref = psnr(clean, to_uint8(denoise_image(model, noisy)))
    mixed = psnr(clean, to_uint8(denoise_image(with_precision(model, "mixed_bfloat16"), noisy)))
    assert abs(mixed - ref) < 0.05


def test_trained_weights_psnr_matches_float32_within_0_05_db():
    """The authors' shipped (trained) VAEs: bfloat16 compute loses no measurable PSNR."""
    clean, noisy = _photo(128)
    ref = psnr(clean, to_uint8(denoise_image(load_model("authors"), noisy)))
    mixed = psnr(clean, to_uint8(denoise_image(load_model("authors", precision="mixed_bfloat16"), noisy)))
    assert ref > psnr(clean, to_uint8(noisy)) + 2  # a real denoiser, so the comparison means something
    assert abs(mixed - ref) < 0.05


def test_unknown_precision_names_the_flag():
    with pytest.raises(ConfigError, match="^--precision: 'float16' is not one of float32, mixed_bfloat16"):
        VAEConfig(precision="float16")


def test_native_bfloat16_is_read_from_the_cpu_flags():
    from models.vae import native_bfloat16_cpu

    assert native_bfloat16_cpu("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 fma\n")
    assert native_bfloat16_cpu("flags\t: fpu amx_bf16 amx_tile\n")
    assert not native_bfloat16_cpu("flags\t: fpu avx2 avx512f avx512_vnni\n")  # bf16 would be emulated
    assert not native_bfloat16_cpu("model name\t: avx512_bf16 in a name, not a flag\n")
    assert not native_bfloat16_cpu("")


def test_auto_precision_picks_bfloat16_only_on_a_native_cpu(monkeypatch):
    import models.vae as vae

    assert vae.inference_precision("float32") == "float32"
    assert vae.inference_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(vae.tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(vae, "native_bfloat16_cpu", lambda: True)
    assert vae.inference_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(vae, "native_bfloat16_cpu", lambda: False)
    assert vae.inference_precision("auto") == "float32"
    monkeypatch.setattr(vae, "native_bfloat16_cpu", lambda: True)
    monkeypatch.setattr(vae.tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert vae.inference_precision("auto") == "float32"  # GPUs: not measured, float32
