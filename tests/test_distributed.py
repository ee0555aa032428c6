"""VAE training under tf.distribute matches one device; TFRecord shards are split across workers.

Each distributed run happens in fresh processes (this file run as a script, see
`_worker_main`), so logical devices and TF_CONFIG never touch the pytest process:
- `mirrored`: one process, two logical CPU devices: a single-device run (the default
  strategy) and a MirroredStrategy run over both devices, same seed, same data;
- `multiworker`: two processes on 127.0.0.1 ports, MultiWorkerMirroredStrategy
  from TF_CONFIG, each one replica.

Why the equality is exact up to float rounding: train_vae's batch is GLOBAL
(`TrainConfig.batch_size` patches per step, split over the replicas, loss summed
over replicas / global batch), and the VAE's BatchNorm normalises with PER-REPLICA
statistics. To compare like with like, every global batch here is two identical
halves (each training step sees one image, twice), so each replica's BatchNorm sees
what the single device sees; the remaining differences (the order of
float reductions across replicas) are ~1e-7 relative. The VAE samples with
std 0 and lambda_eq = 0, so no random op in the step differs between replicas.
Tolerance: weights within 1e-4 absolute (the learning rate is 1e-3, so one Adam
step that went the wrong way would show up), per-epoch losses within 1e-4 relative.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 4  # distinct training images (one per step)
SIZE = 16  # 16x16 images, block 8, overlap 4: 3x3 = 9 patches per image
BLOCK, OVERLAP = 8, 4
PATCHES_PER_IMAGE = 9
EPOCHS = 2
WEIGHT_ATOL = 1e-4
LOSS_RTOL = 1e-4
SHARD_FILES = 4
SHARD_IMAGES = 3  # images per TFRecord shard


# ----- what the worker processes run --------------------------------------------------------------
def _tiny_configs():
    from models.training import TrainConfig
    from models.vae import VAEConfig

    vcfg = VAEConfig(block_size=BLOCK, latent_dim=4, conv_filters=(4, 4, 4, 4), dense_units=16,
                     decoder_channels=8, deconv_filters=(8, 8, 8, 8), sample_std=0.0, lambda_eq=0.0)
    tcfg = TrainConfig(epochs=EPOCHS, batch_size=2 * PATCHES_PER_IMAGE, learning_rate=1e-3, overlap=OVERLAP,
                       shuffle_buffer=1, seed=0, progress=False)
    return vcfg, tcfg


def _training_images():
    """(noisy, clean) batches of one image repeated twice: each global batch = two equal halves."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    clean = rng.random((IMAGES, SIZE, SIZE, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    twice = lambda x: np.repeat(x, 2, axis=0)  # noqa: E731  image i at rows 2i, 2i+1
    return tf.data.Dataset.from_tensor_slices((twice(noisy), twice(clean))).batch(2)


def _train(strategy, out_dir: Path) -> dict:
    """Build (seeded) and train the tiny VAE under `strategy`; weights and loss history."""
    import keras

    from models.training import train_vae
    from models.vae import build_vae

    vcfg, tcfg = _tiny_configs()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_vae(vcfg)
    history = train_vae(model, _training_images(), tcfg, out_dir, strategy=strategy)
    return {"weights": [np.asarray(w) for w in model.get_weights()], "history": history,
            "replicas": strategy.num_replicas_in_sync}


def _labelled_shards(directory: Path) -> None:
    """SHARD_FILES shards of SHARD_IMAGES 8x8 images whose pixels hold the image's index."""
    from data.celeba import write_tfrecords

    images = [np.full((8, 8, 3), i, np.uint8) for i in range(SHARD_FILES * SHARD_IMAGES)]
    write_tfrecords(images, directory, prefix="train", images_per_shard=SHARD_IMAGES)


def _ids_seen(strategy, shard_dir: Path) -> list[int]:
    """Image ids this worker reads when the training stream is distributed (auto-sharding)."""
    from data.celeba import celeba_dataset

    ds = celeba_dataset(shard_dir).map(lambda x: x[0, 0, 0]).batch(strategy.num_replicas_in_sync)
    seen = []
    for batch in strategy.experimental_distribute_dataset(ds):
        for local in strategy.experimental_local_results(batch):
            seen.extend(int(v) for v in np.asarray(local))
    return seen


def _save(path: Path, result: dict) -> None:
    arrays = {f"w{i}": w for i, w in enumerate(result["weights"])}
    np.savez(path.with_suffix(".npz"), **arrays)
    meta = {k: v for k, v in result.items() if k != "weights"}
    path.with_suffix(".json").write_text(json.dumps(meta))


def _worker_main(mode: str, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        _save(out / "single", _train(tf.distribute.get_strategy(), out / "single_run"))
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        _save(out / "mirrored", _train(tf.distribute.MirroredStrategy(devices), out / "mirrored_run"))
    elif mode == "multiworker":
        from utils import get_strategy

        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        strategy = get_strategy("auto")  # TF_CONFIG with 2 workers -> MultiWorkerMirroredStrategy
        assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy)
        result = _train(strategy, out / f"worker{index}_run")  # each worker its own checkpoint dir
        result["ids"] = _ids_seen(strategy, out / "shards")
        _save(out / f"worker{index}", result)
    else:
        raise SystemExit(f"unknown mode {mode}")


# ----- the tests ----------------------------------------------------------------------------------
def _load(path: Path) -> dict:
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz")) as z:
        meta["weights"] = [z[f"w{i}"] for i in range(len(z.files))]
    return meta


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _spawn(mode: str, out: Path, tf_config: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.pop("SLURM_JOB_ID", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    log = open(out / f"{mode}{'' if tf_config is None else tf_config['task']['index']}.log", "w")
    return subprocess.Popen([sys.executable, __file__, mode, str(out)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _wait(procs: list[subprocess.Popen], out: Path) -> None:
    for p in procs:
        try:
            p.wait(timeout=400)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    logs = "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(out.glob("*.log")))
    assert all(p.returncode == 0 for p in procs), logs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Run the single/mirrored process and the two workers concurrently, once for all tests."""
    out = tmp_path_factory.mktemp("distributed")
    sys.path.insert(0, str(ROOT))
    _labelled_shards(out / "shards")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [_spawn("mirrored", out)]
    procs += [_spawn("multiworker", out, {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(2)]
    _wait(procs, out)
    return out


def _assert_same_training(reference: dict, other: dict) -> None:
    assert other["replicas"] == 2 and reference["replicas"] == 1
    ref_h, oth_h = reference["history"], other["history"]
    assert ref_h["epoch"] == oth_h["epoch"] == list(range(1, EPOCHS + 1))
    for name in ("total", "recon", "clean", "kl", "latent"):
        np.testing.assert_allclose(oth_h[name], ref_h[name], rtol=LOSS_RTOL, err_msg=name)
    assert len(reference["weights"]) == len(other["weights"])
    for a, b in zip(reference["weights"], other["weights"]):
        np.testing.assert_allclose(b, a, atol=WEIGHT_ATOL)


@pytest.mark.slow  # three training processes
def test_training_changed_the_weights(runs):
    """Guard: the comparison below is only meaningful if training moved the weights."""
    import keras

    sys.path.insert(0, str(ROOT))
    from models.vae import build_vae

    vcfg, _ = _tiny_configs()
    keras.utils.set_random_seed(0)
    initial = build_vae(vcfg).get_weights()
    trained = _load(runs / "single")
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(initial, trained["weights"]))
    assert moved > 10 * WEIGHT_ATOL
    assert trained["history"]["total"][-1] < trained["history"]["total"][0]


@pytest.mark.slow  # three training processes
def test_mirrored_two_devices_matches_single_device(runs):
    _assert_same_training(_load(runs / "single"), _load(runs / "mirrored"))


@pytest.mark.slow  # three training processes
def test_multiworker_two_processes_match_single_device(runs):
    reference = _load(runs / "single")
    for index in range(2):
        _assert_same_training(reference, _load(runs / f"worker{index}"))


@pytest.mark.slow  # three training processes
def test_tfrecord_shards_split_across_workers(runs):
    """Auto-sharding by FILE: each worker reads whole, different shards; together all images once."""
    seen = [_load(runs / f"worker{i}")["ids"] for i in range(2)]
    assert sorted(seen[0] + seen[1]) == list(range(SHARD_FILES * SHARD_IMAGES))
    for ids in seen:
        assert ids, "a worker read nothing"
        files = {i // SHARD_IMAGES for i in ids}
        assert len(ids) == len(files) * SHARD_IMAGES  # whole files only
    assert not {i // SHARD_IMAGES for i in seen[0]} & {i // SHARD_IMAGES for i in seen[1]}


def test_explicit_shard_index_partitions_files(tmp_path):
    """celeba_dataset(num_shards, shard_index): worker k reads files k, k + n, ..."""
    sys.path.insert(0, str(ROOT))
    from data.celeba import celeba_dataset

    _labelled_shards(tmp_path)
    parts = [[int(x[0, 0, 0]) for x in celeba_dataset(tmp_path, num_shards=2, shard_index=k).as_numpy_iterator()]
             for k in range(2)]
    expected = [[f * SHARD_IMAGES + j for f in range(k, SHARD_FILES, 2) for j in range(SHARD_IMAGES)] for k in range(2)]
    assert parts == expected


def test_slurm_resolver_one_worker_per_node(monkeypatch):
    """What scripts/slurm_celeba.sbatch relies on: one srun task per node -> one worker per node
    on port 8888, task id = SLURM_PROCID, each worker keeps all GPUs of its node. The resolver
    orders nodes by Python's sorted(), hence the script's guard for names like node9/node10."""
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    env = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2",
           "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
           "CUDA_VISIBLE_DEVICES": "0,1,2,3"}  # else the resolver asks nvidia-smi how many GPUs there are
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from utils import _cluster_size_from_env

    assert _cluster_size_from_env() == 2  # so --strategy auto picks MultiWorkerMirroredStrategy
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    assert resolver.cluster_spec().as_dict() == {"worker": ["gpu07:8888", "gpu08:8888"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[9-10]")  # SLURM's order: node9, node10
    assert tf.distribute.cluster_resolver.SlurmClusterResolver().cluster_spec().as_dict() == {
        "worker": ["node10:8888", "node9:8888"]}


def _fake_slurm_bin(folder: Path) -> None:
    """srun running its command once per task (SLURM_PROCID 0, 1), scontrol, and a `python` that echoes."""
    folder.mkdir()
    scripts = {
        "srun": '#!/bin/bash\nshift\nfor i in 0 1; do SLURM_PROCID=$i "$@"; done\n',
        "scontrol": "#!/bin/bash\nprintf '%s\\n' $FAKE_HOSTS\n",
        "python": '#!/bin/bash\necho "TF_CONFIG=${TF_CONFIG:-none}"; printf "%s\\n" "$@"\n',
    }
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)


@pytest.mark.parametrize("hosts", ["gpu07 gpu08", "node9 node10"])
def test_sbatch_script_command_lines(tmp_path, hosts):
    """The sbatch script: one task per node, global batch = per-replica x replicas, sqrt LR scaling,
    an --out_dir per task, extra arguments passed on; TF_CONFIG only when the resolver would mis-order."""
    _fake_slurm_bin(tmp_path / "bin")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", FAKE_HOSTS=hosts, SLURM_JOB_NODELIST="x",
               SLURM_SUBMIT_DIR=str(ROOT), SLURM_JOB_ID="77", SLURM_JOB_NUM_NODES="2", SLURM_GPUS_PER_NODE="a100:4")
    env.pop("TF_CONFIG", None)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_celeba.sbatch"), "--recursions", "2"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    tasks = out.stdout.split("TF_CONFIG=")[1:]
    assert len(tasks) == 2
    for index, task in enumerate(tasks):
        lines = task.split("\n")
        argv = lines[1:]
        value = lambda flag: argv[argv.index(flag) + 1]  # noqa: E731
        assert argv[0] == "experiment_celeba.py"
        assert value("--batch_size") == str(256 * 8)
        assert float(value("--learning_rate")) == pytest.approx(1e-3 * np.sqrt(8), rel=1e-5)
        assert value("--out_dir") == f"{ROOT}/runs/celeba-77/task{index}"
        assert value("--recursions") == "2" and value("--strategy") == "auto" and value("--bn_momentum") == "0.99"
        if hosts == "gpu07 gpu08":
            assert lines[0] == "none"
        else:
            config = json.loads(lines[0])
            assert config == {"cluster": {"worker": ["node9:8888", "node10:8888"]}, "task": {"type": "worker", "index": index}}


if __name__ == "__main__":
    _worker_main(sys.argv[1], Path(sys.argv[2]))
