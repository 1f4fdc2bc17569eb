"""TensorBoard logging for training runs, with tags grouped by prefix.

Groups: ``train/``, ``val/``, ``test/`` (metrics per split), ``weights/`` (what
the weighter did, split by class and by the known noise mask), ``perf/``; LAW
runs add ``law/`` (reward, loss gap, action) and ``reference/`` (the twin).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "mean_auc", "loss")


def config_markdown(config: dict) -> str:
    """The full config as a markdown table, written once so a run explains itself."""
    rows = ["|section|field|value|", "|-|-|-|"]
    for section, fields in config.items():
        for name, value in fields.items():
            rows.append(f"|{section}|{name}|{json.dumps(value)}|")
    return "\n".join(rows)


def _known(value) -> bool:
    """A number to plot: not missing (None, as in JSON records) and not NaN (a group absent that stage)."""
    return value is not None and math.isfinite(value)


def log_weight_stats(writer: SummaryWriter, prefix: str, summary: dict, weights: torch.Tensor | None,
                     step: int) -> None:
    """Mean weight overall, per class, noisy vs clean, effective sample fraction, and a histogram."""
    for tag, key in (("mean", "mean_weight"), ("effective_sample_fraction", "effective_sample_fraction"),
                     ("clean", "mean_weight_clean"), ("noisy", "mean_weight_noisy")):
        if _known(summary.get(key)):
            writer.add_scalar(f"{prefix}/{tag}", summary[key], step)
    for cls, value in enumerate(summary.get("mean_weight_per_class", ())):
        if _known(value):
            writer.add_scalar(f"{prefix}/class_{cls}", value, step)
    if weights is not None and weights.numel():
        writer.add_histogram(f"{prefix}/histogram", weights, step)


class RunLogger:
    """Owns a run folder's SummaryWriter; logs one record per evaluation point (``law.records``)."""

    def __init__(self, run_dir: str | Path, config: dict):
        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir))
        self.writer.add_text("config", config_markdown(config), 0)

    def log_epoch(self, record: dict, weights: torch.Tensor | None = None) -> None:
        step, w = record["epoch"], self.writer
        w.add_scalar("train/loss", record["train"]["mean_loss"], step)
        w.add_scalar("train/lr", record["lr"], step)
        for split in ("val", "test"):
            for metric in SCALAR_METRICS:
                if _known((record[split] or {}).get(metric)):  # no validation split: nothing
                    w.add_scalar(f"{split}/{metric}", record[split][metric], step)
        log_weight_stats(w, "weights", record["train"], weights, step)
        for tag, key in (("perf/epoch_seconds", "seconds"), ("perf/images_per_second", "images_per_second"),
                         ("law/reward", "reward"), ("law/loss_gap", "loss_gap")):
            if _known(record.get(key)):
                w.add_scalar(tag, record[key], step)
        for i, value in enumerate(record.get("action") or ()):
            w.add_scalar(f"law/action_{i}", value, step)
        reference = record.get("reference")
        if reference and reference.get("test"):
            w.add_scalar("reference/test_accuracy", reference["test"]["accuracy"], step)
            w.add_scalar("reference/val_accuracy", reference["val_accuracy"], step)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
