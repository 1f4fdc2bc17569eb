"""A run's record and its summary: the one place "best", "last" and "at best val" are defined.

A run's history is one record per evaluation point (an epoch of ``law train``, a
stage end of a LAW run), each ``{"epoch", "lr", "train", "val", "test", ...}``
with ``val`` None where a run has no validation split. LAW runs also hold the
unweighted twin's figures under ``"reference"``.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, TypedDict

import numpy as np


class Record(TypedDict, total=False):
    """One evaluation point of a run, as results.json holds it."""

    epoch: float
    """Training epochs done (an integer for law train, a stage end for LAW)."""
    stage: int
    """LAW and data-parallel runs: the stage just trained."""
    lr: float
    train: dict
    """The weight statistics of the epoch or stage (``WeightStats.summary``)."""
    val: Optional[dict]
    """Metrics on the clean validation split; None without one."""
    test: dict
    """Metrics on the test split (``law.metrics.classification_metrics``)."""
    seconds: float
    action: list
    """LAW: the policy's action of the stage; also theta, reward and loss_gap."""
    reference: dict
    """LAW: the unweighted twin's test metrics, validation accuracy and training loss."""


def summarise(history: list[Record], points: Optional[Iterable[float]] = None, twin: bool = False) -> Optional[dict]:
    """Test accuracy at its best over ``points`` (epochs at which every compared run is evaluated;
    every record when None), after the last record, and where the clean validation accuracy peaks
    (None without a validation split); last balanced accuracy, macro F1 and AUC; the mean effective
    batch fraction. ``twin`` summarises a LAW run's unweighted twin instead. None before any record."""
    test_of: Callable[[Record], Optional[dict]] = (lambda r: (r.get("reference") or {}).get("test")) if twin \
        else (lambda r: r["test"])
    val_of: Callable[[Record], Optional[float]] = (lambda r: r["reference"]["val_accuracy"]) if twin \
        else (lambda r: r["val"]["accuracy"] if r.get("val") else None)
    tested = [r for r in history if test_of(r)]
    if not tested:
        return None
    wanted = set(points) if points is not None else None
    candidates = [r for r in tested if wanted is None or r["epoch"] in wanted] or tested
    best = max(candidates, key=lambda r: test_of(r)["accuracy"])
    validated = [r for r in candidates if val_of(r) is not None]
    best_val = max(validated, key=val_of) if validated else None
    last = test_of(tested[-1])
    # The twin is unweighted: every sample counts fully.
    fractions = [1.0] if twin else [r.get("train", {}).get("effective_sample_fraction", math.nan) for r in history]
    return {"best": test_of(best)["accuracy"], "best_epoch": best["epoch"],
            "last": last["accuracy"], "last_balanced_accuracy": last["balanced_accuracy"],
            "last_macro_f1": last["macro_f1"], "last_mean_auc": last["mean_auc"],
            "at_best_val": test_of(best_val)["accuracy"] if best_val else None,
            "best_val_epoch": best_val["epoch"] if best_val else None,
            "best_any_epoch": max(test_of(r)["accuracy"] for r in tested),
            "effective_samples": float(np.nanmean(fractions)) if any(map(math.isfinite, fractions)) else math.nan}


def mean_std(values: Iterable[Optional[float]]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of the finite values; std nan for one value."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan
