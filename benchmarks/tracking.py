"""Experiment tracking with Weights & Biases: offline unless a key is configured.

``--track wandb`` logs every epoch and the final record of each run. Without
``WANDB_API_KEY`` (or an explicit ``WANDB_MODE``) runs are written offline under the
output folder and can be synced later with ``wandb sync``. :func:`check` runs before any
work, so a missing ``wandb`` is reported before a dataset is loaded."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict

from datasets.errors import ConfigError, MissingDependency

TRACKERS = ("none", "wandb")


def check(kind: str) -> None:
    """Refuse an unknown tracker, or one whose package is not installed."""
    if kind not in TRACKERS:
        raise ConfigError(f"unknown tracker {kind!r}; valid: {', '.join(TRACKERS)}")
    if kind == "wandb" and importlib.util.find_spec("wandb") is None:
        raise MissingDependency("--track wandb needs the wandb package: pip install -e '.[wandb]'")


class Tracker:
    """No-op tracker; :meth:`start` returns a W&B one when asked."""

    def log(self, entry: dict) -> None:
        pass

    def finish(self, record: dict) -> None:
        pass

    @staticmethod
    def start(kind: str, spec, config) -> "Tracker":
        check(kind)
        return WandbTracker(spec, config) if kind == "wandb" else Tracker()


class WandbTracker(Tracker):
    def __init__(self, spec, config) -> None:
        import wandb

        if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
        directory = spec.out / "wandb"
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project="wsbench", dir=str(directory), reinit="finish_previous",
                              group=f"{spec.suite}/{spec.dataset}",
                              name=f"{spec.dataset}/{spec.method}/seed{spec.seed}",
                              config={"method": spec.method, "seed": spec.seed, "profile": spec.profile,
                                      "train": asdict(config)})

    def log(self, entry: dict) -> None:
        self.run.log(entry)

    def finish(self, record: dict) -> None:
        for key, value in record.get("metrics", {}).items():
            self.run.summary[f"test_{key}"] = value
        for name, rob in record.get("robustness", {}).items():
            self.run.summary[f"{name}_output_change"] = rob["output_change"]
        self.run.finish()
