"""Typed configs: every component keeps its settings in a dataclass whose fields carry a
one-line docstring. tyro turns those fields into the command line (``law.commands``), so a
flag's name, type, default and help cannot drift from the code that reads it."""
from __future__ import annotations

import dataclasses
from typing import Any


def validate_all(*configs: Any) -> None:
    """Run every config's ``validate()``; the first bad field raises ConfigError."""
    for config in configs:
        config.validate()


def to_dict(*configs: Any) -> dict[str, dict]:
    """Configs as plain nested dicts (for results files and checkpoints)."""
    return {type(c).__name__: dataclasses.asdict(c) for c in configs}
