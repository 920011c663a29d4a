"""Suites: a task family, its datasets, metrics and robustness transforms."""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets.registry import DATASETS, Registry


@dataclass(frozen=True)
class Suite:
    """``default_datasets`` run when ``--datasets`` is not given (the embedded ones, which
    need no download); ``metrics[0]`` is the primary metric, used for model selection;
    ``epochs`` overrides a profile's epoch budget for this suite (``--epochs`` wins)."""

    name: str
    task: str
    metrics: tuple[str, ...]
    default_datasets: tuple[str, ...]
    description: str
    epochs: dict[str, int] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return self.metrics[0]

    def datasets(self) -> list[str]:
        """Every registered dataset of this suite."""
        return [name for name, entry in DATASETS.items() if entry.suite == self.name]


SUITES: Registry[Suite] = Registry("suite")
SUITES.add("inr", Suite("inr", "classification", ("accuracy",), ("digits-inr",),
                        "classify the image an INR (SIREN) represents"))
SUITES.add("zoo", Suite("zoo", "regression", ("kendall_tau", "r2", "mse"),
                        ("digits-cnn-zoo", "digits-cnn-park"),
                        "predict a trained CNN's test accuracy from its weights",
                        epochs={"quick": 10}))  # the whole default zoo suite in under 15 min on 2 cores
