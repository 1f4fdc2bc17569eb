"""``law inspect``: the samples a run's weighting discounts most, and how well it finds mislabelled ones.

On a run folder with ``sample_weights.csv`` (``--export-weights``) it writes
``suspects.csv`` (the top ``k`` by the chosen rule), ``inspection.json`` (every
detector of ``law.detection`` per stage and over the run, where the label truth
is known) and ``inspection.png``, and prints the table. On a ``law compare``
folder it inspects every run that exported weights and writes ``detection.md``
and ``detection.json``: each method's detectors, mean +- std over seeds.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import tyro

from law.bench.experiment import DISPLAY
from law.detection import (DETECTORS, RULES, SampleTable, default_k, find_sample_table, judge,
                           read_sample_table, top_k)
from law.errors import ConfigError, LawError
from law.io import atomic_write_json, atomic_write_text
from law.records import mean_std
from law.sample_weights import FILENAME

SUSPECTS = "suspects.csv"


@dataclass
class InspectConfig:
    """Which run to inspect, and how to rank its suspects."""

    run_dir: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")] = ""
    """A run folder that exported its weights (law train / apply / compare --export-weights), or a law compare folder."""
    rule: str = "weight"
    """What ranks the suspects: weight (lowest mean weight first), discounted-loss (loss x (1 - weight): the loss
    the weighting took out of the step), small-loss (highest loss first, the weights ignored)."""
    top: int = 0
    """Suspects listed, and the k of precision@k / recall@k (0: as many as the labels known to be wrong, else 5 %
    of the training set)."""
    plots: bool = True
    """Write inspection.png (needs matplotlib)."""

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("run_dir", "is required: law inspect runs/<id> (a run made with --export-weights)")
        if self.rule not in RULES:
            raise ConfigError("rule", f"unknown rule '{self.rule}'; known: {', '.join(RULES)}")
        if self.top < 0:
            raise ConfigError("top", f"must be >= 0, got {self.top}")


def inspect(cfg: InspectConfig) -> dict:
    """Inspect one run, or every run of a comparison; returns what was written to JSON."""
    cfg.validate()
    folder = Path(cfg.run_dir)
    if (folder / "compare.json").is_file():
        return inspect_comparison(folder, cfg)
    path = find_sample_table(folder)
    report = inspect_run(folder, read_sample_table(path), cfg)
    print(run_table(folder, report))
    return report


def inspect_run(run_dir: Path, table: SampleTable, cfg: InspectConfig) -> dict:
    """suspects.csv, inspection.json and the plot of one run."""
    k = min(cfg.top or default_k(table), table.num_samples)
    report = judge(table, k) | {"rule": cfg.rule}
    scores = table.run_scores(cfg.rule)
    chosen = top_k(scores, k)
    weight, loss = table.run_scores("weight"), table.run_scores("small-loss")
    out = StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "path", "label", "score", "weight", "loss"])
    writer.writerows([table.index[i], table.path[i], table.label[i], f"{scores[i]:.6g}", f"{-weight[i]:.6g}",
                      f"{loss[i]:.6g}"] for i in chosen)
    atomic_write_text(out.getvalue(), run_dir / SUSPECTS)
    atomic_write_json(report, run_dir / "inspection.json")
    if cfg.plots:
        plot_run(run_dir / "inspection.png", table, report)
    return report


def _cell(metrics: Optional[dict], key: str = "auroc") -> str:
    return f"{metrics[key]:.3f}" if metrics and math.isfinite(metrics[key]) else "—"


def run_table(run_dir: Path, report: dict) -> str:
    """The printed view of one run's report."""
    known = report["noisy_fraction"] is not None
    detectors = [d for d in DETECTORS if any(stage.get(d) for stage in report["stages"])]
    lines = [f"law inspect: {run_dir}: {report['samples']} training samples, "
             + (f"{report['noisy_fraction']:.1%} of their labels known to be wrong" if known
                else "label truth unknown (no noise applied): suspects only"),
             ""]
    if known:
        lines.append("| stage | weights act | mean weight mislabelled / clean | "
                     + " | ".join(f"AUROC {DETECTORS[d]}" for d in detectors) + " |")
        lines.append("|---:|:-:|---:|" + "---:|" * len(detectors))
        for s in report["stages"]:
            weights = f"{s['mean_weight_noisy']:.2f} / {s['mean_weight_clean']:.2f}" \
                if s.get("mean_weight_noisy") is not None and s.get("mean_weight_clean") is not None else "—"
            lines.append(f"| {s['stage']} | {'yes' if s['acting'] else 'no'} | {weights} | "
                         + " | ".join(_cell(s.get(d)) for d in detectors) + " |")
        k = report["k"]
        lines += ["", f"over the acting stages {report['acting_stages'] or '(none: all stages)'}:"]
        for d in detectors:
            m = report["run"].get(d)
            if m:
                lines.append(f"  {DETECTORS[d]:<18} AUROC {_cell(m)}  precision@{k} {_cell(m, 'precision_at_k')}"
                             f"  recall@{k} {_cell(m, 'recall_at_k')}")
    lines.append(f"\nsuspects: {run_dir / SUSPECTS} (the {report['k']} ranked first by {report['rule']})"
                 f"   details: {run_dir / 'inspection.json'}")
    return "\n".join(lines)


def plot_run(path: Path, table: SampleTable, report: dict) -> None:
    """Weight against loss over the acting stages, mislabelled and clean coloured; AUROC per stage."""
    from law.plots import require_matplotlib

    plt = require_matplotlib()
    known = table.noisy is not None
    figure, axes = plt.subplots(1, 2 if known else 1, figsize=(11 if known else 5.5, 4.2), squeeze=False)
    ax = axes[0, 0]
    weight, loss = -table.run_scores("weight"), table.run_scores("small-loss")
    seen = np.isfinite(weight) & np.isfinite(loss)
    groups = [("mislabelled", table.noisy, "tab:red"), ("clean", ~table.noisy, "tab:blue")] if known \
        else [("samples", np.ones(table.num_samples, bool), "tab:blue")]
    for name, mask, colour in groups:
        ax.scatter(loss[mask & seen], weight[mask & seen], s=4, alpha=0.35, color=colour, label=name)
    ax.set_xlabel("mean training loss (acting stages)")
    ax.set_ylabel("mean weight (batch mean 1)")
    ax.set_title("what the weighting did to each sample", fontsize=10)
    ax.legend(fontsize=8, markerscale=3)
    ax.grid(alpha=0.3)
    if known:
        ax = axes[0, 1]
        for detector, name in DETECTORS.items():
            values = [(s["stage"], s[detector]["auroc"]) for s in report["stages"] if s.get(detector)]
            if values:
                ax.plot(*zip(*values), marker="o", markersize=3, label=name)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlabel("stage")
        ax.set_ylabel("AUROC (mislabelled vs clean)")
        ax.set_title("detecting mislabelled samples, per stage", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ------------------------------------------------------------------------------ a comparison


def inspect_comparison(folder: Path, cfg: InspectConfig) -> dict:
    """Every run of a ``law compare`` folder that exported weights; one table of methods."""
    runs = sorted(p.parent for p in (folder / "runs").glob(f"*__seed*/{FILENAME}"))
    if not runs:
        raise LawError(f"no run in {folder / 'runs'} exported its weights; re-run law compare with "
                       "--export-weights (and a new --name: finished runs are not redone)")
    by_method: dict[str, list[dict]] = {}
    for run_dir in runs:
        method, _, seed = run_dir.name.rpartition("__seed")
        report = inspect_run(run_dir, read_sample_table(run_dir / FILENAME), cfg)
        by_method.setdefault(method, []).append(report | {"seed": int(seed)})
        print(f"law inspect: {run_dir.name} done", flush=True)
    summary = comparison_summary(by_method)
    atomic_write_json({"rule": cfg.rule, "summary": summary, "runs": by_method}, folder / "detection.json")
    text = comparison_table(summary)
    atomic_write_text(text + "\n", folder / "detection.md")
    print(text)
    print(f"\nwritten: {folder / 'detection.md'}  {folder / 'detection.json'}; per run: {SUSPECTS}, "
          "inspection.json, inspection.png")
    return {"summary": summary, "runs": by_method}


def comparison_summary(by_method: dict[str, list[dict]]) -> list[dict]:
    """One row per (method, detector): mean and std over seeds of the run-level metrics."""
    rows = []
    for method, reports in by_method.items():
        for detector in DETECTORS:
            found = [r["run"][detector] for r in reports if r["run"].get(detector)]
            if not found:
                continue
            row = {"method": method, "detector": detector, "runs": len(found),
                   "k": [r["k"] for r in reports]}
            for key in ("auroc", "precision_at_k", "recall_at_k"):
                row[key], row[key + "_std"] = mean_std(m[key] for m in found)
            rows.append(row)
    return rows


def comparison_table(summary: list[dict]) -> str:
    def pm(row: dict, key: str) -> str:
        mean, std = row[key], row[key + "_std"]
        return "—" if math.isnan(mean) else f"{mean:.3f}" + (f" ± {std:.3f}" if math.isfinite(std) else "")

    lines = ["| method | detector | runs | AUROC | precision@k | recall@k |", "|---|---|---:|---:|---:|---:|"]
    for row in sorted(summary, key=lambda r: -r["auroc"]):
        method = DISPLAY.get("law-twin" if row["detector"] == "small-loss-twin" else row["method"], row["method"])
        lines.append(f"| {method} | {DETECTORS[row['detector']]} | {row['runs']} | {pm(row, 'auroc')} | "
                     f"{pm(row, 'precision_at_k')} | {pm(row, 'recall_at_k')} |")
    return "\n".join(lines) + ("\n\nk = the number of training labels known to be wrong in each run (so precision@k "
                               "= recall@k); scores averaged over the stages in which each run's weights act "
                               "(all stages where they never do).")
