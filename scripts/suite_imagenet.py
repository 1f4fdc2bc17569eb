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

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.cli import guarded  # noqa: E402
from law.commands import as_compare, run_compare  # noqa: E402
from law.compare import CompareConfig  # noqa: E402

PROG = "suite_imagenet.py"


@dataclass
class Script(CompareConfig):
    methods: str = "ce,focal,cb,spl,ohem,law"
    """Comma-separated methods (L2RW and LOW differentiate through the model: not data-parallel)."""
    suite: tyro.conf.Suppress[str] = "imagenet-noisy"


def finish(cfg: Script) -> CompareConfig:
    return as_compare(cfg)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return guarded(PROG, lambda: run_compare(argv, Script(), PROG, __doc__.splitlines()[0], finish))


if __name__ == "__main__":
    sys.exit(main())
