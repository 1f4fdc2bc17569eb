"""LAW's weighting function: ``w_i = 1 + tanh(theta . f_i + b)``, batch mean 1.

The action ``(theta, b)`` is chosen once per 3SM stage by the agent (or by a
saved actor in ``law apply``) and held fixed for every step of the stage.

Why normalise to batch mean 1 (as every other weighter here): without it the
mean weight is ``1 + tanh(b)``, a learning-rate multiplier in (0, 2). Early in
training a faster learner wins the duplicate-network reward, so DDPG learned
that shortcut (``b`` near +3, high-loss samples up-weighted: measured on noisy
CIFAR-10, it ended 3-4 points below its unweighted twin). Normalised, the policy
can only move weight between samples; ``b`` still matters, as the selectivity
of the sigmoid ``1 + tanh(z) = 2 sigmoid(2z)``: large ``b`` flattens the
weights, ``b = 0`` with a large ``theta`` keeps the half of the batch on one
side of ``theta . f = 0``, and negative ``b`` makes them ``~exp(2 theta . f)``,
a softmax in which a few samples carry the step (so the environment's default
``bias_range`` stops at 0).

``theta = 0, b = 0`` gives weights of exactly 1, bit for bit, which is what
makes the duplicate-network reward of an untouched target exactly 0.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from law.errors import LawError
from law.features import FEATURE_NAMES, NUM_FEATURES, log_frequency_by_class, sample_features
from law.timing import phase
from law.weighting import WeightInputs, Weighter

ACTION_SIZE = NUM_FEATURES + 1
"""Length of an action: one ``theta`` per feature, then the bias ``b``."""

ACTION_NAMES: tuple[str, ...] = tuple(f"theta_{name}" for name in FEATURE_NAMES) + ("bias",)

ActionLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


def policy_weights(features: torch.Tensor, theta: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``1 + tanh(features @ theta + bias)`` for (..., B, K) features, each batch scaled to mean 1.

    Computed as ``sigmoid(2z)`` relative to the batch's largest, in log space, so a
    batch whose every ``1 + tanh`` underflows to 0 still gets finite weights.
    """
    log_weights = F.logsigmoid(2.0 * (features @ theta + bias))
    relative = torch.exp(log_weights - log_weights.amax(dim=-1, keepdim=True))  # largest is 1: mean >= 1/B
    return relative / relative.mean(dim=-1, keepdim=True)


class LAWPolicyWeighter(Weighter):
    """The tanh policy as a weighter; ``set_action`` switches the stage's function."""

    name = "law"

    def __init__(self, class_counts: Union[torch.Tensor, Sequence[int]]) -> None:
        super().__init__()
        self._log_frequency = log_frequency_by_class(class_counts)
        self._theta = torch.zeros(NUM_FEATURES)
        self._bias = torch.zeros(())

    def set_action(self, action: ActionLike) -> None:
        """Use ``action = [theta_loss, theta_entropy, theta_density, theta_label, b]``."""
        if torch.is_tensor(action):
            values = action.detach().to(device="cpu", dtype=torch.float32).reshape(-1)
        else:
            values = torch.from_numpy(np.asarray(action, dtype=np.float32).reshape(-1).copy())
        if values.numel() != ACTION_SIZE:
            raise LawError(f"a LAW action has {ACTION_SIZE} entries {ACTION_NAMES}, got {values.numel()}")
        if not torch.isfinite(values).all():
            raise LawError(f"a LAW action must be finite, got {values.tolist()}")
        device = self._theta.device
        self._theta = values[:NUM_FEATURES].clone().to(device)
        self._bias = values[NUM_FEATURES].clone().to(device)

    @property
    def action(self) -> np.ndarray:
        """The current action as a float32 array of length ACTION_SIZE."""
        return torch.cat([self._theta.cpu(), self._bias.cpu().reshape(1)]).numpy()

    def _to_device(self, device: torch.device) -> None:
        # Moved once, on the first batch of a new device, not on every step.
        if self._theta.device != device:
            self._theta = self._theta.to(device)
            self._bias = self._bias.to(device)
            self._log_frequency = self._log_frequency.to(device)

    def weights(self, batch: WeightInputs) -> torch.Tensor:
        device = batch.logits.device
        self._to_device(device)
        # Features and weights in float32 even inside an AMP forward: bf16 would
        # blur the z-scores and the Gram matrix the policy was searched with.
        with torch.autocast(device.type, enabled=False), phase("features and weights"):
            features = sample_features(batch.logits, batch.targets, self._log_frequency, batch.losses)
            return policy_weights(features, self._theta, self._bias)

    def state_dict(self) -> dict:
        return {"action": self.action.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.set_action(state["action"])


def log_weight_ratio(theta: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``log w(f = +1) - log w(f = -1)`` of one feature's ``theta`` at bias ``b``, the other features at 0.

    Features are batch z-scores, so this is the factor (in log) between a sample one batch-std above
    the batch mean and one below it. Odd in ``theta``; about ``4 theta`` for ``b`` below -2.
    """
    theta, bias = np.asarray(theta, np.float64), np.asarray(bias, np.float64)
    return np.logaddexp(0.0, 2.0 * (theta - bias)) - np.logaddexp(0.0, -2.0 * (theta + bias))


def theta_for_log_ratio(log_ratio: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The ``theta`` whose ``log_weight_ratio`` at bias ``b`` is ``log_ratio`` (closed form; 0 gives 0 exactly).

    With ``u = exp(2 theta)`` and ``R = exp(|log_ratio|)`` the ratio condition is the quadratic
    ``u^2 - d u - R = 0`` with ``d = (R - 1) exp(2b)``: its positive root, and the sign of ``log_ratio``
    by oddness (solving for ``|log_ratio|`` avoids cancellation).
    """
    log_ratio, bias = np.asarray(log_ratio, np.float64), np.asarray(bias, np.float64)
    ratio = np.exp(np.abs(log_ratio))
    d = (ratio - 1.0) * np.exp(2.0 * bias)
    u = (d + np.sqrt(d * d + 4.0 * ratio)) / 2.0
    return np.sign(log_ratio) * 0.5 * np.log(u)
