"""Random search over stage-wise schedules: the yardstick a learned search must beat.

Every training episode acts with a fresh random schedule: each stage's action
is drawn uniformly from the box, from that stage's own generator (the search
derives it from the seed, the episode and the stage, as it does DDPG's
exploration noise). The greedy policy is the schedule whose episode ended with
the highest validation gap; the search's periodic greedy evaluations then
judge it on other seeds, exactly as they judge DDPG's actor.
"""
from __future__ import annotations

import numpy as np

from .buffer import TransitionBuffer


class RandomSearch:
    """Same interface as :class:`agents.DDPG` in a search: explore, update, end_episode, greedy_state."""

    name = "random"

    def __init__(self, num_stages: int, action_dim: int):
        self.num_stages = int(num_stages)
        self.action_dim = int(action_dim)
        self.best_actions = np.zeros((self.num_stages, self.action_dim), np.float32)  # neutral: theta = 0
        self.best_gap = float("-inf")
        self.episodes_done = 0

    @property
    def noise_scale(self) -> float:
        return 1.0  # every action is a uniform draw

    def explore(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)

    def behaviour_state(self) -> dict:
        """What :meth:`explore` does, as ``agents.policies.Behaviour`` rebuilds it on a worker."""
        return {"kind": "uniform", "action_dim": self.action_dim}

    def update(self, buffer: TransitionBuffer) -> dict[str, float]:
        return {}

    def end_episode(self, stages: np.ndarray, actions: np.ndarray, final_gap: float) -> None:
        """Keep the schedule of an episode that acted with ``actions`` at ``stages``."""
        self.episodes_done += 1
        if final_gap > self.best_gap:
            self.best_gap = float(final_gap)
            self.best_actions = np.zeros_like(self.best_actions)
            self.best_actions[np.asarray(stages, dtype=int)] = actions

    def greedy_state(self) -> dict:
        return {"kind": "schedule", "actions": self.best_actions.tolist()}

    def state_dict(self) -> dict:
        return {"best_actions": self.best_actions.tolist(), "best_gap": self.best_gap,
                "episodes_done": self.episodes_done}

    def load_state_dict(self, state: dict) -> None:
        self.best_actions = np.asarray(state["best_actions"], np.float32)
        self.best_gap = float(state["best_gap"])
        self.episodes_done = int(state["episodes_done"])
