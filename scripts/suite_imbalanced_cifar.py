#!/usr/bin/env python
"""Imbalanced CIFAR-10 / CIFAR-100 (LAW Table 4: step profile; Table 5: long-tailed, ratio 100).

    python scripts/suite_imbalanced_cifar.py --data-path /data/cifar10-jpg --imbalance longtail --profile cpu

Reports best and last test accuracy, balanced accuracy, macro F1 and mean AUC, and plots the
mean weight of the minority classes against the others (LAW Fig. 4). Re-running continues.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.compare import add_script_args, script_main  # noqa: E402


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    parser.add_argument("--imbalance", default="longtail", choices=("step", "longtail"),
                        help="step: 2 minority classes at 4 %% (Table 4); longtail: ratio 100 (Table 5)")
    add_script_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return script_main(args, suite=f"{args.dataset}-{args.imbalance}")


if __name__ == "__main__":
    sys.exit(main())
