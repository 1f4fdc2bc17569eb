"""TensorBoard logging for training runs, with tags grouped by prefix.

Groups: ``train/``, ``val/``, ``test/`` (metrics per split), ``weights/`` (what
the weighter did, split by class and by the known noise mask), ``perf/``.
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


def log_weight_stats(writer: SummaryWriter, prefix: str, summary: dict, weights: torch.Tensor | None,
                     step: int) -> None:
    """Mean weight overall, per class, noisy vs clean, effective sample fraction, and a histogram."""
    writer.add_scalar(f"{prefix}/mean", summary["mean_weight"], step)
    if not math.isnan(summary.get("effective_sample_fraction", math.nan)):
        writer.add_scalar(f"{prefix}/effective_sample_fraction", summary["effective_sample_fraction"], step)
    for group in ("clean", "noisy"):
        value = summary[f"mean_weight_{group}"]
        if not math.isnan(value):
            writer.add_scalar(f"{prefix}/{group}", value, step)
    for cls, value in enumerate(summary["mean_weight_per_class"]):
        if not math.isnan(value):
            writer.add_scalar(f"{prefix}/class_{cls}", value, step)
    if weights is not None and weights.numel():
        writer.add_histogram(f"{prefix}/histogram", weights, step)


class RunLogger:
    """Owns a run folder's SummaryWriter."""

    def __init__(self, run_dir: str | Path, config: dict):
        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir))
        self.writer.add_text("config", config_markdown(config), 0)

    def log_epoch(self, record: dict, weights: torch.Tensor | None = None) -> None:
        step = record["epoch"]
        self.writer.add_scalar("train/loss", record["train"]["mean_loss"], step)
        self.writer.add_scalar("train/lr", record["lr"], step)
        for split in ("val", "test"):
            if record[split] is None:  # no validation split
                continue
            for metric in SCALAR_METRICS:
                self.writer.add_scalar(f"{split}/{metric}", record[split][metric], step)
        log_weight_stats(self.writer, "weights", record["train"], weights, step)
        self.writer.add_scalar("perf/epoch_seconds", record["seconds"], step)
        self.writer.add_scalar("perf/images_per_second", record["images_per_second"], step)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
