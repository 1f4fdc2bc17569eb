"""The transition buffer that full-data updates (FDU) replay.

LAW's transitions are expensive (one transition = one stage of two network
trainings) and few (workers x stages x episodes, thousands at most), so the
buffer keeps every one by default and hands the whole set to the learner as
tensors. A capacity turns it into a ring that forgets the oldest transitions.

Files are plain dicts of tensors and ints, written atomically, so
``torch.load(path, weights_only=True)`` reads them and a crash mid-write never
leaves a truncated buffer behind.
"""
from __future__ import annotations

import os
from typing import Iterable, NamedTuple, Optional, Union

import numpy as np
import torch

from law.io import atomic_save

PathLike = Union[str, os.PathLike]


class Transition(NamedTuple):
    """One stage of one episode: ``(s_T, theta_T, r_T, s_T+1, done)``."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    done: bool


class Transitions(NamedTuple):
    """A batch of transitions, one row per transition (numpy arrays or tensors)."""

    obs: torch.Tensor
    """(N, obs_dim) float32."""
    action: torch.Tensor
    """(N, action_dim) float32."""
    reward: torch.Tensor
    """(N,) float32."""
    next_obs: torch.Tensor
    """(N, obs_dim) float32."""
    done: torch.Tensor
    """(N,) float32, 1.0 where the episode ended (no bootstrapping past it)."""


class TransitionBuffer:
    """Every transition seen so far (or the newest ``capacity`` of them).

    Storage is numpy on the host: transitions arrive one stage at a time from
    workers, and the learner moves the whole buffer to its device once per
    update with :meth:`tensors`.
    """

    _INITIAL_ROWS = 256

    def __init__(self, action_dim: int, obs_dim: int = 3, capacity: Optional[int] = None):
        if action_dim < 1 or obs_dim < 1:
            raise ValueError(f"action_dim and obs_dim must be >= 1, got {action_dim}, {obs_dim}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be None (unbounded) or >= 1, got {capacity}")
        self.action_dim = int(action_dim)
        self.obs_dim = int(obs_dim)
        self.capacity = capacity
        self._size = 0
        self._next = 0  # row the next transition is written to
        self._arrays = self._allocate(self._initial_rows())

    def _initial_rows(self) -> int:
        return self._INITIAL_ROWS if self.capacity is None else min(self._INITIAL_ROWS, self.capacity)

    def _allocate(self, rows: int) -> dict[str, np.ndarray]:
        return {
            "obs": np.zeros((rows, self.obs_dim), np.float32),
            "action": np.zeros((rows, self.action_dim), np.float32),
            "reward": np.zeros((rows,), np.float32),
            "next_obs": np.zeros((rows, self.obs_dim), np.float32),
            "done": np.zeros((rows,), np.float32),
        }

    def __len__(self) -> int:
        return self._size

    @property
    def _rows(self) -> int:
        return len(self._arrays["reward"])

    def _grow(self) -> None:
        rows = 2 * self._rows
        if self.capacity is not None:
            rows = min(rows, self.capacity)
        bigger = self._allocate(rows)
        for name, array in self._arrays.items():
            bigger[name][: self._size] = array[: self._size]
        self._arrays = bigger

    def add(self, obs, action, reward: float, next_obs, done: bool) -> None:
        """Append one transition; with a capacity, the oldest one is dropped when full."""
        obs = self._check_row("obs", obs, self.obs_dim)
        next_obs = self._check_row("next_obs", next_obs, self.obs_dim)
        action = self._check_row("action", action, self.action_dim)
        reward = float(reward)
        if not np.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        if self._next == self._rows and self._rows != self.capacity:
            self._grow()
        row = self._next
        self._arrays["obs"][row] = obs
        self._arrays["action"][row] = action
        self._arrays["reward"][row] = reward
        self._arrays["next_obs"][row] = next_obs
        self._arrays["done"][row] = float(bool(done))
        self._next = row + 1
        if self.capacity is not None and self._next == self.capacity:
            self._next = 0  # ring: overwrite the oldest from now on
        self._size = min(self._size + 1, self.capacity or self._size + 1)

    def extend(self, transitions: Iterable) -> None:
        """Append many ``(obs, action, reward, next_obs, done)`` tuples, oldest first."""
        for transition in transitions:
            self.add(*transition)

    @staticmethod
    def _check_row(name: str, value, dim: int) -> np.ndarray:
        row = np.asarray(value, dtype=np.float32)
        if row.shape != (dim,):
            raise ValueError(f"{name} must have shape ({dim},), got {row.shape}")
        if not np.all(np.isfinite(row)):
            raise ValueError(f"{name} must be finite, got {row}")
        return row

    def _chronological(self) -> np.ndarray:
        """Row indices from oldest to newest."""
        if self._size < self._rows or self.capacity is None:
            return np.arange(self._size)
        return (self._next + np.arange(self._size)) % self._size

    def arrays(self) -> Transitions:
        """All transitions as numpy arrays (copies), oldest first."""
        order = self._chronological()
        return Transitions(*(self._arrays[name][order] for name in Transitions._fields))

    def tensors(self, device: Union[str, torch.device] = "cpu") -> Transitions:
        """All transitions as float32 tensors on ``device``, oldest first."""
        return Transitions(*(torch.from_numpy(a).to(device) for a in self.arrays()))

    def state_dict(self) -> dict:
        """Plain dict of tensors and ints (``torch.load(weights_only=True)`` safe)."""
        state = {name: torch.from_numpy(array) for name, array in self.arrays()._asdict().items()}
        state.update(
            obs_dim=self.obs_dim, action_dim=self.action_dim, capacity=self.capacity or 0
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        """Replace the contents with ``state`` (from :meth:`state_dict`)."""
        if (state["obs_dim"], state["action_dim"]) != (self.obs_dim, self.action_dim):
            raise ValueError(
                f"buffer holds obs_dim={state['obs_dim']}, action_dim={state['action_dim']}; "
                f"this buffer expects obs_dim={self.obs_dim}, action_dim={self.action_dim}"
            )
        self.capacity = state["capacity"] or None
        size = len(state["reward"])
        if self.capacity is not None and size > self.capacity:
            raise ValueError(f"buffer holds {size} transitions, more than capacity {self.capacity}")
        self._arrays = self._allocate(max(size, self._initial_rows()))
        for name in Transitions._fields:
            self._arrays[name][:size] = state[name].numpy()
        self._size = size
        self._next = 0 if size == self.capacity else size

    def save(self, path: PathLike) -> None:
        """Write the buffer atomically (temp file in the same folder + rename)."""
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: PathLike) -> "TransitionBuffer":
        """Read a buffer written by :meth:`save` (``weights_only=True``)."""
        state = torch.load(path, weights_only=True)
        buffer = cls(state["action_dim"], state["obs_dim"], state["capacity"] or None)
        buffer.load_state_dict(state)
        return buffer
