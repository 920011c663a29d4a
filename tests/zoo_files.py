"""Tiny Small CNN Zoo folders in the published formats (``weights.npy``, ``metrics.csv.gz``,
``layout.csv``) plus an NFN split file, for the zoo loader tests (importable because
``pyproject.toml`` puts ``tests/`` on pytest's ``pythonpath``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

# (varname, shape) in the published order: per layer the bias, then the kernel (TF layout)
LAYOUT = [("conv2d", (3, 3, 1, 16)), ("conv2d_1", (3, 3, 16, 16)), ("conv2d_2", (3, 3, 16, 16)),
          ("dense", (16, 10))]
PARAMETERS = 4970


def layout_table() -> pd.DataFrame:
    """``layout.csv`` as published: ``varname,start_idx,end_idx,shape``."""
    rows, at = [], 0
    for name, shape in LAYOUT:
        for kind, s in (("bias", (shape[-1],)), ("kernel", shape)):
            size = int(np.prod(s))
            rows.append({"varname": f"sequential/{name}/{kind}:0", "start_idx": at, "end_idx": at + size,
                         "shape": str(s)})
            at += size
    assert at == PARAMETERS
    return pd.DataFrame(rows)


def write_metrics(folder: Path, metrics: pd.DataFrame) -> None:
    with gzip.open(folder / "metrics.csv.gz", "wt") as f:
        metrics.to_csv(f, index=False)


def write_zoo(folder: Path, n: int = 40, seed: int = 0, split_name: str = "cifar10_split.csv"
              ) -> tuple[np.ndarray, pd.DataFrame]:
    """Tiny zoo: ``n`` rows of 4970 float32, checkpoints at steps 0 / 20 / 86, relu and tanh,
    and a split file with NFN's stray "0" header line."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    weights = (rng.standard_normal((n, PARAMETERS)) * 0.3).astype(np.float32)
    steps = rng.choice([0, 20, 86], n, p=[0.2, 0.2, 0.6])
    steps[0] = 86
    metrics = pd.DataFrame({"config.activation": rng.choice(["relu", "tanh"], n), "config.optimizer": "adam",
                            "step": steps, "test_accuracy": rng.uniform(0.1, 0.6, n).round(4),
                            "train_accuracy": rng.uniform(0.1, 0.6, n)})
    np.save(folder / "weights.npy", weights)
    write_metrics(folder, metrics)
    layout_table().to_csv(folder / "layout.csv", index=False)
    order = rng.permutation(n)
    (folder / split_name).write_text("0\n" + "\n".join(map(str, order)) + "\n")
    return weights, metrics
