"""The dataset table: every dataset declared once, with its facts, where it is registered.

In the spirit of OGB's ``master.csv``: the loader, the suites, the evaluator, the
leaderboard, the fetcher and ``python -m benchmarks.run --list`` all read this one table
(:data:`DATASETS`). A registration pairs a :class:`DatasetInfo` with the
:class:`~datasets.source.DatasetSource` subclass that reads or builds it, plus the
constants that tell that source which member of its family it is.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasets.registry import Registry

if TYPE_CHECKING:
    from datasets.source import DatasetSource, LoadOptions

TASKS = ("classification", "regression", "edit")


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its URL, the name it is saved under, and its sha256 (``None``
    where no checksum was published: the fetcher records the one it measures)."""

    url: str
    name: str
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """The facts about one dataset.

    ``out_dim``: number of classes (classification), 1 (regression), or the size of the
    rendered signal (edit: the weight-space-to-weight-space task of ``benchmarks.editing``). ``splits``: the
    published train / val / test sizes, if any. ``version``: the version of the code that
    reads or builds it; bump it whenever that code changes what it produces, so every cache
    and run record made by the old code stops matching. ``embedded``: built locally from
    data that ships with a dependency, no download. ``epochs``: the epoch budget per
    ``(suite, profile)`` on this dataset, where its default training split is larger or smaller
    than the suite's budget assumes (a quick budget is a number of optimiser steps that every
    method's learning threshold was measured in; it wins over the suite's, ``--epochs`` over it)."""

    name: str
    suites: tuple[str, ...]
    task: str
    out_dim: int
    description: str
    source: str
    licence: str
    version: int = 1
    splits: tuple[int, int, int] | None = None
    embedded: bool = False
    files: tuple[RemoteFile, ...] = ()
    epochs: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")
        if self.out_dim < 1 or (self.task == "regression" and self.out_dim != 1):
            raise ValueError(f"{self.name}: out_dim must be >= 1 (1 for regression), got {self.out_dim}")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its facts, its source class, the source's constants and the
    module that registered it (which a worker process imports to know it)."""

    info: DatasetInfo
    source: type["DatasetSource"]
    constants: dict[str, Any] = field(default_factory=dict)
    module: str = "datasets.sources"

    def open(self, options: "LoadOptions") -> "DatasetSource":
        """The source for these load options (options are parsed and checked here)."""
        return self.source(self.info, options, **self.constants)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(info: DatasetInfo, source: type["DatasetSource"], *, module: str | None = None,
                     **constants: Any) -> DatasetEntry:
    """Declare ``info`` and the source that reads or builds it (``constants``: the facts that
    make the source one member of its family). ``module``: the module registering it
    (default: the caller's)."""
    module = module or sys._getframe(1).f_globals.get("__name__", "__main__")
    return DATASETS.add(info.name, DatasetEntry(info, source, constants, module))
