"""The search's episode settings: 3SM stage schedule, reward, and the action box's coordinates.

What an action of the box means (``EnvConfig.theta`` and its inverse ``EnvConfig.action``) lives here, in
one place: the env, the priors, ``law apply`` and the scripts all map actions through it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from law.errors import ConfigError, LawError
from law.features import FEATURE_NAMES
from law.models import check_model
from law.policy import ACTION_SIZE, log_weight_ratio, theta_for_log_ratio
from law.schedule import StageSchedule

REWARDS = ("gap", "change")
ACTION_MAPS = ("linear", "log_ratio")
MAX_LOG_RATIO = 40.0
MAX_BIAS = 20.0
"""Bounds that keep the log-ratio map's closed form finite in float64."""


@dataclass
class EnvConfig:
    """The 3SM stage schedule, reward and action range of a search episode."""

    model: str = "small_cnn"
    """Architecture of the target and reference networks."""
    num_stages: int = 20
    """Stages per episode, warm-up included (paper: 20)."""
    warmup_stages: int = 2
    """Leading stages trained unweighted before the agent acts."""
    epochs_per_stage: float = 1.0
    """Training epochs per stage (used when steps_per_stage is 0)."""
    steps_per_stage: int = 0
    """Optimiser steps per stage; 0 = derive from epochs_per_stage."""
    lr_drop_stages: tuple[int, ...] = (10, 13, 16)
    """Stage indices (from 0) at which the learning rate is multiplied by lr_drop_factor (paper CIFAR: 10 13 16)."""
    lr_drop_factor: float = 0.1
    """Learning-rate factor applied at each of lr_drop_stages; the base rate is the optimiser's --lr."""
    reward_scale: float = 100.0
    """s in r_w = s * exp(k * epoch / total_epochs); 100 puts the reward in accuracy points."""
    reward_k: float = 1.0
    """k in r_w = s * exp(k * epoch / total_epochs): how much more late stages count."""
    reward: str = "gap"
    """gap: r_T = r_w * (acc_target - acc_reference) after stage T (the paper's DNR); change: r_w times
    the change of that gap during stage T, so a stage is not paid for what earlier stages did."""
    smoothing: float = 0.5
    """EMA factor of the observed training loss and validation accuracy (0 = no smoothing)."""
    loss_clip: float = 10.0
    """Upper bound of the observed smoothed training loss."""
    action_map: str = "linear"
    """What a feature's action coordinate is: linear (theta = action_scale * action, the paper's) or
    log_ratio (the log weight ratio log_ratio_max * action between one batch-std above and below the mean)."""
    action_scale: float = 4.0
    """theta = action_scale * action for actions in [-1, 1] (action_map linear)."""
    log_ratio_max: float = 12.0
    """Largest log weight ratio per two batch-stds of a feature (action_map log_ratio; 12 is e^12)."""
    bias_range: tuple[float, ...] = (0.0, 4.0)
    """(low, high) of b, reached at actions -1 and 1. Below 0 the batch-normalised sigmoid is in its
    exponential tail and a handful of samples carry the whole step."""
    features: tuple[str, ...] = FEATURE_NAMES
    """Features the policy weights by (of loss entropy density label); the others get theta 0. Each is one
    action dimension: a small search budget explores fewer dimensions far better."""
    data_seed: int = 0
    """Seed of the data set (subsets, label noise); fixed, so every episode searches the same task."""
    amp: bool = False
    """bfloat16 autocast forward passes on CUDA (no effect on CPU)."""
    keep_weights: bool = False
    """Return every target weight of a stage in info['weights'] (for histograms)."""

    def validate(self) -> None:
        check_model(self.model)
        if self.num_stages < 1:
            raise ConfigError("num_stages", f"must be >= 1, got {self.num_stages}")
        if not 0 <= self.warmup_stages < self.num_stages:
            raise ConfigError("warmup_stages", f"must be in [0, num_stages) = [0, {self.num_stages}) "
                                               f"so the agent acts at least once, got {self.warmup_stages}")
        if self.steps_per_stage < 0:
            raise ConfigError("steps_per_stage", f"must be >= 0 (0 = use epochs_per_stage), got {self.steps_per_stage}")
        if self.steps_per_stage == 0 and not self.epochs_per_stage > 0:
            raise ConfigError("epochs_per_stage", f"must be > 0 when steps_per_stage is 0, got {self.epochs_per_stage}")
        if any(not 0 < s < self.num_stages for s in self.lr_drop_stages):
            raise ConfigError("lr_drop_stages", f"stage indices must lie in (0, {self.num_stages}), "
                                                f"got {list(self.lr_drop_stages)}")
        if not 0 < self.lr_drop_factor <= 1:
            raise ConfigError("lr_drop_factor", f"must be in (0, 1], got {self.lr_drop_factor}")
        if not self.reward_scale > 0:
            raise ConfigError("reward_scale", f"must be > 0, got {self.reward_scale}")
        if not math.isfinite(self.reward_k):
            raise ConfigError("reward_k", "must be finite")
        if self.reward not in REWARDS:
            raise ConfigError("reward", f"unknown reward '{self.reward}'; known: {', '.join(REWARDS)}")
        if not 0 <= self.smoothing < 1:
            raise ConfigError("smoothing", f"must be in [0, 1), got {self.smoothing}")
        if not self.loss_clip > 0:
            raise ConfigError("loss_clip", f"must be > 0, got {self.loss_clip}")
        if self.action_map not in ACTION_MAPS:
            raise ConfigError("action_map", f"unknown action map '{self.action_map}'; known: {', '.join(ACTION_MAPS)}")
        if not self.action_scale > 0:
            raise ConfigError("action_scale", f"must be > 0, got {self.action_scale}")
        if not 0 < self.log_ratio_max <= MAX_LOG_RATIO:
            raise ConfigError("log_ratio_max", f"must be in (0, {MAX_LOG_RATIO:g}], got {self.log_ratio_max}")
        if len(self.bias_range) != 2 or not -MAX_BIAS <= self.bias_range[0] < self.bias_range[1] <= MAX_BIAS:
            raise ConfigError("bias_range", f"give two numbers -{MAX_BIAS:g} <= low < high <= {MAX_BIAS:g}, "
                                            f"got {list(self.bias_range)}")
        unknown = [name for name in self.features if name not in FEATURE_NAMES]
        if unknown or not self.features or len(set(self.features)) != len(self.features):
            raise ConfigError("features", f"give one or more distinct features of {' '.join(FEATURE_NAMES)}, "
                                          f"got {' '.join(self.features) or 'none'}")

    @property
    def schedule(self) -> StageSchedule:
        """The stage schedule (length in stages, warm-up, learning-rate drops)."""
        return StageSchedule(self.num_stages, self.warmup_stages, self.epochs_per_stage,
                             tuple(self.lr_drop_stages), self.lr_drop_factor)

    @staticmethod
    def schedule_fields(schedule: StageSchedule) -> dict[str, Any]:
        """The fields that make an env follow ``schedule`` (stage length in epochs)."""
        return {"num_stages": schedule.num_stages, "warmup_stages": schedule.warmup_stages,
                "epochs_per_stage": float(schedule.epochs_per_stage), "steps_per_stage": 0,
                "lr_drop_stages": tuple(schedule.lr_drop_stages), "lr_drop_factor": schedule.lr_drop_factor}

    @classmethod
    def from_schedule(cls, schedule: StageSchedule, model: str, data_seed: int, **fields: Any) -> "EnvConfig":
        """The env of one run of ``schedule``; ``fields`` set the rest."""
        return cls(model=model, data_seed=data_seed, **cls.schedule_fields(schedule), **fields)

    @property
    def action_dim(self) -> int:
        """Length of an action: one theta per searched feature, then b."""
        return len(self.features) + 1

    def theta(self, action: np.ndarray) -> np.ndarray:
        """The weighting function's full ``(theta, b)`` (ACTION_SIZE long) for an action of the box."""
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(-1), -1.0, 1.0)
        low, high = self.bias_range
        bias = low + (high - low) * (action[-1] + 1.0) / 2.0
        if self.action_map == "linear":
            theta = self.action_scale * action[:-1]
        else:  # in float64: the closed form's exp(|log_ratio|) leaves float32's range
            theta = theta_for_log_ratio(self.log_ratio_max * action[:-1].astype(np.float64), bias)
        full = np.zeros(ACTION_SIZE, dtype=np.float32)
        full[[FEATURE_NAMES.index(name) for name in self.features]] = theta
        full[-1] = bias
        return full

    def action(self, theta: np.ndarray) -> np.ndarray:
        """The action of a full ``(theta, b)``, unclipped (outside [-1, 1] where the box cannot reach it).

        Inverse of ``theta`` on the searched features; the others' theta must be 0.
        """
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        searched = [FEATURE_NAMES.index(name) for name in self.features]
        if theta.shape != (ACTION_SIZE,) or np.any(np.delete(theta[:-1], searched) != 0):
            raise LawError(f"give {ACTION_SIZE} numbers (theta of {', '.join(FEATURE_NAMES)}, then b) with "
                           f"theta 0 outside the searched features {', '.join(self.features)}, got {theta}")
        low, high = self.bias_range
        bias = theta[-1]
        if self.action_map == "linear":
            coordinates = theta[searched] / self.action_scale
        else:
            coordinates = log_weight_ratio(theta[searched], bias) / self.log_ratio_max
        return np.append(coordinates, 2.0 * (bias - low) / (high - low) - 1.0).astype(np.float32)

    @classmethod
    def tiny(cls, **overrides: Any) -> "EnvConfig":
        """A schedule that runs a whole episode in about a second on CPU (tests, smoke runs)."""
        return replace(cls(model="mlp", num_stages=4, warmup_stages=1, steps_per_stage=3,
                           lr_drop_stages=(3,)), **overrides)
