"""One run of a comparison: a baseline (``law train``), LAW applied stage by stage, or data-parallel."""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from envs import EnvConfig, StageWeightingEnv
from law.apply import rollout
from law.bench.experiment import RESULTS, RUN_INFO, CompareConfig, Experiment, build_experiment
from law.bench.policy import cluster_has_gpus
from law.config import to_dict
from law.distributed import DistributedConfig, StageJob, train_data_parallel
from law.errors import TrainingFailed
from law.io import atomic_write_json, environment_info
from law.logging import RunLogger
from law.policy_file import greedy_policy, load_policy, policy_env_config
from law.progress import ProgressLine
from law.records import Record, summarise
from law.sample_weights import SampleWeightsLog
from law.train import RunConfig, resolve_device, seed_everything, train

def train_law(exp: Experiment, policy_path: str, seed: int, run_dir: Path, progress: bool) -> dict:
    """LAW on seed ``seed``: the policy acts greedily once per stage; test metrics at each
    stage end (for reporting only: nothing is chosen by them)."""
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
    if exp.cfg.export_weights:
        env.sample_log = SampleWeightsLog(run_dir, env.bundle, twin=exp.profile.law_reference)
    logger = RunLogger(run_dir, config)
    bar = ProgressLine(s.num_stages - s.warmup_stages, f"law seed {seed}", enabled=progress)
    history: list[Record] = []

    def record(info: dict, action=None, reward: float = 0.0, warmup: bool = False) -> None:
        history.append(_law_record(env, info, action, reward, warmup=warmup))
        logger.log_epoch(history[-1])

    def on_reset(info: dict) -> None:
        if s.warmup_stages:
            record(info, warmup=True)

    def on_stage(stage: dict) -> None:
        record(stage, stage["action"], stage["reward"])
        bar.update(len(history) - (1 if s.warmup_stages else 0), f"test {history[-1]['test']['accuracy']:.3f}")

    try:
        rollout(env, greedy_policy(policy), seed, on_stage=on_stage, on_reset=on_reset)
    except BaseException:
        if env.sample_log is not None:
            env.sample_log.discard()
        raise
    finally:
        logger.close()
    if env.sample_log is not None:
        env.sample_log.close()
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
    run = RunConfig(model=exp.model, epochs=exp.schedule.epochs, seed=seed, device=exp.cfg.device,
                    threads=exp.threads, output_dir=str(run_dir.parent), run_name=run_dir.name,
                    progress=progress, export_weights=exp.cfg.export_weights,
                    stage_epochs=int(exp.schedule.epochs_per_stage))
    return train(run, exp.data, exp.schedule.baseline_optim(exp.profile.optim),
                 replace(exp.profile.method, method=method))


def train_distributed(exp: Experiment, method: str, seed: int, run_dir: Path, policy_path: str) -> dict:
    use_gpu = cluster_has_gpus(exp.cfg)
    dist = DistributedConfig(workers=exp.train_workers, use_gpu=use_gpu,
                             cpus_per_worker=float(max(1, exp.threads)), address=exp.cfg.address)
    job = StageJob(exp.model, exp.data, exp.profile.optim, exp.schedule,
                   replace(exp.profile.method, method=method), seed,
                   policy=load_policy(policy_path) if method == "law" else None)
    results = train_data_parallel(dist, job, run_dir)
    with RunLogger(run_dir, {"job": {"method": method, "seed": seed, "model": exp.model}}) as logger:
        for record in results["history"]:
            logger.log_epoch(record)
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
