"""Write a tiny MatConvNet simplenn model the way MATLAB v7.3 stores it (HDF5), for the DnCNN importer's tests.

Layout (as in the real DnCNN-25 file): `net/layers` is a (L, 1) array of object
references, each to a group with `type` (uint16 character codes) and, for
convolutions, `weights`: references to W and b. MATLAB is column-major, so h5py sees
W(h, w, in, out) as an array (out, in, w, h), with a trailing out = 1 dropped.
"""
from __future__ import annotations

import h5py
import numpy as np


def _chars(text: str) -> np.ndarray:
    return np.array([ord(c) for c in text], np.uint16)[:, None]


def write_matconvnet_dncnn(path, convs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """`convs`: (kernel (3,3,in,out), bias (out,)) per convolution, ReLU between them."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        layers = []
        for i, (kernel, bias) in enumerate(convs):
            conv = refs.create_group(f"conv{i}")
            conv.create_dataset("type", data=_chars("conv"))
            w = np.asarray(kernel, np.float32).transpose(3, 2, 1, 0)
            if w.shape[0] == 1:
                w = w[0]  # MATLAB drops the trailing singleton dimension
            w_ds = refs.create_dataset(f"w{i}", data=w)
            b_ds = refs.create_dataset(f"b{i}", data=np.asarray(bias, np.float32)[None, :])
            conv.create_dataset("weights", data=np.array([[w_ds.ref], [b_ds.ref]], dtype=h5py.ref_dtype))
            layers.append(conv.ref)
            if i < len(convs) - 1:
                relu = refs.create_group(f"relu{i}")
                relu.create_dataset("type", data=_chars("relu"))
                layers.append(relu.ref)
        f.create_group("net").create_dataset("layers", data=np.array(layers, dtype=h5py.ref_dtype)[:, None])


def random_dncnn(width: int, depth: int = 17, channels: int = 1, seed: int = 0, scale: float = 0.05):
    """Random DnCNN-shaped convolutions: channels -> width x (depth - 1) -> channels."""
    rng = np.random.default_rng(seed)
    sizes = [channels] + [width] * (depth - 1) + [channels]
    return [(rng.normal(0, scale, (3, 3, a, b)).astype(np.float32), rng.normal(0, scale, b).astype(np.float32))
            for a, b in zip(sizes[:-1], sizes[1:])]
