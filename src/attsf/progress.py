"""Progress a person can read in a terminal and in a log file: a live bar on a terminal,
plain lines (every ~10 % of the work or every minute) when the output is piped or logged."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def interactive() -> bool:
    return sys.stderr.isatty()


class PlainProgress:
    """``update``/``close`` like tqdm, printing "desc: 40/100 (40 %), 12 s elapsed" lines."""

    def __init__(self, total: int, desc: str, every_s: float = 60.0) -> None:
        self.total, self.desc, self.every_s = total, desc, every_s
        self.n, self.start, self.last_print, self.last_tenth = 0, time.time(), time.time(), 0

    def update(self, k: int = 1) -> None:
        self.n += k
        tenth = 10 * self.n // max(1, self.total)
        if tenth > self.last_tenth or time.time() - self.last_print >= self.every_s:
            self.last_tenth, self.last_print = tenth, time.time()
            print(f"{self.desc}: {self.n}/{self.total} ({100 * self.n / max(1, self.total):.0f} %), "
                  f"{time.time() - self.start:.0f} s elapsed", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on a terminal, plain progress lines otherwise, nothing when disabled."""
    if not enabled:
        return tqdm(total=total, disable=True)
    return tqdm(total=total, desc=desc, unit="clip") if interactive() else PlainProgress(total, desc)

