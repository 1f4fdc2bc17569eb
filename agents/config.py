"""The LAW agent's settings: network sizes, optimisation, exploration, and TD3's and the ensemble's
switches, each checked before a search starts."""
from __future__ import annotations

from dataclasses import dataclass

from law.errors import ConfigError


@dataclass
class DDPGConfig:
    """Actor-critic sizes, optimisation and exploration of the LAW agent."""

    embed_dim: int = 16
    """Size d of the learned stage embedding e_T (the paper leaves d open; 16 codes 20 stages easily)."""
    hidden: int = 64
    """Width of the 3 hidden layers of the 4-layer actor and critic MLPs (inputs are ~20-dim)."""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor. The paper uses 1e-5 with 8 workers x many episodes; 1e-4 learns within a CPU budget."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic (paper: 1e-4); 10x the actor's so Q tracks the moving policy."""
    gamma: float = 0.9
    """Discount per stage. 0.9 (horizon ~10 of 20 stages) keeps bootstrapped targets low-variance with few episodes."""
    tau: float = 0.01
    """Polyak factor of the target networks per minibatch step; FDU takes many steps per stage, so a small tau suffices."""
    noise_std: float = 0.3
    """Gaussian exploration std per action dimension, as a fraction of that dimension's half-range."""
    noise_decay: float = 0.95
    """Factor applied to the exploration std after every completed episode (all workers counted)."""
    noise_min: float = 0.05
    """Floor of the decayed exploration std (same units as noise_std), so late episodes still explore."""
    noise_correlation: float = 0.0
    """Lag-one correlation of a training episode's noise from stage to stage, at the same std (an AR(1),
    the discretised Ornstein-Uhlenbeck noise of Lillicrap et al.): 0 draws every stage afresh, 1 holds
    one offset for the whole episode."""
    fdu_epochs: int = 4
    """Full-data update: passes over the whole shuffled buffer at every update (every fdu_every stage ends)."""
    fdu_batch_size: int = 64
    """Minibatch size within a full-data update pass (the last minibatch of a pass may be smaller)."""
    grad_clip: float = 10.0
    """Max global gradient norm for actor and critic steps; 0 disables. Guards against reward spikes in late stages."""
    n_critics: int = 1
    """Number of critics (an ensemble); the TD target is the minimum over target_min_critics of them and
    the actor ascends their mean. 2 critics with the minimum over both is TD3's clipped double Q."""
    target_min_critics: int = 0
    """Size of the random subset of critics whose minimum is the TD target (REDQ: 10 critics, subset 2);
    0 = all of them."""
    pessimism: float = 0.0
    """The actor ascends the critics' mean minus this many of their standard deviations (needs
    n_critics >= 2): where the ensemble disagrees, away from the actions it was fitted on, Q is
    distrusted, so a critic fitted to a few hundred transitions cannot drag a good start into
    the box's unvisited parts. 0 is plain DDPG (the mean)."""
    policy_delay: int = 1
    """Update the actor and the targets every this many critic steps (TD3: 2)."""
    target_noise: float = 0.0
    """TD3 target policy smoothing std, as a fraction of the half-range; 0 is plain DDPG (TD3: 0.2)."""
    target_noise_clip: float = 0.5
    """Clip of the target smoothing noise, as a fraction of the half-range (TD3: 0.5)."""
    action_penalty: float = 0.0
    """Pull of the actor towards its anchor: loss = -Q/mean|Q| + c*mean((a - anchor)^2) in [-1, 1] units; the
    anchor is the box centre, or the prior a search started from (start_from); 0 is plain DDPG."""
    actor_start: int = 0
    """Finished training episodes before the actor's first step; until then only the critic learns, from
    exploration around the actor's start (the prior a search starts from). 0 is plain DDPG."""
    seed: int = 0
    """Seed of network initialisation, FDU shuffling and target smoothing noise."""

    def validate(self) -> None:
        positive = {name: getattr(self, name) for name in ("embed_dim", "hidden", "actor_lr", "critic_lr",
                                                           "fdu_epochs", "fdu_batch_size", "policy_delay")}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(name, f"must be > 0, got {value}")
        unit_interval = {"gamma": self.gamma, "noise_decay": self.noise_decay,
                         "noise_correlation": self.noise_correlation}
        for name, value in unit_interval.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(name, f"must be in [0, 1], got {value}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError("tau", f"must be in (0, 1] (1 copies the online nets), got {self.tau}")
        non_negative = {name: getattr(self, name) for name in ("noise_std", "noise_min", "grad_clip", "target_noise",
                                                               "target_noise_clip", "action_penalty", "actor_start",
                                                               "pessimism")}
        for name, value in non_negative.items():
            if not value >= 0:
                raise ConfigError(name, f"must be >= 0, got {value}")
        if self.noise_min > self.noise_std:
            raise ConfigError(
                "noise_min", f"must not exceed noise_std ({self.noise_std}), got {self.noise_min}"
            )
        if self.n_critics < 1:
            raise ConfigError("n_critics", f"must be >= 1, got {self.n_critics}")
        if self.pessimism > 0 and self.n_critics < 2:
            raise ConfigError("pessimism", f"needs an ensemble (n_critics >= 2) to measure disagreement, "
                                           f"got n_critics = {self.n_critics}")
        if not 0 <= self.target_min_critics <= self.n_critics:
            raise ConfigError("target_min_critics", f"must be in [0, n_critics = {self.n_critics}] "
                                                    f"(0 = all), got {self.target_min_critics}")
