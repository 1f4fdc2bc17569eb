"""Where a run's time goes: wall-clock seconds per named phase, summed over the process.

Off unless the environment sets ``LAW_PHASE_TIMES=1`` (``scripts/bench_search.py``
does, for its own processes and Ray's workers); off, ``phase`` is a shared no-op
context. On, every ``with phase(name):`` block adds its wall time to the
process's totals, which ``take_phases`` returns and clears. Phases nest (the
LAW weights are computed inside the target's SGD step): a reader subtracts.
On CUDA a phase synchronises the device at its end, so it measures the device's
work, not the launch.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator

import torch

ENABLED = os.environ.get("LAW_PHASE_TIMES") == "1"

_seconds: defaultdict[str, float] = defaultdict(float)
_counts: defaultdict[str, int] = defaultdict(int)
_OFF = nullcontext()


@contextmanager
def _timed(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        _seconds[name] += time.perf_counter() - started
        _counts[name] += 1


def phase(name: str) -> ContextManager[None]:
    """Time the block as ``name`` (when enabled)."""
    return _timed(name) if ENABLED else _OFF


def take_phases() -> dict[str, dict[str, float]]:
    """``{name: {"seconds", "count"}}`` since the last call, and start counting anew."""
    taken = {name: {"seconds": _seconds[name], "count": _counts[name]} for name in _seconds}
    _seconds.clear()
    _counts.clear()
    return taken
