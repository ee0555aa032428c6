"""denoise.py end to end (subprocess), its one-line errors, outputs it refuses to overwrite,
and tiled == whole-image denoising."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import denoise

from data.images import read_image, write_image
from data.images import to_uint8
from models.io import load_model, save_model
from models.vae import VAEConfig, build_vae, denoise_image, inference_precision

ROOT = Path(__file__).resolve().parents[1]
TINY = VAEConfig(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16, deconv_filters=(8, 8, 8, 4))


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "denoise.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.slow  # a subprocess
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


@pytest.mark.slow  # a subprocess
def test_default_weights_are_the_shipped_ones_and_startup_is_quiet(tmp_path):
    """No weights flag: the authors' shipped VAEs; TensorFlow's C++ start-up lines are not shown."""
    clean = np.kron(np.random.default_rng(1).integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    write_image(tmp_path / "photo.png", clean)
    res = _run("--input", str(tmp_path / "photo.png"), "--output", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert read_image(tmp_path / "out" / "photo.png").shape == (32, 32, 3)
    assert "absl::InitializeLog" not in res.stderr and " port.cc:" not in res.stderr, res.stderr
    defaults = denoise.parse_args(["--input", "x", "--output", "y"])
    via_name = denoise_image(load_model("authors", precision=inference_precision(defaults.precision)), clean,
                             overlap=defaults.overlap)
    np.testing.assert_allclose(read_image(tmp_path / "out" / "photo.png"), to_uint8(via_name), atol=1)


@pytest.mark.slow  # a subprocess
def test_bad_input_exits_2_with_a_message(tmp_path):
    res = _run("--input", str(tmp_path / "missing.png"), "--output", str(tmp_path), "--model_dir", str(tmp_path))
    assert res.returncode == 2
    assert "error: --input" in res.stderr and "missing.png" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("overlap", [4, 8, 12])
def test_tiled_equals_whole_image(overlap):
    tf.random.set_seed(0)
    model = build_vae(TINY)
    img = np.random.default_rng(1).random((70, 95, 3)).astype(np.float32)
    whole = denoise_image(model, img, overlap=overlap, tile=10_000)
    tiled = denoise_image(model, img, overlap=overlap, tile=24)
    assert whole.shape == img.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_default_grid_beats_the_authors_grid_on_a_photo():
    """denoise.py's default overlap averages more decodings per pixel than the authors' 4; with the
    shipped weights that must pay on a real photo (bench/overlap.py measured +0.23 dB on the sample's)."""
    import cv2
    from skimage import data as skdata

    from data.noise import add_noise, parse_noise
    from evaluation import psnr

    clean = cv2.resize(skdata.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    noisy = add_noise(clean, parse_noise("gaussian_var", 0.02), 0)
    model = load_model("authors")
    default = denoise.parse_args(["--input", "x", "--output", "y"]).overlap
    authors_grid = psnr(clean, to_uint8(denoise_image(model, noisy, overlap=4)))
    assert psnr(clean, to_uint8(denoise_image(model, noisy, overlap=default))) > authors_grid + 0.1


@pytest.fixture
def model_and_photo(tmp_path):
    tf.random.set_seed(0)
    save_model(build_vae(TINY), tmp_path / "model")
    write_image(tmp_path / "in" / "a.png", np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return tmp_path / "model", tmp_path / "in"


def _main(capsys, *args):
    rc = denoise.main([str(a) for a in args])
    return rc, capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path, model_and_photo, capsys):
    model, inp = model_and_photo
    target = tmp_path / "out.png"  # one input image: --output may name the file
    assert _main(capsys, "--input", inp / "a.png", "--output", target, "--model_dir", model)[0] == 0
    first = target.read_bytes()
    target.write_bytes(b"mine")
    rc, err = _main(capsys, "--input", inp / "a.png", "--output", target, "--model_dir", model)
    assert rc == 2 and err.strip() == f"error: --output {target}: exists; add --overwrite to replace it"
    assert target.read_bytes() == b"mine"
    assert _main(capsys, "--input", inp / "a.png", "--output", target, "--model_dir", model, "--overwrite")[0] == 0
    assert target.read_bytes() == first
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o666 & ~umask  # the umask's mode, not mkstemp's 0600


@pytest.mark.parametrize("output,message", [
    ("/proc/denoised", "error: --output /proc/denoised: cannot be written"),
    ("/proc/x.png", "error: --output /proc/x.png: the folder /proc cannot be written"),
    ("{file}", "is a file; give a folder"),
])
def test_unwritable_or_file_output_is_one_line(tmp_path, model_and_photo, capsys, output, message):
    model, inp = model_and_photo
    write_image(inp / "b.png", np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "file").write_text("x")
    output = output.replace("{file}", str(tmp_path / "file"))
    single = output.endswith(".png")  # one input image: --output names the file
    rc, err = _main(capsys, "--input", inp / "a.png" if single else inp, "--output", output, "--model_dir", model)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_image_smaller_than_a_patch_names_the_file(tmp_path, model_and_photo, capsys):
    model, _ = model_and_photo
    write_image(tmp_path / "tiny.png", np.zeros((8, 30, 3), np.uint8))
    rc, err = _main(capsys, "--input", tmp_path / "tiny.png", "--output", tmp_path / "out", "--model_dir", model)
    assert rc == 2 and "tiny.png" in err and "smaller than one 16x16 patch" in err
    assert not (tmp_path / "out").exists()
