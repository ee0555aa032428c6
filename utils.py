"""Machinery every layer shares: seeds, logging, the tf.distribute strategy, atomic writes,
folder checks and the run lock, TensorBoard scalars.

Imports nothing from the project but `data.errors` (which imports nothing), so any module may use it.
TensorFlow and Keras are imported inside the functions that need them: data/ imports this
module and must not pay their import time.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from data.errors import ConfigError


def set_seeds(seed: int) -> None:
    """Seed Python, numpy's legacy global RNG, TensorFlow and Keras's global SeedGenerator.

    Resetting Keras's generator matters for resuming: unseeded Keras initialisers draw
    from it, and without the reset a phase would draw differently in a fresh process
    than after earlier phases in the same process.
    """
    import keras

    keras.utils.set_random_seed(int(seed) % (2**32))


# What TensorFlow's C++ libraries print while they load: absl log lines ("I0000 00:00:... port.cc:153]
# oneDNN custom operations are on", "cudart_stub.cc:31] Could not find cuda drivers", the CPU feature
# notice) and absl's own "WARNING: All log messages before absl::InitializeLog() ..." header.
_STARTUP_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*in other operations, rebuild TensorFlow .*)$"
)


def quiet_tensorflow_startup(verbose: bool = False) -> None:
    """Import TensorFlow without its C++ start-up lines (unless `verbose`); call before anything imports it.

    Why TF_CPP_MIN_LOG_LEVEL alone does not do it: the lines are logged through absl while the
    shared libraries load, before anyone calls absl::InitializeLog(), and absl writes every
    message to stderr until then, whatever the level (once per library that carries absl, hence
    each line twice). So stderr's file descriptor is pointed at a temporary file for the import,
    and whatever else was written there (Python warnings, real errors) is replayed afterwards.
    After the import TF_CPP_MIN_LOG_LEVEL applies: 3 unless the environment sets it (our errors are
    raised as exceptions), or 0 with `verbose`.
    """
    import tempfile

    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if verbose or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines()
                    if line.strip() and not _STARTUP_NOISE.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def setup_logging(verbose: bool = False) -> logging.Logger:
    """Project logger writing to stderr; quietens TensorFlow's C++ and Python logs (all of them: see
    `quiet_tensorflow_startup`) unless `verbose`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.INFO if verbose else logging.WARNING)  # TF's checkpoint INFO lines
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
    raise ConfigError(f"--strategy: unknown strategy {kind!r} (auto, default, mirrored, multiworker)")


def _cluster_size_from_env() -> int:
    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            return len(json.loads(config).get("cluster", {}).get("worker", []))
        except json.JSONDecodeError:
            raise ConfigError("TF_CONFIG is set but is not valid JSON") from None
    if "SLURM_JOB_ID" in os.environ:
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def _temporary_sibling(path: Path) -> Path:
    """A fresh name beside `path` that keeps its ending (Keras and numpy check suffixes)."""
    return path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a library that writes to a path (Keras weights,
    numpy archives); on success it is renamed to `path`, on failure removed: never half a file.

    The library creates the file itself, so its mode follows the umask like any other file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Write a file through a temporary in the same folder, then rename: never half a file.

    The temporary is created with mode 0666 minus the umask (what `open` gives), not the
    0600 of `tempfile.mkstemp`, so outputs are as readable as every other tool's.
    """
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, mode) as fh:
            write(fh)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), mode="wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda fh: json.dump(obj, fh, indent=2, default=_json_default))


def check_writable_folder(folder: str | os.PathLike, flag: str, value: str | os.PathLike | None = None) -> None:
    """ConfigError naming `flag` (and its `value`, default `folder`) unless `folder` exists or can be
    created, and can be written.

    Checked by doing it (root may write where `os.access` says no, and not into /proc):
    the missing folders are created, a probe file is written, and all of it is removed
    again, so a run refused later leaves nothing behind.
    """
    folder = Path(folder)
    missing = []
    existing = folder
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    shown = f"{flag} {value if value is not None else folder}"
    if not existing.is_dir():
        raise ConfigError(f"{shown}: {existing} is a file, not a folder")
    created: list[Path] = []
    try:
        for sub in reversed(missing):
            sub.mkdir()
            created.append(sub)
        probe = _temporary_sibling(folder / "write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        where = "" if value is None else f"the folder {folder} "
        raise ConfigError(f"{shown}: {where}cannot be written ({exc.strerror or exc})") from None
    finally:
        for sub in reversed(created):
            sub.rmdir()


LOCK_FILE = ".lock"


@contextmanager
def folder_lock(folder: str | os.PathLike, flag: str) -> Iterator[Path]:
    """Hold `<folder>/.lock` while a run writes into `folder`; a second run is refused (ConfigError
    naming `flag` and the process holding it) instead of silently overwriting the first one's files.

    An advisory `flock`: the kernel drops it when the holder dies, so a crashed run leaves no
    stale lock (at most the small file, which the next run takes over). The file is removed
    on release.
    """
    import fcntl  # Unix only: imported where a lock is taken

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(f"{flag} {folder}: in use by another run ({holder}); wait for it to end "
                              f"or choose another {flag}") from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: retry
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


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
