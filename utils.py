"""Run setup shared by the scripts: seeds, logging, tf.distribute strategy, atomic writes."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def set_seeds(seed: int) -> None:
    """Seed Python, numpy's legacy global RNG, TensorFlow and Keras's global SeedGenerator.

    Resetting Keras's generator matters for resuming: unseeded Keras initialisers draw
    from it, and without the reset a phase would draw differently in a fresh process
    than after earlier phases in the same process.
    """
    import keras

    keras.utils.set_random_seed(int(seed) % (2**32))


def setup_logging(verbose: bool = False) -> logging.Logger:
    """Project logger writing to stderr; quietens TensorFlow's C++ and Python logs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return logging.getLogger("rse_rl")


def get_strategy(kind: str = "auto"):
    """The tf.distribute strategy for this run.

    auto: MultiWorkerMirroredStrategy when TF_CONFIG or SLURM describe a cluster of
    more than one worker, MirroredStrategy when several GPUs are visible, else the
    default (one device) strategy. kind may also be 'default', 'mirrored' or 'multiworker'.
    """
    import tensorflow as tf

    if kind == "auto":
        if _cluster_size_from_env() > 1:
            kind = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multiworker":
        resolver = None
        if "TF_CONFIG" not in os.environ and "SLURM_JOB_ID" in os.environ:
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    raise ValueError(f"--strategy: unknown strategy {kind!r} (auto, default, mirrored, multiworker)")


def _cluster_size_from_env() -> int:
    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            return len(json.loads(config).get("cluster", {}).get("worker", []))
        except json.JSONDecodeError:
            raise ValueError("TF_CONFIG is set but is not valid JSON") from None
    if "SLURM_JOB_ID" in os.environ:
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Write a file through a temporary in the same folder, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), mode="wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda fh: json.dump(obj, fh, indent=2, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


class TensorBoardLogger:
    """Writes scalars to a TensorBoard event file in `logdir`.

    Uses the core `tf.summary.write` op with the scalars plugin's metadata, so
    writing logs does not require the `tensorboard` package (only viewing does).
    Shared by VAE training (models/) and the agent (rl/).
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )

    def scalar(self, name: str, value: float, step: int) -> None:
        self.scalars({name: value}, step)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        tf = self._tf
        with self._writer.as_default():
            for name, value in values.items():
                tf.summary.write(prefix + name, tf.constant(float(value), tf.float32),
                                 step=int(step), metadata=self._metadata)

    def flush(self) -> None:
        self._writer.flush()
