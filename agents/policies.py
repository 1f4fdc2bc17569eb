"""Greedy policies: what a search returns and what ``law apply`` runs, stage by stage.

Two kinds behind one interface (``policy(obs) -> action`` in the unit box,
``state_dict()`` as plain lists and tensors, so files load with
``weights_only=True``):

* :class:`ActorPolicy` — DDPG's actor (stage embedding + MLP): a function of
  the observation, so it reacts to how training is going;
* :class:`SchedulePolicy` — one fixed action per stage: random search's best
  draw, or a hand-set schedule ("unweighted until stage 3, then ...").

A search's episodes act with a *behaviour*: :class:`Behaviour` is a greedy
policy (a greedy evaluation), the actor plus Gaussian noise (a DDPG training
episode; correlated across its stages if asked) or uniform draws (random
search), rebuilt on the worker from a plain state so a whole episode runs there
without asking the learner for actions. One behaviour acts one episode.
"""
from __future__ import annotations

import math
from typing import Optional, Protocol, Union

import numpy as np
import torch

from law.errors import LawError

from .networks import load_actor


class Policy(Protocol):
    kind: str
    num_stages: int
    action_dim: int

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...

    def state_dict(self) -> dict: ...


class ActorPolicy:
    """The deterministic actor ``mu(s_T)``, rebuilt from :meth:`agents.DDPG.actor_state`."""

    kind = "actor"

    def __init__(self, actor_state: dict):
        self.actor_state = actor_state
        self.actor = load_actor(actor_state)
        self.num_stages = int(actor_state["num_stages"])
        self.action_dim = len(actor_state["action_low"])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.actor(torch.as_tensor(np.asarray(obs, np.float32))[None])[0].numpy()

    def state_dict(self) -> dict:
        return {"kind": self.kind, "actor": self.actor_state}


class SchedulePolicy:
    """One action per stage, whatever the observation (rows of warm-up stages are unused)."""

    kind = "schedule"

    def __init__(self, actions: Union[np.ndarray, list]):
        self.actions = np.asarray(actions, dtype=np.float32)
        if self.actions.ndim != 2 or not np.all(np.isfinite(self.actions)) or np.abs(self.actions).max() > 1:
            raise LawError(f"a schedule is one action in [-1, 1] per stage (a 2-D table), got {actions}")
        self.num_stages, self.action_dim = self.actions.shape

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.actions[int(round(float(obs[0])))].copy()

    def state_dict(self) -> dict:
        return {"kind": self.kind, "actions": self.actions.tolist()}


def policy_from_state(state: dict) -> Policy:
    """Rebuild a policy from its ``state_dict()``."""
    kind = state.get("kind")
    if kind == ActorPolicy.kind:
        return ActorPolicy(state["actor"])
    if kind == SchedulePolicy.kind:
        return SchedulePolicy(state["actions"])
    raise LawError(f"unknown policy kind {kind!r}; known: {ActorPolicy.kind}, {SchedulePolicy.kind}")


def gaussian_exploration(action: np.ndarray, rng: np.random.Generator, std: np.ndarray,
                         low: np.ndarray, high: np.ndarray, previous: Optional[np.ndarray] = None,
                         correlation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``action`` plus Gaussian noise of ``std`` per dimension, clipped to the box; returns the
    noisy action and the noise in std units. Given the ``previous`` stage's noise, the noise is
    an AR(1) (a discretised Ornstein-Uhlenbeck process, the noise of Lillicrap et al.'s DDPG)
    of lag-one ``correlation`` and the same std: 0 draws each stage afresh, 1 holds one draw."""
    noise = rng.normal(0.0, 1.0, action.shape)
    if previous is not None:
        noise = correlation * previous + math.sqrt(1.0 - correlation ** 2) * noise
    return np.clip(action + noise * std, low, high).astype(np.float32), noise


class Behaviour:
    """What an episode acts with, ``behaviour(obs, rng) -> action``; ``rng`` is the stage's own
    generator (the search derives it from its seed, the episode and the stage)."""

    KINDS = ("greedy", "gaussian", "uniform")

    def __init__(self, state: dict):
        self.kind = state.get("kind")
        if self.kind not in self.KINDS:
            raise LawError(f"unknown behaviour {self.kind!r}; known: {', '.join(self.KINDS)}")
        self.state = state
        if self.kind == "uniform":
            self.action_dim = int(state["action_dim"])
            return
        self.policy = policy_from_state(state["policy"])
        if self.kind == "gaussian":
            self.std, self.low, self.high = (np.asarray(state[k], np.float32) for k in ("std", "low", "high"))
            self.correlation = float(state.get("correlation", 0.0))
            self.noise: Optional[np.ndarray] = None  # the last stage's, in std units: one behaviour per episode

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "uniform":
            return rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
        action = self.policy(obs)
        if self.kind == "greedy":
            return action
        action, self.noise = gaussian_exploration(action, rng, self.std, self.low, self.high,
                                                  self.noise, self.correlation)
        return action
