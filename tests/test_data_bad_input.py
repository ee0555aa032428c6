"""Bad input at the data layer: one line naming the file or flag, exit status 2, nothing trained."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from data.celeba import write_tfrecords
from data.errors import DataError
from data.images import ImageConversionWarning, read_image, write_image
from data.noise import parse_noise

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", RSE_RL_CACHE=str(cache))
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def _assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in error_lines[0]


def _truncated_shard_folder(folder: Path) -> Path:
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    shards = write_tfrecords(images, folder, prefix="train", images_per_shard=3)
    victim = shards[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 1000])  # cut inside the last record
    return victim


def test_truncated_training_shard_is_named_before_training(tmp_path):
    from data.pairs import tfrecord_train_pairs

    victim = _truncated_shard_folder(tmp_path / "train")
    with pytest.raises(DataError, match=f"{victim.name}: truncated TFRecord"):
        tfrecord_train_pairs(tmp_path / "train", parse_noise("sigma", 25), 0)
    write_tfrecords(np.zeros((2, 32, 32, 3), np.uint8), tmp_path / "test", prefix="validation")
    out = tmp_path / "out"
    result = _run("experiment_celeba.py", "--train_files_path", str(tmp_path / "train"),
                  "--test_files_path", str(tmp_path / "test"), "--out_dir", str(out), cache=tmp_path / "cache")
    _assert_clean_error(result, victim.name, "truncated")
    assert not (out / "model" / "round0").exists()


def _tiny_sidd_folders(root: Path) -> None:
    rng = np.random.default_rng(0)
    for sub in ("noisy", "gt"):
        write_image(root / sub / "pair01.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))


def test_mat_with_another_key_is_refused_naming_the_file_and_the_flag(tmp_path):
    _tiny_sidd_folders(tmp_path / "train")
    blocks = np.random.default_rng(1).integers(0, 256, (2, 2, 16, 16, 3), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "noisy.mat", {"noisyBlocks": blocks})
    scipy.io.savemat(tmp_path / "gt.mat", {"ValidationGtBlocksSrgb": blocks})
    common = ["--train_files_path", str(tmp_path / "train" / "noisy"), "--validation_file_path", str(tmp_path / "train" / "gt"),
              "--test_files_path", str(tmp_path / "noisy.mat"), "--test_validation_files_path", str(tmp_path / "gt.mat"),
              "--out_dir", str(tmp_path / "out")]
    result = _run("experiment_sidd_denoise.py", *common, cache=tmp_path / "cache")
    _assert_clean_error(result, "noisy.mat", "`ValidationNoisyBlocksSrgb`", "--mat_key noisyBlocks")
    result = _run("experiment_sidd_denoise.py", *common, "--mat_key", "a,b,c,d", cache=tmp_path / "cache")
    _assert_clean_error(result, "--mat_key")
    assert not (tmp_path / "out" / "model" / "round0").exists()


def test_mat_key_flag_names_the_arrays():
    from experiment_sidd_denoise import mat_keys

    assert mat_keys(None) == (None, None, None)
    assert mat_keys("blocks") == ("blocks", "blocks", "blocks")
    assert mat_keys("n,g") == ("n", "g", None)
    assert mat_keys("n,g,b") == ("n", "g", "b")
    with pytest.raises(DataError, match="--mat_key"):
        mat_keys("n,,b")


def test_test_images_too_small_or_mismatched_are_named_up_front(tmp_path):
    from data.pairs import folder_test_set

    _tiny_sidd_folders(tmp_path)
    write_image(tmp_path / "noisy" / "tiny.png", np.zeros((10, 40, 3), np.uint8))
    write_image(tmp_path / "gt" / "tiny.png", np.zeros((10, 40, 3), np.uint8))
    with pytest.raises(DataError, match=r"noisy/tiny.png: image is 40x10, smaller than one 16x16 patch"):
        folder_test_set(tmp_path / "gt", parse_noise("none"), 0, noisy_dir=tmp_path / "noisy", min_size=16)
    write_image(tmp_path / "gt" / "tiny.png", np.zeros((12, 40, 3), np.uint8))
    with pytest.raises(DataError, match=r"noisy/tiny.png: size 40x10 differs from its ground truth .*gt/tiny.png 40x12"):
        folder_test_set(tmp_path / "gt", parse_noise("none"), 0, noisy_dir=tmp_path / "noisy")


def test_denoise_names_an_image_smaller_than_one_patch(tmp_path):
    from models.io import save_model
    from models.vae import VAEConfig, build_vae

    save_model(build_vae(VAEConfig(latent_dim=8, conv_filters=(4, 8, 8, 8), dense_units=16, decoder_channels=16,
                                   deconv_filters=(8, 8, 8, 4))), tmp_path / "model")
    write_image(tmp_path / "in" / "small.png", np.zeros((8, 30, 3), np.uint8))
    result = _run("denoise.py", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                  "--model_dir", str(tmp_path / "model"), cache=tmp_path / "cache")
    _assert_clean_error(result, "small.png", "smaller than one 16x16 patch")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_16_bit_and_rgba_inputs_are_converted_with_a_warning_naming_the_file(tmp_path):
    deep = (np.arange(24 * 24 * 3, dtype=np.uint16).reshape(24, 24, 3) * 37)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    rgba = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    with pytest.warns(ImageConversionWarning, match="deep.png: 16-bit image, scaled to 8 bits"):
        image = read_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(image, np.rint(deep[..., ::-1] / 257.0).astype(np.uint8))
    with pytest.warns(ImageConversionWarning, match="alpha.png: RGBA image, alpha channel dropped"):
        image = read_image(tmp_path / "alpha.png")
    np.testing.assert_array_equal(image, rgba[..., 2::-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / "plain.png", rgba[..., :3])
        read_image(tmp_path / "plain.png")  # an 8-bit RGB file: no warning
