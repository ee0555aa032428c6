"""The run's folder: who may write there, and which phases are finished.

One run at a time per `--out_dir` (a lock file naming the process that holds it); a
folder that holds an earlier run's results is refused unless `--resume` (continue it)
or `--overwrite` (replace it) says what to do with it. Every phase records itself in
`<out_dir>/state.json` when it is done, so `--resume` skips it; the file also keeps the
run's config, and `--resume` with other settings is refused, naming what differs.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from data.errors import ConfigError, DataError
from data.sidd import SUBMISSION_FILE
from pipeline.config import RunConfig
from utils import atomic_write_json, check_writable_folder

STATE_FILE = "state.json"
RESULT_FILES = (STATE_FILE, "results.json", "results.csv", SUBMISSION_FILE)
RESULT_FOLDERS = ("figures", "work", "enhanced")
STOP_AFTER_VARIABLE = "RSE_RL_STOP_AFTER"  # testing hook: Ctrl-C right after this phase


def check_out_dir(cfg: RunConfig) -> None:
    """Before any data is read: ConfigError unless `--out_dir` (and `--model_dir`) can be written, and
    `--out_dir` holds no earlier run unless `--resume` or `--overwrite` is given. Creates nothing."""
    check_writable_folder(cfg.out_dir, "--out_dir")
    if cfg.model_dir is not None:
        check_writable_folder(cfg.model_dir, "--model_dir")
    earlier = [name for name in (STATE_FILE, "results.json") if (cfg.out_dir / name).exists()]
    if earlier and not (cfg.resume or cfg.overwrite):
        raise ConfigError(f"--out_dir {cfg.out_dir}: holds an earlier run ({earlier[0]}); add --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out_dir")


def remove_earlier_run(cfg: RunConfig) -> None:
    """`--overwrite`: delete what an earlier run wrote into `--out_dir` (its own files and folders only)."""
    for name in RESULT_FILES:
        (cfg.out_dir / name).unlink(missing_ok=True)
    folders = [cfg.out_dir / name for name in RESULT_FOLDERS]
    if cfg.models_dir.is_dir():
        folders += sorted(cfg.models_dir.glob("round[0-9]*"))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    if cfg.model_dir is None and cfg.models_dir.is_dir() and not any(cfg.models_dir.iterdir()):
        cfg.models_dir.rmdir()


@dataclass
class RunState:
    """Finished phases (with what they report), persisted in <out_dir>/state.json for --resume."""

    path: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    done: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, out_dir: Path, resume: bool, config: Mapping[str, Any]) -> "RunState":
        """A fresh state, or with `resume` the saved one (ConfigError if it was started with other settings)."""
        path = Path(out_dir) / STATE_FILE
        if resume and path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}: unreadable run state ({exc}); start again without --resume") from None
            if saved.get("config") != config:
                changed = ", ".join(_differences(saved.get("config", {}), config))
                raise ConfigError(f"--resume: {out_dir} was started with different settings ({changed})")
            return cls(path, config, saved.get("done", {}))
        state = cls(path, config)
        state.save()
        return state

    def save(self) -> None:
        atomic_write_json(self.path, {"config": self.config, "done": self.done})

    def finished(self, phase: str) -> bool:
        return phase in self.done

    def mark(self, phase: str, info: dict | None = None) -> None:
        """Record `phase` as done. Testing hook: RSE_RL_STOP_AFTER=<phase> simulates Ctrl-C right after it."""
        self.done[phase] = info or {}
        self.save()
        if os.environ.get(STOP_AFTER_VARIABLE) == phase:
            raise KeyboardInterrupt


def _differences(saved: Mapping, now: Mapping) -> Iterable[str]:
    """Names of the settings that differ: the flags' names if any flag differs, else the typed configs' keys."""
    flags_saved, flags_now = saved.get("flags", {}), now.get("flags", {})
    flags = sorted(k for k in set(flags_saved) | set(flags_now) if flags_saved.get(k) != flags_now.get(k))
    if flags:
        return flags
    configs_saved, configs_now = saved.get("configs", {}), now.get("configs", {})
    keys = []
    for name in sorted(set(configs_saved) | set(configs_now)):
        a, b = configs_saved.get(name, {}), configs_now.get(name, {})
        keys += [f"{name}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return keys or ["the saved state is from another version"]
