"""``law compare``: every method on identical data, schedule and seeds; paper-style tables.

A comparison is a suite (``law.suites``: data, bias, network, schedule, search
budget) at one profile (``paper`` / ``cpu`` / ``smoke``), a list of methods and
a list of seeds. What is held identical, and how:

* **Data.** Run seed ``s`` of every method loads the data with seed ``s``: the
  same training subset, the same noisy labels / imbalance, the same clean
  validation split and test subset.
* **Schedule.** The suite's schedule is defined in stages. LAW trains stage by
  stage (``StageWeightingEnv``, the policy acting greedily); the baselines train
  epoch by epoch with a step schedule whose drops are the stage drops converted
  to epochs. Same epochs, same learning rate at every step, same batch size.
* **Evaluation points.** LAW's runs are evaluated at stage ends, so "best" is
  taken for *every* method over the same points: the end of LAW's warm-up and
  of every later stage (``StageSchedule.report_epochs``). "last" is after the
  final epoch. "at best val" is the test accuracy where the clean validation
  accuracy peaks, a selection rule that never looks at the test split.
* **Seeds.** Seed ``s`` also seeds initialisation and batch order. The LAW path
  derives them through the gymnasium env (``reset(seed=s)``), so a LAW run and a
  baseline of the same seed share data but not the very same initial weights;
  LAW's own unweighted twin (same init, same batches) is reported as the row
  "CE (LAW's twin)" for a paired comparison.

The LAW policy is either given (``--policy``) or searched first with the
suite's search settings, on a draw of the data of its own (``search_data_seed``)
with the reward measured on the clean validation split -- never on the test
split.

Resumable: each (method, seed) run lives in ``runs/<method>__seed<s>/`` and is
skipped when its ``results.json`` exists; an interrupted run's folder is
cleared and the run redone; an interrupted search continues from its
checkpoint. Settings that would change results are stored in
``compare.json`` and a re-run with different ones is refused.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from envs import EnvConfig
from law.config import add_config_args, config_from_args, to_dict
from law.data import DataConfig
from law.errors import ConfigError, LawError, TrainingFailed
from law.io import atomic_write_json, atomic_write_text, check_writable_dir, environment_info
from law.methods import METHODS
from law.models import MODEL_NAMES
from law.policy_file import policy_path
from law.suites import PROFILES, Profile, Suite, get_suite, resolve_data

METHOD_ORDER = ("ce", "focal", "cb", "low", "l2rw", "spl", "ohem", "law")
DISPLAY = {"ce": "CE", "focal": "Focal", "cb": "CB", "low": "LOW", "l2rw": "L2RW", "spl": "SPL",
           "ohem": "OHEM", "law": "LAW", "law-twin": "CE (LAW's twin)"}
RESULTS = "results.json"
RUN_INFO = "compare_run.json"


@dataclass
class CompareConfig:
    """Which suite, budget, methods and seeds to compare, and where the results go."""

    suite: str = "cifar10-noisy"
    """Benchmark suite: cifar10-noisy, cifar100-noisy, cifar10-step, cifar100-step, cifar10-longtail,
    cifar100-longtail, imagenet-noisy."""
    profile: str = "cpu"
    """Budget: cpu (about an hour on 2 cores), paper (the paper's settings, GPUs), smoke (seconds; tests)."""
    methods: str = ",".join(METHOD_ORDER)
    """Comma-separated methods: ce, focal, cb, low, l2rw, spl, ohem, law."""
    seeds: str = "0,1,2"
    """Comma-separated seeds; each seed fixes data draw, noise, initialisation and batch order."""
    data_root: str = ""
    """Data folder: train/<class>/ and test/<class>/ images (ImageFolder), or torchvision's CIFAR files."""
    noise_file: str = ""
    """Suite cifar10n: the CIFAR-10N label file (CIFAR-10_human.pt)."""
    policy: str = ""
    """LAW policy file (or shipped policy name, see `law policies`) to apply; empty: search one first."""
    model: str = ""
    """Network every method trains (empty: the suite's); with a searched policy this is a transfer."""
    search_model: str = ""
    """Network the policy is searched with (empty: the suite's)."""
    episodes: int = 0
    """Search episodes (0: the suite's)."""
    workers: int = 0
    """Search env workers (0: the suite's)."""
    address: str = ""
    """Ray cluster for the search and data-parallel training (host:port or 'auto'); empty: local."""
    device: str = "auto"
    """Training device of the runs: auto | cpu | cuda | cuda:N."""
    threads: int = 0
    """Torch threads per run (0: the suite's, else torch's default)."""
    jobs: int = 1
    """Runs trained at the same time, in separate processes (threads are split between them)."""
    train_workers: int = -1
    """Data-parallel Ray Train workers per run (-1: the suite's; 0: one process; ImageNet paper: 8, one per GPU)."""
    output_dir: str = "runs/compare"
    """Folder that receives the comparison folder."""
    name: str = ""
    """Comparison folder name (default: {suite}__{profile})."""
    plots: bool = True
    """Write PNG plots (needs matplotlib)."""
    progress: bool = True
    """Show progress lines."""

    def validate(self) -> None:
        suite = get_suite(self.suite)
        if self.profile not in suite.profiles:
            raise ConfigError("profile", f"unknown profile '{self.profile}'; known: {', '.join(PROFILES)}")
        parse_methods(self.methods)
        parse_seeds(self.seeds)
        for name in ("model", "search_model"):
            value = getattr(self, name)
            if value and value not in MODEL_NAMES and not value.startswith("wrn"):
                raise ConfigError(name, f"unknown model '{value}'; known: {', '.join(MODEL_NAMES)}")
        if self.policy:
            policy_path(self.policy)
        if self.train_workers < -1:
            raise ConfigError("train_workers", f"must be -1 (the suite's), 0 or more, got {self.train_workers}")
        for name in ("episodes", "workers", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.jobs < 1:
            raise ConfigError("jobs", f"must be >= 1, got {self.jobs}")
        check_writable_dir(self.output_dir, "output_dir")


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    known = set(METHODS) | {"law"}
    unknown = [m for m in methods if m not in known]
    if not methods or unknown:
        raise ConfigError("methods", f"unknown method(s) {unknown or '(none given)'}; "
                                     f"choose from {','.join(METHOD_ORDER)}")
    if len(set(methods)) != len(methods):
        raise ConfigError("methods", f"a method is listed twice: {text}")
    return methods


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as error:
        raise ConfigError("seeds", f"comma-separated integers, e.g. 0,1,2; got '{text}'") from error
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError("seeds", f"distinct non-negative integers, e.g. 0,1,2; got '{text}'")
    return seeds


# ----------------------------------------------------------------------------------------
# The experiment, fully resolved


@dataclass
class Experiment:
    """A comparison with every setting decided: what each of its runs trains on."""

    cfg: CompareConfig
    suite: Suite
    profile: Profile
    model: str
    search_model: str
    data: DataConfig
    search_data: DataConfig
    methods: list[str]
    seeds: list[int]
    out: Path

    @property
    def schedule(self):
        return self.profile.schedule

    @property
    def threads(self) -> int:
        return self.cfg.threads or self.profile.threads

    @property
    def train_workers(self) -> int:
        """Data-parallel workers per run; 0 trains in this process."""
        return self.profile.distributed_workers if self.cfg.train_workers < 0 else self.cfg.train_workers

    def spec(self) -> dict:
        """What a re-run must share with the runs already in the folder."""
        p = self.profile
        return {
            "suite": self.suite.name, "profile": self.cfg.profile, "model": self.model,
            "data": asdict(self.data), "optim": asdict(p.optim), "schedule": asdict(p.schedule),
            "method": asdict(p.method), "law_reference": p.law_reference,
            "train_workers": self.train_workers,
            "law_policy": self._policy_spec(),
        }

    def _policy_spec(self):
        if self.cfg.policy:
            return str(policy_path(self.cfg.policy).resolve())
        p = self.profile
        return {"search_model": self.search_model, "search_data": asdict(self.search_data),
                "search_data_seed": p.search_data_seed, "search_env": p.search_env,
                "episodes": self.cfg.episodes or p.search.episodes, "ddpg": asdict(p.ddpg)}

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / "runs" / f"{method}__seed{seed}"


def build_experiment(cfg: CompareConfig) -> Experiment:
    cfg.validate()
    suite = get_suite(cfg.suite)
    profile = suite.profile(cfg.profile)
    data = resolve_data(profile.data, cfg.data_root, cfg.noise_file)
    search_data = resolve_data(profile.search_data or profile.data, cfg.data_root, cfg.noise_file)
    out = Path(cfg.output_dir) / (cfg.name or f"{suite.name}__{cfg.profile}")
    return Experiment(cfg, suite, profile, cfg.model or profile.model,
                      cfg.search_model or profile.search_model or cfg.model or profile.model,
                      data, search_data, parse_methods(cfg.methods), parse_seeds(cfg.seeds), out)


def check_spec(exp: Experiment) -> None:
    """Refuse to mix runs of different settings in one folder; record the settings."""
    path = exp.out / "compare.json"
    spec = json.loads(json.dumps(exp.spec(), default=str))
    if path.is_file():
        saved = json.loads(path.read_text())["spec"]
        changed = sorted(k for k in set(spec) | set(saved) if spec.get(k) != saved.get(k))
        if changed == ["law_policy"] and not _has_law_runs(exp):
            changed = []  # the policy only shapes LAW runs, and there are none yet
        if changed:
            raise ConfigError("name", f"{exp.out} holds a comparison made with other settings "
                                      f"({', '.join(changed)} differ); pass another --name or "
                                      "--output-dir, or delete that folder")
    atomic_write_json({"spec": spec, "config": asdict(exp.cfg)}, path)


def _has_law_runs(exp: Experiment) -> bool:
    """Whether anything in the folder already depends on the LAW policy."""
    return (exp.out / "search").exists() or any((exp.out / "runs").glob("law__seed*"))


# ----------------------------------------------------------------------------------------
# The LAW policy: given, or searched on the validation split


def search_configs(exp: Experiment) -> tuple:
    """(SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig) of the suite's search."""
    p, cfg = exp.profile, exp.cfg
    env = EnvConfig.from_schedule(exp.schedule, exp.search_model, data_seed=p.search_data_seed, **p.search_env)
    search_cfg = replace(p.search, episodes=cfg.episodes or p.search.episodes,
                         workers=cfg.workers or p.search.workers, address=cfg.address,
                         output_dir=str(exp.out), run_name="search", progress=cfg.progress)
    if search_cfg.gpus_per_worker and not cluster_has_gpus(cfg):
        search_cfg = replace(search_cfg, gpus_per_worker=0.0)
    return search_cfg, env, exp.search_data, replace(p.optim, lr_schedule="constant"), p.ddpg


def cluster_has_gpus(cfg: CompareConfig) -> bool:
    """Whether GPU shares can be scheduled: a local GPU, or GPUs in the Ray cluster joined."""
    if cfg.device == "cpu":
        return False
    if torch.cuda.is_available():
        return True
    if not (cfg.address or os.environ.get("RAY_ADDRESS")):
        return False
    import ray

    from law.search import init_ray

    init_ray(cfg.address)
    return ray.cluster_resources().get("GPU", 0) > 0


def check_policy(exp: Experiment, path: str) -> None:
    """Refuse, before any training, a policy that cannot act on the suite's stages."""
    from law.policy_file import greedy_policy, load_policy

    searched = greedy_policy(load_policy(path)).num_stages
    if searched != exp.schedule.num_stages:
        raise ConfigError("policy", f"{path} acts on {searched} stages but profile {exp.cfg.profile} of "
                                    f"{exp.suite.name} has {exp.schedule.num_stages}; search one for this "
                                    "profile (leave --policy empty)")


def ensure_policy(exp: Experiment) -> str:
    """The policy file to apply: the given one, a finished search's, or a new (resumed) search's."""
    from law.search import CHECKPOINT, POLICY, resume_search, search

    if exp.cfg.policy:
        check_policy(exp, exp.cfg.policy)
        return str(policy_path(exp.cfg.policy))
    folder = exp.out / "search"
    if (folder / "results.json").is_file():  # finished (policy.pt is written as soon as one is evaluated)
        return str(folder / POLICY)
    search_cfg, env, data, optim, ddpg = search_configs(exp)
    _say(exp, f"searching a LAW policy ({search_cfg.episodes} episodes, {search_cfg.workers} workers, "
              f"{exp.search_model}) -> {folder}")
    if (folder / CHECKPOINT).is_file():
        return resume_search(folder, progress=search_cfg.progress)["policy"]
    if folder.exists():  # died before its first checkpoint: nothing to keep
        shutil.rmtree(folder)
    return search(search_cfg, env, data, optim, ddpg)["policy"]


# ----------------------------------------------------------------------------------------
# One run: a baseline (law.train), LAW applied stage by stage, or data-parallel


class StageLogger:
    """TensorBoard tags of a stage-wise run, grouped as ``law train``'s (test/, val/, weights/)
    plus ``law/`` (reward, loss gap, action) and ``reference/`` (the unweighted twin)."""

    def __init__(self, run_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        from law.logging import config_markdown

        self.writer = SummaryWriter(str(run_dir))
        self.writer.add_text("config", config_markdown(config), 0)

    def record(self, record: dict) -> None:
        from law.logging import SCALAR_METRICS, log_weight_stats

        step, w = record["epoch"], self.writer
        for metric in SCALAR_METRICS:
            if metric in record["test"]:
                w.add_scalar(f"test/{metric}", record["test"][metric], step)
        w.add_scalar("val/accuracy", record["val"]["accuracy"], step)
        w.add_scalar("train/loss", record["train"]["mean_loss"], step)
        w.add_scalar("train/lr", record["lr"], step)
        log_weight_stats(w, "weights", _nan_for_none(record["train"]), None, step)
        for name in ("reward", "loss_gap"):
            if record.get(name) is not None:
                w.add_scalar(f"law/{name}", record[name], step)
        for i, value in enumerate(record.get("action") or ()):
            w.add_scalar(f"law/action_{i}", value, step)
        reference = record.get("reference")
        if reference and reference.get("test"):
            w.add_scalar("reference/test_accuracy", reference["test"]["accuracy"], step)
            w.add_scalar("reference/val_accuracy", reference["val_accuracy"], step)

    def close(self) -> None:
        self.writer.close()


def _nan_for_none(train: dict) -> dict:
    def fix(value):
        return float("nan") if value is None else value

    return {**train, "mean_weight_noisy": fix(train.get("mean_weight_noisy")),
            "mean_weight_clean": fix(train.get("mean_weight_clean")),
            "mean_weight_per_class": [fix(v) for v in train.get("mean_weight_per_class", [])]}


def train_law(exp: Experiment, policy_path: str, seed: int, run_dir: Path, progress: bool) -> dict:
    """LAW on seed ``seed``: the policy acts greedily once per stage; test metrics at each
    stage end (for reporting only: nothing is chosen by them)."""
    from envs import StageWeightingEnv
    from law.apply import rollout
    from law.policy_file import greedy_policy, load_policy, policy_env_config
    from law.progress import ProgressLine
    from law.train import resolve_device, seed_everything, summarise

    s = exp.schedule
    policy = load_policy(policy_path)
    env_cfg = policy_env_config(policy, {"model": exp.model, "data_seed": seed, "keep_weights": False,
                                         **EnvConfig.schedule_fields(s)})
    device = resolve_device(exp.cfg.device)
    if exp.threads:
        torch.set_num_threads(exp.threads)
    seed_everything(seed)
    started = time.perf_counter()
    # The env sets each stage's rate itself (the suite's drops); the optimiser gives the base rate.
    optim = replace(exp.profile.optim, lr_schedule="constant")
    env = StageWeightingEnv(env_cfg, exp.data, optim, device=device, train_reference=exp.profile.law_reference)
    config = to_dict(env_cfg, exp.data, optim)
    logger = StageLogger(run_dir, config)
    bar = ProgressLine(s.num_stages - s.warmup_stages, f"law seed {seed}", enabled=progress)
    history: list[dict] = []

    def record(info: dict, action=None, reward: float = 0.0, warmup: bool = False) -> None:
        history.append(_law_record(env, info, action, reward, warmup=warmup))
        logger.record(history[-1])

    def on_reset(info: dict) -> None:
        if s.warmup_stages:
            record(info, warmup=True)

    def on_stage(stage: dict) -> None:
        record(stage, stage["action"], stage["reward"])
        bar.update(len(history) - (1 if s.warmup_stages else 0), f"test {history[-1]['test']['accuracy']:.3f}")

    try:
        rollout(env, greedy_policy(policy), seed, on_stage=on_stage, on_reset=on_reset)
    finally:
        logger.close()
    results = {"kind": "law", "method": "law", "seed": seed, "config": config,
               "policy": str(Path(policy_path).resolve()), "policy_config": policy["config"],
               "environment": environment_info(),
               "dataset": env.bundle.summary(),
               "summary": summarise(history), "history": history,
               "seconds": time.perf_counter() - started}
    atomic_write_json(results, run_dir / RESULTS)
    return results


def _law_record(env, info: dict, action, reward: float, warmup: bool = False) -> dict:
    """One evaluation point of a LAW run, shaped like ``law train``'s epoch records."""
    target, reference = env.evaluate_test()
    classes = env.bundle.num_classes
    if warmup:  # the warm-up is unweighted by definition
        train = {"mean_loss": info["loss_target"], "mean_weight": 1.0, "mean_weight_per_class": [1.0] * classes,
                 "mean_weight_noisy": 1.0, "mean_weight_clean": 1.0, "effective_sample_fraction": 1.0}
    else:
        train = {k: info[k] for k in ("mean_weight", "mean_weight_per_class", "mean_weight_noisy",
                                      "mean_weight_clean", "effective_sample_fraction")} | {
            "mean_loss": info["loss_target"]}
    record = {"epoch": int(round(info["epoch"])), "stage": info["stage"], "lr": info["lr"], "train": train,
              "val": {"accuracy": info["acc_target"]}, "test": target}
    if not warmup:
        record |= {"action": [float(a) for a in action], "theta": info["theta"], "reward": float(reward),
                   "loss_gap": info["loss_gap"] if reference is not None else None}
        if reference is not None:
            record["reference"] = {"test": reference, "val_accuracy": info["acc_reference"],
                                   "mean_loss": info["loss_reference"]}
    elif reference is not None:
        record["reference"] = {"test": reference, "val_accuracy": info["acc_target"],
                               "mean_loss": info["loss_target"]}
    return record


def train_baseline(exp: Experiment, method: str, seed: int, run_dir: Path, progress: bool) -> dict:
    from law.train import RunConfig, train

    run = RunConfig(model=exp.model, epochs=exp.schedule.epochs, seed=seed, device=exp.cfg.device,
                    threads=exp.threads, output_dir=str(run_dir.parent), run_name=run_dir.name,
                    progress=progress)
    return train(run, exp.data, exp.schedule.baseline_optim(exp.profile.optim),
                 replace(exp.profile.method, method=method))


def train_distributed(exp: Experiment, method: str, seed: int, run_dir: Path, policy_path: str) -> dict:
    from law.policy_file import load_policy
    from law.distributed import DistributedConfig, StageJob, train_data_parallel

    use_gpu = cluster_has_gpus(exp.cfg)
    dist = DistributedConfig(workers=exp.train_workers, use_gpu=use_gpu,
                             cpus_per_worker=float(max(1, exp.threads)), address=exp.cfg.address)
    job = StageJob(exp.model, exp.data, exp.profile.optim, exp.schedule,
                   replace(exp.profile.method, method=method), seed,
                   policy=load_policy(policy_path) if method == "law" else None)
    results = train_data_parallel(dist, job, run_dir)
    logger = StageLogger(run_dir, {"job": {"method": method, "seed": seed, "model": exp.model}})
    for record in results["history"]:
        logger.record(record)
    logger.close()
    return results


def run_one(cfg: CompareConfig, method: str, seed: int, policy_path: Optional[str], progress: bool) -> dict:
    """Train one (method, seed) of the comparison into its folder; returns a short row.

    A module-level function of plain arguments, so worker processes can run it."""
    exp = build_experiment(cfg)
    run_dir = exp.run_dir(method, seed)
    if run_dir.exists():  # a run that died before writing its results: start it over
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    started = time.perf_counter()
    try:
        if exp.train_workers:
            train_distributed(exp, method, seed, run_dir, policy_path)
        elif method == "law":
            train_law(exp, policy_path, seed, run_dir, progress)
        else:
            train_baseline(exp, method, seed, run_dir, progress)
    except TrainingFailed as error:  # a result too: this method diverges (or collapses) on this task
        atomic_write_json({"kind": "diverged", "status": error.status, "method": method, "seed": seed,
                           "error": str(error)}, run_dir / RESULTS)
    seconds = time.perf_counter() - started
    atomic_write_json({"method": method, "seed": seed, "wall_seconds": seconds}, run_dir / RUN_INFO)
    return {"method": method, "seed": seed, "wall_seconds": seconds}


# ----------------------------------------------------------------------------------------
# The comparison


def compare(cfg: CompareConfig) -> dict:
    """Run (or continue) a comparison; writes table.md, results.csv, results.json and plots."""
    exp = build_experiment(cfg)
    if exp.train_workers:
        from law.distributed import SUPPORTED_METHODS

        unsupported = [m for m in exp.methods if m not in SUPPORTED_METHODS]
        if unsupported:
            raise ConfigError("methods", f"{', '.join(unsupported)} cannot train data-parallel (profile "
                                         f"{cfg.profile} of {exp.suite.name}); drop them from --methods")
    check_spec(exp)
    policy_path = ensure_policy(exp) if "law" in exp.methods else None
    pending = [(m, s) for s in exp.seeds for m in exp.methods if not (exp.run_dir(m, s) / RESULTS).is_file()]
    done = len(exp.methods) * len(exp.seeds) - len(pending)
    if done:
        _say(exp, f"{done} run(s) already finished in {exp.out}, skipped")
    if cfg.jobs > 1 and len(pending) > 1:
        _run_parallel(exp, pending, policy_path)
    else:
        for i, (method, seed) in enumerate(pending, 1):
            _say(exp, f"[{i}/{len(pending)}] {method} seed {seed}")
            row = run_one(cfg, method, seed, policy_path, cfg.progress)
            _report_run(exp, row)
    return write_report(exp, policy_path)


def _run_parallel(exp: Experiment, pending: list, policy_path: Optional[str]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cfg = exp.cfg
    total_threads = exp.threads or torch.get_num_threads()
    child_cfg = replace(cfg, threads=max(1, total_threads // cfg.jobs))
    with ProcessPoolExecutor(cfg.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, child_cfg, m, s, policy_path, False) for m, s in pending]
        for i, future in enumerate(as_completed(futures), 1):
            row = future.result()
            _say(exp, f"[{i}/{len(pending)}] finished")
            _report_run(exp, row)


def _report_run(exp: Experiment, row: dict) -> None:
    results = json.loads((exp.run_dir(row["method"], row["seed"]) / RESULTS).read_text())
    if results.get("kind") == "diverged":
        _say(exp, f"  {row['method']} seed {row['seed']}: {results.get('status', 'diverged')}")
        return
    metrics = run_metrics(results, exp.schedule.report_epochs())
    _say(exp, f"  {row['method']} seed {row['seed']}: best {100 * metrics['best']:.2f}  "
              f"last {100 * metrics['last']:.2f}  ({row['wall_seconds'] / 60:.1f} min)")


def _say(exp: Experiment, message: str) -> None:
    if exp.cfg.progress:
        print(f"law compare: {message}", flush=True)


# ----------------------------------------------------------------------------------------
# Metrics, aggregation, table


LAST_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "mean_auc")


def run_metrics(results: dict, report_epochs: tuple[int, ...], test_key: str = "test") -> dict:
    """Best (over the shared evaluation points), last and at-best-val test metrics of one run.

    ``test_key="reference"`` reads a LAW run's unweighted twin instead."""
    history = results["history"]

    def test_of(record: dict) -> Optional[dict]:
        return record.get("reference", {}).get("test") if test_key == "reference" else record["test"]

    def val_of(record: dict) -> float:
        return record["reference"]["val_accuracy"] if test_key == "reference" else record["val"]["accuracy"]

    points = [r for r in history if r["epoch"] in report_epochs and test_of(r)] or history
    best = max(points, key=lambda r: test_of(r)["accuracy"])
    best_val = max(points, key=val_of)
    last = test_of(history[-1])
    # The twin is unweighted: every sample counts fully.
    fractions = [1.0] if test_key == "reference" else [
        r.get("train", {}).get("effective_sample_fraction", math.nan) for r in history]
    return {"best": test_of(best)["accuracy"], "best_epoch": best["epoch"],
            "last": last["accuracy"], "last_balanced_accuracy": last["balanced_accuracy"],
            "last_macro_f1": last["macro_f1"], "last_mean_auc": last["mean_auc"],
            "at_best_val": test_of(best_val)["accuracy"], "best_val_epoch": best_val["epoch"],
            "best_any_epoch": max(test_of(r)["accuracy"] for r in history if test_of(r)),
            "effective_samples": float(np.mean(fractions))}


def reported(exp: Experiment) -> tuple[list[str], list[int]]:
    """Methods and seeds of the report: those asked for now and every run the folder finished
    before (a re-run with fewer methods or seeds still reports the whole comparison)."""
    methods, seeds = set(exp.methods), set(exp.seeds)
    for results in (exp.out / "runs").glob(f"*__seed*/{RESULTS}"):
        method, _, seed = results.parent.name.rpartition("__seed")
        if method in METHOD_ORDER and seed.isdigit():
            methods.add(method)
            seeds.add(int(seed))
    return [m for m in METHOD_ORDER if m in methods], sorted(seeds)


def collect_rows(exp: Experiment) -> list[dict]:
    """One row per finished (method, seed), plus LAW's twin where it was trained."""
    rows = []
    report = exp.schedule.report_epochs()
    methods, seeds = reported(exp)
    for seed in seeds:
        for method in methods:
            path = exp.run_dir(method, seed) / RESULTS
            if not path.is_file():
                continue
            results = json.loads(path.read_text())
            info_path = exp.run_dir(method, seed) / RUN_INFO
            wall = json.loads(info_path.read_text())["wall_seconds"] if info_path.is_file() else math.nan
            base = {"method": method, "seed": seed, "wall_seconds": wall, "run_dir": str(path.parent)}
            if results.get("kind") == "diverged":
                rows.append(base | {"diverged": results["error"]})
                continue
            rows.append(base | run_metrics(results, report))
            if method == "law" and results["history"][-1].get("reference"):
                rows.append(base | {"method": "law-twin"} | run_metrics(results, report, "reference"))
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; nan for a single value)."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def aggregate(rows: list[dict], columns: tuple[str, ...]) -> dict[str, dict]:
    """Per method: n, and mean/std of each column over its seeds."""
    table: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if "diverged" not in r]
        entry = {"n": len(ok), "diverged": len(mine) - len(ok), "seeds": [r["seed"] for r in ok]}
        for column in columns + ("wall_seconds",):
            entry[column] = mean_std([r[column] for r in ok])
        table[method] = entry
    return table


def table_columns(imbalanced: bool) -> list[tuple[str, str]]:
    columns = [("best", "best test acc (%)"), ("last", "last test acc (%)"),
               ("at_best_val", "test acc at best val (%)")]
    if imbalanced:
        columns += [("last_balanced_accuracy", "balanced acc (%)"), ("last_macro_f1", "macro F1 (%)"),
                    ("last_mean_auc", "mean AUC (%)")]
    return columns


EFFECTIVE_SAMPLES = ("effective_samples", "effective batch (%)")
"""Kish's effective sample size of the weights over the batch size, averaged over training:
how much of each batch a method really trains on (not ranked: neither more nor less is better)."""


def _cell(mean: float, std: float, bold: bool) -> str:
    if math.isnan(mean):
        return "—"
    text = f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if not math.isnan(std) else "")
    return f"**{text}**" if bold else text


def markdown_table(exp: Experiment, summary: dict, policy_path: Optional[str], rows: list[dict]) -> str:
    p, s, data = exp.profile, exp.schedule, exp.data
    columns = table_columns(exp.suite.imbalanced)
    ranked = [e for m, e in summary.items() if m != "law-twin"]
    best_means = {key: max((e[key][0] for e in ranked if not math.isnan(e[key][0])), default=math.nan)
                  for key, _ in columns}
    seeds_text = ", ".join(map(str, reported(exp)[1]))
    lines = [f"## {exp.suite.title} ({exp.suite.paper}) — profile `{exp.cfg.profile}`", "",
             f"> **Profile `{exp.cfg.profile}`:** {p.label}.", "",
             f"- Setup: {exp.model}; {data.dataset} {_data_text(data, rows)}; batch {data.batch_size}, "
             f"{_augment_text(data)}; "
             f"SGD lr {p.optim.lr:g}, momentum {p.optim.momentum:g}, wd {p.optim.weight_decay:g}; "
             f"{s.describe()}.",
             f"- Seeds: {seeds_text} (mean ± sample std over the seeds that finished; n per row below).",
             f"- LAW: {_policy_text(exp, policy_path)}.", "",
             "| method | n | " + " | ".join(title for _, title in columns)
             + f" | {EFFECTIVE_SAMPLES[1]} | time / run (min) |",
             "|---|---:|" + "---:|" * len(columns) + "---:|---:|"]
    for method, entry in summary.items():
        cells = [_cell(*entry[key], bold=entry[key][0] == best_means[key] and method != "law-twin")
                 for key, _ in columns]
        cells.append(_cell(entry[EFFECTIVE_SAMPLES[0]][0], math.nan, bold=False))
        minutes = entry["wall_seconds"][0] / 60
        time_cell = "—" if math.isnan(minutes) or method == "law-twin" else f"{minutes:.1f}"
        note = f" ({entry['diverged']} diverged)" if entry["diverged"] else ""
        lines.append(f"| {DISPLAY.get(method, method)}{note} | {entry['n']} | " + " | ".join(cells)
                     + f" | {time_cell} |")
    report = ", ".join(map(str, s.report_epochs()))
    lines += ["", f"best = highest test accuracy over the evaluation points shared by all methods "
                  f"(epochs {report}: the end of LAW's warm-up and of each stage); last = after the "
                  f"final epoch; at best val = test accuracy where the clean validation accuracy peaks "
                  f"(selection without the test split)"
                  + ("; balanced accuracy, macro F1 and mean one-vs-rest AUC after the final epoch"
                     if exp.suite.imbalanced else "")
                  + ". CE (LAW's twin) is the unweighted network trained alongside each LAW run from "
                    "the same initial weights on the same batches.", ""]
    env = environment_info()
    lines.append(f"Code {env['code_revision']}; torch {env['torch']}, {env['cuda'] or 'CPU'}, "
                 f"{exp.threads or env['torch_threads']} threads per run, {exp.cfg.jobs} run(s) at a time.")
    return "\n".join(lines) + "\n"


def _data_text(data: DataConfig, rows: list[dict]) -> str:
    bias = []
    if data.noise != "none":
        bias.append(f"{100 * data.noise_rate:g} % {data.noise} label noise")
    if data.imbalance == "longtail":
        bias.append(f"long-tailed, ratio {data.imbalance_ratio:g}")
    elif data.imbalance == "step":
        bias.append(f"step imbalance: {data.step_minority_classes} minority classes at "
                    f"{100 * data.step_keep_fraction:g} %")
    sizes = (f"train {data.train_size or 'all'} / val {data.val_size} (clean) / "
             f"test {data.test_size or 'all'}")
    return f"({', '.join(bias) or 'unbiased'}), {sizes}"


def _augment_text(data: DataConfig) -> str:
    if not data.augment:
        return "no augmentation"
    if data.dataset == "imagefolder" and data.in_memory == "never":
        return "RandomResizedCrop + flip"
    return "random crop + flip" if data.crop_padding else "flip"


def _policy_text(exp: Experiment, policy_path: Optional[str]) -> str:
    if policy_path is None:
        return "not run"
    if exp.cfg.policy:
        return f"given policy `{exp.cfg.policy}`"
    search_cfg, env, data, _, _ = search_configs(exp)
    return (f"policy searched with {exp.search_model}, {search_cfg.episodes} episodes x {env.num_stages} "
            f"stages, {search_cfg.workers} workers, on its own draw of the data (seed "
            f"{exp.profile.search_data_seed}, train {data.train_size or 'all'}), reward on the clean "
            f"validation split; `{policy_path}`")


def write_csv(rows: list[dict], path: Path, exp: Experiment) -> None:
    fields = ["suite", "profile", "method", "seed", "best", "best_epoch", "last", "last_balanced_accuracy",
              "last_macro_f1", "last_mean_auc", "at_best_val", "best_val_epoch", "best_any_epoch",
              "effective_samples", "wall_seconds", "diverged", "run_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({"suite": exp.suite.name, "profile": exp.cfg.profile, **row})
    atomic_write_text(buffer.getvalue(), path)


def write_report(exp: Experiment, policy_path: Optional[str]) -> dict:
    rows = collect_rows(exp)
    columns = tuple(key for key, _ in table_columns(True)) + ("best_any_epoch", EFFECTIVE_SAMPLES[0])
    summary = aggregate(rows, columns)
    table = markdown_table(exp, summary, policy_path, rows)
    atomic_write_text(table, exp.out / "table.md")
    write_csv(rows, exp.out / "results.csv", exp)
    plots = make_plots(exp) if exp.cfg.plots and rows else []
    results = {"kind": "compare", "suite": exp.suite.name, "title": exp.suite.title, "paper": exp.suite.paper,
               "profile": exp.cfg.profile, "profile_label": exp.profile.label, "budget": exp.profile.budget,
               "methods": reported(exp)[0], "seeds": reported(exp)[1], "spec": json.loads(json.dumps(exp.spec(), default=str)),
               "config": asdict(exp.cfg), "policy": policy_path, "report_epochs": list(exp.schedule.report_epochs()),
               "environment": environment_info(), "summary": summary, "runs": rows,
               "plots": [str(p) for p in plots]}
    atomic_write_json(results, exp.out / RESULTS)
    results["table"] = table
    results["out"] = str(exp.out)
    return results


# ----------------------------------------------------------------------------------------
# Plots (LAW Fig. 3: loss gap; Fig. 4: minority weights; noisy vs clean weights)


def _load_runs(exp: Experiment) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    methods, seeds = reported(exp)
    for method in methods:
        for seed in seeds:
            path = exp.run_dir(method, seed) / RESULTS
            if path.is_file():
                results = json.loads(path.read_text())
                if results.get("history"):
                    runs.setdefault(method, []).append(results)
    return runs


def _curve(histories: list[list[dict]], value):
    from law.plots import Curve

    # Seeds of one method share their evaluation epochs; a shorter history (none so far) would truncate.
    length = min(len(h) for h in histories)
    x = [r["epoch"] for r in histories[0][:length]]
    return Curve(x, [[_finite(value(r)) for r in h[:length]] for h in histories])


def _finite(value) -> float:
    return math.nan if value is None else float(value)


def minority_classes(data: DataConfig, num_classes: int) -> list[int]:
    """Classes the imbalance profile makes smaller than the (interpolated) median class."""
    from law.noise import imbalance_counts

    counts = imbalance_counts(torch.full((num_classes,), 10_000), data.imbalance, data.imbalance_ratio,
                              data.step_minority_classes, data.step_keep_fraction).double()
    return torch.nonzero(counts < torch.quantile(counts, 0.5)).flatten().tolist()


def _relative(train: dict, group) -> Optional[float]:
    """A group's mean weight over the batch-average weight: 1 = treated like the average sample."""
    value, mean = group(train), train.get("mean_weight")
    if value is None or mean is None or not math.isfinite(value) or not mean:
        return None
    return value / mean


def _varies(curves: dict) -> bool:
    values = [v for c in curves.values() for seed in c.per_seed for v in seed if math.isfinite(v)]
    return any(abs(v - 1.0) > 1e-4 for v in values)


def _classes_mean_weight(classes: list[int]):
    """Epoch train stats -> mean weight over ``classes`` (those seen that epoch), or None."""
    def value(train: dict) -> Optional[float]:
        per = [train["mean_weight_per_class"][c] for c in classes]
        per = [v for v in per if v is not None and math.isfinite(v)]
        return sum(per) / len(per) if per else None
    return value


def _weight_panels(runs: dict[str, list[dict]], groups: dict) -> dict:
    """One panel per method whose weights vary: each group's mean weight relative to the batch mean."""
    panels = {}
    for method, results in runs.items():
        histories = [r["history"] for r in results]
        curves = {label: _curve(histories, lambda h, g=group: _relative(h["train"], g))
                  for label, group in groups.items()}
        if _varies(curves):
            panels[DISPLAY[method]] = curves
    return panels


def make_plots(exp: Experiment) -> list[Path]:
    from law.plots import plot_panels

    runs = _load_runs(exp)
    folder, paths = exp.out / "plots", []
    note = f"profile {exp.cfg.profile}: {exp.profile.label}; mean ± std over seeds {exp.cfg.seeds}"
    title = f"{exp.suite.title}"

    accuracy = {DISPLAY[m]: _curve([r["history"] for r in rs], lambda r: r["test"]["accuracy"])
                for m, rs in runs.items()}
    if accuracy:
        paths.append(plot_panels(folder / "test_accuracy.png", f"{title}: test accuracy",
                                 {"all methods": accuracy}, "epoch", "test accuracy", note))

    law_runs = [r for r in runs.get("law", []) if any(h.get("loss_gap") is not None for h in r["history"])]
    if law_runs:
        stages = [[h for h in r["history"] if h.get("loss_gap") is not None] for r in law_runs]
        gap = _curve(stages, lambda h: h["loss_gap"])
        paths.append(plot_panels(folder / "loss_gap.png", f"{title}: training loss gap, LAW target − reference",
                                 {"per stage (LAW Fig. 3)": {"target − reference": gap}}, "epoch (stage end)",
                                 "mean training loss gap", note, hline=0.0))

    if exp.data.noise != "none":
        panels = _weight_panels(runs, {group: lambda t, g=group: t.get(f"mean_weight_{g}")
                                       for group in ("noisy", "clean")})
        if panels:
            paths.append(plot_panels(folder / "weights_noisy_clean.png",
                                     f"{title}: mean weight of noisy vs clean samples",
                                     panels, "epoch", "mean weight / batch mean", note, hline=1.0))

    if exp.data.imbalance != "none" and runs:
        num_classes = next(iter(runs.values()))[0]["dataset"]["num_classes"]
        minority = minority_classes(exp.data, num_classes)
        others = [c for c in range(num_classes) if c not in minority]
        panels = _weight_panels(runs, {f"minority classes {minority}": _classes_mean_weight(minority),
                                       "other classes": _classes_mean_weight(others)})
        if panels:
            paths.append(plot_panels(folder / "weights_minority.png",
                                     f"{title}: mean weight of minority vs other classes (LAW Fig. 4)",
                                     panels, "epoch", "mean weight / batch mean", note, hline=1.0))
    return paths


# ----------------------------------------------------------------------------------------
# Command line: `law compare` and the scripts/ wrappers


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare weighting methods on a benchmark suite (tables, plots)",
                       description="Train every method on identical data, schedule and seeds; LAW applies "
                                   "--policy or a policy searched first. Writes table.md, results.csv, "
                                   "results.json, plots/ and TensorBoard runs; re-running continues.")
    add_config_args(p, CompareConfig)
    p.set_defaults(handler=run_compare_command)


def run_compare_command(args: argparse.Namespace) -> int:
    results = compare(config_from_args(CompareConfig, args))
    print(results["table"])
    print(f"results: {results['out']}/table.md  results.csv  results.json   "
          f"tensorboard --logdir {results['out']}/runs")
    return 0


def add_script_args(parser: argparse.ArgumentParser) -> None:
    """The flags every benchmark script shares, named as in torchvision's references."""
    parser.add_argument("--data-path", "--data-root", dest="data_root", default="",
                        help="folder with train/<class>/ and test/<class>/ images, or torchvision's CIFAR files")
    parser.add_argument("--noise-file", default="", help="suite cifar10n: the CIFAR-10N label file CIFAR-10_human.pt")
    parser.add_argument("--output-dir", default="runs/compare", help="folder that receives the comparison folder")
    parser.add_argument("--profile", default="cpu", choices=PROFILES,
                        help="cpu: ~1 h on 2 cores; paper: the paper's settings (GPUs); smoke: seconds")
    parser.add_argument("--methods", default=",".join(METHOD_ORDER), help="comma-separated methods")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--policy", default="", help="LAW policy file; default: search one first")
    parser.add_argument("--episodes", type=int, default=0, help="search episodes (0: the suite's)")
    parser.add_argument("--search-workers", dest="workers", type=int, default=0,
                        help="search env workers (0: the suite's)")
    parser.add_argument("--address", default="", help="Ray cluster address (default: local)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: the suite's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--train-workers", type=int, default=-1,
                        help="data-parallel Ray Train workers per run, one per GPU (-1: the suite's)")
    parser.add_argument("--name", default="", help="comparison folder name (default: {suite}__{profile})")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no progress lines")


def script_main(args: argparse.Namespace, suite: str, **fields) -> int:
    """Run a comparison from a script's parsed flags; prints the table."""
    names = {f for f in CompareConfig.__dataclass_fields__}
    given = {k: v for k, v in vars(args).items() if k in names}
    try:
        results = compare(CompareConfig(**(given | {"suite": suite} | fields)))
    except LawError as error:
        print(f"error: {error}")
        return 2
    print(results["table"])
    print(f"results: {results['out']}")
    return 0
