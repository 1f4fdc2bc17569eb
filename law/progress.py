"""Progress bars on stderr, drawn by tqdm."""
from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressLine:
    """A tqdm bar driven by absolute counts (``update(done, message)``), as the loops know them.

    On a terminal it redraws in place; piped into a log it writes at most one
    line every 30 s, and the final state, instead of one line per update.
    """

    def __init__(self, total: int, label: str, enabled: bool = True):
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=label, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                        mininterval=0.5 if interactive else 30.0, leave=True)

    def update(self, done: int, message: str = "") -> None:
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(done - self.bar.n)
        if done >= self.bar.total:
            self.bar.close()
