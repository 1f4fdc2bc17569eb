#!/usr/bin/env python
"""Noisy CIFAR-10 / CIFAR-100, 40 % symmetric label noise (LAW Tables 1-2): every method, several seeds.

    python scripts/suite_noisy_cifar.py --data-path /data/cifar10-jpg --dataset cifar10 --profile cpu

Writes <output-dir>/<dataset>-noisy__<profile>/ (table.md, results.csv, results.json, plots/,
runs/ for TensorBoard). Re-running the same command continues an interrupted comparison.
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
    add_script_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return script_main(args, suite=f"{args.dataset}-noisy")


if __name__ == "__main__":
    sys.exit(main())
