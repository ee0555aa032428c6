"""Residual-recovery environment of R3L, vectorised over a batch of images.

State: the current image I_t, float (B,H,W,C) in the [0,1] scale; I_0 is the noisy input.
Action: one integer in 0..26 per pixel and channel, meaning the residual
(a - 13)/255, i.e. one of {-13, ..., 13}/255; I_{t+1} = I_t + residual.
Reward per pixel and channel (the authors' Environment.py convention, images in
[0,1]): r_t = 255 * [(x - I_{t-1})^2 - (x - I_t)^2], x the clean image, where
I_{t-1} is the state before and I_t the state after the action. Over an episode the
rewards therefore sum to 255 * [(x - I_0)^2 - (x - I_T)^2]: the decrease in squared
error, scaled by 255. Episodes last `steps` = 6 actions. As in the authors' code the
state is not clipped to [0,1] during an episode (scores clip at the end).

`transition` is the pure (traceable) form PPO compiles into its rollout; `reset`/`step`
are the stateful eager form. `expert_actions` gives the warm start's cloning targets:
the quantised residual that moves each pixel toward a target image.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from data.errors import DataError


class ResidualRecoveryEnv:
    """Batch environment following rl.ppo.BatchImageEnv."""

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

    def transition(self, image, actions, clean) -> tuple[tf.Tensor, tf.Tensor]:
        """Pure step: (next image, per-pixel reward against `clean`)."""
        after = image + self.residuals(actions)
        return after, 255.0 * (tf.square(clean - image) - tf.square(clean - after))

    def expert_actions(self, image, target) -> tf.Tensor:
        """The action whose residual moves each pixel of `image` toward `target`, quantised to
        1/255 and clipped to +-max_residual (int32, the shape of `image`)."""
        steps = tf.round(255.0 * (tf.cast(target, tf.float32) - tf.cast(image, tf.float32)))
        m = float(self.max_residual)
        return tf.cast(tf.clip_by_value(steps, -m, m) + m, tf.int32)

    def expert_rollout(self, noisy, target) -> tf.Tensor:
        """The expert's actions for each step (T, *shape), following its own path from `noisy`."""
        image = tf.convert_to_tensor(noisy, tf.float32)
        actions = []
        for _ in range(self.episode_length):
            actions.append(self.expert_actions(image, target))
            image = image + self.residuals(actions[-1])
        return tf.stack(actions)

    def reset(self, noisy, clean) -> tf.Tensor:
        """Start an episode from `noisy` (I_0); `clean` is kept only to compute rewards."""
        noisy = tf.convert_to_tensor(noisy, tf.float32)
        clean = tf.convert_to_tensor(clean, tf.float32)
        if clean.shape != noisy.shape:
            raise DataError(f"noisy {noisy.shape} and clean {clean.shape} images differ in shape")
        self._clean, self._image, self._t = clean, noisy, 0
        return noisy

    def step(self, actions) -> tuple[tf.Tensor, tf.Tensor, bool]:
        """Apply one residual per pixel; returns (I_t, per-pixel reward, episode done)."""
        if self._image is None:
            raise RuntimeError("ResidualRecoveryEnv.step called before reset")
        self._image, reward = self.transition(self._image, actions, self._clean)
        self._t += 1
        return self._image, reward, self._t >= self.episode_length


def greedy_denoise(policy_logits: Callable[[tf.Tensor], tf.Tensor], noisy, max_residual: int = 13, steps: int = 6,
                   rule: str = "argmax") -> tf.Tensor:
    """Inference: the deterministic policy's residual at every pixel for `steps` steps.

    `rule`: "argmax" (the most probable residual, the authors') or "mean" (the residual
    nearest the policy's mean; rl.ppo.deterministic_actions). Takes only the noisy image
    (no clean image anywhere), so it can run on real data. `policy_logits` maps images
    (B,H,W,C) to logits (B,H,W,C,A).
    """
    from rl.ppo import deterministic_actions

    image = tf.convert_to_tensor(noisy, tf.float32)
    for _ in range(steps):
        actions = deterministic_actions(policy_logits(image), rule)
        image = image + (tf.cast(actions, tf.float32) - float(max_residual)) / 255.0
    return image
