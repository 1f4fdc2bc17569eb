"""A comparison's figures: test accuracy, LAW's loss gap (Fig. 3), noisy/clean and minority weights (Fig. 4)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch

from law.bench.experiment import DISPLAY, RESULTS, Experiment, reported
from law.data import DataConfig
from law.noise import imbalance_counts
from law.plots import Curve, plot_panels

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
    # Seeds of one method share their evaluation epochs; a shorter history (none so far) would truncate.
    length = min(len(h) for h in histories)
    x = [r["epoch"] for r in histories[0][:length]]
    return Curve(x, [[_finite(value(r)) for r in h[:length]] for h in histories])


def _finite(value) -> float:
    return math.nan if value is None else float(value)


def minority_classes(data: DataConfig, num_classes: int) -> list[int]:
    """Classes the imbalance profile makes smaller than the (interpolated) median class."""
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
