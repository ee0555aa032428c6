"""Run setup helpers: seeding that does not depend on the process's history, atomic writes with the
umask's mode, the writable-folder check that leaves nothing behind, the run lock."""
import json
import os

import keras
import numpy as np
import pytest

from data.errors import ConfigError
from utils import atomic_path, atomic_write_json, check_writable_folder, folder_lock, set_seeds


def _fresh_kernel() -> np.ndarray:
    """An unseeded Keras draw: initialisers seed from Python's RNG, keras.random from Keras's global generator."""
    return np.asarray(keras.initializers.GlorotUniform()((4, 4))) + np.asarray(keras.random.uniform((4, 4)))


def test_set_seeds_makes_unseeded_keras_draws_independent_of_earlier_draws():
    set_seeds(7)
    first = _fresh_kernel()
    for _ in range(3):  # earlier work in the same process (what a resumed run skips)
        _fresh_kernel()
    set_seeds(7)
    assert np.array_equal(_fresh_kernel(), first)
    set_seeds(8)
    assert not np.array_equal(_fresh_kernel(), first)


def test_atomic_write_json_leaves_no_partial_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"b": object()})  # not serialisable: fails half-way
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_folder_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    folder = tmp_path / "run"
    with folder_lock(folder, "--out_dir") as lock:
        assert f"pid {os.getpid()}" in lock.read_text()
        with pytest.raises(ConfigError, match=rf"--out_dir {folder}: in use by another run \(pid {os.getpid()} "):
            with folder_lock(folder, "--out_dir"):
                pass
    assert list(folder.iterdir()) == []  # the lock file goes with the lock
    with folder_lock(folder, "--out_dir"):  # and the folder can be taken again
        pass


def test_check_writable_folder_creates_nothing(tmp_path):
    check_writable_folder(tmp_path / "a" / "b", "--out_dir")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out_dir .*file is a file, not a folder"):
        check_writable_folder(tmp_path / "file" / "sub", "--out_dir")
    with pytest.raises(ConfigError, match="--model_dir /proc/x/y: cannot be written"):
        check_writable_folder("/proc/x/y", "--model_dir")


def test_atomic_writes_follow_the_umask(tmp_path):
    umask = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        with atomic_path(tmp_path / "b.npz") as tmp:
            np.savez(tmp, x=np.zeros(2))
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.npz"]  # no temporaries left
