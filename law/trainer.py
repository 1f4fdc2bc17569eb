"""The weighted training step, the one training loop, optimiser, learning-rate schedule and evaluation.

Everything below the level of "which method": the step asks a weighter for
losses and weights and minimises their weighted mean; ``run_steps`` is the loop
that every kind of run (``law train``, paired training, data-parallel workers)
drives its networks with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

import torch
from torch import nn

from law.errors import ConfigError, TrainingCollapsed, TrainingDiverged
from law.metrics import classification_metrics
from law.stats import WeightStats
from law.timing import phase
from law.weighting import Progress, Weighter, weighted_loss

LR_SCHEDULES = ("cosine", "step", "constant")


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule."""

    lr: float = 0.05
    """Peak learning rate of SGD."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """L2 weight decay."""
    nesterov: bool = False
    """Use Nesterov momentum."""
    lr_schedule: str = "cosine"
    """Learning-rate schedule: cosine | step | constant."""
    lr_milestones: tuple[float, ...] = ()
    """Epochs at which the step schedule multiplies the rate by lr_gamma (e.g. 40 60)."""
    lr_gamma: float = 0.1
    """Factor applied at each step-schedule milestone."""

    def validate(self) -> None:
        if not self.lr > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError("momentum", f"must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov", "Nesterov momentum needs --momentum > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError("lr_schedule", f"unknown schedule '{self.lr_schedule}'; "
                                             f"choose one of {', '.join(LR_SCHEDULES)}")
        if list(self.lr_milestones) != sorted(self.lr_milestones) or any(m <= 0 for m in self.lr_milestones):
            raise ConfigError("lr_milestones", "must be positive and increasing, e.g. 40 60")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError("lr_gamma", f"must be in (0, 1], got {self.lr_gamma}")


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def learning_rate(cfg: OptimConfig, epoch: float, total_epochs: float) -> float:
    """The scheduled rate at a (fractional) epoch."""
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(epoch / total_epochs, 1.0)))
    if cfg.lr_schedule == "step":
        drops = sum(epoch >= m for m in cfg.lr_milestones)
        return cfg.lr * cfg.lr_gamma ** drops
    return cfg.lr


class StepResult(NamedTuple):
    """What one training step produced; all tensors detached, still on the device."""

    logits: torch.Tensor
    losses: torch.Tensor
    weights: torch.Tensor
    loss: torch.Tensor


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, weighter: Weighter,
               inputs: torch.Tensor, targets: torch.Tensor, progress: Progress,
               amp_dtype: torch.dtype | None = None) -> StepResult:
    """One weighted SGD step: losses and weights from the weighter, mean(w * l), update.

    ``amp_dtype`` (e.g. torch.bfloat16) runs the forward under autocast; bf16
    needs no gradient scaler.
    """
    with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits, losses, weights = weighter.forward(model, inputs, targets, progress)
        loss = weighted_loss(losses.float(), weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return StepResult(logits.detach(), losses.detach(), weights, loss.detach())


class Learner(NamedTuple):
    """One network in training: what its steps need and where their statistics go."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    weighter: Weighter
    stats: WeightStats
    role: str = "target"
    """What the network is (target, twin, warm-up): the name its steps are timed under."""


def run_steps(learners: Sequence[Learner], stream: Iterator, steps: int, *, start_step: int,
              steps_per_epoch: int, total_epochs: float, noise_mask: torch.Tensor, guard: "DivergenceGuard",
              amp_dtype: torch.dtype | None = None,
              lr_at: Optional[Callable[[float], float]] = None) -> int:
    """The one training loop: ``steps`` steps in which every learner trains on the same batch.

    One learner is ``law train`` or a data-parallel worker; two (the target,
    weighted, and its unweighted twin) are paired training. ``lr_at(epoch)``
    sets the rate before each step; without it the optimisers keep theirs.
    Nothing syncs with the host: losses and weights add into the learners'
    statistics and the guard on the device. Returns the step count after them.
    """
    for step in range(start_step, start_step + steps):
        progress = Progress(step=step, epoch=step / steps_per_epoch, total_epochs=total_epochs)
        if lr_at is not None:
            lr = lr_at(progress.epoch)
            for learner in learners:
                set_lr(learner.optimizer, lr)
        with phase("data"):
            batch = next(stream)
        noisy = noise_mask[batch.indices]
        for learner in learners:
            with phase(f"sgd {learner.role}"):
                result = train_step(learner.model, learner.optimizer, learner.weighter,
                                    batch.inputs, batch.targets, progress, amp_dtype)
            guard.observe(result.loss)
            learner.stats.update(result.losses, result.weights, batch.targets, noisy, batch.indices)
    return start_step + steps


class DivergenceGuard:
    """Notices a NaN/inf loss without syncing the device every step.

    ``observe`` folds a device-side flag; ``check`` (once per epoch or stage, at
    the existing sync point) raises, so a diverged run stops instead of
    producing a garbage model.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.flag = torch.zeros((), dtype=torch.bool, device=device)

    def observe(self, loss: torch.Tensor) -> None:
        self.flag |= ~torch.isfinite(loss)

    def check(self, where: str) -> None:
        if bool(self.flag):
            raise TrainingDiverged(
                f"the training loss became NaN or infinite ({where}). Lower --lr, "
                "check the data for corrupt inputs, or disable --amp.")


class CollapseGuard:
    """Notices a network that predicts one class for every validation sample, evaluation
    after evaluation (e.g. a weighting that starved all other classes), and stops the run
    as the divergence guard does, instead of letting it finish as a success."""

    def __init__(self, patience: int = 5):
        self.patience, self.streak = patience, 0

    def observe(self, metrics: dict | None, where: str) -> None:
        if metrics is None:  # no validation split: nothing to judge by
            return
        self.streak = self.streak + 1 if metrics["predicted_classes"] == 1 else 0
        if self.streak >= self.patience:
            raise TrainingCollapsed(
                f"the network predicts one class for every validation sample, {self.patience} evaluations "
                f"in a row ({where}): it has collapsed to a constant predictor. Lower --lr, or check the "
                "method's settings and how imbalanced the data is.")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             num_classes: int) -> dict:
    """Metrics of ``model`` over ``batches`` (None for an empty split); the model's train/eval
    mode is restored."""
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for x, y in batches:
        logits.append(model(x).float())
        targets.append(y)
    model.train(was_training)
    if not logits:
        return None
    return classification_metrics(torch.cat(logits), torch.cat(targets), num_classes)
