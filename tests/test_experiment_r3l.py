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
    assert len(rows) == 2 * 3 and all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in rows)
    noisy15 = np.mean([r["psnr_noisy"] for r in rows if r["sigma"] == 15])
    noisy25 = np.mean([r["psnr_noisy"] for r in rows if r["sigma"] == 25])
    assert noisy15 > noisy25 + 3  # noise levels really differ
    assert len(list((out / "images" / "sigma25").glob("*.png"))) == 3
    assert results["training"]["episodes_done"] == 2

    resumed = _run("--smoke", "--episodes", "3", "--test_sigmas", "25", "--resume", "--test_skip", "1", "--test_limit", "2", "--out_dir", str(out), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["image"] for r in results["images"]] == ["sample_test_01", "sample_test_02"]
    first_noisy = {r["image"]: r["psnr_noisy"] for r in rows if r["sigma"] == 25}
    assert results["images"][0]["psnr_noisy"] == first_noisy["sample_test_01"]  # same noise for the same image
    training = results["training"]
    assert training["episodes_run"] == 1 and training["episodes_done"] == 3


def test_bad_test_dir_is_a_clear_error_with_exit_code_2(tmp_path):
    result = _run("--smoke", "--test_dir", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2
    assert "error: --test_dir" in result.stderr and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_is_a_clear_error(tmp_path):
    result = _run("--smoke", "--clip", "2", "--out_dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "error: --clip" in result.stderr


def test_checkpoint_restores_network_weights(tmp_path):
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    from experiment_r3l import make_checkpoint
    from models.r3l_net import R3LNet, R3LNetConfig

    def fresh():
        net = R3LNet(R3LNetConfig(width=4)).build_for()
        optimizer = tf.keras.optimizers.Adam(1e-3)
        optimizer.build(net.trainable_variables)
        return net, optimizer

    saved, opt = fresh()
    path = make_checkpoint(saved, opt).save(str(tmp_path / "ckpt"))
    stored = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    assert sum(k.startswith("weights/") for k in stored) == len(saved.weights)  # not only via the optimizer
    restored, opt2 = fresh()
    assert not np.array_equal(saved.weights[0].numpy(), restored.weights[0].numpy())
    make_checkpoint(restored, opt2).restore(path).assert_existing_objects_matched()
    for a, b in zip(saved.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
