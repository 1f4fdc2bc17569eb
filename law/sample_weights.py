"""``sample_weights.csv``: each training sample's loss and weight, stage by stage (``--export-weights``).

What users of a weighting method ask for first is the weight it gave each
sample, and with it the samples it believes mislabelled (``law inspect``).
One row per (stage, training sample), columns:

- ``stage``: the 3SM stage (LAW), or the comparison's stage of an epoch-wise
  baseline (``law train``: ``--stage-epochs`` epochs each, one by default);
- ``index``: the sample's position in the source's own training split
  (torchvision's order, an ImageFolder tree's sorted files), ``path`` its file
  (ImageFolder trees; empty otherwise);
- ``label``: the label it was trained on; ``true_label`` and ``noisy`` (0/1)
  only where the truth is known, i.e. the run applied label noise (injected or
  CIFAR-10N), else empty;
- ``loss`` and ``weight``: the sample's mean over the stage's steps that drew
  it, the weight exactly as the trainer applied it (batch mean 1); empty for a
  sample no step of the stage drew (each epoch drops its last partial batch);
- ``loss_twin`` (``law apply`` with its twin): the unweighted twin's loss.

The rows of each stage are appended to a hidden file in the run folder as the
stage ends, and the file is renamed into place when the run finishes: it is
complete or absent, never half written.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from law.data import DataBundle
from law.io import interrupt_deferred
from law.stats import WeightStats

FILENAME = "sample_weights.csv"
COLUMNS = ("stage", "index", "path", "label", "true_label", "noisy", "loss", "weight")
TWIN_COLUMN = "loss_twin"


def _numbers(values: np.ndarray) -> list[str]:
    return ["" if math.isnan(v) else f"{v:.6g}" for v in values.tolist()]


class SampleWeightsLog:
    """Writes a run's ``sample_weights.csv``; use as a context manager around the run."""

    def __init__(self, run_dir: str | os.PathLike, bundle: DataBundle, twin: bool = False):
        train = bundle.train
        self.path = Path(run_dir) / FILENAME
        self.twin = twin
        self._fixed = list(zip(
            [str(i) for i in train.source_indices.tolist()],
            train.files if train.files is not None else [""] * len(train),
            [str(y) for y in train.labels.tolist()],
            [str(y) for y in train.clean_labels.tolist()] if bundle.labels_known_clean else [""] * len(train),
            [str(int(m)) for m in train.noise_mask.tolist()] if bundle.labels_known_clean else [""] * len(train),
        ))
        self.num_samples = len(train)
        self._sums: Optional[list[np.ndarray]] = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", dir=self.path.parent)
        self._file = os.fdopen(fd, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS + ((TWIN_COLUMN,) if twin else ()))
        self.stages = 0

    def add(self, stats: WeightStats, twin: Optional[WeightStats] = None) -> None:
        """Fold in what ``stats`` (and the twin's) gathered since their last reset (an epoch or a stage)."""
        parts = [t.numpy() for t in stats.sample_sums()]
        if self.twin:
            parts += [t.numpy() for t in twin.sample_sums()[::2]] if twin is not None \
                else [np.zeros(self.num_samples), np.zeros(self.num_samples)]
        self._sums = parts if self._sums is None else [a + b for a, b in zip(self._sums, parts)]

    def end_stage(self, stage: int) -> None:
        """Write the stage's rows from everything added since the previous stage."""
        if self._sums is None:
            raise ValueError("end_stage() before any add()")
        with np.errstate(invalid="ignore", divide="ignore"):
            loss_sum, weight_sum, count = self._sums[:3]
            columns = [_numbers(loss_sum / count), _numbers(weight_sum / count)]
            if self.twin:
                twin_loss, twin_count = self._sums[3:]
                columns.append(_numbers(twin_loss / twin_count))
        stage_text = str(stage)
        self._writer.writerows((stage_text, *fixed, *values) for fixed, *values in zip(self._fixed, *columns))
        self._sums = None
        self.stages += 1

    def add_stage(self, stage: int, stats: WeightStats, twin: Optional[WeightStats] = None) -> None:
        """``add`` then ``end_stage``: a stage whose statistics were reset at its start."""
        self.add(stats, twin)
        self.end_stage(stage)

    def close(self) -> Path:
        """Put the finished file in place."""
        with interrupt_deferred():
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        self._file.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> "SampleWeightsLog":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()
