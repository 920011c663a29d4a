"""Progress of long work: a tqdm bar on a terminal, otherwise a log line at most every
``INTERVAL`` seconds (and one at the end), so a build or a run piped to a file or a CI log
still shows that it is alive and how far it got."""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("wsbench")
INTERVAL = 10.0


class LogProgress:
    """The part of tqdm's interface the project uses, reporting through the log."""

    def __init__(self, total: int, description: str, unit: str, interval: float = INTERVAL) -> None:
        self.total, self.description, self.unit, self.interval = total, description, unit, interval
        self.count = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._report(now)

    def _report(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        eta = f", about {(self.total - self.count) / rate:.0f} s left" if rate and self.total else ""
        log.info("%s: %s/%s %s%s in %.0f s, %.1f %s/s%s", self.description, f"{self.count:,}",
                 f"{self.total:,}", self.unit, share, elapsed, rate, self.unit, eta)

    def close(self) -> None:
        self._report(time.perf_counter())


def progress(total: int, description: str, unit: str = "it", enabled: bool = True):
    """A progress reporter: tqdm on a terminal, :class:`LogProgress` elsewhere, nothing if
    not ``enabled``."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=description, unit=unit, unit_scale=True, smoothing=0.1)
    return LogProgress(total, description, unit)
