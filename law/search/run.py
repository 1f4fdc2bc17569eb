"""The search itself: the learner's state, the jobs (priors, training episodes, evaluations), checkpoints, resume."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import ray
import torch

from agents import DDPG, DDPGConfig, RandomSearch, TransitionBuffer
from envs import EnvConfig, require_validation
from law.config import to_dict, validate_all
from law.data import DataConfig, load_data
from law.errors import ConfigError, Interrupted, LawError
from law.io import (atomic_save, atomic_write_json, atomic_write_text, environment_info,
                    new_run_dir, run_folder, run_stamp)
from law.models import build_model
from law.stacked import check_stackable
from law.policy_file import policy_file
from law.progress import ProgressLine
from law.search.config import (CHECKPOINT, LAST_POLICY, OPERATIONAL, POLICY, SearchConfig,
                               evaluation_seeds, training_seed)
from law.search.priors import prior_family
from law.search.report import SearchLogger, summary_markdown
from law.search.workers import (EnvWorker, Job, WorkerFailed, WorkerRestarting, check_ray_address, init_ray,
                                result_of)
from law import timing
from law.timing import phase, take_phases
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
        self.learned = 0  # training episodes the agent has learned from (0..learned-1)
        self.jobs: list[Job] = []  # made and not finished, in the order they were made
        self.waiting: dict[int, dict] = {}  # finished training episodes whose predecessors are not
        self.finished: list[dict] = []  # one summary per training episode learned from
        self.evaluations: list[dict] = []  # one record per greedy evaluation of the agent
        self.priors: list[dict] = []  # one record per prior, judged like the agent
        self.start_point: Optional[dict] = None  # the prior the agent started from, once all are judged
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

    def _queue_judging(self, records: list, kind: str, record: dict, policy: dict) -> None:
        number = len(records)
        records.append({**record, "policy": policy, "gaps": [None] * len(self.eval_seeds), "score": None})
        self.jobs.extend(Job(f"{kind}/{number}/{j}", seed, kind, number, {"kind": "greedy", "policy": policy},
                             self.cfg.seed) for j, seed in enumerate(self.eval_seeds))

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
        """One episode of a greedy evaluation of the agent, or of a prior."""
        record = (self.evaluations if job.kind == "eval" else self.priors)[job.index]
        j = int(job.key.rsplit("/", 1)[1])
        record["gaps"][j] = stages[-1]["info"]["acc_target"] - stages[-1]["info"]["acc_reference"]
        if job.kind == "prior":  # what the agent is fitted to, if it starts from this prior
            record.setdefault("trajectories", [None] * len(self.eval_seeds))[j] = {
                "obs": [s["obs"] for s in stages], "actions": [s["action"] for s in stages]}
        if any(g is None for g in record["gaps"]):
            return
        record["score"] = float(np.mean(record["gaps"]))
        self.logger.evaluation(record)
        if job.kind == "prior" and all(r["score"] is not None for r in self.priors):
            self._start_from_best_prior()
        if record is self.best_evaluation():
            with phase("checkpoint"):  # the policy file
                atomic_save(evaluated_policy_file(record, self.env_cfg, self.config, self.cfg.episodes),
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
        """The best judged policy so far, a prior included."""
        scored = [r for r in self.priors + self.evaluations if r["score"] is not None]
        return max(scored, key=lambda r: r["score"]) if scored else None

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(), "config": self.config,
                "search": {"learned": self.learned, "jobs": [dataclasses.asdict(j) for j in self.jobs],
                           "waiting": {str(n): done for n, done in self.waiting.items()},
                           "finished": self.finished, "evaluations": self.evaluations,
                           "priors": self.priors, "start_point": self.start_point, "started": self.started,
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
        searched = max(r["score"] for r in self.evaluations)
        return {"kind": "search", "agent": self.cfg.agent, "config": self.config, "seed": self.cfg.seed,
                "environment": environment_info(),
                "episodes": sorted(self.finished, key=lambda s: s["episode"]),
                "evaluations": [{k: v for k, v in r.items() if k != "policy"} for r in self.evaluations],
                "priors": [{k: v for k, v in r.items() if k not in ("policy", "trajectories")} for r in self.priors],
                "start_point": self.start_point,
                # what the search added to the best prior (None without priors); policy.pt is the better
                "improvement": None if self.start_point is None else searched - self.start_point["val_gap"],
                "best": {**({"prior": best["prior"]} if "prior" in best else {"after_episodes": best["after_episodes"]}),
                         "val_gap": best["score"]},
                "last": {"after_episodes": last["after_episodes"], "val_gap": last["score"]},
                "evaluation_seeds": self.eval_seeds, "updates": self.updates,
                "worker_failures": self.worker_failures, "redone_episodes": self.redone_episodes,
                "transitions": len(self.buffer), "cached_twins": len(self.twins),
                "search_seconds": self.search_seconds, "fdu_seconds": self.fdu_seconds,
                "policy": str(self.run_dir / POLICY), "last_policy": str(self.run_dir / LAST_POLICY)}


def make_agent(name: str, env_cfg: EnvConfig, agent_cfg: DDPGConfig):
    """The search agent; the env's actions live in [-1, 1]^action_dim (it scales them itself)."""
    if name == "random":
        return RandomSearch(env_cfg.num_stages, env_cfg.action_dim)
    return DDPG(env_cfg.num_stages, -1.0, 1.0, agent_cfg, action_dim=env_cfg.action_dim)


def evaluated_policy_file(evaluation: dict, env_cfg: EnvConfig, config: dict, episodes: int) -> dict:
    """The policy file of one greedy evaluation (of the agent or of a prior), saying how it was chosen."""
    chosen = {"prior": evaluation["prior"]} if "prior" in evaluation else {"after_episodes": evaluation["after_episodes"]}
    return policy_file(evaluation["policy"], env_cfg, config,
                       selection={**chosen, "of_episodes": episodes, "val_gap": evaluation["score"],
                                  "evaluation_gaps": evaluation["gaps"]})


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
    if not search_cfg.in_flight:
        search_cfg = dataclasses.replace(search_cfg,
                                         in_flight=search_cfg.workers * search_cfg.episodes_per_worker + 1)
    validate_all(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
    require_validation(data_cfg)
    if search_cfg.address or os.environ.get("RAY_ADDRESS"):
        check_ray_address(search_cfg.address or os.environ["RAY_ADDRESS"])
    run_dir = new_run_dir(search_cfg.output_dir, search_cfg.run_name,
                          f"{data_cfg.dataset}__law-search__{search_cfg.seed}__{run_stamp()}")
    counts = preflight(env_cfg, data_cfg, stacked=search_cfg.episodes_per_worker > 1)
    priors = prior_family(env_cfg, counts, data_cfg.batch_size, search_cfg.init_policy) if search_cfg.priors else {}
    if priors:
        print(f"priors, judged before the first episode (the agent starts from the best): {', '.join(priors)}",
              file=sys.stderr)
    with run_folder(run_dir, keep=(CHECKPOINT,)):
        run = Search(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg, run_dir)
        run.start(priors)
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
    if "learned" not in saved["search"]:
        raise ConfigError("resume", f"{run_dir / CHECKPOINT} was written by an older LAW, whose search "
                                    "worked in rounds; finish it with that version, or start a new search")
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
                                 recurring_seeds, cfg.episodes_per_worker) for _ in range(cfg.workers)]
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


def preflight(env_cfg: EnvConfig, data_cfg: DataConfig, stacked: bool = False) -> torch.Tensor:
    """Fail in the driver, with the data layer's own message, before any worker starts:
    a wrong --data-root or an impossible split would otherwise surface as restarts of
    workers that cannot build their env. Loading once also fills the decode cache.
    ``stacked``: the workers train their episodes as one stack, which the model must allow.
    Returns the training split's class counts (what the class-balanced prior is fitted to)."""
    bundle = load_data(data_cfg, seed=env_cfg.data_seed, device="cpu")
    model = build_model(env_cfg.model, bundle.num_classes, bundle.in_channels, bundle.image_size)
    if stacked:
        try:
            check_stackable(model)
        except LawError as error:
            raise ConfigError("episodes_per_worker", str(error)) from None
    print(bundle.describe(), file=sys.stderr)
    return bundle.class_counts
