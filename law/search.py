"""Distributed policy search: env workers on Ray, one learner, resumable.

Shape of a search (LAW's parallel 3SM search):

* ``N`` env workers (Ray actors), each owning one environment — one pair of
  target/reference networks. A worker trains one stage per call.
* One learner (this driver process) owning the shared actor/critic and the
  transition buffer. Every *round*, each busy worker trains its next stage with
  the action the learner chose from the current actor; the learner adds all the
  transitions that came back and runs one full-data update (FDU).

Why actions travel instead of actor weights: the action of a stage is a pure
function of the stage's observation and the actor *after* the last update, so
computing it at the learner is exactly "workers get the new weights", without
shipping weights or duplicating the exploration noise on every worker.

Faults: each transition is tagged with its episode. If a worker dies, Ray
restarts it (``max_restarts``), the learner drops that episode's transitions
and the episode is redone from its first stage with the same seed. The learner
checkpoints everything (agent, optimisers, buffer, counters) atomically at the
end of every round; ``--resume RUN_DIR`` drops the transitions of episodes that
were in flight when the driver died and redoes exactly those, so no finished
episode is lost or repeated.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from agents import DDPG, DDPGConfig, TransitionBuffer
from law.config import to_dict, validate_all
from law.data import DataConfig
from law.errors import ConfigError, LawError
from law.io import (atomic_save, atomic_write_json, atomic_write_text, environment_info,
                    new_run_dir, run_stamp)
from law.features import FEATURE_SPEC
from law.progress import ProgressLine
from law.trainer import OptimConfig
from envs import EnvConfig, StageWeightingEnv

CHECKPOINT = "checkpoint.pt"
POLICY = "policy.pt"


@dataclass
class SearchConfig:
    """How the policy search runs: episodes, workers, resources, outputs."""

    episodes: int = 8
    """Episodes in total (each one full paired training), spread over the workers."""
    workers: int = 2
    """Env workers (Ray actors) training episodes at the same time (paper: 8)."""
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
    """How many times Ray restarts a dead worker before the search gives up."""
    min_buffer: int = 4
    """Transitions collected before the first FDU update."""
    progress: bool = True
    """Show a progress line."""

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError("episodes", f"must be >= 1, got {self.episodes}")
        if self.workers < 1:
            raise ConfigError("workers", f"must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ConfigError("cpus_per_worker", "must be > 0")
        if self.gpus_per_worker < 0:
            raise ConfigError("gpus_per_worker", "must be >= 0")
        if self.gpus_per_worker > 0 and not self.address and not os.environ.get("RAY_ADDRESS") \
                and not torch.cuda.is_available():
            raise ConfigError("gpus_per_worker", "no GPU on this machine; use --gpus-per-worker 0 "
                                                 "or --address to join a cluster with GPUs")
        if self.max_worker_restarts < 0:
            raise ConfigError("max_worker_restarts", "must be >= 0")
        if self.resume and not (Path(self.resume) / CHECKPOINT).is_file():
            raise ConfigError("resume", f"no {CHECKPOINT} in '{self.resume}'; pass the run folder "
                                        "of the interrupted search")


class EnvWorker:
    """Owns one environment; trains one stage per call. Wrapped with ``ray.remote`` at launch,
    so it also runs in-process for debugging and tests."""

    def __init__(self, env_cfg: EnvConfig, data_cfg: DataConfig, optim_cfg: OptimConfig,
                 threads: int, use_gpu: bool):
        torch.set_num_threads(max(1, threads))
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.env = StageWeightingEnv(env_cfg, data_cfg, optim_cfg, device=device)
        self.episode: Optional[int] = None
        self.obs: Optional[np.ndarray] = None

    def reset(self, episode: int, seed: int) -> np.ndarray:
        """Start ``episode``: fresh identical networks, warm-up stages trained."""
        self.obs, _ = self.env.reset(seed=seed)
        self.episode = episode
        return self.obs

    def step(self, episode: int, action: np.ndarray) -> tuple:
        """Train one stage of ``episode`` with ``action``; returns the transition and info."""
        if episode != self.episode:  # a restarted worker lost its episode
            raise LawError(f"worker is not in episode {episode}")
        obs = self.obs
        self.obs, reward, terminated, truncated, info = self.env.step(action)
        return (obs, action, float(reward), self.obs, bool(terminated or truncated)), plain_info(info)

    def pid(self) -> int:
        return os.getpid()


def plain_info(info: dict) -> dict:
    """Info without tensors, so it pickles small."""
    return {k: (v.tolist() if isinstance(v, (np.ndarray, torch.Tensor)) else v) for k, v in info.items()}


@dataclass
class Slot:
    """What one worker is doing: which episode, and the observation of its next stage."""

    episode: Optional[int] = None
    obs: Optional[np.ndarray] = None
    rewards: list = field(default_factory=list)


class SearchState:
    """Counters of a search; a plain dict in the checkpoint."""

    def __init__(self, episodes: int):
        self.episodes = episodes
        self.next_episode = 0
        self.redo: list[int] = []  # episodes to run again from their first stage
        self.finished: list[dict] = []  # one summary per finished episode
        self.rounds = 0
        self.worker_failures = 0  # calls that died or raised
        self.episodes_redone = 0  # episodes lost with a worker and run again
        self.row_episode: list[int] = []  # episode of each buffer row
        self.in_flight: list[int] = []  # episodes running when the checkpoint was written

    def take_episode(self) -> Optional[int]:
        if self.redo:
            return self.redo.pop(0)
        if self.next_episode < self.episodes:
            self.next_episode += 1
            return self.next_episode - 1
        return None

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


class Learner:
    """The shared actor/critic, its buffer and the search's counters."""

    def __init__(self, agent: DDPG, state: SearchState):
        self.agent = agent
        self.buffer = TransitionBuffer(agent.action_dim)
        self.state = state

    def add(self, episode: int, transition: tuple) -> None:
        self.buffer.add(*transition)
        self.state.row_episode.append(episode)

    def drop_episode(self, episode: int) -> int:
        """Remove every transition of ``episode`` (it will be redone); returns how many."""
        keep = np.array([e != episode for e in self.state.row_episode], dtype=bool)
        if keep.all():
            return 0
        rows = self.buffer.arrays()
        self.buffer = TransitionBuffer(self.agent.action_dim)
        self.buffer.extend(zip(*(column[keep] for column in rows)))
        self.state.row_episode = [e for e, k in zip(self.state.row_episode, keep) if k]
        return int((~keep).sum())

    def checkpoint(self, path: Path, config: dict) -> None:
        atomic_save({"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(),
                     "search": self.state.state_dict(), "config": config}, path)

    def restore(self, path: Path) -> dict:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        self.agent.load_state_dict(saved["agent"])
        self.buffer.load_state_dict(saved["buffer"])
        self.state.load_state_dict(saved["search"])
        return saved["config"]


def episode_seed(search_seed: int, episode: int) -> int:
    return search_seed * 1_000_003 + episode


def noise_rng(search_seed: int, episode: int, stage: int) -> np.random.Generator:
    """Exploration noise from (seed, episode, stage) alone: a redone or resumed episode
    draws the same noise."""
    return np.random.default_rng([search_seed, episode, stage])


def init_ray(address: str, num_cpus: Optional[float] = None) -> None:
    """Join a cluster when an address is given (or RAY_ADDRESS is set), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def policy_file(agent: DDPG, env_cfg: EnvConfig, config: dict) -> dict:
    """Everything ``law apply`` needs, as plain tensors and primitives."""
    return {"format": "law-policy", "version": 1, "actor": agent.actor_state(),
            "feature_spec": dict(FEATURE_SPEC), "env": to_dict(env_cfg)["EnvConfig"], "config": config}


def _gather(futures: dict[int, Any]) -> dict[int, tuple[str, Any]]:
    """Wait for every worker's call. Each result is ("ok", value), ("restarting", error) for
    a worker Ray is bringing back, or ("failed", error) for one that died or raised."""
    import ray

    results = {}
    for index, future in futures.items():
        try:
            results[index] = ("ok", ray.get(future))
        except ray.exceptions.ActorUnavailableError as error:
            results[index] = ("restarting", error)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as error:
            results[index] = ("failed", error)
    return results


class SearchLogger:
    """TensorBoard tags: reward/, target/, reference/, weights/, agent/, perf/."""

    def __init__(self, run_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        from law.logging import config_markdown

        self.writer = SummaryWriter(str(run_dir))
        self.writer.add_text("config", config_markdown(config), 0)

    def stage(self, worker: int, step: int, reward: float, info: dict) -> None:
        w = self.writer
        w.add_scalar(f"reward/stage_w{worker}", reward, step)
        w.add_scalar(f"target/val_accuracy_w{worker}", info["acc_target"], step)
        w.add_scalar(f"reference/val_accuracy_w{worker}", info["acc_reference"], step)
        w.add_scalar(f"target/loss_gap_w{worker}", info["loss_gap"], step)
        for group in ("noisy", "clean"):
            value = info.get(f"mean_weight_{group}")
            if value is not None:
                w.add_scalar(f"weights/{group}_w{worker}", value, step)
        w.add_scalar(f"weights/effective_sample_fraction_w{worker}", info["effective_sample_fraction"], step)
        if info.get("weights"):
            w.add_histogram(f"weights/histogram_w{worker}", np.asarray(info["weights"]), step)

    def round(self, rounds: int, agent_stats: dict, noise: float, round_seconds: float,
              fdu_seconds: float) -> None:
        for name, value in agent_stats.items():
            self.writer.add_scalar(f"agent/{name}", value, rounds)
        self.writer.add_scalar("agent/noise_scale", noise, rounds)
        self.writer.add_scalar("perf/round_seconds", round_seconds, rounds)
        self.writer.add_scalar("perf/fdu_seconds", fdu_seconds, rounds)

    def episode(self, summary: dict) -> None:
        self.writer.add_scalar("reward/episode_return", summary["return"], summary["episode"])
        self.writer.add_scalar("target/final_val_accuracy", summary["acc_target"], summary["episode"])
        self.writer.add_scalar("reference/final_val_accuracy", summary["acc_reference"], summary["episode"])

    def close(self) -> None:
        self.writer.close()


def summary_table(finished: list[dict]) -> str:
    rows = ["| episode | worker | return | val acc target | val acc reference | gap |",
            "|---:|---:|---:|---:|---:|---:|"]
    for s in sorted(finished, key=lambda s: s["episode"]):
        rows.append(f"| {s['episode']} | {s['worker']} | {s['return']:+.4f} | {s['acc_target']:.4f} | "
                    f"{s['acc_reference']:.4f} | {s['acc_target'] - s['acc_reference']:+.4f} |")
    return "\n".join(rows)


def _configs_from_saved(saved: dict) -> tuple:
    def build(cls):
        fields = saved[cls.__name__]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    return tuple(build(cls) for cls in (SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig))


def search(search_cfg: SearchConfig, env_cfg: EnvConfig, data_cfg: DataConfig,
           optim_cfg: OptimConfig, agent_cfg: DDPGConfig) -> dict:
    """Run (or resume) a policy search; returns the results written to ``results.json``."""
    import ray

    resume = search_cfg.resume
    if resume:
        search_cfg.validate()
        saved = torch.load(Path(resume) / CHECKPOINT, map_location="cpu", weights_only=True)
        search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg = _configs_from_saved(saved["config"])
        run_dir = Path(resume)
    agent_cfg = dataclasses.replace(agent_cfg, seed=search_cfg.seed)  # one --seed seeds everything
    validate_all(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
    if not resume:
        preflight(env_cfg, data_cfg)
        run_dir = new_run_dir(search_cfg.output_dir, search_cfg.run_name,
                              f"{data_cfg.dataset}__law-search__{search_cfg.seed}__{run_stamp()}")
        run_dir.mkdir(parents=True, exist_ok=True)
    config = to_dict(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)

    # The env's actions live in [-1, 1]^action_dim; it scales them to (theta, b) itself.
    agent = DDPG(env_cfg.num_stages, -1.0, 1.0, agent_cfg, action_dim=env_cfg.action_dim)
    state = SearchState(search_cfg.episodes)
    learner = Learner(agent, state)
    if resume:
        learner.restore(run_dir / CHECKPOINT)
        for episode in state.in_flight:  # interrupted mid-episode: redo from scratch
            learner.drop_episode(episode)
            state.redo.append(episode)
        state.in_flight = []

    # The learner's networks are tiny; more than one torch thread here only fights the
    # workers for cores (measured: FDU took 17 ms on 1 thread, 1.7 s on 2 beside 2 workers).
    torch.set_num_threads(1)
    init_ray(search_cfg.address)
    remote = ray.remote(EnvWorker).options(
        num_cpus=search_cfg.cpus_per_worker, num_gpus=search_cfg.gpus_per_worker,
        max_restarts=search_cfg.max_worker_restarts, max_task_retries=0)
    threads = max(1, int(search_cfg.cpus_per_worker))
    workers = [remote.remote(env_cfg, data_cfg, optim_cfg, threads, search_cfg.gpus_per_worker > 0)
               for _ in range(search_cfg.workers)]
    slots = [Slot() for _ in workers]
    failures = [0] * len(workers)
    logger = SearchLogger(run_dir, config)
    bar = ProgressLine(search_cfg.episodes, "search", enabled=search_cfg.progress)
    fdu_total = train_total = 0.0
    seed = search_cfg.seed

    def lose_episode(index: int, status: str, error: Exception) -> None:
        """The worker's episode is gone: drop its transitions and queue it to be redone.
        A restarting worker is not a new failure; it was counted when it died."""
        if status == "failed":
            failures[index] += 1
            state.worker_failures += 1
            if failures[index] > search_cfg.max_worker_restarts:
                raise LawError(f"worker {index} failed {failures[index]} times (last: {error}); "
                               f"the search is checkpointed: fix the cause, then --resume {run_dir}")
        episode = slots[index].episode
        if learner.drop_episode(episode) or slots[index].obs is not None:
            state.episodes_redone += 1
        state.redo.insert(0, episode)
        slots[index] = Slot()

    try:
        while len(state.finished) < search_cfg.episodes:
            started = time.perf_counter()
            # 1. Idle workers start an episode (fresh networks + unweighted warm-up).
            starting = {}
            for i, slot in enumerate(slots):
                if slot.episode is None and (episode := state.take_episode()) is not None:
                    slot.episode = episode
                    starting[i] = workers[i].reset.remote(episode, episode_seed(seed, episode))
            for i, (status, result) in _gather(starting).items():
                if status == "ok":
                    slots[i].obs = result
                else:
                    lose_episode(i, status, result)
            # 2. Every busy worker trains one stage with the current actor's action.
            stepping = {}
            for i, slot in enumerate(slots):
                if slot.obs is not None:
                    stage = int(slot.obs[0])
                    action = agent.act(slot.obs, explore=True, rng=noise_rng(seed, slot.episode, stage))
                    stepping[i] = workers[i].step.remote(slot.episode, action)
            for i, (status, result) in _gather(stepping).items():
                if status != "ok":
                    lose_episode(i, status, result)
                    continue
                transition, info = result
                slot = slots[i]
                learner.add(slot.episode, transition)
                slot.rewards.append(transition[2])
                slot.obs = transition[3]
                logger.stage(i, len(learner.buffer), transition[2], info)
                if transition[4]:
                    summary = {"episode": slot.episode, "worker": i, "return": float(sum(slot.rewards)),
                               "rewards": slot.rewards, "acc_target": info["acc_target"],
                               "acc_reference": info["acc_reference"]}
                    state.finished.append(summary)
                    logger.episode(summary)
                    agent.end_episode()
                    slots[i] = Slot()
            train_seconds = time.perf_counter() - started
            # 3. One full-data update from all workers' transitions.
            fdu_started = time.perf_counter()
            agent_stats = agent.update(learner.buffer) if len(learner.buffer) >= search_cfg.min_buffer else {}
            fdu_seconds = time.perf_counter() - fdu_started
            fdu_total += fdu_seconds
            train_total += train_seconds
            state.rounds += 1
            state.in_flight = [s.episode for s in slots if s.episode is not None]
            learner.checkpoint(run_dir / CHECKPOINT, config)
            logger.round(state.rounds, agent_stats, agent.noise_scale, train_seconds, fdu_seconds)
            last = state.finished[-1] if state.finished else None
            bar.update(len(state.finished), f"round {state.rounds}" + (
                f" last return {last['return']:+.3f}" if last else ""))
    finally:
        logger.close()
        for worker in workers:
            ray.kill(worker)

    atomic_save(policy_file(agent, env_cfg, config), run_dir / POLICY)
    table = summary_table(state.finished)
    atomic_write_text(table + "\n", run_dir / "summary.md")
    results = {"kind": "search", "config": config, "seed": seed, "environment": environment_info(),
               "episodes": sorted(state.finished, key=lambda s: s["episode"]),
               "rounds": state.rounds, "worker_failures": state.worker_failures,
               "episodes_redone": state.episodes_redone,
               "transitions": len(learner.buffer),
               "fdu_fraction_of_training": fdu_total / max(train_total, 1e-9),
               "policy": str(run_dir / POLICY)}
    atomic_write_json(results, run_dir / "results.json")
    results["run_dir"] = str(run_dir)
    results["table"] = table
    return results


def preflight(env_cfg: EnvConfig, data_cfg: DataConfig) -> None:
    """Fail in the driver, with the data layer's own message, before any worker starts:
    a wrong --data-root or an impossible split would otherwise surface as restarts of
    workers that cannot build their env. Loading once also fills the decode cache."""
    from law.data import load_data
    from law.models import build_model

    bundle = load_data(data_cfg, seed=env_cfg.data_seed, device="cpu")
    build_model(env_cfg.model, bundle.num_classes, bundle.in_channels, bundle.image_size)
