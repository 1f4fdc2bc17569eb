"""A comparison's report: per-run metrics, aggregation over seeds, table.md, results.csv, results.json."""
from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from law.bench.experiment import DISPLAY, RESULTS, RUN_INFO, Experiment, reported
from law.bench.figures import make_plots
from law.bench.policy import search_configs
from law.data import DataConfig
from law.io import atomic_write_json, atomic_write_text, environment_info
from law.records import mean_std, summarise

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
                rows.append(base | {"diverged": results["error"], "status": results.get("status", "diverged")})
                continue
            rows.append(base | summarise(results["history"], report))
            if method == "law" and results["history"][-1].get("reference"):
                rows.append(base | {"method": "law-twin"} | summarise(results["history"], report, twin=True))
    return rows


def aggregate(rows: list[dict], columns: tuple[str, ...]) -> dict[str, dict]:
    """Per method: n, and mean/std of each column over its seeds."""
    table: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if "diverged" not in r]
        entry = {"n": len(ok), "diverged": len(mine) - len(ok), "seeds": [r["seed"] for r in ok],
                 "stopped": [r.get("status", "diverged") for r in mine if "diverged" in r]}
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
        stopped = Counter(entry["stopped"])  # diverged (NaN loss) or collapsed (one class)
        note = " (" + ", ".join(f"{n} {status}" for status, n in sorted(stopped.items())) + ")" if stopped else ""
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
    if data.noise == "cifar10n":
        bias.append(f"CIFAR-10N human labels '{data.noise_label}'")
    elif data.noise != "none":
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
              "effective_samples", "wall_seconds", "status", "diverged", "run_dir"]
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
