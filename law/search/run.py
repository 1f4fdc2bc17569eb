"""Starting a search, resuming one, and running it on Ray workers until it is done."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import ray
import torch

from agents import DDPGConfig
from envs import EnvConfig, require_validation
from law.config import validate_all
from law.data import DataConfig, load_data
from law.errors import ConfigError, Interrupted, LawError
from law.io import atomic_save, atomic_write_json, atomic_write_text, new_run_dir, run_folder, run_stamp
from law.models import build_model
from law.stacked import check_stackable
from law.progress import ProgressLine
from law.search.config import CHECKPOINT, LAST_POLICY, OPERATIONAL, SearchConfig
from law.search.learner import Search, evaluated_policy_file
from law.search.priors import prior_family
from law.search.report import SearchLogger, summary_markdown
from law.search.workers import EnvWorker, check_ray_address, init_ray
from law import timing
from law.timing import take_phases
from law.trainer import OptimConfig

def _configs_from_saved(saved: dict) -> tuple:
    def build(cls):
        fields = saved[cls.__name__]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    return tuple(build(cls) for cls in (SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig))




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
        recurring_seeds = cfg.seed_pool + len(run.eval_seeds) + len(run.final_seeds)  # their warm-ups are kept too
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
