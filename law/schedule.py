"""The 3SM stage schedule: training length and learning-rate drops, counted in stages.

One schedule serves every kind of run: the stage environment sets each stage's
rate from it, the data-parallel trainer does the same, and the baselines of a
comparison get the very same drops as a step schedule in epochs (the drops fall
on stage boundaries, so the two are identical).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from law.trainer import OptimConfig


@dataclass(frozen=True)
class StageSchedule:
    """Training length and learning-rate drops, counted in 3SM stages."""

    num_stages: int
    """Stages in a run, warm-up included (paper: 20)."""
    warmup_stages: int
    """Leading stages LAW trains unweighted."""
    epochs_per_stage: float
    """Epochs per stage (suites use whole numbers, so stage ends fall on epoch ends)."""
    lr_drop_stages: tuple[int, ...]
    """Stages at whose start the learning rate is multiplied by lr_drop_factor."""
    lr_drop_factor: float = 0.1
    """Learning-rate factor at each drop."""

    @property
    def epochs(self) -> float:
        return self.num_stages * self.epochs_per_stage

    @property
    def acting_stages(self) -> int:
        """Stages the policy acts on (those after the warm-up)."""
        return self.num_stages - self.warmup_stages

    def lr_at(self, base_lr: float, stage: int) -> float:
        """The learning rate of ``stage``: ``base_lr`` times one drop factor per drop passed."""
        drops = sum(stage >= s for s in self.lr_drop_stages)
        return base_lr * self.lr_drop_factor ** drops

    def milestones(self) -> tuple[float, ...]:
        """The drops in epochs, for the baselines' step schedule."""
        return tuple(float(s * self.epochs_per_stage) for s in self.lr_drop_stages)

    def report_epochs(self) -> tuple[float, ...]:
        """Epochs at which every method's test accuracy enters "best": the end of the
        warm-up and of each later stage (where LAW's runs are evaluated)."""
        first = max(self.warmup_stages, 1)
        return tuple(s * self.epochs_per_stage for s in range(first, self.num_stages + 1))

    def baseline_optim(self, optim: OptimConfig) -> OptimConfig:
        """``optim`` with this schedule's drops as a step schedule in epochs."""
        return replace(optim, lr_schedule="step", lr_milestones=self.milestones(), lr_gamma=self.lr_drop_factor)

    def describe(self) -> str:
        drops = ", ".join(f"{m:g}" for m in self.milestones()) or "none"
        return (f"{self.epochs:g} epochs = {self.num_stages} stages x {self.epochs_per_stage:g} "
                f"({self.warmup_stages} warm-up), lr x{self.lr_drop_factor:g} at epoch(s) {drops}")
