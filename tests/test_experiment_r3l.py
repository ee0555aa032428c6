"""experiment_r3l.py end to end (--smoke, via subprocess): results, checkpoints, resume, bad flags."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "experiment_r3l.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_smoke_run_writes_results_and_resumes(tmp_path):
    out = tmp_path / "run"
    first = _run("--smoke", "--episodes", "2", "--test_sigmas", "15", "25", "--out_dir", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert [row["test sigma"] for row in results["table"]] == ["15", "25"]
    assert "R3L PSNR" in first.stdout and "noisy SSIM" in first.stdout
    rows = results["images"]
    assert len(rows) == 2 * 3 and all(np.isfinite(r["psnr_R3L"]) and 0 < r["ssim_R3L"] <= 1 for r in rows)
    noisy15 = np.mean([r["psnr_noisy"] for r in rows if r["sigma"] == 15])
    noisy25 = np.mean([r["psnr_noisy"] for r in rows if r["sigma"] == 25])
    assert noisy15 > noisy25 + 3  # noise levels really differ
    assert len(list((out / "images" / "sigma25").glob("*.png"))) == 3
    assert results["training"]["episodes_done"] == 2 + 120  # --smoke: 120 warm-start episodes, then PPO
    assert "warm start alone PSNR" in first.stdout
    assert (out / "figures" / "learning_curve.png").is_file() and list((out / "tensorboard").iterdir())
    phases = [p["phase"] for p in results["training"]["curve"]]
    assert phases[0] == "warm start" and phases[-1] == "R3L"

    resumed = _run("--smoke", "--episodes", "3", "--test_sigmas", "25", "--resume", "--test_skip", "1", "--test_limit", "2", "--out_dir", str(out), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["image"] for r in results["images"]] == ["sample_test_01", "sample_test_02"]
    first_noisy = {r["image"]: r["psnr_noisy"] for r in rows if r["sigma"] == 25}
    assert results["images"][0]["psnr_noisy"] == first_noisy["sample_test_01"]  # same noise for the same image
    training = results["training"]
    assert training["episodes_run"] == 1 and training["episodes_done"] == 123


def test_bad_test_dir_is_a_clear_error_with_exit_code_2(tmp_path):
    result = _run("--smoke", "--test_dir", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert "error: --test_dir" in result.stderr and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_is_a_clear_error(tmp_path):
    result = _run("--smoke", "--clip", "2", "--out_dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "error: --clip" in result.stderr


def test_dncnn_warm_start_without_weights_is_one_clear_line(tmp_path):
    result = _run("--smoke", "--warm_start", "dncnn", "--out_dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --warm_start dncnn needs --init_dncnn")


def test_init_dncnn_that_is_not_a_dncnn_is_one_clear_line(tmp_path):
    sys.path.insert(0, str(ROOT))
    from tests.matconvnet import random_dncnn, write_matconvnet_dncnn

    convs = random_dncnn(width=64)[:5]  # too shallow for R3L's mapping, and its channels do not chain back
    bad = tmp_path / "not_dncnn.mat"
    write_matconvnet_dncnn(bad, convs[:4] + [(convs[4][0][:, :, :, :7], convs[4][1][:7])])
    text = tmp_path / "text.mat"
    text.write_text("not a model")
    for path in (bad, text):
        result = _run("--smoke", "--warm_start", "dncnn", "--init_dncnn", str(path), "--out_dir", str(tmp_path / "o"),
                      cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: --init_dncnn") and path.name in last
