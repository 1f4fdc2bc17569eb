"""A search's settings, file names and seeds."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from law.errors import ConfigError

CHECKPOINT = "checkpoint.pt"
POLICY = "policy.pt"
LAST_POLICY = "policy_last.pt"
AGENTS = ("ddpg", "random")


@dataclass
class SearchConfig:
    """How the policy search runs: agent, episodes, evaluation, workers, resources, outputs."""

    agent: str = "ddpg"
    """Search agent: ddpg (LAW's actor-critic) or random (random stage-wise schedules, the yardstick)."""
    episodes: int = 8
    """Training episodes in total (each one full training of the target), spread over the workers."""
    seed_pool: int = 4
    """Episode seeds the training episodes cycle through; each seed's unweighted twin is trained once and
    cached (common random numbers). 0 = a new seed for every episode, the twin trained every time."""
    eval_every: int = 10
    """Evaluate the greedy policy after every this many training episodes (and always at the end)."""
    eval_seeds: int = 2
    """Episode seeds of a greedy evaluation, disjoint from the training seeds (clean validation split)."""
    finalists: int = 3
    """At the end, the best this many distinct greedy evaluations and the prior the agent started
    from are judged again on ``final_seeds`` further seeds; policy.pt is the best by its mean over all
    its seeds, so a policy that won one evaluation by luck is checked before it is kept. 0 = keep the
    best evaluation."""
    final_seeds: int = 2
    """Episode seeds of that final judging, disjoint from the training and evaluation seeds."""
    workers: int = 2
    """Env workers (Ray actors) training episodes at the same time (paper: 8)."""
    in_flight: int = 0
    """Training episodes that may run at once: episode n acts with the agent as it was after learning from
    episodes 0..n-in_flight (1: from every earlier one). It, not the workers, fixes what a search computes;
    0 = workers x episodes_per_worker + 1 (kept in the run's config), so the learner's updates never hold a
    worker up."""
    episodes_per_worker: int = 1
    """Episodes a worker runs at once, their networks trained as one stacked model (vectorised episodes):
    what fills a GPU that one small network leaves idle; slower on a CPU (README, "Vectorised episodes").
    1 = one episode at a time, its networks trained one by one. Every value >= 2 computes the same search;
    it differs from 1 in the last bits of the networks' floats."""
    cpus_per_worker: float = 1.0
    """CPUs reserved per worker; also its torch thread count."""
    gpus_per_worker: float = 0.0
    """GPUs per worker; fractions let several network pairs share one GPU (scheduling only, not memory isolation)."""
    address: str = ""
    """Ray cluster to join (host:port or 'auto'); empty: RAY_ADDRESS if set, else a local Ray."""
    seed: int = 0
    """Seed of the agent, the exploration noise and every episode's training."""
    output_dir: str = "runs"
    """Folder that receives one sub-folder per search."""
    run_name: str = ""
    """Name of the run folder (default: {dataset}__law-search__{seed}__{time})."""
    resume: str = ""
    """Run folder of an interrupted search to continue (its saved config is used)."""
    max_worker_restarts: int = 3
    """How many times a worker may die (Ray restarts it and it replays its episode) before the search stops."""
    min_buffer: int = 4
    """Transitions collected before the first FDU update."""
    fdu_every: int = 2
    """Stage ends learned from between two full-data updates. The paper's synchronous workers update once
    per round of all of them (8); the CPU profiles' 2 workers did so every 2."""
    priors: bool = True
    """Judge the prior family (neutral, the sharp loss rule, on imbalanced data the class-balanced fit,
    every --init-policy) before the first episode and start the agent from the best; policy.pt is the best
    judged policy, a prior included."""
    init_policy: tuple[str, ...] = ()
    """Policies (shipped names or files) that join the prior family."""
    progress: bool = True
    """Show a progress line."""

    def validate(self) -> None:
        if self.agent not in AGENTS:
            raise ConfigError("agent", f"unknown agent '{self.agent}'; known: {', '.join(AGENTS)}")
        if self.episodes < 1:
            raise ConfigError("episodes", f"must be >= 1, got {self.episodes}")
        if self.seed_pool < 0:
            raise ConfigError("seed_pool", f"must be >= 0 (0 = a new seed per episode), got {self.seed_pool}")
        if self.eval_every < 1:
            raise ConfigError("eval_every", f"must be >= 1, got {self.eval_every}")
        if self.eval_seeds < 1:
            raise ConfigError("eval_seeds", f"must be >= 1, got {self.eval_seeds}")
        if self.finalists < 0:
            raise ConfigError("finalists", f"must be >= 0 (0 = no final judging), got {self.finalists}")
        if self.final_seeds < 1 and self.finalists:
            raise ConfigError("final_seeds", f"must be >= 1 to judge {self.finalists} finalists, got "
                                             f"{self.final_seeds} (--finalists 0: no final judging)")
        if self.workers < 1:
            raise ConfigError("workers", f"must be >= 1, got {self.workers}")
        if self.in_flight < 0:
            raise ConfigError("in_flight", f"must be >= 0 (0 = workers x episodes_per_worker + 1), "
                                           f"got {self.in_flight}")
        if self.episodes_per_worker < 1:
            raise ConfigError("episodes_per_worker", f"must be >= 1, got {self.episodes_per_worker}")
        if self.cpus_per_worker <= 0:
            raise ConfigError("cpus_per_worker", "must be > 0")
        if self.gpus_per_worker < 0:
            raise ConfigError("gpus_per_worker", "must be >= 0")
        if self.gpus_per_worker > 0 and not self.address and not os.environ.get("RAY_ADDRESS") \
                and not torch.cuda.is_available():
            raise ConfigError("gpus_per_worker", "no GPU on this machine; use --gpus-per-worker 0 "
                                                 "or --address to join a cluster with GPUs")
        if self.fdu_every < 1:
            raise ConfigError("fdu_every", f"must be >= 1, got {self.fdu_every}")
        if self.max_worker_restarts < 0:
            raise ConfigError("max_worker_restarts", "must be >= 0")
        if self.init_policy and not self.priors:
            raise ConfigError("init_policy", "an --init-policy joins the prior family; leave --no-priors out")
        if self.resume and not (Path(self.resume) / CHECKPOINT).is_file():
            raise ConfigError("resume", f"no {CHECKPOINT} in '{self.resume}'; pass the run folder "
                                        "of the interrupted search")




def _derived_seed(search_seed: int, purpose: int, index: int) -> int:
    return int(np.random.SeedSequence([search_seed, purpose, index]).generate_state(1)[0] & 0x7FFFFFFF)


def training_seed(cfg: SearchConfig, episode: int) -> int:
    """Episode seed of training episode ``episode``: one of ``seed_pool`` seeds, or its own."""
    return _derived_seed(cfg.seed, 0, episode % cfg.seed_pool if cfg.seed_pool else episode)


def evaluation_seeds(cfg: SearchConfig) -> list[int]:
    """The greedy evaluation's seeds, disjoint from every training seed."""
    return [_derived_seed(cfg.seed, 1, j) for j in range(cfg.eval_seeds)]


def final_seeds(cfg: SearchConfig) -> list[int]:
    """The final judging's seeds, disjoint from the training and evaluation seeds."""
    return [_derived_seed(cfg.seed, 2, j) for j in range(cfg.final_seeds if cfg.finalists else 0)]


def noise_rng(search_seed: int, episode: int, stage: int) -> np.random.Generator:
    """Exploration from (seed, episode, stage) alone: a replayed or resumed episode draws the same."""
    return np.random.default_rng([search_seed, episode, stage])


OPERATIONAL = ("address", "workers", "cpus_per_worker", "gpus_per_worker", "max_worker_restarts", "progress")
"""The settings a resumed search may change: where and how fast it runs, never what it computes."""
