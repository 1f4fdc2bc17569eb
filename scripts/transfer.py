#!/usr/bin/env python
"""Transfer: search a LAW policy with network A, apply it to network B, compare with B unweighted.

    python scripts/transfer.py --suite cifar10-noisy --search-model small_cnn --model resnet20 \
        --data-path /data/cifar10-jpg --profile cpu

Both B runs (CE and LAW) of a seed share data and schedule; the LAW run also trains B's
unweighted twin from the same initial weights on the same batches (row "CE (LAW's twin)").
Give --policy to skip the search and transfer an existing policy. Re-running continues.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.compare import add_script_args, script_main  # noqa: E402
from law.suites import SUITES  # noqa: E402


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--suite", default="cifar10-noisy", choices=list(SUITES))
    parser.add_argument("--search-model", required=True, help="network A, the policy is searched with it")
    parser.add_argument("--model", required=True, help="network B, trained with the transferred policy")
    add_script_args(parser)
    parser.set_defaults(methods="ce,law")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    name = args.name or f"{args.suite}__{args.profile}__transfer_{args.search_model}_to_{args.model}"
    return script_main(args, suite=args.suite, name=name)


if __name__ == "__main__":
    sys.exit(main())
