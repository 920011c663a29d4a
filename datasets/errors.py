"""The exception hierarchy: every *user* error is a :class:`WsbenchError`.

A user error (a bad option, a missing or malformed file, an unknown name) has a one-line
message naming the file or option, the problem and what is valid; the command line prints
that line and exits with status 2, without a traceback. Anything else raised is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path


class WsbenchError(Exception):
    """Base of every user error. ``str()`` is one line."""

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split()) if self.args else type(self).__name__


class ConfigError(WsbenchError, ValueError):
    """An option or argument out of its valid range; the message lists what is valid."""


class UnknownName(WsbenchError, KeyError):
    """An unknown registry name; the message lists the valid choices."""


class MissingDependency(WsbenchError, ImportError):
    """An optional package that the chosen feature needs is not installed."""


class DataNotFound(WsbenchError, FileNotFoundError):
    """The files a loader needs are absent: what to download, from where, and every path
    that was searched."""

    def __init__(self, what: str, download: str, searched: Iterable[Path | str]) -> None:
        paths = ", ".join(str(p) for p in searched)
        super().__init__(f"{what} not found (searched: {paths}). Download {download}, then pass the "
                         f"folder with --dataset-source DIR.")


class InvalidData(WsbenchError, ValueError):
    """A file or a dataset that cannot be used as it is; the message names it and the problem."""


class InvalidItem(InvalidData):
    """One malformed input item (a network file, a table row). ``reason`` is the short key
    under which a skip is counted (``--skip-invalid``)."""

    def __init__(self, path: Path | str, problem: str, reason: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.reason = reason


class WriteError(WsbenchError, OSError):
    """A file that cannot be written (a full disk, a file size limit, a folder in its place,
    no permission); the message names the file, the system's reason and what to do. Its
    ``args`` are the one message, so it pickles across processes."""


class CacheError(WsbenchError):
    """A cache file that cannot be used (unreadable, damaged, stale); it is rebuilt."""


class UnsupportedArchitecture(WsbenchError):
    """A method cannot take a dataset's architectures; the harness reports it as "n/a"."""


def exit_status(command: Callable[[], int | None]) -> int:
    """Run a command line's body: its status (0 if it returns none), or 2 after one line
    ``error: ...`` on stderr for a user error (``WsbenchError``, never a traceback); a bug
    propagates with its traceback."""
    try:
        return command() or 0
    except WsbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
