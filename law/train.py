"""``law train``: one network, one weighter, one data set, start to finish."""
from __future__ import annotations

import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from law.config import to_dict, validate_all
from law.data import DataBundle, DataConfig, load_data
from law.errors import ConfigError, TrainingFailed
from law.io import atomic_write_json, environment_info, new_run_dir, run_folder, run_stamp
from law.logging import RunLogger
from law.methods import MethodConfig, build_weighter
from law.models import build_model, check_model
from law.progress import ProgressLine
from law.records import Record, summarise
from law.sample_weights import SampleWeightsLog
from law.stats import WeightStats
from law.trainer import (CollapseGuard, DivergenceGuard, Learner, OptimConfig, evaluate, learning_rate,
                         make_optimizer, run_steps)
from law.weighting import Weighter


@dataclass
class RunConfig:
    """What to train, for how long, where, and where results go."""

    model: str = "small_cnn"
    """Network architecture (see `law models`)."""
    epochs: int = 12
    """Training epochs."""
    seed: int = 0
    """Seed for data subsets, label noise, initialisation and batch order."""
    device: str = "auto"
    """Training device: auto | cpu | cuda | cuda:N."""
    threads: int = 0
    """Torch CPU threads (0 = torch default)."""
    amp: bool = False
    """Mixed precision (bfloat16 autocast) on CUDA."""
    output_dir: str = "runs"
    """Folder that receives one sub-folder per run."""
    run_name: str = ""
    """Name of the run folder (default: {dataset}__{method}__{seed}__{time})."""
    progress: bool = True
    """Show a progress line."""
    export_weights: bool = False
    """Write sample_weights.csv: every training sample's mean loss and weight per stage (read by `law inspect`)."""
    stage_epochs: int = 1
    """Epochs per stage of sample_weights.csv (law compare: the suite's stage length)."""

    def validate(self) -> None:
        check_model(self.model)
        if self.epochs < 1:
            raise ConfigError("epochs", f"must be >= 1, got {self.epochs}")
        if self.stage_epochs < 1:
            raise ConfigError("stage_epochs", f"must be >= 1, got {self.stage_epochs}")
        if self.threads < 0:
            raise ConfigError("threads", "must be >= 0")
        resolve_device(self.device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError("device", f"'{name}' is not a device: use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "CUDA was asked for but is not available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def amp_dtype(run: RunConfig, device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if run.amp and device.type == "cuda" else None


def fit(model: torch.nn.Module, bundle: DataBundle, weighter: Weighter, optim_cfg: OptimConfig,
        run: RunConfig, logger: RunLogger, device: torch.device,
        sample_log: Optional[SampleWeightsLog] = None) -> list[Record]:
    """Train ``model`` for ``run.epochs`` epochs; returns one metrics dict per epoch.

    ``sample_log`` receives every sample's loss and weight, one stage per
    ``run.stage_epochs`` epochs. A diverged or collapsed network stops the run
    with TrainingFailed, whose ``history`` holds the epochs trained before it.
    """
    optimizer = make_optimizer(model, optim_cfg)
    stream = bundle.train_stream(run.seed)
    noise_mask = bundle.train.noise_mask.to(device)
    stats = WeightStats(bundle.num_classes, device, num_samples=len(bundle.train) if sample_log else 0)
    guard, collapse = DivergenceGuard(device), CollapseGuard()
    dtype = amp_dtype(run, device)
    steps, epochs = stream.steps_per_epoch, run.epochs
    bar = ProgressLine(epochs, "train", enabled=run.progress)
    history: list[Record] = []
    learner = Learner(model, optimizer, weighter, stats)
    try:
        for epoch in range(epochs):
            stats.reset()
            started = time.perf_counter()
            run_steps([learner], stream, steps, start_step=epoch * steps, steps_per_epoch=steps,
                      total_epochs=epochs, noise_mask=noise_mask, guard=guard, amp_dtype=dtype,
                      lr_at=lambda at: learning_rate(optim_cfg, at, epochs))
            guard.check(f"epoch {epoch + 1}")  # the per-epoch sync point
            train = stats.summary()
            if sample_log is not None:
                sample_log.add(stats)
                if (epoch + 1) % run.stage_epochs == 0 or epoch + 1 == epochs:
                    sample_log.end_stage(epoch // run.stage_epochs)
            seconds = time.perf_counter() - started
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train": train,
                "val": evaluate(model, bundle.eval_batches("val"), bundle.num_classes),
                "test": evaluate(model, bundle.eval_batches("test"), bundle.num_classes),
                "seconds": seconds,
                "images_per_second": train["samples"] / seconds,
            }
            history.append(record)
            logger.log_epoch(record, stats.all_weights())
            bar.update(epoch + 1, f"loss {record['train']['mean_loss']:.3f} "
                                  + (f"val {record['val']['accuracy']:.3f} " if record["val"] else "")
                                  + f"test {record['test']['accuracy']:.3f}")
            collapse.observe(record["val"], f"epoch {epoch + 1}")
    except TrainingFailed as failure:
        failure.history = history
        raise
    return history


def train(run: RunConfig, data: DataConfig, optim: OptimConfig, method: MethodConfig) -> dict:
    """Validate, train, evaluate, and write ``results.json``; returns the results."""
    validate_all(run, data, optim, method)
    device = resolve_device(run.device)
    if run.threads:
        torch.set_num_threads(run.threads)
    run_path = new_run_dir(run.output_dir, run.run_name,
                           f"{data.dataset}__{method.method}__{run.seed}__{run_stamp()}")
    seed_everything(run.seed)
    bundle = load_data(data, seed=run.seed, device=device)
    print(bundle.describe(), file=sys.stderr)
    weighter = build_weighter(method, bundle.class_counts)
    if weighter.needs_meta_batch and method.meta_size > len(bundle.val):
        raise ConfigError("meta_size", f"the meta set ({method.meta_size}) is larger than the "
                                       f"validation split ({len(bundle.val)}); raise --val-size")
    if weighter.needs_meta_batch:
        meta = bundle.meta_stream(run.seed + 1, method.meta_size, method.meta_batch_size)
        weighter.meta_batch = lambda: next(meta)
    seed_everything(run.seed)
    model = build_model(run.model, bundle.num_classes, bundle.in_channels, bundle.image_size, device)
    config = to_dict(run, data, optim, method)
    with run_folder(run_path), RunLogger(run_path, config) as logger, \
            (SampleWeightsLog(run_path, bundle) if run.export_weights else nullcontext()) as sample_log:
        def write(history: list[Record], status: str, error: str = "") -> dict:
            results = {"kind": "train", "status": status, "config": config, "seed": run.seed,
                       "environment": environment_info(), "dataset": bundle.summary(),
                       "summary": summarise(history), "history": history}
            if error:
                results["error"] = error
            atomic_write_json(results, run_path / "results.json")
            return results

        try:
            results = write(fit(model, bundle, weighter, optim, run, logger, device, sample_log), "finished")
        except TrainingFailed as failure:  # kept, marked, then reported by the caller
            write(failure.history, failure.status, str(failure))
            raise
    results["run_dir"] = str(run_path)
    return results
