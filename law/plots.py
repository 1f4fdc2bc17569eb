"""PNG figures of a comparison. matplotlib is an optional extra (``pip install law[plots]``).

One drawing function, ``plot_panels``: a row of panels, each with a few curves
given per seed; a curve is drawn as its mean over seeds with a +-1 std band.
What to draw (loss gap per stage, minority vs other weights, noisy vs clean
weights, test accuracy) is extracted by ``law.compare``.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import NamedTuple, Sequence

from law.errors import LawError


class Curve(NamedTuple):
    """One line of a panel: shared x values, and one y sequence per seed (NaN = missing)."""

    x: Sequence[float]
    per_seed: Sequence[Sequence[float]]


def require_matplotlib():
    """pyplot on the file-only Agg backend, or a clear error saying how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise LawError("plots need matplotlib: pip install matplotlib (or 'law[plots]'), "
                       "or pass --no-plots") from error
    return plt


def mean_std(per_seed: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Point-wise mean and sample std over seeds, ignoring NaN (std 0 for one value)."""
    means, stds = [], []
    for values in zip(*per_seed):
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            means.append(math.nan)
            stds.append(math.nan)
            continue
        mean = sum(finite) / len(finite)
        var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
        means.append(mean)
        stds.append(math.sqrt(var))
    return means, stds


def plot_panels(path: str | Path, title: str, panels: dict[str, dict[str, Curve]], xlabel: str,
                ylabel: str, footnote: str = "", hline: float | None = None) -> Path:
    """Panels side by side (one per key), each with its labelled curves; saved as PNG."""
    plt = require_matplotlib()
    count = max(len(panels), 1)
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    width = max(4.2 * columns, 8.0)
    figure, axes = plt.subplots(rows, columns, figsize=(width, 3.6 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    for ax, (name, curves) in zip(axes.flat, panels.items()):
        for label, curve in curves.items():
            mean, std = mean_std(curve.per_seed)
            x = list(curve.x)[:len(mean)]
            line, = ax.plot(x, mean, marker="o", markersize=2.5, label=label)
            lower = [m - s for m, s in zip(mean, std)]
            upper = [m + s for m, s in zip(mean, std)]
            ax.fill_between(x, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        if hline is not None:
            ax.axhline(hline, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    characters = int(width * 11)  # roughly what fits across the figure at these font sizes
    figure.suptitle(textwrap.fill(title, characters // 1.4), fontsize=11)
    footnote = textwrap.fill(footnote, characters)
    if footnote:
        figure.text(0.01, 0.005, footnote, fontsize=7, color="dimgrey", va="bottom")
    figure.tight_layout(rect=(0, 0.025 * (footnote.count("\n") + 1) + 0.01 if footnote else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
