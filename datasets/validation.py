"""Checking inputs from outside: missing data, malformed items, and "skip or fail".

A loader of published files meets two kinds of trouble. Data that is not there at all
raises :class:`DataNotFound` (a ``FileNotFoundError``) whose one-line message says what to
download, from where, and which paths were searched. A single bad item (a truncated state
dict, a label out of range, a NaN weight) raises :class:`InvalidItem` naming the file and
the problem; :class:`Skipper` turns those into counted skips when the user asked for
``skip_invalid``, and the counts go into the data card as ``{"skipped": {reason: count}}``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("wsbench")
T = TypeVar("T")


class DataNotFound(FileNotFoundError):
    """The files a loader needs are absent. ``str()`` is one line."""

    def __init__(self, what: str, download: str, searched: Iterable[Path | str]) -> None:
        paths = ", ".join(str(p) for p in searched)
        super().__init__(f"{what} not found (searched: {paths}). Download {download}, then pass the "
                         f"folder with --dataset-source DIR.")

    def __str__(self) -> str:
        return self.args[0]


class InvalidItem(ValueError):
    """One malformed input item. ``reason`` is a short key used to count skips; the
    message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str, reason: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.reason = reason


class Skipper:
    """Run per-item checks; with ``skip`` an :class:`InvalidItem` is counted instead of
    raised. The first few skips are logged with their message."""

    LOGGED = 5

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.counts: Counter[str] = Counter()

    def attempt(self, fn: Callable[..., T], *args, **kwargs) -> T | None:
        """``fn(*args, **kwargs)``, or ``None`` when it raised :class:`InvalidItem` and
        skipping is on."""
        try:
            return fn(*args, **kwargs)
        except InvalidItem as err:
            self.reject(err)
            return None

    def reject(self, err: InvalidItem) -> None:
        """Raise ``err``, or count it when skipping."""
        if not self.skip:
            raise err
        self.counts[err.reason] += 1
        if sum(self.counts.values()) <= self.LOGGED:
            log.warning("skipping invalid input: %s", err)

    def record(self, reason: str, count: int = 1) -> None:
        """Count ``count`` items dropped for ``reason`` outside :meth:`attempt`."""
        if count:
            self.counts[reason] += count

    def summary(self) -> dict[str, int]:
        """The card entry: reason -> count, sorted by reason."""
        return dict(sorted(self.counts.items()))
