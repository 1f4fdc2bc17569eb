"""A dependency-free progress line for long loops."""
from __future__ import annotations

import sys
import time


class ProgressLine:
    """Redraws one status line on a terminal; prints plain lines otherwise (logs, CI)."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.interactive = self.stream.isatty()

    def update(self, done: int, message: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = f"{elapsed / done * (self.total - done):4.0f}s" if done else "   ?"
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = f"{self.label} [{bar}] {done}/{self.total} {elapsed:5.0f}s eta {eta} {message}"
        if self.interactive:
            self.stream.write("\r" + line[:160].ljust(160))
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
