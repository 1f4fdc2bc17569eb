"""DDPG with a stage-embedding actor/critic and full-data updates (FDU).

The agent knows only the contract with the environment:

- observation ``(3,)`` float32 ``[stage_index, smoothed_train_loss,
  smoothed_val_accuracy]``; the stage index is an integer stored as a float
  and is embedded (``e_T``) by a learned ``nn.Embedding``;
- action ``(action_dim,)`` float32 in a box ``[action_low, action_high]``
  (LAW: ``theta`` for the 4 sample features and the bias ``b``);
- scalar reward, boolean ``done``.

TD3's three extras (twin critics, delayed policy updates, target policy
smoothing) are constructor switches in :class:`DDPGConfig`, as in
stable-baselines3 where DDPG is TD3 with them off. The defaults are plain DDPG.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from law.errors import ConfigError
from law.io import atomic_save

from .buffer import PathLike, TransitionBuffer, Transitions
from .config import DDPGConfig
from .networks import Actor, Bound, Critic, Device, as_bounds, polyak_update
from .policies import gaussian_exploration

BC_LIMIT = 0.95
"""Largest |action| (in [-1, 1] units) the actor is fitted to when it starts from a prior."""
BC_STEPS, BC_LR = 500, 1e-3
"""Full-batch Adam steps and rate of that fit (a table of at most a few hundred rows)."""


class DDPG:
    """The learner: actor, critic(s), their targets, exploration and FDU.

    One learner serves every worker: workers' transitions go into one
    :class:`TransitionBuffer` and :meth:`update` trains on all of it.
    """

    name = "ddpg"

    def __init__(
        self,
        num_stages: int,
        action_low: Bound,
        action_high: Bound,
        cfg: Optional[DDPGConfig] = None,
        device: Device = "cpu",
        *,
        action_dim: Optional[int] = None,
        obs_extra_dim: int = 2,
    ):
        self.cfg = cfg = cfg if cfg is not None else DDPGConfig()
        cfg.validate()
        if num_stages < 1:
            raise ConfigError("num_stages", f"must be >= 1, got {num_stages}")
        self.num_stages = int(num_stages)
        self.action_low, self.action_high = as_bounds(action_low, action_high, action_dim)
        self.action_dim = len(self.action_low)
        self.obs_extra_dim = obs_extra_dim
        self.device = torch.device(device)

        # Seeded initialisation without disturbing the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.actor = self._make(Actor)
            self.critics = nn.ModuleList(self._make(Critic) for _ in range(cfg.n_critics))
            self.actor_target = self._make(Actor)
            self.critic_targets = nn.ModuleList(self._make(Critic) for _ in range(cfg.n_critics))
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_targets.load_state_dict(self.critics.state_dict())
        self.actor_target.requires_grad_(False)
        self.critic_targets.requires_grad_(False)

        # Parameter lists are built once: FDU takes hundreds of small steps per
        # stage, where re-walking the module tree costs as much as the maths.
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critics.parameters())
        self._target_pairs = (
            (self._actor_params, list(self.actor_target.parameters())),
            (self._critic_params, list(self.critic_targets.parameters())),
        )
        # foreach: one fused kernel per op over all parameters, also on the CPU.
        self.actor_optimizer = torch.optim.Adam(self._actor_params, lr=cfg.actor_lr, foreach=True)
        self.critic_optimizer = torch.optim.Adam(self._critic_params, lr=cfg.critic_lr, foreach=True)
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.episodes_done = 0  # drives the exploration decay
        self.critic_steps = 0  # drives the TD3 policy delay
        self._half_range = (self.action_high - self.action_low) / 2
        self._low = torch.from_numpy(self.action_low).to(self.device)
        self._high = torch.from_numpy(self.action_high).to(self.device)
        # Per stage, in [-1, 1] units: where the action penalty pulls (the box centre until start_from).
        self.anchor = torch.zeros(self.num_stages, self.action_dim, device=self.device)

    def _make(self, cls):
        return cls(
            self.num_stages, self.action_low, self.action_high,
            embed_dim=self.cfg.embed_dim, hidden=self.cfg.hidden, obs_extra_dim=self.obs_extra_dim,
        ).to(self.device)

    # ------------------------------------------------------------------ acting

    @property
    def noise_scale(self) -> float:
        """Current exploration std, as a fraction of each dimension's half-range."""
        decayed = self.cfg.noise_std * self.cfg.noise_decay ** self.episodes_done
        return max(decayed, self.cfg.noise_min)

    def end_episode(self, stages=None, actions=None, final_gap=None) -> None:
        """Count a finished episode (decays the exploration noise). Its transitions are in
        the buffer already; the other arguments are for agents that learn from whole episodes."""
        self.episodes_done += 1

    def explore(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The exploratory action of a training episode (see :meth:`act`)."""
        return self.act(obs, explore=True, rng=rng)

    def greedy_state(self) -> dict:
        """The greedy policy as a plain dict (``agents.policies.policy_from_state`` rebuilds it)."""
        return {"kind": "actor", "actor": self.actor_state()}

    def behaviour_state(self) -> dict:
        """A training episode's behaviour now (``agents.policies.Behaviour`` rebuilds it): the
        actor plus the current exploration noise, correlated across the episode's stages by
        ``noise_correlation`` (:meth:`explore` draws each call afresh)."""
        return {"kind": "gaussian", "policy": self.greedy_state(),
                "std": (self.noise_scale * self._half_range).tolist(), "correlation": self.cfg.noise_correlation,
                "low": self.action_low.tolist(), "high": self.action_high.tolist()}

    def act(
        self, obs: np.ndarray, explore: bool, rng: Optional[np.random.Generator] = None
    ) -> np.ndarray:
        """Action(s) for ``obs`` of shape (3,) or (N, 3): greedy, or with Gaussian noise.

        Noise is drawn independently per action dimension from ``rng`` (each
        worker passes its own, so exploration is reproducible per worker), with
        std ``noise_scale * half_range``, then clipped to the box.
        """
        obs = np.array(obs, dtype=np.float32)  # a copy: arrays from Ray are read-only
        batched = obs.ndim == 2
        obs2d = obs if batched else obs[None]
        stages = obs2d[:, 0]
        if np.any((stages < 0) | (stages > self.num_stages - 1)):
            raise ValueError(f"stage index must be in [0, {self.num_stages - 1}], got {stages}")
        with torch.no_grad():
            action = self.actor(torch.from_numpy(obs2d).to(self.device)).cpu().numpy()
        if explore:
            if rng is None:
                raise ValueError("explore=True needs a numpy Generator `rng`")
            action, _ = gaussian_exploration(action, rng, self.noise_scale * self._half_range,
                                             self.action_low, self.action_high)
        return action if batched else action[0]

    # ---------------------------------------------------------------- learning

    def update(self, buffer: TransitionBuffer) -> dict[str, float]:
        """Full-data update: ``fdu_epochs`` shuffled passes over the whole buffer.

        Why the whole buffer: a LAW transition costs a full stage of training
        two networks, so there are few of them and each is worth replaying;
        sampling one minibatch per stage (classic DDPG) would leave most
        transitions barely used. Each minibatch takes one critic TD step, then
        (every ``policy_delay`` critic steps) one actor step and a Polyak step
        of all targets, the order of Lillicrap et al.'s per-step update; the
        targets therefore move within a pass, as in standard DDPG.

        Returns means over the update's minibatches: ``critic_loss``,
        ``actor_loss``, ``q`` (Q of the stored actions), plus ``samples_seen``
        (= len(buffer) * fdu_epochs), ``minibatches`` and ``actor_steps``.
        """
        n = len(buffer)
        if n == 0:
            raise ValueError("update() needs at least one transition in the buffer")
        data = buffer.tensors(self.device)
        critic_losses, actor_losses, q_values = [], [], []
        samples_seen = 0
        for _ in range(self.cfg.fdu_epochs):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            for rows in order.split(self.cfg.fdu_batch_size):
                batch = Transitions(*(field[rows] for field in data))
                critic_loss, q = self._critic_step(batch)
                critic_losses.append(critic_loss)
                q_values.append(q)
                samples_seen += rows.numel()
                if self.critic_steps % self.cfg.policy_delay == 0:
                    # A critic fitted to a few transitions would move a good start anywhere.
                    if self.episodes_done >= self.cfg.actor_start:
                        actor_losses.append(self._actor_step(batch))
                    self._update_targets()
        nan = torch.full((), float("nan"), device=self.device)
        means = torch.stack([
            torch.stack(critic_losses).mean(),
            torch.stack(actor_losses).mean() if actor_losses else nan,
            torch.stack(q_values).mean(),
        ]).tolist()  # the one host sync of the update
        return {
            **dict(zip(("critic_loss", "actor_loss", "q"), means)),
            "samples_seen": float(samples_seen),
            "minibatches": float(len(critic_losses)),
            "actor_steps": float(len(actor_losses)),
        }

    def _td_target(self, batch: Transitions) -> torch.Tensor:
        with torch.no_grad():
            next_action = self.actor_target(batch.next_obs)
            if self.cfg.target_noise > 0:
                noise = torch.randn(next_action.shape, generator=self.generator, device=self.device)
                clip = self.cfg.target_noise_clip
                noise = (noise * self.cfg.target_noise).clamp(-clip, clip) * self.actor_target.box.scale
                next_action = torch.clamp(next_action + noise, self._low, self._high)
            next_q = torch.stack([critic(batch.next_obs, next_action) for critic in self.critic_targets])
            subset = self.cfg.target_min_critics
            if 0 < subset < len(next_q):  # REDQ: the minimum over a random subset
                chosen = torch.randperm(len(next_q), generator=self.generator, device=self.device)[:subset]
                next_q = next_q[chosen]
            next_q = next_q.min(dim=0).values
            return batch.reward + self.cfg.gamma * (1.0 - batch.done) * next_q

    def _critic_step(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        target = self._td_target(batch)
        q = [critic(batch.obs, batch.action) for critic in self.critics]
        loss = sum(F.mse_loss(qi, target) for qi in q)
        self._step(self.critic_optimizer, loss, self._critic_params)
        self.critic_steps += 1
        return loss.detach() / len(q), q[0].detach().mean()

    def _actor_step(self, batch: Transitions) -> torch.Tensor:
        action = self.actor(batch.obs)
        q = torch.stack([critic(batch.obs, action) for critic in self.critics])
        q = q.mean(dim=0) - self.cfg.pessimism * q.std(dim=0) if self.cfg.pessimism > 0 else q.mean(dim=0)
        if self.cfg.action_penalty == 0:
            loss = -q.mean()
        else:
            # Why: with few, noisy transitions the critic extrapolates to unvisited
            # corners of the box and a saturated tanh actor never comes back. The box
            # centre is the known-safe action (LAW: all weights 1), so the actor leaves
            # it only where Q says so; Q is scale-normalised (as TD3+BC) so c is unitless.
            offset = self.actor.box.to_unit(action) - self.anchor[self._stages(batch.obs)]
            loss = -q.mean() / q.abs().mean().detach().clamp_min(1e-6) + self.cfg.action_penalty * offset.pow(2).mean()
        self._step(self.actor_optimizer, loss, self._actor_params)
        return loss.detach()

    def _stages(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0].round().long().clamp(0, self.num_stages - 1)

    # ------------------------------------------------------------ a prior to start from

    def start_from(self, observations: np.ndarray, actions: np.ndarray) -> float:
        """Start the search from a prior: fit the actor to its ``actions`` at the ``observations``
        it met (behaviour cloning, mean squared error in [-1, 1] units, full batch), copy the
        actor into its target, and anchor the action penalty at the prior's mean action per
        stage. Targets are clipped to +-BC_LIMIT so the tanh does not start saturated, where
        DDPG's gradients could no longer move it. Returns the fit's final error."""
        obs = torch.as_tensor(np.asarray(observations, np.float32), device=self.device)
        unit = self.actor.box.to_unit(torch.as_tensor(np.asarray(actions, np.float32), device=self.device))
        unit = unit.clamp(-BC_LIMIT, BC_LIMIT)
        optimizer = torch.optim.Adam(self._actor_params, lr=BC_LR, foreach=True)
        for _ in range(BC_STEPS):
            error = F.mse_loss(self.actor.box.to_unit(self.actor(obs)), unit)
            optimizer.zero_grad(set_to_none=True)
            error.backward()
            optimizer.step()
        self.actor_target.load_state_dict(self.actor.state_dict())
        stages = self._stages(obs)
        for stage in stages.unique():
            self.anchor[stage] = unit[stages == stage].mean(dim=0)
        with torch.no_grad():
            return F.mse_loss(self.actor.box.to_unit(self.actor(obs)), unit).item()

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip, foreach=True)
        optimizer.step()

    def _update_targets(self) -> None:
        for params, target_params in self._target_pairs:
            polyak_update(params, target_params, self.cfg.tau)

    # ------------------------------------------------------------ persistence

    def state_dict(self) -> dict:
        """Everything needed to resume, as tensors and primitives (weights_only-safe)."""
        return {
            "config": dataclasses.asdict(self.cfg),
            "num_stages": self.num_stages,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "obs_extra_dim": self.obs_extra_dim,
            "actor": self.actor.state_dict(),
            "critics": self.critics.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_targets": self.critic_targets.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "episodes_done": self.episodes_done,
            "critic_steps": self.critic_steps,
            "anchor": self.anchor.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; the architecture must match this agent's."""
        saved = DDPGConfig(**state["config"])
        for field in ("embed_dim", "hidden", "n_critics"):
            if getattr(saved, field) != getattr(self.cfg, field):
                raise ConfigError(
                    field,
                    f"checkpoint has {getattr(saved, field)}, this agent {getattr(self.cfg, field)}; "
                    "build the agent with DDPG.from_state_dict to take the checkpoint's config",
                )
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_targets.load_state_dict(state["critic_targets"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.generator.set_state(state["generator"])
        self.episodes_done = state["episodes_done"]
        self.critic_steps = state["critic_steps"]
        if "anchor" in state:  # checkpoints of earlier versions: the box centre
            self.anchor = state["anchor"].to(self.device)

    @classmethod
    def from_state_dict(cls, state: dict, device: Device = "cpu") -> "DDPG":
        """A new agent with the checkpoint's config and weights."""
        agent = cls(
            state["num_stages"], state["action_low"], state["action_high"],
            DDPGConfig(**state["config"]), device, obs_extra_dim=state["obs_extra_dim"],
        )
        agent.load_state_dict(state)
        return agent

    def save(self, path: PathLike) -> None:
        """Checkpoint atomically (temp file + rename)."""
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: PathLike, device: Device = "cpu") -> "DDPG":
        """Read a checkpoint written by :meth:`save` (``weights_only=True``)."""
        # Load on the CPU: the generator state must stay a CPU ByteTensor; modules
        # and optimisers move their tensors to ``device`` themselves.
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True), device)

    def actor_state(self) -> dict:
        """The small policy file: actor weights (CPU) and what rebuilds the actor."""
        return {
            "num_stages": self.num_stages,
            "embed_dim": self.cfg.embed_dim,
            "hidden": self.cfg.hidden,
            "obs_extra_dim": self.obs_extra_dim,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            # clone: on the CPU .cpu() is the live parameter, and a policy is a snapshot
            "weights": {k: v.detach().cpu().clone() for k, v in self.actor.state_dict().items()},
        }
