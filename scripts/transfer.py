#!/usr/bin/env python
"""Transfer: search a LAW policy with network A, apply it to network B, compare with B unweighted.

    python scripts/transfer.py --suite cifar10-noisy --search-model small_cnn --model resnet20 \
        --data-path /data/cifar10-jpg --profile cpu

Both B runs (CE and LAW) of a seed share data and schedule; the LAW run also trains B's
unweighted twin from the same initial weights on the same batches (row "CE (LAW's twin)").
Give --policy to skip the search and transfer an existing policy. Re-running continues.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from law.cli import guarded  # noqa: E402
from law.commands import as_compare, run_compare  # noqa: E402
from law.compare import CompareConfig  # noqa: E402
from law.errors import ConfigError  # noqa: E402
from law.policy_file import load_policy, policy_path  # noqa: E402

PROG = "transfer.py"


@dataclass
class Script(CompareConfig):
    methods: str = "ce,law"
    """Comma-separated methods: B unweighted (ce) and B with the transferred policy (law)."""


def transfer(cfg: Script) -> CompareConfig:
    """The comparison of network B (--model) with the policy searched on network A (--search-model)."""
    for name in ("search_model", "model"):
        if not getattr(cfg, name) and not (name == "search_model" and cfg.policy):
            raise ConfigError(name, "is required: --search-model A (the policy is searched with it) and "
                                    "--model B (trained with the transferred policy)")
    searched_with = cfg.search_model or load_policy(policy_path(cfg.policy))["env"]["model"]
    name = cfg.name or f"{cfg.suite}__{cfg.profile}__transfer_{searched_with}_to_{cfg.model}"
    return as_compare(cfg, name=name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return guarded(PROG, lambda: run_compare(argv, Script(), PROG, __doc__.splitlines()[0], transfer))


if __name__ == "__main__":
    sys.exit(main())
