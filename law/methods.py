"""Method names -> weighters. The only place that interprets ``--method``.

The trainer never special-cases a method: it gets a ``Weighter`` from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from baselines.class_balanced import ClassBalancedWeighter
from baselines.curriculum import OHEMWeighter, SPLWeighter
from baselines.focal import FocalWeighter
from baselines.l2rw import L2RWWeighter
from baselines.low import LOWWeighter
from law.errors import ConfigError
from law.weighting import Weighter

BASE_LOSSES = ("ce", "focal", "cb")


@dataclass
class MethodConfig:
    """Which weighting method to train with, and its hyper-parameters."""

    method: str = "ce"
    """Weighting method: ce | focal | cb | low | l2rw | spl | ohem."""
    focal_gamma: float = 2.0
    """Focal loss focusing parameter gamma (0 = cross-entropy)."""
    cb_beta: float = 0.9999
    """Class-balanced beta for the effective number (1-beta)/(1-beta^n); 0 = inverse frequency."""
    low_lambda: float = 1.0
    """LOW's lambda: larger keeps weights closer to 1 (paper grid 1, 0.5, 0.1, 0.01)."""
    low_base: str = "ce"
    """Base loss LOW weights on top of: ce | focal | cb."""
    low_score_scale: str = "sample"
    """LOW gradient-norm scores of each sample's own loss (sample) or of the batch-mean loss as the official code (batch_mean)."""
    meta_size: int = 1000
    """L2RW: size of the clean meta set, taken from the validation split."""
    meta_batch_size: int = 128
    """L2RW: clean batch size per training step."""
    curriculum_a: float = 1.0
    """SPL/OHEM: steepness per epoch of the logistic ramp of m (samples used), rescaled to reach the whole batch by mid-training (0 = linear)."""
    curriculum_min_fraction: float = 0.2
    """SPL/OHEM: fraction of the batch used at the start of training."""

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError("method", f"unknown method '{self.method}'; known: {', '.join(METHODS)}")
        if self.focal_gamma < 0:
            raise ConfigError("focal_gamma", f"must be >= 0, got {self.focal_gamma}")
        if not 0 <= self.cb_beta < 1:
            raise ConfigError("cb_beta", f"must be in [0, 1), got {self.cb_beta}")
        if not self.low_lambda > 0:
            raise ConfigError("low_lambda", f"must be > 0, got {self.low_lambda}")
        if self.low_base not in BASE_LOSSES:
            raise ConfigError("low_base", f"unknown base loss '{self.low_base}'; known: {', '.join(BASE_LOSSES)}")
        if self.low_score_scale not in ("sample", "batch_mean"):
            raise ConfigError("low_score_scale", "choose sample or batch_mean")
        if self.meta_size < 1 or self.meta_batch_size < 1:
            raise ConfigError("meta_size", "meta_size and meta_batch_size must be >= 1")
        if not 0 < self.curriculum_min_fraction <= 1:
            raise ConfigError("curriculum_min_fraction", "must be in (0, 1]")


def _ce(cfg: MethodConfig, class_counts) -> Weighter:
    return Weighter()


def _focal(cfg: MethodConfig, class_counts) -> Weighter:
    return FocalWeighter(gamma=cfg.focal_gamma)


def _cb(cfg: MethodConfig, class_counts) -> Weighter:
    return ClassBalancedWeighter(class_counts, beta=cfg.cb_beta or None)


def _low(cfg: MethodConfig, class_counts) -> Weighter:
    base = METHODS[cfg.low_base](cfg, class_counts)
    return LOWWeighter(lam=cfg.low_lambda, base=base, score_scale=cfg.low_score_scale)


def _l2rw(cfg: MethodConfig, class_counts) -> Weighter:
    return L2RWWeighter()


def _spl(cfg: MethodConfig, class_counts) -> Weighter:
    return SPLWeighter(a=cfg.curriculum_a, min_fraction=cfg.curriculum_min_fraction)


def _ohem(cfg: MethodConfig, class_counts) -> Weighter:
    return OHEMWeighter(a=cfg.curriculum_a, min_fraction=cfg.curriculum_min_fraction)


METHODS: dict[str, Callable[[MethodConfig, object], Weighter]] = {
    "ce": _ce, "focal": _focal, "cb": _cb, "low": _low, "l2rw": _l2rw, "spl": _spl, "ohem": _ohem,
}


def build_weighter(cfg: MethodConfig, class_counts) -> Weighter:
    """The weighter for ``cfg.method``; ``class_counts`` are observed train label counts."""
    cfg.validate()
    return METHODS[cfg.method](cfg, class_counts)
