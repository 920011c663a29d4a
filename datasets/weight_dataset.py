"""A dataset of networks: train / val / test splits of weights with targets, its data
card, and :class:`TaskInfo`, what a method is told about it when it is built.

The test split is reached only through :meth:`WeightDataset.test_split`, which the harness
calls once, after model selection; tuning code sees ``train`` and ``val`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from datasets.dataset_table import DatasetInfo
from datasets.errors import UnsupportedArchitecture
from datasets.normalisation import LayerStats
from datasets.spec import ArchSpec
from datasets.weights import Weights, as_mixed

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskInfo:
    """What a method's builder is told about the data it will see.

    ``specs``: every architecture in the dataset (one for homogeneous data; a method that
    is not ``heterogeneous`` is never built for more). ``out_dim``: classes, or 1 for
    regression. ``task``: "classification", "regression", or "edit" (the module maps a
    ``WeightSpace`` to a change of it: a ``WeightSpace`` of the same architecture; a method
    without such an output raises ``UnsupportedArchitecture``). ``stats``: per architecture,
    per-layer normalisation statistics of the training split."""

    specs: tuple[ArchSpec, ...]
    out_dim: int
    task: str
    stats: dict[ArchSpec, LayerStats] = field(default_factory=dict)

    @property
    def spec(self) -> ArchSpec:
        """The single architecture of a homogeneous dataset."""
        if len(self.specs) != 1:
            raise UnsupportedArchitecture(
                f"this method needs one architecture; the dataset has {len(self.specs)}")
        return self.specs[0]

    @property
    def domain(self) -> str:
        """``"cnn"`` if the networks are convolutional, else ``"mlp"``."""
        return "cnn" if self.specs[0].is_conv else "mlp"


@dataclass(frozen=True)
class Split:
    """Weights and targets of one split; ``extras`` holds per-network side data (PSNR,
    image index, ...)."""

    weights: Weights
    targets: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.targets):
            raise ValueError(f"{len(self.weights)} networks but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, index: Tensor) -> tuple[Weights, Tensor]:
        return self.weights[index], self.targets[index]

    @property
    def specs(self) -> tuple[ArchSpec, ...]:
        return as_mixed(self.weights).specs


@dataclass(frozen=True)
class WeightDataset:
    """A named collection of networks with a prediction target, as declared by ``info``.
    ``fingerprint`` identifies its contents (recipe, options, source files, code version)."""

    info: DatasetInfo
    train: Split
    val: Split
    _test: Split
    card: dict = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def out_dim(self) -> int:
        return self.info.out_dim

    def test_split(self) -> Split:
        """The held-out split. Only the harness's final evaluation calls this."""
        return self._test

    def splits(self) -> dict[str, Split]:
        """All three splits by name (for building, caching and validating, not tuning)."""
        return {"train": self.train, "val": self.val, "test": self._test}

    @property
    def specs(self) -> tuple[ArchSpec, ...]:
        """Every architecture present, in a stable order."""
        seen: dict[ArchSpec, None] = {}
        for split in (self.train, self.val, self._test):
            for spec in split.specs:
                seen.setdefault(spec, None)
        return tuple(seen)

    @property
    def heterogeneous(self) -> bool:
        return len(self.specs) > 1

    def task_info(self) -> TaskInfo:
        """Builder input: architectures, output size and train-split layer statistics."""
        groups = as_mixed(self.train.weights).groups
        return TaskInfo(self.specs, self.out_dim, self.task, {g.spec: LayerStats.of(g) for g in groups})
