"""Checking data before it is used: "skip or fail" for malformed input items, and the
checks every dataset passes before it is cached or trained on.

A loader of published files meets two kinds of trouble. Data that is not there at all raises
:class:`~datasets.errors.DataNotFound`. A single bad item (a truncated state dict, a label out
of range, a NaN weight) raises :class:`~datasets.errors.InvalidItem`; :class:`Skipper` turns
those into counted skips when the user asked for ``skip_invalid``, and the counts go into the
data card as ``{"skipped": {reason: count}}``. :func:`validate_dataset` then checks the
assembled dataset as a whole.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch

from datasets.errors import InvalidData, InvalidItem
from datasets.weights import Weights, as_mixed

if TYPE_CHECKING:
    from datasets.weight_dataset import WeightDataset

log = logging.getLogger("wsbench")
T = TypeVar("T")
# Fewest networks per split that a run can train on, select on and evaluate (a rank
# correlation or an R^2 needs at least two values).
MIN_NETWORKS = {"train": 2, "val": 2, "test": 2}


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


def all_finite(weights: Weights) -> bool:
    """Whether every weight and bias is finite. A finite sum proves it (one NaN or infinity
    makes the sum NaN or infinite) at a fraction of the cost of an entry-wise check (about
    15x less for 70,000 SIRENs, ``scripts/bench_cache.py``); a sum that is not finite
    (or overflows) leaves the answer to the entry-wise check."""
    return all(bool(torch.isfinite(t.sum())) for g in as_mixed(weights).groups for t in (*g.weights, *g.biases))


def validate_dataset(dataset: "WeightDataset") -> None:
    """Refuse a dataset that cannot give a meaningful result: a split too small to train on
    or evaluate, a network with NaN or infinite weights, or a target outside the task's
    range. ``InvalidData`` names the dataset, the split and the problem."""
    name = dataset.name
    for split_name, split in dataset.splits().items():
        where = f"{name}, {split_name} split"
        if len(split) < MIN_NETWORKS[split_name]:
            raise InvalidData(f"{where}: {len(split)} network(s); at least {MIN_NETWORKS[split_name]} are "
                              f"needed to train and evaluate (raise --limit, or check --skip-invalid's count)")
        bad = None if all_finite(split.weights) else split.weights.nonfinite_rows()
        if bad is not None and bad.any():
            raise InvalidData(f"{where}: {int(bad.sum()):,} of {len(split):,} networks hold NaN or infinite "
                              f"weights (first: network {int(bad.nonzero()[0, 0])}); the build options may make "
                              f"fitting diverge")
        targets = split.targets
        if dataset.task == "classification":
            if targets.dtype != torch.long:
                raise InvalidData(f"{where}: class targets must be integers, got {targets.dtype}")
            outside = (targets < 0) | (targets >= dataset.out_dim)
            if outside.any():
                raise InvalidData(f"{where}: {int(outside.sum())} target(s) outside the classes "
                                  f"0..{dataset.out_dim - 1} (first: {int(targets[outside][0])})")
        elif not torch.isfinite(targets).all():
            raise InvalidData(f"{where}: {int((~torch.isfinite(targets)).sum())} target(s) are NaN or infinite")
