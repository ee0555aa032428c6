"""Residual-recovery environment of R3L (SPEC section 3), vectorised over a batch of images.

State: the current image I_t, float (B,H,W,C) in the [0,1] scale; I_0 is the noisy input.
Action: one integer in 0..26 per pixel and channel, meaning the residual
(a - 13)/255, i.e. one of {-13, ..., 13}/255; I_{t+1} = I_t + residual.
Reward per pixel and channel (the authors' Environment.py convention, images in
[0,1]): r_t = 255 * [(x - I_{t-1})^2 - (x - I_t)^2], x the clean image, where
I_{t-1} is the state before and I_t the state after the action. Over an episode the
rewards therefore sum to 255 * [(x - I_0)^2 - (x - I_T)^2]: the decrease in squared
error, scaled by 255. Episodes last `steps` = 6 actions. As in the authors' code the
state is not clipped to [0,1] during an episode (scores clip at the end).
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from data.errors import DataError


class ResidualRecoveryEnv:
    """Batch environment following rl.ppo.BatchImageEnv; holds the episode's tensors."""

    def __init__(self, max_residual: int = 13, steps: int = 6):
        self.max_residual = int(max_residual)
        self.num_actions = 2 * self.max_residual + 1
        self.episode_length = int(steps)
        self._clean = None
        self._image = None
        self._t = 0

    def residuals(self, actions) -> tf.Tensor:
        """Action indices -> residuals in the [0,1] image scale."""
        return (tf.cast(actions, tf.float32) - float(self.max_residual)) / 255.0

    def reset(self, clean, noisy) -> tf.Tensor:
        """Start an episode from `noisy` (I_0); `clean` is kept only to compute rewards."""
        clean = tf.convert_to_tensor(clean, tf.float32)
        noisy = tf.convert_to_tensor(noisy, tf.float32)
        if clean.shape != noisy.shape:
            raise DataError(f"clean {clean.shape} and noisy {noisy.shape} images differ in shape")
        self._clean, self._image, self._t = clean, noisy, 0
        return noisy

    def step(self, actions) -> tuple[tf.Tensor, tf.Tensor, bool]:
        """Apply one residual per pixel; returns (I_t, per-pixel reward, episode done)."""
        if self._image is None:
            raise RuntimeError("ResidualRecoveryEnv.step called before reset")
        previous = self._image
        self._image = previous + self.residuals(actions)
        reward = 255.0 * (tf.square(self._clean - previous) - tf.square(self._clean - self._image))
        self._t += 1
        return self._image, reward, self._t >= self.episode_length


def greedy_denoise(policy_logits: Callable[[tf.Tensor], tf.Tensor], noisy, max_residual: int = 13, steps: int = 6) -> tf.Tensor:
    """Inference: take the most probable residual at every pixel for `steps` steps.

    Takes only the noisy image (no clean image anywhere), so it can run on real data.
    `policy_logits` maps images (B,H,W,C) to logits (B,H,W,C,A).
    """
    image = tf.convert_to_tensor(noisy, tf.float32)
    for _ in range(steps):
        actions = tf.argmax(policy_logits(image), axis=-1)
        image = image + (tf.cast(actions, tf.float32) - float(max_residual)) / 255.0
    return image
