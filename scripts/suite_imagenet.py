#!/usr/bin/env python
"""Noisy ImageNet in the ImageFolder layout (LAW Table 3): search small, transfer big.

The policy is searched with --search-model (ResNet-18) on a per-class subset, then every
method trains --model (ResNet-50) on all the data. In the paper profile each network trains
data-parallel on Ray Train (TorchTrainer, one worker per GPU); on a cluster, start Ray
(`ray start --head` / `ray start --address HEAD:6379`) and pass --address auto.

    python scripts/suite_imagenet.py --data-path /data/imagenet --profile paper --address auto

The folder holds train/<class>/*.JPEG and val/<class>/*.JPEG (or test/). Re-running continues.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.compare import add_script_args, script_main  # noqa: E402


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--model", default="", help="network every method trains (default: the profile's, "
                                                    "resnet50 for paper)")
    parser.add_argument("--search-model", default="", help="network the policy is searched with "
                                                           "(default: resnet18)")
    add_script_args(parser)
    parser.set_defaults(methods="ce,focal,cb,spl,ohem,law")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return script_main(args, suite="imagenet-noisy")


if __name__ == "__main__":
    sys.exit(main())
