"""The env workers (Ray actors) and the Ray cluster a search runs on."""
from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import ray
import torch

from agents import Behaviour
from envs import EnvConfig, StageWeightingEnv, plain_info
from law.data import DataConfig
from law.errors import ConfigError, LawError
from law.paired import Requests, run_in_lockstep
from law.search.config import noise_rng
from law.timing import phase, take_phases
from law.trainer import OptimConfig


@dataclass(eq=False)  # a job is itself: its behaviour holds tensors
class Job:
    """One episode to run: a training episode (its behaviour explores), or one of the greedy
    evaluation of the agent or of a prior."""

    key: str
    """'train/<n>', 'eval/<round>/<j>' or 'prior/<number>/<j>'."""
    seed: int
    kind: str
    """train: the agent learns from it; eval: its greedy policy is judged; prior: a prior is judged."""
    index: int
    """Training episode number, evaluation round or prior number."""
    behaviour: dict
    """What it acts with (``agents.Behaviour``), fixed when the job is made."""
    search_seed: int
    """With the episode and stage, seeds each stage's exploration."""

    @classmethod
    def from_dict(cls, state: dict) -> "Job":
        return cls(**state)


class EnvWorker:
    """Owns ``episodes_at_once`` environments (sharing one copy of the data) and runs whole
    episodes on them. Wrapped with ``ray.remote`` at launch, so it also runs in-process for
    debugging and tests."""

    def __init__(self, env_cfg: EnvConfig, data_cfg: DataConfig, optim_cfg: OptimConfig,
                 threads: int, use_gpu: bool, recurring_seeds: int = 0, episodes_at_once: int = 1):
        torch.set_num_threads(max(1, threads))
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        first = StageWeightingEnv(env_cfg, data_cfg, optim_cfg, device=device, warm_up_cache=recurring_seeds)
        self.envs = [first] + [StageWeightingEnv(env_cfg, data_cfg, optim_cfg, device=device,
                                                 warm_up_cache=recurring_seeds, share_with=first)
                               for _ in range(episodes_at_once - 1)]
        # One at a time, the networks train one by one; more, as one stack (law.stacked) even
        # when fewer jobs come, so that every episode of the search sees the same kernels.
        self.stacked = episodes_at_once > 1

    def run_episodes(self, jobs: list[dict], twins: list[Optional[dict]]) -> list[list[dict]]:
        """The episodes of ``jobs`` (a search's Jobs as dicts), in lockstep: fresh identical
        networks, the warm-up, then every acting stage with the job's behaviour. ``twins[i]``
        is the cached record of job i's unweighted twin, if the search has one. Returns, per
        job, one record per acting stage: the transition and the env's info. Deterministic,
        so a redone episode returns the very same records."""
        if not 1 <= len(jobs) <= len(self.envs) or len(twins) != len(jobs):
            raise LawError(f"a worker runs 1 to {len(self.envs)} episodes at once, each with its twin (or "
                           f"None); got {len(jobs)} jobs and {len(twins)} twins")
        with phase("worker call"):
            episodes = [self._episode(env, job, twin) for env, job, twin in zip(self.envs, jobs, twins)]
            return run_in_lockstep(episodes, stacked=self.stacked)

    @staticmethod
    def _episode(env: StageWeightingEnv, job: dict, twin: Optional[dict]) -> Requests:
        behaviour = Behaviour(job["behaviour"])
        obs, _ = yield from env.reset_requests(seed=job["seed"], options={"twin": twin})
        stages, done = [], False
        while not done:
            action = behaviour(obs, noise_rng(job["search_seed"], job["index"], int(obs[0])))
            next_obs, reward, terminated, truncated, info = yield from env.step_requests(action)
            done = bool(terminated or truncated)
            stages.append({"obs": obs.tolist(), "action": np.asarray(action, np.float32).tolist(),
                           "reward": float(reward), "next_obs": next_obs.tolist(), "done": done,
                           "info": plain_info(info)})
            obs = next_obs
        return stages

    def phase_times(self) -> dict:
        """This worker's phase totals since the last call (``law.timing``; empty unless enabled)."""
        return take_phases()


class WorkerFailed(Exception):
    """A worker process died: the call must be redone (on the actor Ray restarts)."""


class WorkerRestarting(WorkerFailed):
    """The worker's actor is still being restarted by Ray: the same fault, not a new one."""


def result_of(future: Any, worker: int) -> Any:
    """The result of a worker's call; a dead worker's result is a WorkerFailed.

    An exception raised *by the environment* is not a fault to retry (it would
    raise again): it stops the search with the environment's own message.
    """
    try:
        return ray.get(future)
    except ray.exceptions.ActorUnavailableError as error:
        return WorkerRestarting(str(error).splitlines()[0])
    except ray.exceptions.RayActorError as error:
        return WorkerFailed(str(error).splitlines()[0])
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if isinstance(error.cause, Exception) else error
        message = str(cause) if isinstance(cause, LawError) else f"{type(cause).__name__}: {cause}"
        raise LawError(f"worker {worker}: {message}") from None


def init_ray(address: str, num_cpus: Optional[float] = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a fresh local Ray.

    Without an address Ray would join whatever cluster ``ray start`` last recorded on
    this machine, even a dead one (and hang for minutes): a plain run never does.
    An address that does not answer within seconds is a clear error, not a hang.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS", "")
    if address:
        check_ray_address(address)
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address whose head does not answer."""
    target = address
    if address == "auto":
        record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if not record.is_file():
            raise ConfigError("address", "'auto' found no Ray cluster started on this machine (ray start --head); "
                                         "start one, pass its host:port, or leave --address out for a local Ray")
        target = record.read_text().strip()
    target = target.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        raise ConfigError("address", f"no Ray cluster answers at {target} (within {timeout:g} s); start its head "
                                     "with `ray start --head`, fix --address, or leave it out to start a local "
                                     "Ray") from None
