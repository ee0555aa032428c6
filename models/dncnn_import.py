"""Import DnCNN MatConvNet weights (MATLAB v7.3 `.mat`, read with h5py) into R3L/R3N networks.

The DnCNN-25 grey model holds 17 convolutions (BatchNorm already folded in),
interleaved with ReLUs in `net.layers`: conv k (1-based) is entry 2(k-1). The
R3L authors (their PPO_batch.py, loading the same model converted to PyTorch)
initialise the dilated layers from every third DnCNN convolution and leave the
first and last layers at He-normal initialisation:

| R3L layer (dilation)  | DnCNN conv (1-based) | `net.layers` entry | shape (3,3,64,64) |
|-----------------------|----------------------|--------------------|-------------------|
| conv1 (1)             | -- (He normal)       |                    |                   |
| conv2 (2)             | 4                    | 6                  | yes               |
| conv3 (3)             | 7                    | 12                 | yes               |
| conv4 (4)             | 10                   | 18                 | yes               |
| pi5 and v5 (3)        | 13                   | 24                 | yes               |
| pi6 and v6 (2)        | 16                   | 30                 | yes               |
| pi7, v7 (1)           | -- (He normal)       |                    |                   |

h5py reads MATLAB's column-major W(h, w, in, out) as an array (out, in, w, h);
TensorFlow wants (h, w, in, out), hence `transpose(3, 2, 1, 0)`. A trailing
singleton dimension (the last layer's out = 1) is dropped by MATLAB and restored.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.errors import DataError

#: R3L layer name -> 1-based DnCNN convolution index (the authors' mapping).
R3L_FROM_DNCNN: dict[str, int] = {"conv2": 4, "conv3": 7, "conv4": 10, "pi5": 13, "v5": 13, "pi6": 16, "v6": 16}


def _text(group) -> str:
    return "".join(chr(c) for c in np.asarray(group[()]).ravel())


def load_dncnn_mat(path: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """All convolutions of a MatConvNet DnCNN file as (kernel (3,3,in,out), bias (out,)) in order."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--init_dncnn: {path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"--init_dncnn: {path}: not a MATLAB v7.3 (HDF5) file ({exc})") from None
    with f:
        try:
            refs = f["net"]["layers"][()].ravel()
        except KeyError:
            raise DataError(f"--init_dncnn: {path}: no net.layers (not a MatConvNet simplenn model)") from None
        convs = []
        for ref in refs:
            layer = f[ref]
            if "type" not in layer or _text(layer["type"]) != "conv":
                continue
            w_ref, b_ref = layer["weights"][()].ravel()[:2]
            w = np.asarray(f[w_ref][()], dtype=np.float32)
            b = np.asarray(f[b_ref][()], dtype=np.float32).ravel()
            if w.ndim == 3:  # MATLAB dropped the trailing out = 1
                w = w[None]
            convs.append((np.ascontiguousarray(w.transpose(3, 2, 1, 0)), b))
    if not convs:
        raise DataError(f"--init_dncnn: {path}: holds no convolution layers")
    return convs


def init_from_dncnn(network, path: str | os.PathLike, mapping: dict[str, int] | None = None) -> dict[str, int]:
    """Copy DnCNN convolutions into `network` (R3LNet or R3NNet, built); returns the mapping used.

    Layers the network does not have (e.g. the value head of R3N) are skipped.
    """
    convs = load_dncnn_mat(path)
    mapping = dict(R3L_FROM_DNCNN if mapping is None else mapping)
    named = network.named_convs()
    used = {}
    for name, index in mapping.items():
        if name not in named:
            continue
        if not 1 <= index <= len(convs):
            raise DataError(f"--init_dncnn: {path}: has {len(convs)} convolutions, no conv {index} for {name}")
        kernel, bias = convs[index - 1]
        layer = named[name]
        if tuple(layer.kernel.shape) != kernel.shape or tuple(layer.bias.shape) != bias.shape:
            raise DataError(
                f"--init_dncnn: {path}: conv {index} has shape {kernel.shape}, layer {name} needs {tuple(layer.kernel.shape)}"
            )
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        used[name] = index
    return used


def check_dncnn(convs: list[tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, channels: int = 1) -> None:
    """A DataError naming the file unless `convs` chain as a DnCNN for `channels`-channel images:
    3x3 kernels, each layer's input width the previous output width, image channels in and out."""
    if len(convs) < 2:
        raise DataError(f"--init_dncnn: {path}: {len(convs)} convolution(s), not a DnCNN model")
    width = channels
    for i, (kernel, bias) in enumerate(convs, start=1):
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or kernel.shape[2] != width or bias.shape != kernel.shape[3:]:
            raise DataError(f"--init_dncnn: {path}: conv {i} has kernel {kernel.shape} after {width} channels, "
                            f"not a DnCNN model for {channels}-channel images")
        width = kernel.shape[3]
    if width != channels:
        raise DataError(f"--init_dncnn: {path}: outputs {width} channels, not a {channels}-channel DnCNN")


def dncnn_denoiser(path: str | os.PathLike, channels: int = 1):
    """The whole DnCNN of a MatConvNet file as a compiled function noisy (B,H,W,C) -> its estimate.

    DnCNN predicts the noise (convs with ReLU between them, BatchNorm folded in), so the
    estimate is noisy minus the last layer's output. Used as R3L's warm-start teacher.
    """
    import tensorflow as tf

    convs = load_dncnn_mat(path)
    check_dncnn(convs, path, channels)
    kernels = [(tf.constant(k), tf.constant(b)) for k, b in convs]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
    def denoise(noisy):
        x = noisy
        for i, (kernel, bias) in enumerate(kernels):
            x = tf.nn.conv2d(x, kernel, 1, "SAME") + bias
            x = tf.nn.relu(x) if i < len(kernels) - 1 else x
        return noisy - x

    return denoise
