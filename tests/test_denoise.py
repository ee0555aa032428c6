"""denoise.py end to end (subprocess), its error exit, and tiled == whole-image denoising."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from data.images import read_image, write_image
from models.io import save_model
from models.vae import VAEConfig, build_vae, denoise_image

ROOT = Path(__file__).resolve().parents[1]
TINY = VAEConfig(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16, deconv_filters=(8, 8, 8, 4))


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "denoise.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_denoise_folder_end_to_end(tmp_path):
    tf.random.set_seed(0)
    save_model(build_vae(TINY), tmp_path / "model")
    rng = np.random.default_rng(0)
    inp = tmp_path / "in"
    write_image(inp / "a.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    write_image(inp / "b.jpg", rng.integers(0, 256, (33, 20, 3), dtype=np.uint8))
    write_image(inp / "grey.png", rng.integers(0, 256, (24, 24, 1), dtype=np.uint8))
    res = _run("--input", str(inp), "--output", str(tmp_path / "out"), "--model_dir", str(tmp_path / "model"))
    assert res.returncode == 0, res.stderr
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["a.png", "b.png", "grey.png"]
    assert read_image(tmp_path / "out" / "a.png").shape == (40, 50, 3)
    assert read_image(tmp_path / "out" / "b.png").shape == (33, 20, 3)
    assert read_image(tmp_path / "out" / "grey.png").shape == (24, 24, 1)


def test_bad_input_exits_2_with_a_message(tmp_path):
    res = _run("--input", str(tmp_path / "missing.png"), "--output", str(tmp_path), "--model_dir", str(tmp_path))
    assert res.returncode == 2
    assert "error: --input" in res.stderr and "missing.png" in res.stderr and "Traceback" not in res.stderr


def test_tiled_equals_whole_image():
    tf.random.set_seed(0)
    model = build_vae(TINY)
    img = np.random.default_rng(1).random((70, 95, 3)).astype(np.float32)
    whole = denoise_image(model, img, tile=10_000)
    tiled = denoise_image(model, img, tile=24)
    assert whole.shape == img.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
