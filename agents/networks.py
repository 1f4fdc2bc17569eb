"""The networks of the LAW agent: a stage embedding, the 4-layer actor and critic, the action box.

Both networks read the observation ``[stage_index, loss, accuracy]`` through a
learned embedding of the stage (``e_T``); the actor's tanh output and the
critic's action input are scaled between ``[-1, 1]`` and the action box.
"""
from __future__ import annotations

from typing import Iterable, Optional, Union

import numpy as np
import torch
from torch import nn

from law.errors import ConfigError

Device = Union[str, torch.device]
Bound = Union[float, Iterable[float], np.ndarray]


def polyak_update(
    params: Iterable[torch.Tensor], target_params: Iterable[torch.Tensor], tau: float
) -> None:
    """In place: ``target <- (1 - tau) * target + tau * param``, for every pair."""
    params, target_params = list(params), list(target_params)
    if len(params) != len(target_params):
        raise ValueError(f"{len(params)} params but {len(target_params)} target params")
    with torch.no_grad():
        torch._foreach_lerp_(target_params, params, tau)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The paper's 4-layer MLP: 3 hidden ReLU layers and a linear output."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


def as_bounds(action_low: Bound, action_high: Bound, action_dim: Optional[int] = None):
    """Float32 ``(low, high)`` arrays of one shape; scalars broadcast to ``action_dim``."""
    low = np.asarray(action_low, dtype=np.float32)
    high = np.asarray(action_high, dtype=np.float32)
    if action_dim is None:
        action_dim = max(low.size, high.size) if max(low.ndim, high.ndim) else 1
    low = np.broadcast_to(low, (action_dim,)).copy()
    high = np.broadcast_to(high, (action_dim,)).copy()
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ConfigError("action_low", f"bounds must be finite, got low={low}, high={high}")
    if not np.all(low < high):
        raise ConfigError("action_high", f"must exceed action_low everywhere, got low={low}, high={high}")
    return low, high


class StageStateEncoder(nn.Module):
    """``s_T -> [e_T, loss, acc]``: embeds the stage index, keeps the other features."""

    def __init__(self, num_stages: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(num_stages, embed_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # A terminal next-state carries stage == num_stages; its value is masked
        # by ``done`` in the TD target, but it must still index the embedding.
        stage = obs[:, 0].round().long().clamp(0, self.embedding.num_embeddings - 1)
        return torch.cat([self.embedding(stage), obs[:, 1:]], dim=1)


class BoxScaling(nn.Module):
    """Maps ``[-1, 1]`` to the action box and back (buffers, so they follow ``.to``)."""

    def __init__(self, action_low: np.ndarray, action_high: np.ndarray):
        super().__init__()
        low, high = torch.as_tensor(action_low), torch.as_tensor(action_high)
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("center", (high + low) / 2)

    def to_box(self, unit: torch.Tensor) -> torch.Tensor:
        return unit * self.scale + self.center

    def to_unit(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.center) / self.scale


class StageNetwork(nn.Module):
    """What the actor and the critic share: the stage embedding, a 4-layer MLP, the action box."""

    def __init__(self, num_stages: int, action_low: np.ndarray, action_high: np.ndarray, *, takes_action: bool,
                 embed_dim: int = 16, hidden: int = 64, obs_extra_dim: int = 2):
        super().__init__()
        action_low, action_high = as_bounds(action_low, action_high)
        action_dim = len(action_low)
        self.encoder = StageStateEncoder(num_stages, embed_dim)
        inputs = embed_dim + obs_extra_dim + (action_dim if takes_action else 0)
        self.net = mlp(inputs, hidden, 1 if takes_action else action_dim)
        self.box = BoxScaling(action_low, action_high)


class Actor(StageNetwork):
    """``mu(s_T) -> theta_T``: stage embedding, 4-layer MLP, tanh scaled to the box."""

    def __init__(self, num_stages: int, action_low: np.ndarray, action_high: np.ndarray, **sizes: int):
        super().__init__(num_stages, action_low, action_high, takes_action=False, **sizes)
        # Small last layer (DDPG paper, sec. 7): the first policy sits near the box
        # centre, i.e. weights close to 1 + tanh(b_centre), not at a saturated corner.
        nn.init.uniform_(self.net[-1].weight, -3e-3, 3e-3)
        nn.init.uniform_(self.net[-1].bias, -3e-3, 3e-3)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.box.to_box(torch.tanh(self.net(self.encoder(obs))))


class Critic(StageNetwork):
    """``Q(s_T, theta_T)``: its own stage embedding, 4-layer MLP on ``[e_T, loss, acc, a]``. It sees
    actions rescaled to [-1, 1], so its input scale does not depend on how wide the action box is."""

    def __init__(self, num_stages: int, action_low: np.ndarray, action_high: np.ndarray, **sizes: int):
        super().__init__(num_stages, action_low, action_high, takes_action=True, **sizes)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs), self.box.to_unit(action)], dim=1)
        return self.net(x).squeeze(1)


def load_actor(state: dict, device: Device = "cpu") -> Actor:
    """Rebuild the greedy policy from :meth:`DDPG.actor_state` (e.g. a policy file)."""
    actor = Actor(
        state["num_stages"],
        np.asarray(state["action_low"], np.float32),
        np.asarray(state["action_high"], np.float32),
        embed_dim=state["embed_dim"],
        hidden=state["hidden"],
        obs_extra_dim=state["obs_extra_dim"],
    )
    actor.load_state_dict(state["weights"])
    return actor.to(device).eval()
