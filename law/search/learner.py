"""The learner's side of a search: its state, the jobs (priors, training episodes, evaluations, the
final judging), what comes back, checkpoints."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import ray
import torch

from agents import DDPG, DDPGConfig, RandomSearch, TransitionBuffer
from envs import EnvConfig
from law.config import to_dict
from law.data import DataConfig
from law.errors import LawError
from law.io import atomic_save, environment_info
from law.policy_file import policy_file
from law.progress import ProgressLine
from law.search.config import CHECKPOINT, LAST_POLICY, POLICY, SearchConfig, evaluation_seeds, final_seeds, training_seed
from law.search.report import SearchLogger
from law.search.workers import Job, WorkerFailed, WorkerRestarting, result_of
from law.timing import phase
from law.trainer import OptimConfig

RESTART_TIMEOUT = 300.0
"""Seconds a restarting worker may take to come back (it rebuilds its env: data, networks)."""


class Search:
    """One search: configs, the agent, the buffer, the jobs and what came back, the workers.

    Training episode n is made (its behaviour fixed) once the learner has learned from
    episodes 0..n-in_flight, and the learner learns from finished episodes in episode
    order, one stage end at a time (add the transition; the FDU every ``fdu_every``). So what a search
    computes depends on its settings alone, never on how many workers run it or which
    one finishes first, and no worker waits for another, nor for the learner.
    """

    def __init__(self, search_cfg: SearchConfig, env_cfg: EnvConfig, data_cfg: DataConfig,
                 optim_cfg: OptimConfig, agent_cfg: DDPGConfig, run_dir: Path):
        self.cfg, self.env_cfg, self.data_cfg, self.optim_cfg = search_cfg, env_cfg, data_cfg, optim_cfg
        self.agent_cfg = agent_cfg
        self.run_dir = run_dir
        self.config = to_dict(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
        self.agent = make_agent(search_cfg.agent, env_cfg, agent_cfg)
        self.buffer = TransitionBuffer(env_cfg.action_dim)
        self.eval_seeds = evaluation_seeds(search_cfg)
        self.final_seeds = final_seeds(search_cfg)
        self.learned = 0  # training episodes the agent has learned from (0..learned-1)
        self.jobs: list[Job] = []  # made and not finished, in the order they were made
        self.waiting: dict[int, dict] = {}  # finished training episodes whose predecessors are not
        self.finished: list[dict] = []  # one summary per training episode learned from
        self.evaluations: list[dict] = []  # one record per greedy evaluation of the agent
        self.priors: list[dict] = []  # one record per prior, judged like the agent
        self.start_point: Optional[dict] = None  # the prior the agent started from, once all are judged
        self.finalists: list[dict] = []  # the final judging: the start prior, then the best evaluations
        self.started = False  # training episodes made (after the priors, if any)
        self.twins: dict[int, dict] = {}  # episode seed -> the twin's record
        self.updates = 0
        self.worker_failures = 0
        self.redone_episodes = 0
        self.search_seconds = self.fdu_seconds = 0.0
        self.logger: Optional[SearchLogger] = None

    # ------------------------------------------------------------------ jobs

    def start(self, priors: Optional[dict[str, dict]] = None) -> None:
        """Judge the ``priors`` (name -> greedy policy state) first and start the agent from the
        best once all are scored; without priors, make the first training episodes at once."""
        for number, (name, policy) in enumerate((priors or {}).items()):
            self._queue_judging(self.priors, "prior", {"prior": name, "number": number}, policy)
        if not priors:
            self._start_training()

    def _start_training(self) -> None:
        self.started = True
        self.jobs.extend(self._training_job(n) for n in range(min(self.cfg.in_flight, self.cfg.episodes)))

    @property
    def done(self) -> bool:
        return self.learned == self.cfg.episodes and not self.jobs

    def _training_job(self, n: int) -> Job:
        return Job(f"train/{n}", training_seed(self.cfg, n), "train", n, self.agent.behaviour_state(),
                   self.cfg.seed)

    def queue_evaluation(self) -> None:
        """Judge the agent's current greedy policy on the evaluation seeds."""
        self._queue_judging(self.evaluations, "eval", {"round": len(self.evaluations),
                                                       "after_episodes": self.learned}, self.agent.greedy_state())

    def _queue_judging(self, records: list, kind: str, record: dict, policy: dict,
                       seeds: Optional[list[int]] = None) -> None:
        number, seeds = len(records), self.eval_seeds if seeds is None else seeds
        records.append({**record, "policy": policy, "gaps": [None] * len(seeds), "score": None})
        self.jobs.extend(Job(f"{kind}/{number}/{j}", seed, kind, number, {"kind": "greedy", "policy": policy},
                             self.cfg.seed) for j, seed in enumerate(seeds))

    def _queue_final_judging(self) -> None:
        """The prior the agent started from and the best ``finalists`` distinct evaluations, judged
        again on the final seeds: their scores become means over all their seeds."""
        start = [r for r in self.priors if self.start_point and r["prior"] == self.start_point["prior"]]
        for record in start + best_distinct(self.evaluations, self.cfg.finalists):
            chosen = ({"prior": record["prior"]} if "prior" in record else
                      {"round": record["round"], "after_episodes": record["after_episodes"]})
            self._queue_judging(self.finalists, "final", {**chosen, "evaluation_gaps": list(record["gaps"])},
                                record["policy"], self.final_seeds)

    def _all_scored(self, records: list) -> bool:
        return all(r["score"] is not None for r in records)

    # ------------------------------------------------------------------ what comes back

    def record(self, job: Job, stages: list[dict], worker: int) -> None:
        """A finished episode: a greedy evaluation's gap, or a training episode to learn from
        (now, or once the episodes before it have finished). ``job`` has left ``jobs``."""
        last = stages[-1]["info"]
        if "twin" in last:
            self.twins[job.seed] = last["twin"]
        if job.kind != "train":
            self._record_judged(job, stages)
            return
        self.waiting[job.index] = {"stages": stages, "worker": worker}
        while self.learned in self.waiting:
            self._learn_from(self.learned, **self.waiting.pop(self.learned))
            self.learned += 1
            if self.learned % self.cfg.eval_every == 0 or self.learned == self.cfg.episodes:
                self.queue_evaluation()
            if (n := self.learned + self.cfg.in_flight - 1) < self.cfg.episodes:
                self.jobs.append(self._training_job(n))

    def _learn_from(self, episode: int, stages: list[dict], worker: int) -> None:
        """The stage ends of one training episode, in order: each adds its transition, and every
        ``fdu_every``-th runs the full-data update."""
        for stage in stages:
            self.buffer.add(stage["obs"], stage["action"], stage["reward"], stage["next_obs"], stage["done"])
            self.logger.stage(worker, len(self.buffer), stage["reward"], stage["info"])
            if len(self.buffer) < self.cfg.min_buffer or len(self.buffer) % self.cfg.fdu_every:
                continue
            started = time.perf_counter()
            with phase("fdu"):
                stats = self.agent.update(self.buffer)
            self.fdu_seconds += time.perf_counter() - started
            self.updates += 1
            self.logger.update(self.updates, stats, self.agent.noise_scale)
        last = stages[-1]["info"]
        gap = last["acc_target"] - last["acc_reference"]
        acting = np.arange(self.env_cfg.warmup_stages, self.env_cfg.num_stages)
        self.agent.end_episode(acting, np.asarray([s["action"] for s in stages], np.float32), gap)
        rewards = [s["reward"] for s in stages]
        summary = {"episode": episode, "seed": training_seed(self.cfg, episode), "worker": worker,
                   "return": float(sum(rewards)), "rewards": rewards, "acc_target": last["acc_target"],
                   "acc_reference": last["acc_reference"], "gap": gap}
        self.finished.append(summary)
        self.logger.episode(summary)

    def _record_judged(self, job: Job, stages: list[dict]) -> None:
        """One episode of a greedy evaluation of the agent, of a prior, or of a finalist."""
        record = {"eval": self.evaluations, "prior": self.priors, "final": self.finalists}[job.kind][job.index]
        j = int(job.key.rsplit("/", 1)[1])
        record["gaps"][j] = stages[-1]["info"]["acc_target"] - stages[-1]["info"]["acc_reference"]
        if job.kind == "prior":  # what the agent is fitted to, if it starts from this prior
            record.setdefault("trajectories", [None] * len(self.eval_seeds))[j] = {
                "obs": [s["obs"] for s in stages], "actions": [s["action"] for s in stages]}
        if any(g is None for g in record["gaps"]):
            return
        record["score"] = float(np.mean(record.get("evaluation_gaps", []) + record["gaps"]))
        self.logger.evaluation(record)
        if job.kind == "prior" and self._all_scored(self.priors):
            self._start_from_best_prior()
        if (self.learned == self.cfg.episodes and self.final_seeds and not self.finalists
                and self._all_scored(self.evaluations)):
            self._queue_final_judging()
        if job.kind == "final" and not self._all_scored(self.finalists):
            return  # policy.pt changes once, when every finalist is judged
        best = self.best_evaluation()
        if record is best or job.kind == "final":
            with phase("checkpoint"):  # the policy file
                atomic_save(evaluated_policy_file(best, self.env_cfg, self.config, self.cfg.episodes),
                            self.run_dir / POLICY)

    def _start_from_best_prior(self) -> None:
        """Every prior is judged: start the agent from the best (the first of equals), then train."""
        best = max(self.priors, key=lambda r: r["score"])
        self.start_point = {"prior": best["prior"], "val_gap": best["score"]}
        if hasattr(self.agent, "start_from"):  # random search draws from the whole box whatever it knows
            obs = np.concatenate([t["obs"] for t in best["trajectories"]]).astype(np.float32)
            actions = np.concatenate([t["actions"] for t in best["trajectories"]]).astype(np.float32)
            self.start_point["fit_error"] = self.agent.start_from(obs, actions)
        self._start_training()

    def best_evaluation(self) -> Optional[dict]:
        """The best judged policy so far, a prior included; once the finalists are judged, the best of
        them (the start prior of equals)."""
        if self.finalists and self._all_scored(self.finalists):
            return max(self.finalists, key=lambda r: r["score"])
        scored = [r for r in self.priors + self.evaluations if r["score"] is not None]
        return max(scored, key=lambda r: r["score"]) if scored else None

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(), "config": self.config,
                "search": {"learned": self.learned, "jobs": [dataclasses.asdict(j) for j in self.jobs],
                           "waiting": {str(n): done for n, done in self.waiting.items()},
                           "finished": self.finished, "evaluations": self.evaluations,
                           "priors": self.priors, "start_point": self.start_point, "started": self.started,
                           "finalists": self.finalists,
                           "twins": {str(seed): twin for seed, twin in self.twins.items()},
                           "updates": self.updates, "worker_failures": self.worker_failures,
                           "redone_episodes": self.redone_episodes, "search_seconds": self.search_seconds,
                           "fdu_seconds": self.fdu_seconds}}

    def load_state_dict(self, saved: dict) -> None:
        """Where the checkpoint left the search: episodes that were running are run again
        from their start (deterministic, so they return what they would have)."""
        self.agent.load_state_dict(saved["agent"])
        self.buffer.load_state_dict(saved["buffer"])
        state = saved["search"]
        self.learned, self.updates = state["learned"], state["updates"]
        self.jobs = [Job.from_dict(j) for j in state["jobs"]]
        self.waiting = {int(n): done for n, done in state["waiting"].items()}
        self.finished, self.evaluations = state["finished"], state["evaluations"]
        # A checkpoint from before priors existed had started training without any.
        self.priors, self.start_point = state.get("priors", []), state.get("start_point")
        self.started = state.get("started", True)
        self.finalists = state.get("finalists", [])
        self.twins = {int(seed): twin for seed, twin in state["twins"].items()}
        self.worker_failures, self.redone_episodes = state["worker_failures"], state["redone_episodes"]
        self.search_seconds, self.fdu_seconds = state["search_seconds"], state["fdu_seconds"]

    def checkpoint(self) -> None:
        with phase("checkpoint"):
            atomic_save(self.state_dict(), self.run_dir / CHECKPOINT)

    # ------------------------------------------------------------------ the whole search

    def run(self, workers: list, logger: "SearchLogger", bar: ProgressLine) -> None:
        """Keep every worker busy with the next jobs; learn from what comes back as it comes."""
        self.logger = logger
        idle = list(range(len(workers)))
        running: dict[Any, tuple[int, list[Job]]] = {}  # future -> (worker, its jobs)
        failures: dict[str, list] = {}  # first job's key -> [faults in a row, seconds waited for a restart]
        clock = time.perf_counter()
        self.checkpoint()  # from here on an interrupted search can be resumed
        while not self.done:
            self._dispatch(workers, idle, running)
            with phase("waiting for workers"):
                (future,), _ = ray.wait(list(running), num_returns=1)
            worker, jobs = running.pop(future)
            episodes = result_of(future, worker)
            if isinstance(episodes, WorkerFailed):
                self._after_fault(episodes, failures.setdefault(jobs[0].key, [0, 0.0]), worker, len(jobs))
                running[self._submit(workers[worker], jobs)] = (worker, jobs)
                continue
            failures.pop(jobs[0].key, None)
            for job in jobs:
                self.jobs.remove(job)
            idle.append(worker)
            self._dispatch(workers, idle, running)  # first: the worker does not wait for the learner
            for job, stages in zip(jobs, episodes):
                self.record(job, stages, worker)
            now = time.perf_counter()
            self.search_seconds, clock = self.search_seconds + now - clock, now
            self.checkpoint()
            best = self.best_evaluation()
            bar.update(self.learned, f"{sum(len(j) for _, j in running.values())} running" + (
                f"  best greedy val gap {100 * best['score']:+.1f}" if best else ""))

    def _dispatch(self, workers: list, idle: list, running: dict) -> None:
        """The next jobs not running yet to the idle workers, up to episodes_per_worker each."""
        started = {job.key for _, jobs in running.values() for job in jobs}
        ready = [j for j in self.jobs if j.key not in started]
        per_worker = self.cfg.episodes_per_worker
        while idle and ready:
            jobs, ready = ready[:per_worker], ready[per_worker:]
            worker = idle.pop(0)
            running[self._submit(workers[worker], jobs)] = (worker, jobs)

    def _submit(self, worker, jobs: list[Job]):
        return worker.run_episodes.remote([dataclasses.asdict(job) for job in jobs],
                                          [self.twins.get(job.seed) for job in jobs])

    def _after_fault(self, fault: WorkerFailed, streak: list, worker: int, jobs: int) -> None:
        """A worker died running ``jobs`` episodes: wait for Ray to restart it, then they run again
        from their start, and the search goes on exactly as it would have without the fault."""
        if streak[0] and isinstance(fault, WorkerRestarting):  # the same death, still restarting
            if streak[1] > RESTART_TIMEOUT:
                raise LawError(f"worker {worker} did not come back within {RESTART_TIMEOUT:.0f} s of its "
                               f"restart; the search is checkpointed: --resume {self.run_dir}")
            pause = 1.0
            streak[1] += pause
        else:
            streak[0] += 1
            self.worker_failures += 1
            self.redone_episodes += jobs
            if streak[0] > self.cfg.max_worker_restarts:
                raise LawError(f"worker {worker} failed {streak[0]} times in a row (last: {fault}); the "
                               f"search is checkpointed: fix the cause, then --resume {self.run_dir}")
            pause = min(0.5 * streak[0], 5.0)  # give Ray time to bring the actor back
        time.sleep(pause)

    def results(self) -> dict:
        best, last = self.best_evaluation(), self.evaluations[-1]
        return {"kind": "search", "agent": self.cfg.agent, "config": self.config, "seed": self.cfg.seed,
                "environment": environment_info(),
                "episodes": sorted(self.finished, key=lambda s: s["episode"]),
                "evaluations": [{k: v for k, v in r.items() if k != "policy"} for r in self.evaluations],
                "priors": [{k: v for k, v in r.items() if k not in ("policy", "trajectories")} for r in self.priors],
                "start_point": self.start_point,
                "finalists": [{k: v for k, v in r.items() if k != "policy"} for r in self.finalists],
                "improvement": self.improvement(),
                "best": {**({"prior": best["prior"]} if "prior" in best else {"after_episodes": best["after_episodes"]}),
                         "val_gap": best["score"], "seeds": len(best.get("evaluation_gaps", [])) + len(best["gaps"])},
                "last": {"after_episodes": last["after_episodes"], "val_gap": last["score"]},
                "evaluation_seeds": self.eval_seeds, "final_seeds": self.final_seeds, "updates": self.updates,
                "worker_failures": self.worker_failures, "redone_episodes": self.redone_episodes,
                "transitions": len(self.buffer), "cached_twins": len(self.twins),
                "search_seconds": self.search_seconds, "fdu_seconds": self.fdu_seconds,
                "policy": str(self.run_dir / POLICY), "last_policy": str(self.run_dir / LAST_POLICY)}

    def improvement(self) -> Optional[float]:
        """What the search added to the prior it started from (None without priors): its best searched
        policy's score minus the prior's, both over the final seeds too where there was a final judging."""
        if self.start_point is None:
            return None
        if self.finalists:  # the start prior first
            return max(r["score"] for r in self.finalists[1:]) - self.finalists[0]["score"]
        return max(r["score"] for r in self.evaluations) - self.start_point["val_gap"]


def best_distinct(evaluations: list[dict], count: int) -> list[dict]:
    """The ``count`` best-scored evaluations (the earlier of equals first), each policy once: a
    greedy policy that did not change between evaluations (random search between better draws)
    takes one place, not several."""
    chosen: list[dict] = []
    for record in sorted(evaluations, key=lambda r: -r["score"]):
        if len(chosen) < count and not any(_same(record["policy"], c["policy"]) for c in chosen):
            chosen.append(record)
    return chosen


def _same(a: Any, b: Any) -> bool:
    """Equality of two policy states (nested dicts and lists of numbers and tensors)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    return a == b


def make_agent(name: str, env_cfg: EnvConfig, agent_cfg: DDPGConfig):
    """The search agent; the env's actions live in [-1, 1]^action_dim (it scales them itself)."""
    if name == "random":
        return RandomSearch(env_cfg.num_stages, env_cfg.action_dim)
    return DDPG(env_cfg.num_stages, -1.0, 1.0, agent_cfg, action_dim=env_cfg.action_dim)


def evaluated_policy_file(evaluation: dict, env_cfg: EnvConfig, config: dict, episodes: int) -> dict:
    """The policy file of one judged policy (the agent's, a prior, a finalist), saying how it was chosen."""
    chosen = {"prior": evaluation["prior"]} if "prior" in evaluation else {"after_episodes": evaluation["after_episodes"]}
    gaps = ({"evaluation_gaps": evaluation["evaluation_gaps"], "final_gaps": evaluation["gaps"]}
            if "evaluation_gaps" in evaluation else {"evaluation_gaps": evaluation["gaps"]})
    return policy_file(evaluation["policy"], env_cfg, config,
                       selection={**chosen, "of_episodes": episodes, "val_gap": evaluation["score"], **gaps})
