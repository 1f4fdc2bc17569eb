"""The search itself: the learner's state, one round at a time, checkpoints, resume."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import ray
import torch

from agents import DDPG, DDPGConfig, RandomSearch, TransitionBuffer
from agents.policies import policy_from_state
from envs import EnvConfig, require_validation
from law.config import to_dict, validate_all
from law.data import DataConfig, load_data
from law.errors import ConfigError, Interrupted, LawError
from law.io import (atomic_save, atomic_write_json, atomic_write_text, environment_info,
                    new_run_dir, run_folder, run_stamp)
from law.models import build_model
from law.policy_file import policy_file
from law.progress import ProgressLine
from law.search.config import (CHECKPOINT, LAST_POLICY, OPERATIONAL, POLICY, SearchConfig,
                               evaluation_seeds, noise_rng, training_seed)
from law.search.report import SearchLogger, summary_markdown
from law.search.workers import EnvWorker, WorkerFailed, WorkerRestarting, _gather, check_ray_address, init_ray
from law import timing
from law.timing import phase, take_phases
from law.trainer import OptimConfig

@dataclass
class Episode:
    """What one worker is doing: which episode, the actions it took, where it stands."""

    key: str
    """'train/<n>' or 'eval/<round>/<j>'."""
    seed: int
    kind: str
    """train: the agent explores and learns from it; eval: a frozen greedy policy is judged."""
    index: int
    """Training episode number, or evaluation round."""
    policy: Optional[dict] = None
    """eval: the policy state being judged."""
    obs: Optional[list] = None
    """Observation of the next stage (None until started)."""
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, state: dict) -> "Episode":
        return cls(**state)


RESTART_TIMEOUT = 300.0
"""Seconds a restarting worker may take to come back (it rebuilds its env: data, networks)."""


class Search:
    """One search: configs, the agent, the buffer, the episode bookkeeping, the workers."""

    def __init__(self, search_cfg: SearchConfig, env_cfg: EnvConfig, data_cfg: DataConfig,
                 optim_cfg: OptimConfig, agent_cfg: DDPGConfig, run_dir: Path):
        self.cfg, self.env_cfg, self.data_cfg, self.optim_cfg = search_cfg, env_cfg, data_cfg, optim_cfg
        self.agent_cfg = agent_cfg
        self.run_dir = run_dir
        self.config = to_dict(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
        self.agent = make_agent(search_cfg.agent, env_cfg, agent_cfg)
        self.buffer = TransitionBuffer(env_cfg.action_dim)
        self.eval_seeds = evaluation_seeds(search_cfg)
        self.next_episode = 0
        self.queue: list[Episode] = []  # evaluation episodes waiting for a worker
        self.slots: list[Optional[Episode]] = [None] * search_cfg.workers
        self.finished: list[dict] = []  # one summary per finished training episode
        self.evaluations: list[dict] = []  # one record per greedy evaluation
        self.twins: dict[int, dict] = {}  # episode seed -> the twin's record
        self.rounds = 0
        self.worker_failures = 0
        self.replayed_stages = 0
        self.train_seconds = self.fdu_seconds = 0.0

    # ------------------------------------------------------------------ bookkeeping

    @property
    def done(self) -> bool:
        return (len(self.finished) == self.cfg.episodes and not self.queue
                and all(slot is None for slot in self.slots)
                and bool(self.evaluations) and self.evaluations[-1]["after_episodes"] == self.cfg.episodes)

    def next_for_worker(self) -> Optional[Episode]:
        if self.queue:
            return self.queue.pop(0)
        if self.next_episode < self.cfg.episodes:
            n = self.next_episode
            self.next_episode += 1
            return Episode(f"train/{n}", training_seed(self.cfg, n), "train", n)
        return None

    def queue_evaluation(self) -> None:
        """Judge the agent's current greedy policy on the evaluation seeds."""
        number = len(self.evaluations)
        policy = self.agent.greedy_state()
        self.evaluations.append({"round": number, "after_episodes": len(self.finished), "policy": policy,
                                 "gaps": [None] * len(self.eval_seeds), "score": None})
        self.queue.extend(Episode(f"eval/{number}/{j}", seed, "eval", number, policy=policy)
                          for j, seed in enumerate(self.eval_seeds))

    def action(self, episode: Episode) -> np.ndarray:
        obs = np.asarray(episode.obs, np.float32)
        if episode.kind == "eval":
            return policy_from_state(episode.policy)(obs)
        stage = int(obs[0])
        return self.agent.explore(obs, noise_rng(self.cfg.seed, episode.index, stage))

    # ------------------------------------------------------------------ one round

    def round(self, workers: list) -> None:
        """Every worker makes one call (start or step); then the learner updates once."""
        started = time.perf_counter()
        calls, actions = {}, {}
        for i, slot in enumerate(self.slots):
            if slot is None and (episode := self.next_for_worker()) is not None:
                self.slots[i] = slot = episode
            if slot is None:
                continue
            twin = self.twins.get(slot.seed)
            if slot.obs is None:
                calls[i] = lambda w, s=slot, t=twin: w.start.remote(s.key, s.seed, t)
            else:
                actions[i] = self.action(slot)
                calls[i] = lambda w, s=slot, t=twin, a=actions[i]: w.step.remote(s.key, s.seed, t, s.actions, a)
        with phase("worker calls"):
            results = self._call_all(workers, calls)
        for i in sorted(results):
            slot = self.slots[i]
            if i not in actions:
                slot.obs = np.asarray(results[i]).tolist()
                continue
            transition, info, replayed = results[i]
            self.replayed_stages += replayed
            self._record_stage(i, slot, transition, info)
        self.train_seconds += time.perf_counter() - started

        fdu_started = time.perf_counter()
        with phase("fdu"):
            stats = self.agent.update(self.buffer) if len(self.buffer) >= self.cfg.min_buffer else {}
        self.fdu_seconds += time.perf_counter() - fdu_started
        self.rounds += 1
        self.last_round = {"agent": stats, "round_seconds": time.perf_counter() - started,
                           "fdu_seconds": time.perf_counter() - fdu_started}
        finished = len(self.finished)
        evaluated = self.evaluations[-1]["after_episodes"] if self.evaluations else 0
        if finished // self.cfg.eval_every > evaluated // self.cfg.eval_every or \
                (finished == self.cfg.episodes and evaluated < finished):
            self.queue_evaluation()

    def _call_all(self, workers: list, calls: dict) -> dict:
        """Issue the round's calls; a worker that died is waited for and called again (it replays
        its episode), so the round ends exactly as it would have without the fault."""
        results = _gather({i: call(workers[i]) for i, call in calls.items()})
        for i in sorted(results):
            failures, waited = 0, 0.0
            while isinstance(results[i], WorkerFailed):
                if failures and isinstance(results[i], WorkerRestarting):  # the same death, still restarting
                    if waited > RESTART_TIMEOUT:
                        raise LawError(f"worker {i} did not come back within {RESTART_TIMEOUT:.0f} s of its "
                                       f"restart; the search is checkpointed: --resume {self.run_dir}")
                    pause = 1.0
                    waited += pause
                else:
                    failures += 1
                    self.worker_failures += 1
                    if failures > self.cfg.max_worker_restarts:
                        raise LawError(f"worker {i} failed {failures} times in a row (last: {results[i]}); the "
                                       f"search is checkpointed: fix the cause, then --resume {self.run_dir}")
                    pause = min(0.5 * failures, 5.0)  # give Ray time to bring the actor back
                time.sleep(pause)
                results[i] = _gather({i: calls[i](workers[i])})[i]
        return results

    def _record_stage(self, worker: int, slot: Episode, transition: tuple, info: dict) -> None:
        obs, action, reward, next_obs, done = transition
        slot.actions.append(np.asarray(action).tolist())
        slot.rewards.append(reward)
        slot.obs = np.asarray(next_obs).tolist()
        if slot.kind == "train":
            self.buffer.add(obs, action, reward, next_obs, done)
            self.logger.stage(worker, len(self.buffer), reward, info)
        if not done:
            return
        if "twin" in info:
            self.twins[slot.seed] = info["twin"]
        gap = info["acc_target"] - info["acc_reference"]
        if slot.kind == "train":
            stages = np.arange(self.env_cfg.warmup_stages, self.env_cfg.num_stages)
            self.agent.end_episode(stages, np.asarray(slot.actions, np.float32), gap)
            summary = {"episode": slot.index, "seed": slot.seed, "worker": worker,
                       "return": float(sum(slot.rewards)), "rewards": slot.rewards,
                       "acc_target": info["acc_target"], "acc_reference": info["acc_reference"], "gap": gap}
            self.finished.append(summary)
            self.logger.episode(summary)
        else:
            self._record_evaluation(slot, gap)
        self.slots[worker] = None

    def _record_evaluation(self, slot: Episode, gap: float) -> None:
        record = self.evaluations[slot.index]
        record["gaps"][int(slot.key.rsplit("/", 1)[1])] = gap
        if any(g is None for g in record["gaps"]):
            return
        record["score"] = float(np.mean(record["gaps"]))
        self.logger.evaluation(record)
        if record is self.best_evaluation():
            with phase("checkpoint"):  # the policy file
                atomic_save(evaluated_policy_file(record, self.env_cfg, self.config, self.cfg.episodes),
                            self.run_dir / POLICY)

    def best_evaluation(self) -> Optional[dict]:
        scored = [r for r in self.evaluations if r["score"] is not None]
        return max(scored, key=lambda r: r["score"]) if scored else None

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(), "config": self.config,
                "search": {"next_episode": self.next_episode, "rounds": self.rounds,
                           "queue": [dataclasses.asdict(e) for e in self.queue],
                           "slots": [dataclasses.asdict(e) if e else None for e in self.slots],
                           "finished": self.finished, "evaluations": self.evaluations,
                           "twins": {str(seed): twin for seed, twin in self.twins.items()},
                           "worker_failures": self.worker_failures, "replayed_stages": self.replayed_stages,
                           "train_seconds": self.train_seconds, "fdu_seconds": self.fdu_seconds}}

    def load_state_dict(self, saved: dict) -> None:
        self.agent.load_state_dict(saved["agent"])
        self.buffer.load_state_dict(saved["buffer"])
        state = saved["search"]
        self.next_episode, self.rounds = state["next_episode"], state["rounds"]
        self.queue = [Episode.from_dict(e) for e in state["queue"]]
        # In-flight episodes resume where they were: their workers replay the recorded actions.
        in_flight = [Episode.from_dict(e) for e in state["slots"] if e]
        if len(state["slots"]) == len(self.slots):
            self.slots = [Episode.from_dict(e) if e else None for e in state["slots"]]
        else:  # another number of workers: in-flight episodes go first, to whichever worker is free
            self.queue = in_flight + self.queue
        self.finished, self.evaluations = state["finished"], state["evaluations"]
        self.twins = {int(seed): twin for seed, twin in state["twins"].items()}
        self.worker_failures, self.replayed_stages = state["worker_failures"], state["replayed_stages"]
        self.train_seconds, self.fdu_seconds = state["train_seconds"], state["fdu_seconds"]

    def checkpoint(self) -> None:
        with phase("checkpoint"):
            atomic_save(self.state_dict(), self.run_dir / CHECKPOINT)

    # ------------------------------------------------------------------ the whole search

    def run(self, workers: list, logger: "SearchLogger", bar: ProgressLine) -> None:
        self.logger = logger
        while not self.done:
            self.round(workers)
            self.checkpoint()
            logger.round(self.rounds, self.last_round, self.agent.noise_scale)
            best = self.best_evaluation()
            bar.update(len(self.finished), f"round {self.rounds}" + (
                f"  best greedy val gap {100 * best['score']:+.1f}" if best else ""))

    def results(self) -> dict:
        best, last = self.best_evaluation(), self.evaluations[-1]
        return {"kind": "search", "agent": self.cfg.agent, "config": self.config, "seed": self.cfg.seed,
                "environment": environment_info(),
                "episodes": sorted(self.finished, key=lambda s: s["episode"]),
                "evaluations": [{k: v for k, v in r.items() if k != "policy"} for r in self.evaluations],
                "best": {"after_episodes": best["after_episodes"], "val_gap": best["score"]},
                "last": {"after_episodes": last["after_episodes"], "val_gap": last["score"]},
                "evaluation_seeds": self.eval_seeds, "rounds": self.rounds,
                "worker_failures": self.worker_failures, "replayed_stages": self.replayed_stages,
                "transitions": len(self.buffer), "cached_twins": len(self.twins),
                "train_seconds": self.train_seconds,
                "fdu_fraction_of_training": self.fdu_seconds / max(self.train_seconds, 1e-9),
                "policy": str(self.run_dir / POLICY), "last_policy": str(self.run_dir / LAST_POLICY)}


def make_agent(name: str, env_cfg: EnvConfig, agent_cfg: DDPGConfig):
    """The search agent; the env's actions live in [-1, 1]^action_dim (it scales them itself)."""
    if name == "random":
        return RandomSearch(env_cfg.num_stages, env_cfg.action_dim)
    return DDPG(env_cfg.num_stages, -1.0, 1.0, agent_cfg, action_dim=env_cfg.action_dim)


def evaluated_policy_file(evaluation: dict, env_cfg: EnvConfig, config: dict, episodes: int) -> dict:
    """The policy file of one greedy evaluation, saying how the policy was chosen."""
    return policy_file(evaluation["policy"], env_cfg, config,
                       selection={"after_episodes": evaluation["after_episodes"], "of_episodes": episodes,
                                  "val_gap": evaluation["score"], "evaluation_gaps": evaluation["gaps"]})


def _configs_from_saved(saved: dict) -> tuple:
    def build(cls):
        fields = saved[cls.__name__]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    return tuple(build(cls) for cls in (SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig))


"""SearchConfig fields a resumed search may change: where and how it runs, not what it computes."""


def search(search_cfg: SearchConfig, env_cfg: EnvConfig, data_cfg: DataConfig,
           optim_cfg: OptimConfig, agent_cfg: DDPGConfig) -> dict:
    """Run a new policy search; returns the results written to ``results.json``."""
    if search_cfg.resume:
        raise ConfigError("resume", "search() starts new searches; continue one with resume_search(run_dir)")
    agent_cfg = dataclasses.replace(agent_cfg, seed=search_cfg.seed)  # one --seed seeds everything
    validate_all(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
    require_validation(data_cfg)
    if search_cfg.address or os.environ.get("RAY_ADDRESS"):
        check_ray_address(search_cfg.address or os.environ["RAY_ADDRESS"])
    run_dir = new_run_dir(search_cfg.output_dir, search_cfg.run_name,
                          f"{data_cfg.dataset}__law-search__{search_cfg.seed}__{run_stamp()}")
    preflight(env_cfg, data_cfg)
    with run_folder(run_dir, keep=(CHECKPOINT,)):
        run = Search(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg, run_dir)
        return _run(run)


def resume_search(run_dir: str | Path, **operational: Any) -> dict:
    """Continue the interrupted search in ``run_dir`` where its last checkpoint left it.

    ``operational`` may change the fields of OPERATIONAL (e.g. more workers on a
    bigger machine); with the same workers the search ends bit for bit as an
    uninterrupted one would have. A finished search raises SearchFinished.
    """
    unknown = sorted(set(operational) - set(OPERATIONAL))
    if unknown:
        raise ConfigError(unknown[0], f"a resumed search keeps its settings; only {', '.join(OPERATIONAL)} may "
                                      f"change (got {', '.join(unknown)}); start a new search to change the rest")
    run_dir = Path(run_dir)
    SearchConfig(resume=str(run_dir)).validate()
    if (run_dir / "results.json").is_file():
        raise SearchFinished(run_dir)
    saved = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg = _configs_from_saved(saved["config"])
    search_cfg = dataclasses.replace(search_cfg, **operational)
    validate_all(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
    run = Search(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg, run_dir)
    run.load_state_dict(saved)
    return _run(run)


class SearchFinished(LawError):
    """--resume of a search that has finished: nothing to do."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        super().__init__(f"the search in {run_dir} has finished already (policy.pt, summary.md); "
                         "nothing to resume")


def _run(run: "Search") -> dict:
    cfg, run_dir = run.cfg, run.run_dir
    # The learner's networks are tiny; more than one torch thread here only fights the
    # workers for cores (docs/design.md, "Search settings of the CPU profiles").
    torch.set_num_threads(1)
    logger = bar = None
    workers: list = []
    try:
        init_ray(cfg.address)
        remote = ray.remote(EnvWorker).options(
            num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
            max_restarts=cfg.max_worker_restarts, max_task_retries=0)
        threads = max(1, int(cfg.cpus_per_worker))
        recurring_seeds = cfg.seed_pool + cfg.eval_seeds  # their warm-ups are kept too
        workers = [remote.remote(run.env_cfg, run.data_cfg, run.optim_cfg, threads, cfg.gpus_per_worker > 0,
                                 recurring_seeds) for _ in range(cfg.workers)]
        logger = SearchLogger(run_dir, run.config)
        bar = ProgressLine(cfg.episodes, f"search ({cfg.agent})", enabled=cfg.progress)
        run.run(workers, logger, bar)
        if timing.ENABLED:  # before the workers go: their share of the breakdown
            run.phase_times = {"learner": take_phases(),
                               "workers": ray.get([w.phase_times.remote() for w in workers])}
    except KeyboardInterrupt:
        if (run_dir / CHECKPOINT).is_file():
            raise Interrupted(f"interrupted; the search is checkpointed in {run_dir} "
                                    f"({len(run.finished)} of {cfg.episodes} episodes finished). "
                                    f"Continue it with: law search --resume {run_dir}") from None
        raise Interrupted("interrupted before the first checkpoint; nothing was kept") from None
    finally:
        if logger is not None:
            logger.close()
        for worker in workers:
            ray.kill(worker)

    atomic_save(evaluated_policy_file(run.evaluations[-1], run.env_cfg, run.config, cfg.episodes),
                run_dir / LAST_POLICY)
    results = run.results()
    if timing.ENABLED:
        results["phase_times"] = run.phase_times
    atomic_write_text(summary_markdown(results), run_dir / "summary.md")
    atomic_write_json(results, run_dir / "results.json")
    results["run_dir"] = str(run_dir)
    return results


def preflight(env_cfg: EnvConfig, data_cfg: DataConfig) -> None:
    """Fail in the driver, with the data layer's own message, before any worker starts:
    a wrong --data-root or an impossible split would otherwise surface as restarts of
    workers that cannot build their env. Loading once also fills the decode cache."""
    bundle = load_data(data_cfg, seed=env_cfg.data_seed, device="cpu")
    build_model(env_cfg.model, bundle.num_classes, bundle.in_channels, bundle.image_size)
    print(bundle.describe(), file=sys.stderr)
