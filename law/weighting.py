"""The one weighter interface every method implements.

A weighter turns a training batch into per-sample losses and non-negative
per-sample weights. The trainer minimises ``mean(weights * losses)`` and never
asks which method it is talking to: plain CE, focal loss, class-balanced CE,
LOW, L2RW, SPL/OHEM and LAW's tanh policy are all weighters.

Convention: weights have mean 1 when a method "does nothing", so the learning
rate means the same thing for every method. A method defined with weights that
sum to 1 (L2RW) returns ``batch_size * w``; ``mean(B * w * l) == sum(w * l)``.

Most weighters only need ``weights(inputs)``. A weighter that must see the
model or run extra passes (L2RW's meta-gradient, which shares the training
forward) overrides ``forward`` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Progress:
    """Where training is: some weighters (SPL, OHEM, LAW stages) depend on it."""

    step: int = 0
    """Optimiser steps taken so far."""
    epoch: float = 0.0
    """Fractional epochs done so far."""
    total_epochs: float = 1.0
    """Length of the whole run in epochs."""


@dataclass
class WeightInputs:
    """What a weighter may look at to weight one batch. Tensors are detached."""

    logits: torch.Tensor
    """(B, C) outputs of the network being trained."""
    targets: torch.Tensor
    """(B,) observed (possibly noisy) labels."""
    losses: torch.Tensor
    """(B,) per-sample base losses."""
    progress: Progress
    """Training progress."""


MetaBatchFn = Callable[[], tuple[torch.Tensor, torch.Tensor]]
"""Returns one clean (inputs, targets) batch from the meta set (L2RW)."""


class Weighter:
    """Base class: cross-entropy losses with unit weights (plain CE).

    Subclasses override ``per_sample_loss`` (a different base loss, e.g. focal),
    ``weights`` (a weighting scheme) or, rarely, ``forward`` (schemes that need
    the model itself).
    """

    name = "ce"
    needs_meta_batch = False
    """True for weighters that need ``meta_batch`` set (L2RW)."""

    def __init__(self) -> None:
        self.meta_batch: Optional[MetaBatchFn] = None

    def per_sample_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none")

    def weights(self, batch: WeightInputs) -> torch.Tensor:
        return torch.ones_like(batch.losses)

    def forward(
        self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, progress: Progress
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass: returns (logits, per-sample losses, weights).

        ``losses`` carry the autograd graph; ``weights`` are constants.
        """
        logits = model(inputs)
        losses = self.per_sample_loss(logits, targets)
        batch = WeightInputs(logits.detach(), targets, losses.detach(), progress)
        return logits, losses, self.weights(batch).detach()

    def state_dict(self) -> dict:
        """Anything a weighter must carry across a checkpoint (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The loss every method minimises: mean of weighted per-sample losses."""
    return (weights * losses).mean()

