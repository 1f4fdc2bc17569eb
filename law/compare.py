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

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from typing import Optional

import torch

from law.bench.experiment import (RESULTS, CompareConfig, Experiment, build_experiment, check_spec,
                                  say)
from law.bench.policy import ensure_policy
from law.bench.report import write_report
from law.bench.runs import run_one
from law.distributed import SUPPORTED_METHODS
from law.errors import ConfigError
from law.records import summarise

__all__ = ["CompareConfig", "compare"]


def compare(cfg: CompareConfig) -> dict:
    """Run (or continue) a comparison; writes table.md, results.csv, results.json and plots."""
    exp = build_experiment(cfg)
    if exp.train_workers and cfg.export_weights:
        raise ConfigError("export_weights", f"data-parallel runs (profile {cfg.profile} of {exp.suite.name}) "
                                            "do not export sample weights; add --train-workers 0 to train each "
                                            "run in one process")
    if cfg.export_weights and exp.schedule.epochs_per_stage != int(exp.schedule.epochs_per_stage):
        raise ConfigError("export_weights", "the baselines' stages must be whole epochs to export weights")
    if exp.train_workers:
        unsupported = [m for m in exp.methods if m not in SUPPORTED_METHODS]
        if unsupported:
            raise ConfigError("methods", f"{', '.join(unsupported)} cannot train data-parallel (profile "
                                         f"{cfg.profile} of {exp.suite.name}); drop them from --methods")
    check_spec(exp)
    policy_path = ensure_policy(exp) if "law" in exp.methods else None
    pending = [(m, s) for s in exp.seeds for m in exp.methods if not (exp.run_dir(m, s) / RESULTS).is_file()]
    done = len(exp.methods) * len(exp.seeds) - len(pending)
    if done:
        say(exp, f"{done} run(s) already finished in {exp.out}, skipped")
    if cfg.jobs > 1 and len(pending) > 1:
        _run_parallel(exp, pending, policy_path)
    else:
        for i, (method, seed) in enumerate(pending, 1):
            say(exp, f"[{i}/{len(pending)}] {method} seed {seed}")
            row = run_one(cfg, method, seed, policy_path, cfg.progress)
            _report_run(exp, row)
    return write_report(exp, policy_path)


def _run_parallel(exp: Experiment, pending: list, policy_path: Optional[str]) -> None:
    cfg = exp.cfg
    total_threads = exp.threads or torch.get_num_threads()
    child_cfg = replace(cfg, threads=max(1, total_threads // cfg.jobs))
    with ProcessPoolExecutor(cfg.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, child_cfg, m, s, policy_path, False) for m, s in pending]
        for i, future in enumerate(as_completed(futures), 1):
            row = future.result()
            say(exp, f"[{i}/{len(pending)}] finished")
            _report_run(exp, row)


def _report_run(exp: Experiment, row: dict) -> None:
    results = json.loads((exp.run_dir(row["method"], row["seed"]) / RESULTS).read_text())
    if results.get("kind") == "diverged":
        say(exp, f"  {row['method']} seed {row['seed']}: {results.get('status', 'diverged')}")
        return
    metrics = summarise(results["history"], exp.schedule.report_epochs())
    say(exp, f"  {row['method']} seed {row['seed']}: best {100 * metrics['best']:.2f}  "
              f"last {100 * metrics['last']:.2f}  ({row['wall_seconds'] / 60:.1f} min)")
