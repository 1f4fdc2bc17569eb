#!/usr/bin/env python
"""Does the search work? The searched policy against random search and hand-set schedules.

At equal budget (the same episodes and the same periodic greedy evaluations),
on one task (the offline ``quick`` preset, or a suite's profile such as
``cifar10-noisy`` / ``cpu``):

1. search ``--search-seeds`` times with each agent (``ddpg``, the LAW search,
   and ``random``, random stage-wise schedules kept by validation);
2. run each search's ``policy.pt`` greedily on episode seeds the search never
   saw, exactly as ``law apply --policy P --seed S`` does, and read its final
   gap over its unweighted twin on the clean validation split and on test;
3. run a family of hand-set schedules the same way: neutral (all weights 1),
   constant down-weighting of high-loss samples (``theta_loss = -action_scale``,
   the lowest ``b``), and that down-weighting from stage ``k`` on, for every
   stage after the warm-up. Two of them are singled out: the best on the
   bench's validation (in hindsight: picked on the very seeds it is reported
   on, so optimistic), and for each search seed the one a user would keep with
   what that search knew: every schedule run on the search's own greedy
   evaluation episodes (its data draw and evaluation seeds), the best kept.

Every choice is made on validation; test numbers are reported, never used.
Writes ``table.md``, ``results.json`` and ``learning_curve.png`` (greedy
validation gap against episodes) under ``--output-dir``; re-running resumes
(finished searches and evaluations are kept, an interrupted search continues).

    python scripts/bench_search_quality.py --task quick
    python scripts/bench_search_quality.py --task cifar10-noisy --profile cpu --data-root DIR
    python scripts/bench_search_quality.py --task cifar10n --profile cpu --data-root DIR --noise-file CIFAR-10_human.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import SchedulePolicy  # noqa: E402
from envs import StageWeightingEnv  # noqa: E402
from law.apply import ApplyConfig, apply_policy, rollout  # noqa: E402
from law.bench.experiment import CompareConfig, build_experiment  # noqa: E402
from law.bench.policy import search_configs  # noqa: E402
from law.config import to_dict  # noqa: E402
from law.records import mean_std  # noqa: E402
from law.errors import ConfigError, LawError  # noqa: E402
from law.io import atomic_save, atomic_write_json, atomic_write_text, environment_info  # noqa: E402
from law.policy_file import load_policy, policy_env_config, policy_file, policy_task  # noqa: E402
from law.presets import search_preset  # noqa: E402
from law.search import AGENTS, CHECKPOINT, OPERATIONAL, evaluation_seeds, resume_search, search  # noqa: E402
from law.search.priors import (constant_schedule, fit_to_class_balanced, imbalanced,  # noqa: E402
                               sharp_loss_action)
from law.data import load_data  # noqa: E402
from law.methods import MethodConfig  # noqa: E402

QUICK_TASKS = ("quick", "quick-longtail")
"""Tasks that are search presets (offline, embedded data) rather than suites."""

SEARCH_SECTIONS = ("SearchConfig", "EnvConfig", "DataConfig", "OptimConfig", "DDPGConfig")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--task", default="quick", help="quick or quick-longtail (the offline search presets) or a "
                                                        "suite, e.g. cifar10-noisy")
    parser.add_argument("--profile", default="cpu", help="the suite's profile (ignored for the quick presets)")
    parser.add_argument("--data-root", "--data-path", dest="data_root", default="", help="the suite's data")
    parser.add_argument("--noise-file", default="", help="suite cifar10n: the CIFAR-10N label file (CIFAR-10_human.pt)")
    parser.add_argument("--agents", default=",".join(AGENTS),
                        help="search agents to compare ('none': only the hand-set schedules)")
    parser.add_argument("--search-seeds", default="0,1,2", help="one search per agent and seed")
    parser.add_argument("--eval-seeds", default="1,2,3",
                        help="episode seeds each final policy is run on (none of the search's own seeds)")
    parser.add_argument("--episodes", type=int, default=0, help="training episodes per search (0: the task's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change one setting of the task, e.g. OptimConfig.lr=0.05 (repeatable)")
    parser.add_argument("--name", default="", help="results folder under --output-dir (default: the task)")
    parser.add_argument("--jobs", type=int, default=2, help="evaluation runs at a time (one thread each)")
    parser.add_argument("--output-dir", default="runs/bench_search_quality")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument("--quiet", dest="progress", action="store_false")
    return parser


def parse_ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise ConfigError(name, f"comma-separated integers, got '{text}'") from error
    if not values or len(set(values)) != len(values):
        raise ConfigError(name, f"distinct integers, got '{text}'")
    return values


def task_configs(args) -> tuple:
    """(SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig) of the task's search."""
    if args.task in QUICK_TASKS:
        preset = search_preset(args.task)
        configs = tuple(preset[name] for name in SEARCH_SECTIONS)
    else:
        configs = search_configs(build_experiment(CompareConfig(suite=args.task, profile=args.profile,
                                                                data_root=args.data_root,
                                                                noise_file=args.noise_file)))
    if args.episodes:
        configs = (dataclasses.replace(configs[0], episodes=args.episodes),) + configs[1:]
    return apply_overrides(configs, args.overrides)


def apply_overrides(configs: tuple, overrides: list[str]) -> tuple:
    """``SECTION.FIELD=VALUE`` settings (the value parsed as JSON, else taken as text)."""
    configs = list(configs)
    for item in overrides:
        key, _, text = item.partition("=")
        section, _, name = key.partition(".")
        if section not in SEARCH_SECTIONS or not text:
            raise ConfigError("set", f"give SECTION.FIELD=VALUE with SECTION one of {', '.join(SEARCH_SECTIONS)}, "
                                     f"got '{item}'")
        index = SEARCH_SECTIONS.index(section)
        if name not in {f.name for f in dataclasses.fields(configs[index])}:
            raise ConfigError("set", f"{section} has no field '{name}'")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        configs[index] = dataclasses.replace(configs[index], **{name: tuple(value) if isinstance(value, list)
                                                                else value})
    return tuple(configs)


# ----------------------------------------------------------------------------------------
# Searches


# Settings that may differ between a kept search and this run: where and how it ran, and
# the two that the search's folder name already fixes.
NOT_TASK = {"SearchConfig": set(OPERATIONAL) | {"output_dir", "run_name", "resume", "agent", "seed"},
            "DataConfig": {"data_root"}, "DDPGConfig": {"seed"}}


def check_same_task(saved: dict, configs: tuple, run_dir: Path) -> None:
    """Refuse to report a kept search (or resume one) that searched another task or budget."""
    wanted = json.loads(json.dumps(to_dict(*configs)))
    for section, fields in wanted.items():
        for name, value in fields.items():
            if name not in NOT_TASK.get(section, ()) and saved.get(section, {}).get(name) != value:
                raise ConfigError(f"{section}.{name}", f"{run_dir} searched with {saved.get(section, {}).get(name)!r}, "
                                                       f"this run asks for {value!r}; give --name another folder")


def run_search(configs: tuple, agent: str, seed: int, folder: Path, progress: bool) -> dict:
    """One search of the task with ``agent`` and ``seed``, resumed or skipped if already there."""
    run_dir = folder / f"{agent}__seed{seed}"
    if (run_dir / "results.json").is_file():
        results = json.loads((run_dir / "results.json").read_text())
        check_same_task(results["config"], configs, run_dir)
        return results
    started = time.perf_counter()
    if (run_dir / CHECKPOINT).is_file():
        check_same_task(torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)["config"], configs,
                        run_dir)
        results = resume_search(run_dir, progress=progress)
    else:
        search_cfg = dataclasses.replace(configs[0], agent=agent, seed=seed, output_dir=str(folder),
                                         run_name=run_dir.name, progress=progress)
        results = search(search_cfg, *configs[1:])
    results["wall_seconds"] = time.perf_counter() - started  # of this call (a resumed search: the rest)
    atomic_write_json({k: v for k, v in results.items() if k != "run_dir"}, run_dir / "results.json")
    return results


# ----------------------------------------------------------------------------------------
# Hand-set schedules


def hand_set_schedules(configs: tuple) -> dict[str, np.ndarray]:
    """Neutral, the sharp loss rule at every acting stage ("constant") and from each later stage on,
    and on imbalanced data the class-balanced fit (the search's prior, from the class counts alone)."""
    env_cfg, data_cfg = configs[1], configs[2]
    if "loss" not in env_cfg.features:
        raise ConfigError("features", "the hand-set schedules down-weight by loss; the task's search has no "
                                      "loss feature")
    down, first = sharp_loss_action(env_cfg), env_cfg.warmup_stages
    schedules = {"neutral": constant_schedule(env_cfg, np.zeros(env_cfg.action_dim, np.float32))}
    for start in range(first, env_cfg.num_stages):
        schedules["constant" if start == first else f"from stage {start}"] = constant_schedule(env_cfg, down, start)
    counts = load_data(data_cfg, seed=env_cfg.data_seed).class_counts
    if "label" in env_cfg.features and imbalanced(counts):
        action, _ = fit_to_class_balanced(counts, env_cfg, MethodConfig().cb_beta, data_cfg.batch_size)
        schedules["class-balanced fit"] = constant_schedule(env_cfg, action)
    return schedules


def write_hand_set(configs: tuple, folder: Path) -> dict[str, str]:
    env_cfg = configs[1]
    config = to_dict(*configs)
    paths = {}
    for name, table in hand_set_schedules(configs).items():
        path = folder / f"{name.replace(' ', '_')}.pt"
        atomic_save(policy_file(SchedulePolicy(table).state_dict(), env_cfg, config,
                                selection={"hand_set": name}), path)
        paths[name] = str(path)
    return paths


def hand_set_task(configs: tuple) -> dict:
    """What the hand-set gaps on the search's episodes depend on: its env, data (wherever its files lie) and
    optimiser."""
    _, env_cfg, data_cfg, optim_cfg = configs[:4]
    data_cfg = dataclasses.replace(data_cfg, data_root="", noise_file="")
    return json.loads(json.dumps(to_dict(env_cfg, data_cfg, optim_cfg)))


def kept_hand_set_gaps(path: Path, task: dict) -> dict[str, float] | None:
    """The gaps kept in ``path`` (None if there are none); refuses those of another task."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved["task"] != task:
        raise ConfigError("name", f"{path} holds the hand-set schedules of another task; give --name another folder")
    return saved["gaps"]


def hand_set_on_search_episodes(configs: tuple, episode_seed: int, folder: Path) -> dict[str, float]:
    """Final validation gap of every hand-set schedule on one greedy evaluation episode of the
    search: the search's data draw, episode seed ``episode_seed`` (one twin, trained once)."""
    path, task = folder / f"episode_seed{episode_seed}.json", hand_set_task(configs)
    kept = kept_hand_set_gaps(path, task)
    if kept is not None:
        return kept
    _, env_cfg, data_cfg, optim_cfg = configs[:4]
    env = StageWeightingEnv(env_cfg, data_cfg, optim_cfg, device="cuda" if torch.cuda.is_available() else "cpu")
    gaps, twin = {}, None
    for name, table in hand_set_schedules(configs).items():
        last = rollout(env, SchedulePolicy(table), episode_seed, twin=twin)[-1]
        twin = twin or env.recorded_twin  # the twin depends on the seed only: trained once
        gaps[name] = last["acc_target"] - last["acc_reference"]
    env.close()
    atomic_write_json({"task": task, "gaps": gaps}, path)
    return gaps


def pick_hand_set(configs: tuple, search_seeds: list[int], folder: Path, jobs: int) -> dict[int, dict]:
    """For each search seed, the hand-set schedule with the best mean gap on that search's
    greedy evaluation episodes: the pick a user could make with the search's information."""
    seeds = {s: evaluation_seeds(dataclasses.replace(configs[0], seed=s)) for s in search_seeds}
    episodes = sorted({e for chosen in seeds.values() for e in chosen})
    task = hand_set_task(configs)
    gaps = {e: kept for e in episodes if (kept := kept_hand_set_gaps(folder / f"episode_seed{e}.json", task))}
    missing = [e for e in episodes if e not in gaps]
    with ProcessPoolExecutor(max_workers=jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        gaps.update(zip(missing, pool.map(hand_set_on_search_episodes, [configs] * len(missing), missing,
                                          [folder] * len(missing))))
    picks = {}
    for s, chosen in seeds.items():
        scores = {name: float(np.mean([gaps[e][name] for e in chosen])) for name in gaps[chosen[0]]}
        best = max(scores, key=scores.get)
        picks[s] = {"schedule": best, "score": scores[best], "episode_seeds": chosen}
    return picks


# ----------------------------------------------------------------------------------------
# Evaluation: `law apply --policy P --seed S`


def evaluate_one(policy_path: str, seed: int, run_dir: str) -> dict:
    """Final validation and test gap of the policy over its twin on episode seed ``seed``."""
    result_file = Path(run_dir) / "results.json"
    if not result_file.is_file():
        policy = load_policy(policy_path)
        data_cfg, optim_cfg = policy_task(policy)
        apply_policy(ApplyConfig(policy=policy_path, seed=seed, threads=1, output_dir=str(Path(run_dir).parent),
                                 run_name=Path(run_dir).name, progress=False),
                     policy_env_config(policy, {}), data_cfg, optim_cfg, policy)
    saved = json.loads(result_file.read_text())
    last, test = saved["stages"][-1], saved["test"]
    return {"seed": seed, "val_gap": last["acc_target"] - last["acc_reference"],
            "test_gap": test["target"]["accuracy"] - test["reference"]["accuracy"]}


def evaluate_all(policies: dict[str, str], seeds: list[int], folder: Path, jobs: int) -> dict[str, list[dict]]:
    work = [(name, path, seed, str(folder / name.replace(" ", "_") / f"seed{seed}"))
            for name, path in policies.items() for seed in seeds]
    with ProcessPoolExecutor(max_workers=jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [(name, pool.submit(evaluate_one, path, seed, run_dir)) for name, path, seed, run_dir in work]
        results: dict[str, list[dict]] = {name: [] for name in policies}
        for name, future in futures:
            results[name].append(future.result())
    return results


# ----------------------------------------------------------------------------------------
# Report


def fmt(values: list[float]) -> str:
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:+.1f}" + (f" ± {std:.1f}" if math.isfinite(std) else "")


def report(args, configs, searches: dict, evaluations: dict, hand_set: dict, picks: dict) -> tuple[str, dict]:
    search_cfg = configs[0]
    eval_seeds = parse_ints(args.eval_seeds, "eval_seeds")
    rows, summary = [], {}
    for agent, runs in searches.items():
        per_search_val = [np.mean([e["val_gap"] for e in evaluations[f"{agent}__seed{s}"]]) for s in runs]
        per_search_test = [np.mean([e["test_gap"] for e in evaluations[f"{agent}__seed{s}"]]) for s in runs]
        selection = [runs[s]["best"]["val_gap"] for s in runs]
        # The search loop (episodes and FDU), summed over resumes; Ray start-up excluded.
        minutes = [runs[s]["search_seconds"] / 60 for s in runs]
        greedy = sum(len(r["gaps"]) for r in runs[next(iter(runs))]["evaluations"])
        judged = sum(len(r["gaps"]) for r in runs[next(iter(runs))].get("priors", []))
        final = sum(len(r["gaps"]) for r in runs[next(iter(runs))].get("finalists", []))
        devices = sorted({runs[s].get("environment", {}).get("cuda") or "CPU" for s in runs})
        # Which searches kept a prior (nothing they searched beat it on their evaluation seeds).
        kept_prior = [runs[s]["best"].get("prior") for s in runs]
        kept = sum(p is not None for p in kept_prior)
        rows.append((f"search: {agent}", f"{len(runs)} searches" + (f" ({kept} kept a prior)" if kept else ""),
                     fmt(per_search_val), fmt(per_search_test), fmt(selection),
                     f"{search_cfg.episodes} + {greedy} greedy" + (f" + {judged} prior" if judged else "")
                     + (f" + {final} final" if final else ""),
                     f"{np.nanmean(minutes):.1f} ({', '.join(devices)})"))
        summary[agent] = {"val_gap": mean_std(per_search_val), "test_gap": mean_std(per_search_test),
                          "per_search_val": per_search_val, "per_search_test": per_search_test,
                          "selection_val_gap": selection, "search_minutes": minutes, "kept_prior": kept_prior,
                          "start_point": [runs[s].get("start_point") for s in runs],
                          "improvement_on_start": [runs[s].get("improvement") for s in runs]}
    hand_val = {name: np.mean([e["val_gap"] for e in evaluations[name]]) for name in hand_set}
    best = max(hand_val, key=hand_val.get)
    for name in hand_set:
        val = [e["val_gap"] for e in evaluations[name]]
        test = [e["test_gap"] for e in evaluations[name]]
        label = f"hand-set: {name}" + (" (best on val)" if name == best else "")
        rows.append((label, f"{len(val)} seeds", fmt(val), fmt(test), "", "", ""))
        summary[f"hand-set: {name}"] = {"val_gap": mean_std(val), "test_gap": mean_std(test)}
    summary["best_hand_set"] = best
    mean_gap = {(name, split): float(np.mean([e[f"{split}_gap"] for e in evaluations[name]]))
                for name in hand_set for split in ("val", "test")}
    picked = [picks[s]["schedule"] for s in sorted(picks)]
    rows.append(("hand-set: picked on each search's evaluation episodes", f"{len(picked)} picks",
                 fmt([mean_gap[name, "val"] for name in picked]), fmt([mean_gap[name, "test"] for name in picked]),
                 fmt([picks[s]["score"] for s in sorted(picks)]),
                 f"{len(hand_set)} x {len(next(iter(picks.values()))['episode_seeds'])} greedy", ""))
    summary["hand_set_picked_per_search"] = {
        "val_gap": mean_std([mean_gap[name, "val"] for name in picked]),
        "test_gap": mean_std([mean_gap[name, "test"] for name in picked]),
        "picks": {str(s): picks[s] for s in sorted(picks)}}
    task = (args.task if args.task in QUICK_TASKS else f"{args.task} / {args.profile}") + "".join(
        f", {item}" for item in args.overrides)
    lines = [f"### Search quality: {task}", "",
             f"Final gap of the greedy policy over its unweighted twin, in accuracy points, run as "
             f"`law apply --policy P --seed S` on episode seeds {', '.join(map(str, eval_seeds))} (never seen by "
             "a search). Searches: mean ± std over search seeds of each policy's mean over those seeds; "
             "hand-set: mean ± std over the seeds. \"selected on\" is the search's own greedy-evaluation score "
             "(validation: its evaluation seeds, and its final seeds where it judged finalists) of the policy it kept. \"best on val\" is picked on the bench's "
             "own seeds (in hindsight, so optimistic); \"picked on each search's evaluation episodes\" is the "
             f"schedule a user could pick with a search's information ({', '.join(picked)}).", "",
             "| policy | n | val gap | test gap | selected on (val) | episodes per search | min per search (rounds; where) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n", summary


def plot_learning_curves(path: Path, searches: dict, summary: dict, title: str) -> None:
    from law.plots import Curve, plot_panels

    curves = {}
    for agent, runs in searches.items():
        x = [r["after_episodes"] for r in next(iter(runs.values()))["evaluations"]]
        per_seed = [[100 * r["score"] for r in run["evaluations"]] for run in runs.values()]
        curves[f"{agent} (greedy, its evaluation seeds)"] = Curve(x, per_seed)
    best = summary["best_hand_set"]
    if curves:
        x = next(iter(curves.values())).x
        value = 100 * summary[f"hand-set: {best}"]["val_gap"][0]
        curves[f"best hand-set ({best}), bench seeds"] = Curve(x, [[value] * len(x)])
    plot_panels(path, title, {"greedy policy during the search": curves}, "training episodes",
                "val gap over twin (points)", hline=0.0,
                footnote="mean ± std over search seeds; validation split only")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        agents = [a.strip() for a in args.agents.split(",") if a.strip() and a.strip() != "none"]
        if set(agents) - set(AGENTS) or (not agents and args.agents.strip() != "none"):
            raise ConfigError("agents", f"choose from {', '.join(AGENTS)}, got '{args.agents}'")
        search_seeds = parse_ints(args.search_seeds, "search_seeds")
        eval_seeds = parse_ints(args.eval_seeds, "eval_seeds")
        configs = task_configs(args)
        out = Path(args.output_dir) / (args.name or (args.task if args.task in QUICK_TASKS
                                                    else f"{args.task}__{args.profile}"))
        searches = {agent: {seed: run_search(configs, agent, seed, out / "searches", args.progress)
                            for seed in search_seeds} for agent in agents}
        policies = {f"{agent}__seed{seed}": runs[seed]["policy"] for agent, runs in searches.items()
                    for seed in runs}
        hand_set = write_hand_set(configs, out / "hand_set")
        picks = pick_hand_set(configs, search_seeds, out / "hand_set_on_search_episodes", args.jobs)
        evaluations = evaluate_all({**policies, **hand_set}, eval_seeds, out / "eval", args.jobs)
    except LawError as error:
        print(f"bench_search_quality: error: {error}", file=sys.stderr)
        return 2
    table, summary = report(args, configs, searches, evaluations, hand_set, picks)
    atomic_write_text(table, out / "table.md")
    atomic_write_json({"task": args.task, "profile": args.profile, "summary": summary,
                       "evaluations": evaluations, "config": to_dict(*configs),
                       "search_seeds": search_seeds, "eval_seeds": eval_seeds,
                       "environment": environment_info()}, out / "results.json")
    if args.plots:
        plot_learning_curves(out / "learning_curve.png", searches, summary,
                             f"Greedy validation gap during the search: {args.task}")
    print(table)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
