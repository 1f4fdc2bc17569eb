"""Focal loss (Lin et al. 2017), multi-class softmax form: -(1 - p_t)^gamma * log p_t.

It is a different base loss, not a weighting: ``FocalWeighter`` overrides
``per_sample_loss`` and keeps unit weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from law.errors import ConfigError
from law.weighting import Weighter

_REDUCTIONS = ("none", "mean", "sum")


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float, reduction: str = "none") -> torch.Tensor:
    """Focal loss of (B, C) logits against (B,) class indices; ``gamma = 0`` is cross-entropy.

    Finite in value and gradient for any finite logits, including saturated ones
    (p_t -> 1 or p_t -> 0) and 0 < gamma < 1.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if gamma == 0:
        return F.cross_entropy(logits, targets, reduction=reduction)
    if logits.shape[-1] < 2:
        raise ValueError("focal loss needs at least 2 classes")

    log_probs = F.log_softmax(logits, dim=-1)
    target_index = targets[:, None]
    log_p_t = log_probs.gather(-1, target_index).squeeze(-1)
    # (1 - p_t)^gamma is formed as exp(gamma * log(1 - p_t)), with log(1 - p_t) taken as the
    # logsumexp of the *other* classes' log-probabilities. Writing 1 - p_t as a difference
    # would round to 0 when p_t -> 1, and d/dx x^gamma = gamma * x^(gamma - 1) is infinite at
    # x = 0 for gamma < 1 (inf * 0 = NaN in backward). The logsumexp form stays finite for
    # finite logits (e.g. -2e4 for logits [1e4, -1e4]) and has bounded gradients, so the
    # factor underflows smoothly to 0 with gradient 0 instead.
    log_one_minus_p_t = log_probs.scatter(-1, target_index, float("-inf")).logsumexp(dim=-1)
    losses = -torch.exp(gamma * log_one_minus_p_t) * log_p_t

    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


@dataclass
class FocalConfig:
    """Focal-loss baseline."""

    gamma: float = 2.0
    """Focusing parameter; 0 is plain cross-entropy, the paper's default is 2."""

    def validate(self) -> None:
        if self.gamma < 0:
            raise ConfigError("gamma", f"must be >= 0 (0 is plain cross-entropy), got {self.gamma}")


class FocalWeighter(Weighter):
    """Unit weights on focal per-sample losses."""

    name = "focal"

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        FocalConfig(gamma).validate()
        self.gamma = gamma

    def per_sample_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, targets, self.gamma)
