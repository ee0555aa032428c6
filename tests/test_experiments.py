"""End-to-end runs of the RSE-RL experiment scripts: the authors' command lines on tiny
generated data, the embedded-sample smoke run, interrupt + resume, and bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.celeba import write_tfrecords
from data.images import write_image

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--agent_episodes", "2", "--agent_images", "2", "--updates_per_step", "2", "--cluster_images", "4",
        "--baselines", "tv", "--batch_size", "64", "--images_per_batch", "4",
        # one held-out pair: round 1 fine-tunes on round 0's outputs minus the held-out ones, and these
        # tiny sets must keep a full batch of patches
        "--agent_check_images", "1"]
# The smoke run at heavy noise (sigma 50): a minute of VAE training already gives output
# structurally closer to the clean image than the input (SSIM); beating the input in PSNR
# takes minutes of training (README, "Results").
# --batch_size 64: TensorFlow's CPU kernels give bit-identical training in separate processes
# only below ~256 rows per batch (measured: the VAE's decoder sees 2x the batch with the D4 loss
# on, and at 256 rows two fresh processes drift apart after a few steps). At 64 the whole
# pipeline is bit-reproducible across processes, so resuming can be checked exactly.
SMOKE = ["--smoke", "--noise", "sigma", "--noise_level", "50", "--baselines", "tv", "--batch_size", "64"]
RESULT_KEYS = {"stages", "per_image", "timings", "config", "configs", "data", "environment"}
pytestmark = pytest.mark.slow  # every test here runs an experiment script as a subprocess


def run_script(script: str, *args: str, env_extra: dict | None = None, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    if cache is not None:
        env["RSE_RL_CACHE"] = str(cache)
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=900)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """Blurry random colour images: something a VAE can learn in one epoch."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.uint8)
    return np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) for img in small])


def stage_rows(out_dir: Path) -> list[dict]:
    return json.loads((out_dir / "results.json").read_text())["stages"]


def check_results(out_dir: Path, stages: list[str]) -> dict:
    results = json.loads((out_dir / "results.json").read_text())
    assert RESULT_KEYS <= set(results)
    names = [row["stage"] for row in results["stages"]]
    for stage in stages:
        assert stage in names
    for row in results["stages"]:
        assert {"psnr", "ssim", "uqi", "eq_error", "seconds_per_image"} <= set(row)
    assert results["per_image"] and {"image", "stage", "psnr", "ssim", "uqi"} <= set(results["per_image"][0])
    assert results["environment"]["packages"]["tensorflow"]
    assert (out_dir / "results.csv").read_text().startswith("image,stage,psnr,ssim,uqi")
    for figure in ("grid.png", "psnr_per_stage.png", "round_difference.png"):
        assert (out_dir / "figures" / figure).stat().st_size > 0
    return results


def test_celeba_seed_command_line_on_tiny_tfrecords(tmp_path):
    write_tfrecords(smooth_images(6, 48, 0), tmp_path / "celeba_train", prefix="train", images_per_shard=3)
    write_tfrecords(smooth_images(2, 48, 1), tmp_path / "celeba_test", prefix="validation", images_per_shard=1)
    out = tmp_path / "out"
    result = run_script(
        "experiment_celeba.py", "--file_batch", "5", "--epoch", "1", "--latent_dim", "72", "--target_psnr", "30",
        "--train_files_path", f"{tmp_path / 'celeba_train'}/", "--test_files_path", f"{tmp_path / 'celeba_test'}/",
        "--out_dir", str(out), *FAST,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = check_results(out, ["noisy input", "TV (Chambolle)", "VAE", "VAE + agent (round 0)", "round 1"])
    assert results["config"]["latent_dim"] == 72 and results["config"]["target_psnr"] == 30
    assert "VAE + agent (round 0)" in result.stdout  # the table is printed
    assert (out / "model" / "round1" / "agent").is_dir()


def _write_sidd_folders(root: Path, n: int, size: int, seed: int) -> tuple[Path, Path]:
    clean = smooth_images(n, size, seed)
    rng = np.random.default_rng(seed)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    for i in range(n):
        scene = root / "Data" / f"{i:04d}_001_GP_00100_00100_3200_N"
        write_image(scene / f"{i:04d}_NOISY_SRGB_010.PNG", noisy[i])
        write_image(scene / f"{i:04d}_GT_SRGB_010.PNG", clean[i])
    return root, root


def test_sidd_seed_command_line_with_validation_mat_files(tmp_path):
    import scipy.io

    train_noisy, train_gt = _write_sidd_folders(tmp_path / "SIDD_Medium_Srgb", 4, 64, 0)
    clean = smooth_images(4, 32, 5).reshape(2, 2, 32, 32, 3)
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    scipy.io.savemat(tmp_path / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    scipy.io.savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": clean})
    out = tmp_path / "out"
    result = run_script(
        "experiment_sidd_denoise.py", "--file_batch", "5", "--epoch", "1", "--latent_dim", "96", "--target_psnr", "34",
        "--train_files_path", f"{train_noisy}/", "--validation_file_path", f"{train_gt}/",
        "--test_files_path", str(tmp_path / "ValidationNoisyBlocksSrgb.mat"),
        "--test_validation_files_path", str(tmp_path / "ValidationGtBlocksSrgb.mat"),
        "--crop", "32", "--crops_per_image", "2", "--benchmark_mat", str(tmp_path / "ValidationNoisyBlocksSrgb.mat"),
        "--out_dir", str(out), *FAST, "--batch_size", "32",  # round 1 fine-tunes on 7 crops of 9 patches
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = check_results(out, ["noisy input", "VAE", "VAE + agent (round 0)"])
    assert len({row["image"] for row in results["per_image"]}) == 4  # every block scored
    from data.sidd import load_sidd_submission

    assert load_sidd_submission(out / "SubmitSrgb.mat").shape == (2, 2, 32, 32, 3)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run on the embedded sample, shared by the tests below."""
    base = tmp_path_factory.mktemp("smoke")
    out = base / "out"
    result = run_script("experiment_celeba.py", *SMOKE, "--out_dir", str(out), cache=base / "cache")
    return base, out, result


def test_smoke_run_on_the_embedded_sample_improves_on_the_noisy_input(smoke_run):
    _, out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["stage"]: row for row in stage_rows(out)}
    for stage in ("VAE", "VAE + agent (round 0)", "round 1"):
        assert rows[stage]["ssim"] > rows["noisy input"]["ssim"] + 0.03, stage


def test_interrupted_run_resumes_to_the_same_rows(smoke_run):
    base, out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = base / "resumed"
    stopped = run_script("experiment_celeba.py", *SMOKE, "--out_dir", str(resumed),
                         env_extra={"RSE_RL_STOP_AFTER": "round0/clusters"}, cache=base / "cache")
    assert stopped.returncode == 130 and "--resume" in stopped.stderr
    assert not (resumed / "results.json").exists()
    finished = run_script("experiment_celeba.py", *SMOKE, "--out_dir", str(resumed), "--resume",
                          cache=base / "cache")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "finished earlier" in finished.stderr
    # Same stages, same figures (see SMOKE for why this can be exact).
    expected, got = stage_rows(out), stage_rows(resumed)
    assert [row["stage"] for row in got] == [row["stage"] for row in expected]
    for e, g in zip(expected, got):
        for metric in ("psnr", "ssim", "uqi"):
            assert g[metric] == pytest.approx(e[metric], rel=1e-9), (e["stage"], metric)


def test_denoise_run_dir_reproduces_the_runs_last_stage(smoke_run, tmp_path):
    """`denoise.py --run_dir` applies what the run's test stage applied: on a test image the loaded
    rounds give the PSNR results.json reports for the run's last stage; the CLI writes the image."""
    from data.images import read_image, to_uint8, write_image
    from data.noise import parse_noise
    from data.pairs import tfrecord_test_set
    from data.sample import ensure_sample
    from evaluation import psnr
    from pipeline.trained import load_trained_run

    base, out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    pair = next(iter(tfrecord_test_set(ensure_sample(base / "cache").test_dir, parse_noise("sigma", "50"), 0).open()))
    results = json.loads((out / "results.json").read_text())
    last = results["stages"][-1]["stage"]
    expected = next(row["psnr"] for row in results["per_image"] if row["stage"] == last and row["image"] == pair.name)
    trained = load_trained_run(out)
    assert psnr(pair.clean, trained.apply(pair.noisy)) == pytest.approx(expected, abs=1e-4)

    write_image(tmp_path / "photo.png", to_uint8(pair.noisy))
    cli = subprocess.run([sys.executable, str(ROOT / "denoise.py"), "--input", str(tmp_path / "photo.png"),
                          "--output", str(tmp_path / "out"), "--run_dir", str(out), "--precision", "float32"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert read_image(tmp_path / "out" / "photo.png").shape == pair.noisy.shape
    bad = subprocess.run([sys.executable, str(ROOT / "denoise.py"), "--input", str(tmp_path / "photo.png"),
                          "--output", str(tmp_path / "out2"), "--run_dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))  # as a user's shell: no C++ lines
    assert bad.returncode == 2 and bad.stderr.strip().startswith(f"error: --run_dir {tmp_path}: not a run folder")


def test_resume_with_other_settings_is_refused(smoke_run):
    base, out, _ = smoke_run
    result = run_script("experiment_celeba.py", *SMOKE, "--out_dir", str(out), "--resume", "--num_clusters", "5",
                        cache=base / "cache")
    assert result.returncode == 2 and "num_clusters" in result.stderr


@pytest.mark.parametrize(
    "script,args,message",
    [
        ("experiment_celeba.py", ["--train_files_path", "/nonexistent/x", "--test_files_path", "/nonexistent/y"], "/nonexistent/"),
        ("experiment_celeba.py", ["--train_files_path", "{empty}", "--test_files_path", "{empty}"], "{empty}"),
        ("experiment_celeba.py", ["--overlap", "16"], "--overlap"),
        ("experiment_celeba.py", ["--noise", "speckle"], "--noise"),
        ("experiment_celeba.py", ["--out_dir", "/proc/forbidden"], "--out_dir"),
        ("experiment_sidd_denoise.py", ["--train_files_path", "{unpaired}", "--validation_file_path", "{unpaired}",
                                        "--test_files_path", "{unpaired}", "--test_validation_files_path", "{unpaired}"], "0001_NOISY"),
        ("experiment_sidd_denoise.py", ["--train_files_path", "{empty}"], "--validation_file_path"),
    ],
)
def test_bad_input_stops_before_training_with_a_named_error(tmp_path, script, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    unpaired = tmp_path / "unpaired"
    _write_sidd_folders(unpaired, 2, 32, 0)
    (unpaired / "Data" / "0001_001_GP_00100_00100_3200_N" / "0001_GT_SRGB_010.PNG").unlink()
    subs = {"{empty}": str(empty), "{unpaired}": str(unpaired)}
    args = [subs.get(a, a) for a in args]
    message = subs.get(message, message)
    if "--out_dir" not in args:
        args += ["--out_dir", str(tmp_path / "out")]
    result = run_script(script, *args, cache=tmp_path / "cache")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error:") or "\nerror:" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "model" / "round0").exists()
