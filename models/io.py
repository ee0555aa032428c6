"""Saving and loading trained models, and importing the RSE-RL authors' released weights.

Our format (a directory):
- `config.json`: the VAEConfig (plus a format version),
- `vae.weights.h5`: Keras 3 weights of every encoder, transform and decoder,
- `clusters.npz` (optional): the latent ClusterIndex (models/clusters.py).

The authors' release: one VAE per channel, `<name>_{y,u,v}_<suffix>/{encoder,transform,decoder}/`,
each a Keras 2 SavedModel (TF 2.9). We read their variables with `tf.saved_model.load`
(no Keras 2 needed) and copy them, in layer order and with shape checks, into an
RSEVAE configured like theirs (softplus log-variance head, ReLU on T's last layer,
3 decoder output channels of which channel 0 is the patch).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from data.errors import ConfigError, DataError
from models.clusters import ClusterIndex
from models.vae import RSEVAE, VAEConfig, build_vae
from utils import atomic_path, atomic_write_json

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "vae.weights.h5"
CLUSTERS_FILE = "clusters.npz"
# Saved models shipped in the repository, loadable by name (`--weights authors`, `--init_from authors`);
# made by scripts/convert_authors_weights.py.
SHIPPED_WEIGHTS = {"authors": Path(__file__).resolve().parent / "weights" / "authors_celeba"}
AUTHORS_LICENCE = """\
The RSE-RL authors' released CelebA VAE weights (celeba_y_no, celeba_u_no, celeba_v_no),
converted to this project's Keras 3 format by scripts/convert_authors_weights.py
(the variables are copied unchanged).

Source: https://github.com/yunhaoyang234/RSE-RL (the RSE-RL authors: Chandrajit Bajaj,
Yi Wang, Yunhao Yang), released under the MIT licence; its notice, as in that repository:

MIT License

Copyright (c) 2022 Yunhao Yang

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def save_model(model: RSEVAE, model_dir: str | os.PathLike, clusters=None) -> Path:
    """Write config, weights (and clusters if given) into model_dir; returns the directory."""
    model_dir = Path(model_dir)
    with atomic_path(model_dir / WEIGHTS_FILE) as tmp:
        model.save_weights(tmp)
    atomic_write_json(model_dir / CONFIG_FILE, {"format_version": FORMAT_VERSION, "vae": model.cfg.to_dict()})
    if clusters is not None:
        clusters.save(model_dir / CLUSTERS_FILE)
    return model_dir


def resolve_model_dir(name_or_path: str | os.PathLike, flag: str = "--model_dir") -> Path:
    """The folder of a shipped model (`SHIPPED_WEIGHTS` name, e.g. "authors") or of a saved model;
    DataError naming `flag` if it is neither."""
    key = os.fspath(name_or_path)
    if key in SHIPPED_WEIGHTS:
        folder = SHIPPED_WEIGHTS[key]
        if not (folder / WEIGHTS_FILE).is_file():
            raise DataError(f"{flag} {key}: the shipped weights are missing from {folder} "
                            "(reinstall, or run scripts/convert_authors_weights.py)")
        return folder
    folder = Path(key)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise DataError(f"{flag} {folder}: not a saved model (needs {CONFIG_FILE} and {WEIGHTS_FILE}) "
                        f"nor a shipped one ({', '.join(SHIPPED_WEIGHTS)})")
    return folder


def read_config(model_dir: str | os.PathLike, flag: str = "--model_dir") -> VAEConfig:
    """The VAEConfig of a saved or shipped model, without building it (cheap: for checks before training)."""
    cfg_path = resolve_model_dir(model_dir, flag) / CONFIG_FILE
    try:
        return VAEConfig.from_dict(json.loads(cfg_path.read_text())["vae"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise DataError(f"{flag} {cfg_path}: unreadable model config ({exc})") from None


def load_model(model_dir: str | os.PathLike, flag: str = "--model_dir", precision: str | None = None) -> RSEVAE:
    """The RSEVAE saved by `save_model`, or a shipped one by name (DataError naming `flag` if it is
    neither). `precision` overrides the saved compute policy (the variables stay float32)."""
    cfg = read_config(model_dir, flag)
    if precision is not None:
        cfg = dataclasses.replace(cfg, precision=precision)
    weights = resolve_model_dir(model_dir, flag) / WEIGHTS_FILE
    model = build_vae(cfg)
    try:
        model.load_weights(weights)
    except Exception as exc:  # Keras raises various types for a mismatched file
        raise DataError(f"{flag} {weights}: weights do not match the config ({exc})") from None
    return model


def load_clusters(model_dir: str | os.PathLike) -> ClusterIndex | None:
    """The ClusterIndex saved beside the model, or None if there is none."""
    path = Path(model_dir) / CLUSTERS_FILE
    return ClusterIndex.load(path) if path.is_file() else None


# -- the authors' weights -------------------------------------------------------------------------

def find_authors_channel_dirs(weights_dir: str | os.PathLike) -> dict[str, Path]:
    """{'Y': dir, 'U': dir, 'V': dir} of the per-channel model folders under weights_dir."""
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise DataError(f"--authors_weights {weights_dir}: no such directory")
    found: dict[str, Path] = {}
    for sub in sorted(p for p in weights_dir.iterdir() if p.is_dir()):
        m = re.search(r"(?:^|_)([yuv])(?:_|$)", sub.name.lower())
        if m and all((sub / part).is_dir() for part in ("encoder", "transform", "decoder")):
            found.setdefault(m.group(1).upper(), sub)
    missing = [c for c in "YUV" if c not in found]
    if missing:
        raise DataError(
            f"--authors_weights {weights_dir}: missing the model folder(s) for channel(s) {', '.join(missing)} "
            "(expected subfolders like celeba_y_no/{encoder,transform,decoder})"
        )
    return found


def _saved_variables(path: Path) -> list[np.ndarray]:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot be loaded as a TensorFlow SavedModel ({type(exc).__name__})") from None
    return [v.numpy() for v in loaded.variables]


def _copy_in_order(target, values: list[np.ndarray], source: Path) -> None:
    weights = target.weights
    if len(weights) != len(values):
        raise DataError(f"{source}: {len(values)} variables, expected {len(weights)} for this architecture")
    for w, v in zip(weights, values):
        if tuple(w.shape) != v.shape:
            raise DataError(f"{source}: variable of shape {v.shape} where {w.path} needs {tuple(w.shape)}")
    for w, v in zip(weights, values):
        w.assign(v)


def authors_config(latent_dim: int) -> VAEConfig:
    """The VAEConfig of the authors' release: our sizes with their softplus log-variance head,
    ReLU at the end of T, 3 decoder output channels (channel 0 is the patch) and BatchNorm frozen
    at its stored statistics (mean 0, variance 1: their training never updated them)."""
    return VAEConfig(latent_dim=latent_dim, logvar_activation="softplus", transform_last_activation="relu",
                     decoder_out_channels=3, freeze_batch_norm=True)


def import_authors_weights(weights_dir: str | os.PathLike) -> RSEVAE:
    """An RSEVAE holding the authors' Y, U and V models (their variables copied in layer order)."""
    dirs = find_authors_channel_dirs(weights_dir)
    enc_vals = {c: _saved_variables(d / "encoder") for c, d in dirs.items()}
    cfg = authors_config(latent_dim=int(enc_vals["Y"][-1].shape[-1]))
    model = build_vae(cfg)
    for s, c in enumerate(cfg.channels):
        _copy_in_order(model.encoders[s], enc_vals[c], dirs[c] / "encoder")
        _copy_in_order(model.transforms[s], _saved_variables(dirs[c] / "transform"), dirs[c] / "transform")
        _copy_in_order(model.decoders[s], _saved_variables(dirs[c] / "decoder"), dirs[c] / "decoder")
    return model


def load_any(model_dir: str | None = None, authors_weights: str | None = None,
             precision: str | None = None) -> RSEVAE:
    """Our saved model (a folder, or a shipped name such as "authors") or the authors' SavedModels
    folder, whichever is given (exactly one)."""
    if (model_dir is None) == (authors_weights is None):
        raise ConfigError("give exactly one of --model_dir and --authors_weights")
    if model_dir is not None:
        return load_model(model_dir, precision=precision)
    model = import_authors_weights(authors_weights)
    if precision is None or precision == model.cfg.precision:
        return model
    return with_precision(model, precision)


def with_precision(model: RSEVAE, precision: str) -> RSEVAE:
    """The same weights in a model computing in `precision` (variables float32 in both)."""
    again = build_vae(dataclasses.replace(model.cfg, precision=precision))
    again.set_weights(model.get_weights())
    return again
