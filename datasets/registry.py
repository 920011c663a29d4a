"""Name -> object registries with a decorator, refusal of duplicates, and "did you mean".

The dataset and method registries live here, in the lowest package, because both
``baselines/`` and ``methods/`` register into the one method registry and neither may
import the harness (DESIGN.md section 1). Suites and metrics register in ``benchmarks/``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """An unknown registry name. ``str()`` is a one-line message with the valid choices."""

    def __str__(self) -> str:
        return self.args[0]


class Registry(Generic[T]):
    """A registry of named entries. ``register(name, **meta)`` decorates a builder."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        choices = sorted(self._entries)
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(choices)}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())


class UnsupportedArchitecture(ValueError):
    """Raised by a method's builder when it cannot take the dataset's architectures.
    The harness reports the method as "n/a" for that dataset."""


@dataclass(frozen=True)
class TaskInfo:
    """What a method's builder is told about the data it will see.

    ``specs``: every architecture in the dataset (one for homogeneous data; a method that
    is not ``heterogeneous`` is never built for more). ``out_dim``: classes, or 1 for
    regression. ``stats``: per architecture, per-layer normalisation statistics of the
    training split (``datasets.normalisation.LayerStats``)."""

    specs: tuple
    out_dim: int
    task: str  # "classification" | "regression"
    stats: dict = field(default_factory=dict)

    @property
    def spec(self):
        """The single architecture of a homogeneous dataset."""
        if len(self.specs) != 1:
            raise UnsupportedArchitecture(
                f"this method needs one architecture; the dataset has {len(self.specs)}")
        return self.specs[0]


@dataclass(frozen=True)
class MethodEntry:
    """A registered method. ``build(info, profile=...)`` returns an ``nn.Module`` whose
    ``forward(weights)`` maps a ``WeightSpace`` (or a ``MixedWeights`` when
    ``heterogeneous``) to ``(B, out_dim)``. ``optim`` overrides the protocol's AdamW
    settings (``lr``, ``weight_decay``) where the paper used others."""

    name: str
    build: Callable[..., Any]
    family: str
    heterogeneous: bool = False
    invariant: bool = True
    optim: dict = field(default_factory=dict)
    paper: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset. ``load(root, **options)`` returns a ``WeightDataset``."""

    name: str
    load: Callable[..., Any]
    suite: str
    embedded: bool = False
    description: str = ""


DATASETS: Registry[DatasetEntry] = Registry("dataset")
METHODS: Registry[MethodEntry] = Registry("method")


def register_method(name: str, *, family: str, heterogeneous: bool = False, invariant: bool = True,
                    optim: dict | None = None, paper: str = "") -> Callable:
    """Decorator: register ``build(info: TaskInfo, *, profile: str) -> nn.Module``."""
    def wrap(build: Callable) -> Callable:
        METHODS.add(name, MethodEntry(name, build, family, heterogeneous, invariant,
                                      optim or {}, paper))
        return build
    return wrap


def register_dataset(name: str, *, suite: str, embedded: bool = False, description: str = "") -> Callable:
    """Decorator: register ``load(root: Path, **options) -> WeightDataset``."""
    def wrap(load: Callable) -> Callable:
        DATASETS.add(name, DatasetEntry(name, load, suite, embedded, description))
        return load
    return wrap
