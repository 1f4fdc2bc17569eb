"""Class-balanced weights: inverse frequency, or inverse effective number (Cui et al. 2019).

Cui et al. weight class ``c`` by ``1 / E_c`` with ``E_c = (1 - beta^n_c) / (1 - beta)``, the
expected volume covered by ``n_c`` samples that overlap with probability ``beta``.
``beta = 0`` gives uniform weights and ``beta -> 1`` tends to inverse frequency, so beta
interpolates between doing nothing and full re-balancing. Weights are scaled to sum to the
number of classes, so their mean over classes is 1 (the paper's normalisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from law.errors import ConfigError
from law.weighting import WeightInputs, Weighter

Counts = Union[Sequence[int], torch.Tensor]


def class_balanced_weights(counts: Counts, beta: Optional[float] = None) -> torch.Tensor:
    """(C,) float32 weights from per-class sample counts; ``beta=None`` means inverse frequency."""
    n = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if n.numel() == 0:
        raise ValueError("class counts are empty")
    empty = (n <= 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"class {empty[0]} has count {n[empty[0]].item():g}; every class needs at least one "
            "training sample for class-balanced weights (drop the class or use another method)"
        )
    if beta is None:
        weights = 1.0 / n
    else:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        # 1 - beta^n as -expm1(n log beta): no cancellation for beta close to 1.
        one_minus_beta_n = -torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64)))
        weights = (1.0 - beta) / one_minus_beta_n
    return (weights * (n.numel() / weights.sum())).float()


@dataclass
class ClassBalancedConfig:
    """Class-balanced cross-entropy baseline."""

    beta: float = 0.9999
    """Effective-number beta in [0, 1); 0 gives uniform weights, values near 1 approach inverse frequency."""
    inverse_frequency: bool = False
    """Ignore beta and weight each class by 1 / (its sample count)."""

    def validate(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ConfigError("beta", f"must be in [0, 1) (paper uses 0.9, 0.99, 0.999 or 0.9999), got {self.beta}")


class ClassBalancedWeighter(Weighter):
    """Cross-entropy weighted by a fixed per-class weight of each sample's (observed) label."""

    name = "cb"

    def __init__(self, class_counts: Counts, beta: Optional[float] = 0.9999) -> None:
        super().__init__()
        if beta is not None:
            ClassBalancedConfig(beta).validate()
        self.beta = beta
        self.class_weights = class_balanced_weights(class_counts, beta)

    def weights(self, batch: WeightInputs) -> torch.Tensor:
        if self.class_weights.device != batch.targets.device:
            self.class_weights = self.class_weights.to(batch.targets.device)  # once, then cached
        return self.class_weights[batch.targets]
