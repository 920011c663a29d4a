"""A dataset of networks: train/val/test splits of weights with targets, and its data card.

The test split is reached only through :meth:`WeightDataset.test_split`, which the harness
calls once, after model selection; tuning code sees ``train`` and ``val`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from datasets.normalisation import LayerStats
from datasets.registry import TaskInfo
from datasets.weights import MixedWeights, WeightSpace, Weights, as_mixed

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class LoadOptions:
    """What the harness passes to every dataset loader.

    ``root``: the data root (our caches live in ``root/<dataset>``). ``source``: a directory
    of published files or raw data given by the user (defaults are loader-specific, usually
    under ``root``). ``limit``: at most this many networks (or images) per split, for quick
    runs. ``skip_invalid``: drop malformed networks (counted in the card) instead of failing.
    ``params``: dataset-specific options as strings (``--dataset-option KEY=VALUE``).
    """

    root: Path
    source: Path | None = None
    limit: int | None = None
    skip_invalid: bool = False
    progress: bool = True
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """Weights and targets of one split; ``extras`` holds per-network side data (PSNR...)."""

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
    def specs(self) -> tuple:
        return as_mixed(self.weights).specs


@dataclass(frozen=True)
class WeightDataset:
    """A named collection of networks with a prediction target."""

    name: str
    task: str
    num_classes: int
    train: Split
    val: Split
    _test: Split
    card: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

    def test_split(self) -> Split:
        """The held-out split. Only the harness's final evaluation calls this."""
        return self._test

    @property
    def specs(self) -> tuple:
        """Every architecture present, in a stable order."""
        seen: dict = {}
        for split in (self.train, self.val, self._test):
            for spec in split.specs:
                seen.setdefault(spec, None)
        return tuple(seen)

    @property
    def heterogeneous(self) -> bool:
        return len(self.specs) > 1

    @property
    def out_dim(self) -> int:
        return self.num_classes if self.task == "classification" else 1

    def task_info(self) -> TaskInfo:
        """Builder input: architectures, output size and train-split layer statistics."""
        groups = as_mixed(self.train.weights).groups
        return TaskInfo(self.specs, self.out_dim, self.task, {g.spec: LayerStats.of(g) for g in groups})


def stack_targets(values, task: str) -> Tensor:
    """Targets as a tensor of the dtype the task needs."""
    dtype = torch.long if task == "classification" else torch.float32
    return torch.as_tensor(values, dtype=dtype)


def is_mixed(weights: Weights) -> bool:
    return isinstance(weights, MixedWeights)


__all__ = ["LoadOptions", "Split", "WeightDataset", "WeightSpace", "MixedWeights", "stack_targets", "is_mixed"]
