"""Which training samples a run's weighting treats as mislabelled, and how well that detects them.

Reads ``sample_weights.csv`` (``law.sample_weights``) and scores every
sample with one of the detectors below, higher = more suspect:

- ``weight``: the weighting's own verdict, the lowest weight first (score ``-w``);
- ``discounted-loss``: ``loss x max(0, 1 - w)``, the part of the sample's loss the
  weighting took out of the step (0 for a sample it kept or up-weighted), so a
  sample ranks high when it is both down-weighted and badly fitted;
- ``small-loss``: the highest loss first, ignoring the weights: the criterion
  many noisy-label methods select clean samples by (Co-teaching, DivideMix), the
  yardstick a weighting must beat to say it knows more than the loss does;
- ``small-loss-twin``: the same on the unweighted twin's loss (``law apply``
  and LAW runs of ``law compare``), i.e. plain cross-entropy training.

Per stage, each detector scores the stage's mean values. Over a run, a sample's
score is its mean over the *acting* stages, those in which the weights differ
between samples (LAW's warm-up and every stage of plain CE act on nothing;
where no stage acts, all stages count). Where the label truth is known
(injected noise, CIFAR-10N), a detector is judged by AUROC (ties share their
rank, so a constant score gives exactly 0.5) and by precision and recall
among its top ``k`` (ties broken by the samples' order in the file).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from law.errors import LawError
from law.sample_weights import COLUMNS, FILENAME, TWIN_COLUMN

DETECTORS = {
    "weight": "low weight",
    "discounted-loss": "discounted loss",
    "small-loss": "small-loss",
    "small-loss-twin": "small-loss (twin)",
}
RULES = ("weight", "discounted-loss", "small-loss")
"""Detectors that can rank a run's suspects (the twin's is a yardstick, not the run's own)."""


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` samples (Mann-Whitney U, ties
    sharing their mean rank); NaN when either class is empty."""
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based mean rank of each tie
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, highest first; ties in order of position."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]


def precision_recall_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> tuple[float, float]:
    """Fraction of the top ``k`` that are positive, and fraction of the positives in the top ``k``."""
    positive = np.asarray(positive, dtype=bool)
    hits = int(positive[top_k(scores, k)].sum())
    return hits / k if k else math.nan, hits / int(positive.sum()) if positive.any() else math.nan


@dataclass
class SampleTable:
    """``sample_weights.csv`` as arrays: per-sample facts, and (stage, sample) values."""

    stages: np.ndarray
    """(S,) stage numbers in file order."""
    index: np.ndarray
    path: list[str]
    label: np.ndarray
    noisy: Optional[np.ndarray]
    """(N,) bool, None where the run did not know the truth."""
    loss: np.ndarray
    """(S, N) mean loss of each sample in each stage, NaN where a stage did not draw it."""
    weight: np.ndarray
    loss_twin: Optional[np.ndarray]

    @property
    def num_samples(self) -> int:
        return len(self.index)

    def acting(self) -> np.ndarray:
        """(S,) bool: stages in which the weights differ between samples."""
        spread = np.fmax.reduce(self.weight, axis=1) - np.fmin.reduce(self.weight, axis=1)  # NaN-blind
        return np.nan_to_num(spread) > 1e-6

    def scores(self, detector: str) -> Optional[np.ndarray]:
        """(S, N) scores of ``detector`` (None where the file lacks what it needs)."""
        if detector == "weight":
            return -self.weight
        if detector == "discounted-loss":
            return self.loss * np.clip(1.0 - self.weight, 0.0, None)
        if detector == "small-loss":
            return self.loss
        if detector == "small-loss-twin":
            return None if self.loss_twin is None or np.isnan(self.loss_twin).all() else self.loss_twin
        raise LawError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")

    def run_scores(self, detector: str) -> Optional[np.ndarray]:
        """(N,) each sample's mean score over the acting stages (all stages where none acts);
        a sample none of them drew scores lowest."""
        per_stage = self.scores(detector)
        if per_stage is None:
            return None
        acting = self.acting()
        chosen = per_stage[acting] if acting.any() else per_stage
        seen = ~np.isnan(chosen)
        mean = np.where(seen.any(axis=0), np.nansum(chosen, axis=0) / np.maximum(seen.sum(axis=0), 1), np.nan)
        return np.where(np.isnan(mean), -np.inf, mean)


def read_sample_table(path: str | Path) -> SampleTable:
    """Load a ``sample_weights.csv``; a file of another shape is named as such."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header[:len(COLUMNS)]) != COLUMNS:
            raise LawError(f"{path} is not a LAW sample_weights.csv (its header should start with "
                           f"{','.join(COLUMNS)})")
        rows = list(reader)
    twin = TWIN_COLUMN in header
    if not rows:
        raise LawError(f"{path} holds no rows")
    stage_of = np.array([int(r[0]) for r in rows])
    stages = np.array(list(dict.fromkeys(stage_of.tolist())))
    n = len(rows) // len(stages)
    if n * len(stages) != len(rows):
        raise LawError(f"{path}: every stage should list every training sample once")
    first = rows[:n]
    number = lambda text: float(text) if text else math.nan
    values = lambda column: np.array([number(r[column]) for r in rows]).reshape(len(stages), n)
    known = first[0][5] != ""
    return SampleTable(
        stages=stages, index=np.array([int(r[1]) for r in first]), path=[r[2] for r in first],
        label=np.array([int(r[3]) for r in first]),
        noisy=np.array([r[5] == "1" for r in first]) if known else None,
        loss=values(6), weight=values(7), loss_twin=values(8) if twin else None)


def find_sample_table(run_dir: str | Path) -> Path:
    """The ``sample_weights.csv`` of a run folder, or one clear error saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LawError(f"{run_dir} is not a folder; pass a run folder (runs/<id>) or a law compare folder")
    if not (run_dir / "results.json").is_file():
        raise LawError(f"{run_dir} is not a LAW run folder (no results.json); pass runs/<id> or a law compare folder")
    path = run_dir / FILENAME
    if not path.is_file():
        raise LawError(f"{run_dir} has no exported weights ({FILENAME}); re-run it with --export-weights")
    return path


def judge(table: SampleTable, k: int) -> dict:
    """Every detector's AUROC, precision@k and recall@k per stage and over the run (mask known);
    mean weights of mislabelled and clean samples per stage."""
    acting = table.acting()
    report = {"samples": table.num_samples, "k": k, "acting_stages": table.stages[acting].tolist(),
              "noisy_fraction": float(table.noisy.mean()) if table.noisy is not None else None,
              "stages": [], "run": {}}
    for i, stage in enumerate(table.stages.tolist()):
        entry = {"stage": stage, "acting": bool(acting[i])}
        seen = ~np.isnan(table.weight[i])
        if table.noisy is not None:
            noisy = table.noisy & seen
            clean = ~table.noisy & seen
            entry["mean_weight_noisy"] = float(table.weight[i][noisy].mean()) if noisy.any() else None
            entry["mean_weight_clean"] = float(table.weight[i][clean].mean()) if clean.any() else None
            for detector in DETECTORS:
                scores = table.scores(detector)
                if scores is not None:
                    entry[detector] = _metrics(scores[i][seen], table.noisy[seen], k)
        report["stages"].append(entry)
    if table.noisy is not None:
        for detector in DETECTORS:
            scores = table.run_scores(detector)
            if scores is not None:
                report["run"][detector] = _metrics(scores, table.noisy, k)
    return report


def _metrics(scores: np.ndarray, positive: np.ndarray, k: int) -> Optional[dict]:
    known = ~np.isnan(scores)
    if not known.any():
        return None
    scores, positive = scores[known], positive[known]
    precision, recall = precision_recall_at_k(scores, positive, min(k, len(scores)))
    return {"auroc": auroc(scores, positive), "precision_at_k": precision, "recall_at_k": recall}


def default_k(table: SampleTable) -> int:
    """How many suspects to list when not told: as many as the labels known to be wrong, else 5 %."""
    if table.noisy is not None and table.noisy.any():
        return int(table.noisy.sum())
    return max(1, round(0.05 * table.num_samples))
