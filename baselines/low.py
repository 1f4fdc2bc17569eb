"""LOW: Learning Optimal samples Weights (Santiago et al.), solved exactly per batch.

Each sample is scored by the norm of its loss gradient, approximated at the
last layer's pre-activations (the logits): ``g_i = ||d l_i / d z_i||``. The
weights solve, per batch::

    max_w  sum_i w_i g_i^2 - lam * ||w - 1||^2   s.t.  w >= 0,  mean(w) = 1

Completing the square, the objective is ``-lam * ||w - v||^2 + const`` with
``v = 1 + g^2 / (2 lam)``, so the solution is the Euclidean projection of ``v``
onto the scaled simplex ``{w >= 0, sum w = B}``: ``w = max(v - tau, 0)``, with
``tau`` found by one sort (Duchi et al. 2008). Exact, O(B log B), on the device.

Why the default ``lam = 1`` with per-sample scores: for cross-entropy
``g_i^2 = ||softmax(z_i) - onehot(y_i)||^2`` lies in [0, 2], and while no
weight is clipped ``w_i = 1 + (g_i^2 - mean(g^2)) / (2 lam)``. At ``lam = 1``
that never clips and spans [0, 2]: confident samples fade out, hard ones count
up to twice. Smaller values of the paper's grid (0.5, 0.1, 0.01) clip more and
more of the batch to 0 until a few hardest samples carry it. The official code
scores the gradient of the *batch-mean* loss, an extra ``1/B``
(``score_scale="batch_mean"``): at its ``lam = 0.1`` and B = 128 every weight
stays within ``2 / (2 * 0.1 * 128^2) ~ 6e-4`` of 1, i.e. LOW does nothing.

LOW sits on top of a base loss (CE, focal, class-balanced CE): the scored
loss is ``l'_i = b_i * l_i`` with the base weights ``b`` and the final weights
are ``b * w``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from law.errors import ConfigError
from law.weighting import WeightInputs, Weighter

SCORE_SCALES = ("sample", "batch_mean")


@dataclass
class LOWConfig:
    """LOW weighting on top of a base loss."""

    lam: float = 1.0
    """Penalty on ||w - 1||^2: larger keeps weights closer to 1 (paper grid 1, 0.5, 0.1, 0.01)."""
    score_scale: str = "sample"
    """Score each sample's own loss gradient (sample) or the batch-mean loss's as the official code (batch_mean)."""

    def validate(self) -> None:
        if not self.lam > 0:
            raise ConfigError("lam", f"must be > 0 (e.g. 1, 0.5, 0.1), got {self.lam}")
        if self.score_scale not in SCORE_SCALES:
            raise ConfigError("score_scale", f"choose one of {', '.join(SCORE_SCALES)}, got {self.score_scale!r}")


def project_onto_scaled_simplex(values: torch.Tensor, total: float) -> torch.Tensor:
    """Euclidean projection of a 1-D tensor onto ``{w >= 0, sum(w) = total}`` (sort-based, exact)."""
    descending = values.sort(descending=True).values
    excess = descending.cumsum(0) - total
    k = torch.arange(1, values.numel() + 1, device=values.device, dtype=values.dtype)
    # The support is a prefix of the sorted values: those still above the running threshold.
    support = (descending * k > excess).sum()  # >= 1: the largest value always qualifies
    threshold = excess.gather(0, (support - 1).unsqueeze(0)) / support
    return (values - threshold).clamp_min(0)


def low_weights(scores: torch.Tensor, lam: float) -> torch.Tensor:
    """Exact solution of ``max_w sum w_i g_i^2 - lam ||w - 1||^2, w >= 0, mean(w) = 1``."""
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    return project_onto_scaled_simplex(1 + scores.square() / (2 * lam), float(scores.numel()))


def ce_logit_gradient_norm(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``||d CE(z_i, y_i) / d z_i|| = ||softmax(z_i) - onehot(y_i)||`` per sample."""
    residual = logits.softmax(-1) - F.one_hot(targets, logits.shape[-1])
    return torch.linalg.vector_norm(residual, dim=-1)


def logit_gradient_norm(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``||d l_i / d z_i||`` per sample for any per-sample loss, in one backward call.

    ``l_i`` depends on ``z_i`` only, so the gradient of ``sum_i l_i`` has row i equal to ``d l_i / d z_i``.
    """
    with torch.enable_grad():
        z = logits.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(z, targets).sum(), z)
    return torch.linalg.vector_norm(grad, dim=-1)


class LOWWeighter(Weighter):
    """LOW weights times the base weighter's weights, on the base weighter's losses."""

    name = "low"

    def __init__(self, lam: float = 1.0, base: Optional[Weighter] = None, score_scale: str = "sample") -> None:
        super().__init__()
        LOWConfig(lam, score_scale).validate()
        self.lam, self.score_scale = lam, score_scale
        self.base = base if base is not None else Weighter()
        if type(self.base).forward is not Weighter.forward:
            raise ConfigError("low_base", f"LOW cannot sit on '{self.base.name}', which runs its own forward; "
                                          "use ce, focal or cb")
        self._cross_entropy_base = type(self.base).per_sample_loss is Weighter.per_sample_loss

    def per_sample_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.base.per_sample_loss(logits, targets)

    def scores(self, batch: WeightInputs, base_weights: torch.Tensor) -> torch.Tensor:
        """``||d l'_i / d z_i||`` for the base-weighted loss ``l'_i = b_i * l_i``."""
        logits = batch.logits.float()
        if self._cross_entropy_base:
            norms = ce_logit_gradient_norm(logits, batch.targets)
        else:
            norms = logit_gradient_norm(self.base.per_sample_loss, logits, batch.targets)
        scores = base_weights * norms
        return scores / len(scores) if self.score_scale == "batch_mean" else scores

    def weights(self, batch: WeightInputs) -> torch.Tensor:
        base_weights = self.base.weights(batch).float()
        return base_weights * low_weights(self.scores(batch, base_weights), self.lam)

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state["base"])
