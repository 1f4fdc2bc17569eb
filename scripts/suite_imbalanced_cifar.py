#!/usr/bin/env python
"""Imbalanced CIFAR-10 / CIFAR-100 (LAW Table 4: step profile; Table 5: long-tailed, ratio 100).

    python scripts/suite_imbalanced_cifar.py --data-path /data/cifar10-jpg --imbalance longtail --profile cpu

Reports best and last test accuracy, balanced accuracy, macro F1 and mean AUC, and plots the
mean weight of the minority classes against the others (LAW Fig. 4). Re-running continues.
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

PROG = "suite_imbalanced_cifar.py"


@dataclass
class Script(CompareConfig):
    dataset: Literal["cifar10", "cifar100"] = "cifar10"
    """CIFAR-10 or CIFAR-100."""
    imbalance: Literal["step", "longtail"] = "longtail"
    """step: 2 minority classes at 4 % (Table 4); longtail: ratio 100 (Table 5). The suite is <dataset>-<imbalance>."""
    suite: tyro.conf.Suppress[str] = ""


def finish(cfg: Script) -> CompareConfig:
    return as_compare(cfg, suite=f"{cfg.dataset}-{cfg.imbalance}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return guarded(PROG, lambda: run_compare(argv, Script(), PROG, __doc__.splitlines()[0], finish))


if __name__ == "__main__":
    sys.exit(main())
