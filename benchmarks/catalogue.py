"""The catalogue: the dataset and method tables as pandas DataFrames and as text, for
``python -m benchmarks.run --list`` (and any tool that wants them)."""

from __future__ import annotations

import pandas as pd

from benchmarks.suites import SUITES
from datasets.dataset_table import DATASETS
from datasets.method_table import METHODS


def dataset_frame() -> pd.DataFrame:
    """One row per registered dataset: its facts and its options."""
    rows = []
    for name, entry in DATASETS.items():
        info = entry.info
        rows.append({"dataset": name, "suites": ",".join(info.suites), "task": info.task, "outputs": info.out_dim,
                     "embedded": info.embedded, "version": info.version,
                     "splits": "/".join(f"{n:,}" for n in info.splits) if info.splits else "",
                     "options": ", ".join(f"{k}={o.default!r} ({o.valid()})" for k, o in entry.source.options.items()),
                     "source": info.source, "licence": info.licence, "description": info.description})
    return pd.DataFrame(rows)


def method_frame() -> pd.DataFrame:
    """One row per registered method: its facts and its quick-profile hyperparameters."""
    rows = []
    for name, info in METHODS.items():
        quick = info.profiles["quick"]
        rows.append({"method": name, "family": info.family, "symmetries": ",".join(sorted(info.symmetries)) or "none",
                     "blind to": ",".join(sorted(info.blind_to)), "mixed architectures": info.heterogeneous,
                     "edits": "edit" in info.tasks,
                     "version": info.version, "options": ", ".join(sorted(info.option_names("quick"))),
                     "quick": "; ".join(f"{d}: {v}" for d, v in quick.items()) if info.by_domain else str(quick),
                     "paper": info.paper})
    return pd.DataFrame(rows)


def render() -> str:
    """Both tables and the suites, as text."""
    suites = "\n".join(f"  {name}: {suite.description}; metrics {', '.join(suite.metrics)}; datasets "
                       f"{', '.join(suite.datasets())} (default: {', '.join(suite.default_datasets())})"
                       for name, suite in SUITES.items())
    with pd.option_context("display.max_colwidth", 80, "display.width", 250):
        datasets = dataset_frame().drop(columns=["source", "licence", "options"]).to_string(index=False)
        methods = method_frame().drop(columns=["quick", "options"]).to_string(index=False)
        options = "\n".join(f"  {row.dataset}: {row.options or '(none)'}" for row in dataset_frame().itertuples())
        method_options = "\n".join(f"  {row.method}: {row.options}" for row in method_frame().itertuples())
    return (f"Suites\n{suites}\n\nDatasets\n{datasets}\n\nDataset options (--dataset-option KEY=VALUE)\n{options}"
            f"\n\nMethods\n{methods}\n\nMethod options (--method-option [METHOD.]KEY=VALUE)\n{method_options}")
