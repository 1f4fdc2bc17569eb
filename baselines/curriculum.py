"""Self-paced learning (SPL) and online hard example mining (OHEM) on a batch schedule.

Both train on ``m`` of the ``B`` samples of each batch: SPL on the ``m`` easiest
(lowest loss), OHEM on the ``m`` hardest, with ``m`` growing along the logistic
curve ``M * exp(a e) / (1 + exp(a e))`` until every sample is used by
mid-training, as compared in the dermoscopy weighting study.

Parametrisation (the formula alone fixes neither the start nor the end): the
logistic piece is centred half-way to ``full_at`` (mid-training by default),
``e`` counts epochs from that centre, and the piece between the start and
``full_at`` is rescaled to run from ``min_fraction * B`` to exactly ``B``::

    h = full_at * total_epochs / 2          e = clamp(epoch - h, -h, h)
    s = (sigmoid(a e) - sigmoid(-a h)) / (sigmoid(a h) - sigmoid(-a h))    in [0, 1]
    m = ceil(B * (min_fraction + (1 - min_fraction) * s))

so ``a`` (per epoch) only shapes the ramp: ``a -> 0`` is linear, large ``a`` a
step at ``full_at / 2``; from ``full_at`` on, ``m = B`` (plain training).

Weights are ``B / m`` on the selected samples and 0 elsewhere: mean one, so
the step is the mean loss over the selected samples, as if they were the
whole batch, and the learning rate means the same as in plain training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from law.errors import ConfigError
from law.weighting import Progress, WeightInputs, Weighter


@dataclass
class CurriculumConfig:
    """Batch-selection schedule shared by SPL and OHEM."""

    a: float = 1.0
    """Steepness of the logistic ramp per epoch (0 = linear ramp)."""
    min_fraction: float = 0.2
    """Fraction of each batch used at the start of training."""
    full_at: float = 0.5
    """Fraction of training from which every sample is used."""

    def validate(self) -> None:
        if not self.a >= 0:
            raise ConfigError("a", f"must be >= 0 (0 gives a linear ramp), got {self.a}")
        if not 0 < self.min_fraction <= 1:
            raise ConfigError("min_fraction", f"must be in (0, 1], got {self.min_fraction}")
        if not 0 < self.full_at <= 1:
            raise ConfigError("full_at", f"must be in (0, 1] (0.5 = mid-training), got {self.full_at}")


def ramp(epoch: float, total_epochs: float, a: float, full_at: float) -> float:
    """The rescaled logistic ramp ``s``: 0 at the start, 1 from ``full_at`` of training on."""
    half = full_at * total_epochs / 2
    if half <= 0:
        return 1.0
    e = min(max(epoch - half, -half), half)
    if a * half < 1e-6:  # the logistic piece is a straight line to within float precision
        return (e + half) / (2 * half)
    # sigmoid(x) = (1 + tanh(x / 2)) / 2 turns the ratio into tanh terms.
    return (math.tanh(a * e / 2) + math.tanh(a * half / 2)) / (2 * math.tanh(a * half / 2))


def samples_used(batch_size: int, progress: Progress, cfg: CurriculumConfig) -> int:
    """``m``: how many samples of a batch of ``batch_size`` the schedule uses now."""
    s = ramp(progress.epoch, progress.total_epochs, cfg.a, cfg.full_at)
    fraction = cfg.min_fraction + (1 - cfg.min_fraction) * s
    return min(max(math.ceil(batch_size * fraction - 1e-9), 1), batch_size)


class _BatchCurriculum(Weighter):
    hardest_first = False

    def __init__(self, a: float = 1.0, min_fraction: float = 0.2, full_at: float = 0.5) -> None:
        super().__init__()
        self.cfg = CurriculumConfig(a, min_fraction, full_at)
        self.cfg.validate()

    def weights(self, batch: WeightInputs) -> torch.Tensor:
        n = batch.losses.numel()
        m = samples_used(n, batch.progress, self.cfg)
        chosen = batch.losses.topk(m, largest=self.hardest_first, sorted=False).indices
        weights = torch.zeros_like(batch.losses)
        return weights.index_fill_(0, chosen, n / m)


class SPLWeighter(_BatchCurriculum):
    """Self-paced learning: the ``m`` lowest-loss samples of each batch, ``m`` growing to ``B``."""

    name = "spl"
    hardest_first = False


class OHEMWeighter(_BatchCurriculum):
    """Online hard example mining: the ``m`` highest-loss samples of each batch, ``m`` growing to ``B``."""

    name = "ohem"
    hardest_first = True
