"""R3L's fully convolutional policy/value network and the R3N supervised baseline.

Both share one trunk of 3x3 convolutions with 64 channels and dilations 1, 2, 3, 4
(ReLU). R3L adds a policy head (dilations 3, 2, 1 -> 27-way logits per pixel and
channel) and a value head (3, 2, 1 -> one value per pixel and channel). R3N keeps
the same trunk and policy-head shape but outputs one tanh residual per pixel and
channel, applied recurrently for the same number of steps and trained with MSE,
so the two differ only in how they are trained (the paper's comparison).

`R3LNetConfig.precision = "mixed_bfloat16"` computes the hidden convolutions in
bfloat16 (float32 variables; 2-3x faster training on CPUs with AVX512-BF16 and on
GPUs) and keeps each head's last convolution, hence the logits and values, in float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16")
POLICY_INITS = ("noop", "he")
NOOP_LOGIT = 2.0  # initial logit of the no-op action (the others 0): greedy = identity, sampling still explores


@dataclass(frozen=True)
class R3LNetConfig:
    """Shape of the network; defaults are the authors' (grey images, 27 actions)."""

    channels: int = 1
    width: int = 64
    num_actions: int = 27
    trunk_dilations: tuple[int, ...] = (1, 2, 3, 4)
    head_dilations: tuple[int, ...] = (3, 2, 1)
    precision: str = "float32"  # or "mixed_bfloat16": hidden layers in bfloat16, outputs float32
    policy_init: str = "noop"  # "noop": the policy starts at the no-op residual; "he": He normal (authors)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.policy_init not in POLICY_INITS:
            raise ValueError(f"--policy_init: {self.policy_init!r} is not one of {', '.join(POLICY_INITS)}")


def _conv(filters: int, dilation: int, name: str, activation: str | None = "relu",
          dtype: str = "float32") -> tf.keras.layers.Conv2D:
    return tf.keras.layers.Conv2D(
        filters, 3, padding="same", dilation_rate=dilation, activation=activation,
        kernel_initializer="he_normal", name=name, dtype=dtype,
    )


def _head(cfg: R3LNetConfig, prefix: str, out_channels: int) -> list[tf.keras.layers.Conv2D]:
    dil = cfg.head_dilations
    layers = [_conv(cfg.width, d, f"{prefix}{i + 5}", dtype=cfg.precision) for i, d in enumerate(dil[:-1])]
    layers.append(_conv(out_channels, dil[-1], f"{prefix}{len(dil) + 4}", activation=None))  # float32 output
    return layers


class _Trunk(tf.keras.layers.Layer):
    """The shared dilated trunk; layer names conv1..conv4 (used by the DnCNN importer)."""

    def __init__(self, cfg: R3LNetConfig, **kwargs):
        super().__init__(**kwargs)
        self.convs = [_conv(cfg.width, d, f"conv{i + 1}", dtype=cfg.precision)
                      for i, d in enumerate(cfg.trunk_dilations)]

    def call(self, x):
        for conv in self.convs:
            x = conv(x)
        return x


def noop_bias(channels: int, num_actions: int) -> np.ndarray:
    """(C, A) bias of the last policy layer: NOOP_LOGIT on the residual-0 action, 0 elsewhere."""
    bias = np.zeros((channels, num_actions), np.float32)
    bias[:, num_actions // 2] = NOOP_LOGIT
    return bias


class _OrdinalKernel(tf.keras.initializers.Initializer):
    """Last policy kernel W[..., c, a] = (a - A//2) / (A//2) * w[..., c], w small He-normal.

    The logits then start as a small ordinal ramp over the residuals (the mean-rule policy
    starts at the identity), so the gradient reaching the trunk is w times (mean action -
    target action), a regression signal like R3N's; with 27 independent random (or zero)
    columns it is a random mixture (bench/r3l_cloning.py, docs/r3l.md).
    """

    def __init__(self, channels: int, num_actions: int, scale: float = 0.02):
        self.channels, self.num_actions, self.scale = channels, num_actions, scale

    def __call__(self, shape, dtype=None, **kwargs):
        kh, kw, fan_in, out = shape
        half = self.num_actions // 2
        w = tf.random.normal([kh, kw, fan_in, self.channels, 1], stddev=self.scale * np.sqrt(2.0 / (kh * kw * fan_in)))
        ramp = (tf.range(self.num_actions, dtype=tf.float32) - half) / half
        return tf.cast(tf.reshape(w * ramp, [kh, kw, fan_in, out]), dtype or tf.float32)

    def get_config(self):
        return {"channels": self.channels, "num_actions": self.num_actions, "scale": self.scale}


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


class R3LNet(tf.keras.Model):
    """Policy/value network: images (B,H,W,C) -> (logits (B,H,W,C,A), values (B,H,W,C))."""

    def __init__(self, cfg: R3LNetConfig = R3LNetConfig(), **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.trunk = _Trunk(cfg, name="trunk")
        self.policy_layers = _head(cfg, "pi", cfg.channels * cfg.num_actions)
        self.value_layers = _head(cfg, "v", cfg.channels)
        if cfg.policy_init == "noop":
            last = self.policy_layers[-1]
            last.kernel_initializer = _OrdinalKernel(cfg.channels, cfg.num_actions)
            last.bias_initializer = tf.keras.initializers.Constant(noop_bias(cfg.channels, cfg.num_actions).ravel())

    def _logits(self, features):
        z = _run(self.policy_layers, features)
        shape = tf.shape(z)
        return tf.reshape(z, tf.concat([shape[:3], [self.cfg.channels, self.cfg.num_actions]], 0))

    def call(self, images, training=False):
        features = self.trunk(images)
        return self._logits(features), _run(self.value_layers, features)

    def policy_logits(self, images):
        """Logits only (inference: skips the value head)."""
        return self._logits(self.trunk(images))

    def build_for(self, channels: int | None = None) -> "R3LNet":
        """Create the variables by calling on a dummy image."""
        self(tf.zeros([1, 8, 8, channels or self.cfg.channels]))
        return self

    def named_convs(self) -> dict[str, tf.keras.layers.Conv2D]:
        """Every convolution by its stable name (conv1..4, pi5..7, v5..7)."""
        return {layer.name: layer for layer in [*self.trunk.convs, *self.policy_layers, *self.value_layers]}


class R3NNet(tf.keras.Model):
    """R3N baseline: the same trunk and head shape, one tanh residual per pixel and channel.

    A step is I_{t+1} = I_t + max_residual * tanh(f(I_t)); `call` unrolls `steps`
    steps (the recurrent network R3L is compared with), so gradients flow through
    the whole recursion when trained with MSE on the final image.
    """

    def __init__(self, cfg: R3LNetConfig = R3LNetConfig(), max_residual: float = 13.0 / 255.0, steps: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.max_residual = max_residual
        self.steps = steps
        self.trunk = _Trunk(cfg, name="trunk")
        self.policy_layers = _head(cfg, "pi", cfg.channels)

    def residual(self, images):
        return self.max_residual * tf.tanh(_run(self.policy_layers, self.trunk(images)))

    def call(self, images, training=False):
        x = images
        for _ in range(self.steps):
            x = x + self.residual(x)
        return x

    def build_for(self, channels: int | None = None) -> "R3NNet":
        self(tf.zeros([1, 8, 8, channels or self.cfg.channels]))
        return self

    def named_convs(self) -> dict[str, tf.keras.layers.Conv2D]:
        return {layer.name: layer for layer in [*self.trunk.convs, *self.policy_layers]}
