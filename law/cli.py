"""The ``law`` command line: a list of commands, each parsed by tyro from its config dataclasses.

A command's modules (torch, Ray, ...) load only when that command runs or shows
its help, so ``law --help`` starts in a blink.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from law.errors import Interrupted, LawError

COMMANDS = {
    "train": "train one network with one weighting method",
    "search": "search a weighting policy with DDPG over paired trainings",
    "apply": "train a network with a learned policy (transfer)",
    "compare": "compare weighting methods on a benchmark suite (tables, plots)",
    "inspect": "the samples a run's weighting discounts most; how well it detects mislabelled ones",
    "policies": "list the policies shipped with LAW (use one with --policy NAME)",
    "models": "list the known network architectures",
}


def overview() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="law", description="Learning to Auto Weight: search and apply "
                                     "sample-weighting policies; run weighting baselines. "
                                     "`law COMMAND --help` lists a command's flags.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    return parser


def guarded(name: str, run: Callable[[], int]) -> int:
    """``run()``'s exit status; a LAW error is one line on stderr (status 2), an interruption 130."""
    try:
        return run()
    except Interrupted as interrupted:
        print(f"{name}: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except LawError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        overview().parse_args(argv)  # prints the commands (or what is wrong) and exits
        return 2

    def run() -> int:
        from law.commands import RUNNERS  # the heavy part: loaded for a command only

        return RUNNERS[argv[0]](argv[1:])

    return guarded(f"law {argv[0]}", run)


if __name__ == "__main__":
    sys.exit(main())
