"""Suites: a task family, its metrics, its budgets and the symmetries it measures.

A suite's datasets are the ones whose ``DatasetInfo.suites`` name it (the dataset table is
the one place membership is stated); it runs the embedded ones by default, which need no
download. ``transforms`` are the function-preserving transforms the suite measures on every
run, each where the dataset's architectures admit it (``benchmarks.robustness``). A suite
may change what is learnt from a dataset (``prepare``: the edit suite's targets are dilated
images), wrap the method's module (``wrap``: the edit suite renders the edited INR) and
define the score of a predictor that ignores its input (``chance``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from benchmarks import editing
from benchmarks.metrics import chance
from datasets.dataset_table import DATASETS
from datasets.registry import Registry
from datasets.weight_dataset import WeightDataset


def unchanged(dataset: WeightDataset) -> WeightDataset:
    return dataset


def unwrapped(model: nn.Module, dataset: WeightDataset) -> nn.Module:
    return model


@dataclass(frozen=True)
class Suite:
    """``metrics[0]`` is the primary metric, used for model selection; ``epochs`` overrides
    a profile's epoch budget for this suite (a dataset's own budget wins, ``--epochs`` over both)."""

    name: str
    task: str
    metrics: tuple[str, ...]
    description: str
    transforms: tuple[str, ...]
    epochs: dict[str, int] = field(default_factory=dict)
    prepare: Callable[[WeightDataset], WeightDataset] = unchanged
    wrap: Callable[[nn.Module, WeightDataset], nn.Module] = unwrapped
    chance: Callable[[WeightDataset], tuple[float, float]] | None = None

    @property
    def primary(self) -> str:
        return self.metrics[0]

    def epoch_budget(self, profile: str, dataset: str) -> int | None:
        """The epochs of ``profile`` on ``dataset`` in this suite: the dataset's own budget, else
        the suite's, else ``None`` (the profile's)."""
        return DATASETS[dataset].info.epochs.get((self.name, profile), self.epochs.get(profile))

    def chance_level(self, dataset: WeightDataset) -> tuple[float, float]:
        """The primary metric of a predictor that ignores its input, and its margin."""
        if self.chance is not None:
            return self.chance(dataset)
        return chance(self.primary, dataset.val.targets, dataset.out_dim)

    def datasets(self) -> list[str]:
        """Every registered dataset of this suite."""
        return [name for name, entry in DATASETS.items() if self.name in entry.info.suites]

    def default_datasets(self) -> list[str]:
        """The suite's embedded datasets: built locally, no download."""
        return [name for name, entry in DATASETS.items() if self.name in entry.info.suites and entry.info.embedded]


SYMMETRY_TRANSFORMS = ("permutation", "sign_flip", "rescale", "rescale_10", "rescale_100", "phase")
SUITES: Registry[Suite] = Registry("suite")
SUITES.add("inr", Suite("inr", "classification", ("accuracy",), "classify the image an INR (SIREN) represents",
                        SYMMETRY_TRANSFORMS))
SUITES.add("zoo", Suite("zoo", "regression", ("kendall_tau", "r2", "mse"),
                        "predict a trained CNN's test accuracy from its weights", SYMMETRY_TRANSFORMS,
                        epochs={"quick": 10}))  # one seed of every method on both zoos: ~13 min on 2 cores
SUITES.add("edit", Suite("edit", "edit", ("pixel_mse",),
                         "edit an INR's weights so that it renders its image dilated (3x3)", SYMMETRY_TRANSFORMS,
                         prepare=editing.edit_dataset, wrap=editing.wrap, chance=editing.identity_chance,
                         epochs={"quick": 10}))  # rendering every edit: one seed of every editor ~5 min on 2 cores
