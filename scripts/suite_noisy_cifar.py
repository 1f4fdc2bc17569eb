#!/usr/bin/env python
"""Noisy CIFAR-10 / CIFAR-100, 40 % symmetric label noise (LAW Tables 1-2): every method, several seeds.

    python scripts/suite_noisy_cifar.py --data-path /data/cifar10-jpg --dataset cifar10 --profile cpu

Writes <output-dir>/<dataset>-noisy__<profile>/ (table.md, results.csv, results.json, plots/,
runs/ for TensorBoard). Re-running the same command continues an interrupted comparison.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.cli import guarded  # noqa: E402
from law.commands import as_compare, run_compare  # noqa: E402
from law.compare import CompareConfig  # noqa: E402

PROG = "suite_noisy_cifar.py"


@dataclass
class Script(CompareConfig):
    dataset: Literal["cifar10", "cifar100"] = "cifar10"
    """CIFAR-10 or CIFAR-100: the suite is <dataset>-noisy."""
    suite: tyro.conf.Suppress[str] = ""


def finish(cfg: Script) -> CompareConfig:
    return as_compare(cfg, suite=f"{cfg.dataset}-noisy")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return guarded(PROG, lambda: run_compare(argv, Script(), PROG, __doc__.splitlines()[0], finish))


if __name__ == "__main__":
    sys.exit(main())
