"""Leaderboard: a pure function of the run records, rendered to Markdown.

``python -m benchmarks.leaderboard [--out results]`` writes ``results/leaderboard.md``. Per
profile, suite and dataset: one row per method with mean +- std over seeds of the test
metrics and of the metric on each robustness transform, the mean output change under it,
parameters, training time, training throughput and peak memory; methods that cannot take the dataset show "n/a".
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.metrics import METRICS
from benchmarks.records import load_records
from benchmarks.suites import SUITES
from datasets.cache import atomic_write_text

PROFILE_ORDER = ("paper", "quick", "smoke")
METRIC_LABELS = {"accuracy": "accuracy %", "kendall_tau": "Kendall τ", "r2": "R²", "mse": "MSE"}


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _fmt_metric(name: str, values: list[float]) -> str:
    return mean_std(values, 100.0, 2) if name == "accuracy" else mean_std(values, 1.0, 3)


def table(records: list[dict], metrics: tuple[str, ...]) -> list[str]:
    """Markdown rows for the records of one (profile, suite, dataset)."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    transforms = sorted({t for r in records if r["status"] == "ok" for t in r["robustness"]})
    primary = metrics[0]
    head = ["method"] + [METRIC_LABELS.get(m, m) for m in metrics]
    for t in transforms:
        head += [f"{METRIC_LABELS.get(primary, primary)} ({t})", f"Δ output ({t})"]
    head += ["params", "train s", "samples/s", "peak MB", "seeds"]
    rows = []
    for method, runs in by_method.items():
        ok = [r for r in runs if r["status"] == "ok"]
        if not ok:
            status = runs[0]["status"]
            reason = runs[0].get("reason", "").replace("|", "/")[:80]
            rows.append((float("inf"), [method] + [status] * (len(head) - 2) + [f"({reason})"]))
            continue
        cells = [method] + [_fmt_metric(m, [r["metrics"][m] for r in ok]) for m in metrics]
        for t in transforms:
            rob = [r["robustness"][t] for r in ok if t in r["robustness"]]
            cells += [_fmt_metric(primary, [x["test"][primary] for x in rob]),
                      mean_std([x["output_change"] for x in rob], 1.0, 4)]
        cells += [f"{ok[0]['parameters']:,}", mean_std([r["train_seconds"] for r in ok], 1.0, 1),
                  mean_std([r["samples_per_second"] for r in ok if "samples_per_second" in r], 1.0, 0),
                  mean_std([r["peak_memory_mb"] for r in ok if "peak_memory_mb" in r], 1.0, 0),
                  str(len(ok)) + (f" (+{len(runs) - len(ok)} failed)" if len(runs) > len(ok) else "")]
        score = statistics.mean(r["metrics"][primary] for r in ok)
        rows.append((-score if METRICS[primary].higher_is_better else score, cells))
    rows.sort(key=lambda x: (x[0], x[1][0]))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in rows]
    return lines


def render(records: list[dict], profiles: tuple[str, ...] = ("paper", "quick")) -> str:
    """The whole leaderboard for the given profiles."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["profile"] in profiles:
            groups[(PROFILE_ORDER.index(r["profile"]), r["profile"], r["suite"], r["dataset"])].append(r)
    out = ["# wsbench leaderboard", "",
           "Generated from `results/records` by `python -m benchmarks.leaderboard`; do not edit by hand.",
           "Mean ± std over seeds; test metrics at the best-validation epoch. Robustness columns: the",
           "same test split after function-preserving transforms (verified on the stored networks);",
           "Δ output is the mean absolute change of the model's output (0 for an invariant model).", ""]
    if not groups:
        out.append("No records yet: run `python -m benchmarks.run --suite inr`.")
    for (_, profile, suite, dataset), recs in sorted(groups.items()):
        out += [f"## {suite} / {dataset} ({profile} profile)", ""]
        out += table(recs, SUITES[suite].metrics if suite in SUITES else tuple(recs[0].get("metrics", {})))
        out.append("")
    return "\n".join(out)


def write(out: Path, profiles: tuple[str, ...] = ("paper", "quick"), name: str = "leaderboard.md") -> str:
    """Render from ``out/records`` and write ``out/<name>`` atomically; returns the text."""
    text = render(load_records(out), profiles)
    atomic_write_text(out / name, text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (default results)")
    parser.add_argument("--profiles", nargs="+", default=["paper", "quick"], choices=PROFILE_ORDER)
    args = parser.parse_args(argv)
    print(write(args.out, tuple(args.profiles)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
