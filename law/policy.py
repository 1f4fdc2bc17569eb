"""LAW's weighting function: ``w_i = 1 + tanh(theta . f_i + b)``.

The action ``(theta, b)`` is chosen once per 3SM stage by the agent (or by a
saved actor in ``law apply``) and held fixed for every step of the stage.
Weights lie in (0, 2): ``1`` means "as plain CE", so ``theta = 0, b = 0``
reproduces the unweighted run exactly, bit for bit, which is what makes the
duplicate-network reward of an untouched target exactly 0.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

from law.errors import LawError
from law.features import FEATURE_NAMES, NUM_FEATURES, log_frequency_by_class, sample_features
from law.weighting import WeightInputs, Weighter

ACTION_SIZE = NUM_FEATURES + 1
"""Length of an action: one ``theta`` per feature, then the bias ``b``."""

ACTION_NAMES: tuple[str, ...] = tuple(f"theta_{name}" for name in FEATURE_NAMES) + ("bias",)

ActionLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


def policy_weights(features: torch.Tensor, theta: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``1 + tanh(features @ theta + bias)`` for (B, K) features."""
    return 1.0 + torch.tanh(features @ theta + bias)


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
        with torch.autocast(device.type, enabled=False):
            features = sample_features(batch.logits, batch.targets, self._log_frequency, batch.losses)
            return policy_weights(features, self._theta, self._bias)

    def state_dict(self) -> dict:
        return {"action": self.action.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.set_action(state["action"])
