"""The policy's observation of a training run, built in one place.

``[stage_index, smoothed_train_loss, smoothed_val_accuracy]``: the stage about
to be trained, then an EMA over stage ends of the target's training loss
(clipped to ``[0, loss_clip]``) and of its validation accuracy. Both read 0
before any stage was observed. The search's environment and the data-parallel
trainer that applies a searched policy use this one builder, so a policy sees
in transfer exactly what it saw in the search.
"""
from __future__ import annotations

import math

import numpy as np


class StageObserver:
    """Smooths the per-stage training loss and validation accuracy into the observation."""

    def __init__(self, smoothing: float, loss_clip: float):
        self.smoothing, self.loss_clip = smoothing, loss_clip
        self.reset()

    def reset(self) -> None:
        self.loss = self.accuracy = math.nan

    def observe(self, loss: float, accuracy: float) -> None:
        """Fold in one stage end: the stage's mean training loss and the validation accuracy after it."""
        a, first = self.smoothing, math.isnan(self.loss)
        self.loss = loss if first else a * self.loss + (1 - a) * loss
        self.accuracy = accuracy if first else a * self.accuracy + (1 - a) * accuracy

    def observation(self, stage: int) -> np.ndarray:
        loss = min(max(self.loss, 0.0), self.loss_clip) if math.isfinite(self.loss) else 0.0
        accuracy = self.accuracy if math.isfinite(self.accuracy) else 0.0
        return np.array([stage, loss, accuracy], dtype=np.float32)

    def state(self) -> tuple[float, float]:
        return self.loss, self.accuracy

    def restore(self, state: tuple[float, float]) -> None:
        self.loss, self.accuracy = state
