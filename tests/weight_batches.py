"""Random weight batches and task descriptions shared by the method tests (importable
because ``pyproject.toml`` puts ``tests/`` on pytest's ``pythonpath``)."""

from __future__ import annotations

from datasets.contract import random_networks
from datasets.normalisation import LayerStats
from datasets.spec import ArchSpec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace


def random_weights(spec: ArchSpec, batch: int = 4, seed: int = 0) -> WeightSpace:
    """``batch`` networks of ``spec`` with standard-normal float64 weights and biases."""
    return random_networks(spec, batch, seed)


def task_info(*specs: ArchSpec, out_dim: int = 10) -> TaskInfo:
    """A classification task over ``specs`` with layer statistics of random networks."""
    return TaskInfo(specs, out_dim, "classification", {s: LayerStats.of(random_weights(s, 8, 1)) for s in specs})


def edit_task_info(spec: ArchSpec, pixels: int, stats_from: WeightSpace | None = None) -> TaskInfo:
    """An edit task on ``spec`` rendering ``pixels`` values, with layer statistics of
    ``stats_from`` (default: random networks)."""
    stats_from = random_weights(spec, 8, 1) if stats_from is None else stats_from
    return TaskInfo((spec,), pixels, "edit", {spec: LayerStats.of(stats_from)})
