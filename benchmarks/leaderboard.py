"""Leaderboard: a pure function of the run records, rendered to Markdown.

``python -m benchmarks.leaderboard [--out runs] [--reference results|none]`` writes
``OUT/leaderboard.md``. Records become one tidy ``pandas.DataFrame`` (one row per run: its
configuration, every metric, its learning flags); per profile, suite and dataset there is
one row per method *and configuration* (a table never averages different configurations:
each row states its budget), with mean +- std over seeds of the test metrics and of the
metric on each robustness transform, the mean output change under it, parameters,
training time, throughput and peak memory, the shipped reference of the same
configuration where there is one, and flags for runs that were still improving at their
last epoch or never rose above chance on validation.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from benchmarks.metrics import METRICS
from benchmarks.record_schema import RunRecord
from benchmarks.records import load_records, reference_folder
from benchmarks.suites import SUITES
from datasets.errors import ConfigError, WsbenchError
from datasets.files import atomic_write_text

PROFILE_ORDER = ("paper", "quick", "smoke")
UNDER_BUDGET, DID_NOT_LEARN = "still improving", "did not learn"


def learning_flags(record: RunRecord) -> list[str]:
    """``still improving``: the best validation epoch is the last (the budget cut it off);
    ``did not learn``: the best validation score never left chance (within its margin)."""
    if record["status"] != "ok":
        return []
    flags = []
    history, metric = record["history"], record["chance"]["metric"]
    if len(history) > 1 and record["best_epoch"] == len(history):
        flags.append(UNDER_BUDGET)
    best = record["val"].get(metric)
    level, margin = record["chance"]["value"], record["chance"]["margin"]
    higher = METRICS[metric].higher_is_better
    if best is None or (best <= level + margin if higher else best >= level - margin):
        flags.append(DID_NOT_LEARN)
    return flags


def budget(record: RunRecord) -> str:
    """The run's budget and options, as a table cell: epochs, model profile, data limit,
    method and dataset options, precision."""
    config = record["config"]
    train = config["train"]
    parts = [f"{train.get('epochs', '?')} ep"] + ([f"lr {train['lr']:g}"] if "lr" in train else [])
    parts.append(f"{config['model_profile']} model")
    if config["data"].get("limit"):
        parts.append(f"limit {config['data']['limit']:,}")
    parts += [f"{k}={v}" for k, v in sorted(config["method_options"].items())]
    parts += [f"data {k}={v}" for k, v in sorted(config["data"].get("options", {}).items())]
    if config["train"].get("precision", "fp32") != "fp32":
        parts.append(config["train"]["precision"])
    return ", ".join(parts)


def frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run: identity, status, budget, flags, and every metric as a column
    (``test.<metric>``, ``<transform>.<metric>``, ``<transform>.output_change``)."""
    rows = []
    for r in records:
        c = r["config"]
        row = {"profile": c["profile"], "suite": c["suite"], "dataset": c["dataset"], "method": c["method"],
               "config_id": r["config_id"], "seed": r["seed"], "status": r["status"],
               "reason": r.get("reason", ""), "budget": budget(r), "flags": learning_flags(r)}
        if r["status"] == "ok":
            row.update({f"test.{k}": v for k, v in r["metrics"].items()})
            for t, rob in r["robustness"].items():
                row.update({f"{t}.{k}": v for k, v in rob["test"].items()})
                row[f"{t}.output_change"] = rob["output_change"]
            row.update(parameters=r["parameters"], train_seconds=r["train_seconds"],
                       samples_per_second=r["samples_per_second"], peak_memory_mb=r.get("peak_memory_mb"),
                       best_epoch=r["best_epoch"], epochs=len(r["history"]))
        rows.append(row)
    return pd.DataFrame(rows)


def mean_std(values, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (sample std) of the defined values, scaled; ``–`` if there are none."""
    clean = [float(v) * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return "–"
    if len(clean) == 1:
        return f"{clean[0]:.{digits}f}"
    return f"{pd.Series(clean).mean():.{digits}f} ± {pd.Series(clean).std():.{digits}f}"


def _cell(metric: str, values) -> str:
    m = METRICS[metric]
    return mean_std(values, m.scale, m.digits)


def _flag_cell(runs: pd.DataFrame) -> str:
    counts = {flag: sum(flag in flags for flags in runs["flags"]) for flag in (UNDER_BUDGET, DID_NOT_LEARN)}
    return ", ".join(f"{flag} ({n}/{len(runs)})" for flag, n in counts.items() if n) or ""


def table(runs: pd.DataFrame, metrics: tuple[str, ...], reference: pd.DataFrame | None = None) -> list[str]:
    """Markdown lines for the runs of one (profile, suite, dataset): one row per method and
    configuration, best first; then the reasons of methods that are n/a or failed."""
    ok = runs[runs["status"] == "ok"]
    transforms = sorted({col.split(".")[0] for col in ok.columns if col.endswith(".output_change")
                         and ok[col].notna().any()})
    primary = metrics[0]
    head = ["method", "budget"] + [METRICS[m].label for m in metrics]
    for t in transforms:
        head += [f"{METRICS[primary].label} ({t})", f"Δ output ({t})"]
    head += ["params", "train s", "samples/s", "peak MB", "seeds", "flags"]
    if reference is not None:
        head.append(f"reference {METRICS[primary].label}")
    rows, notes = [], []
    for (method, cid), group in runs.groupby(["method", "config_id"], sort=True):
        good = group[group["status"] == "ok"]
        if good.empty:
            status, reason = group["status"].iloc[0], group["reason"].iloc[0]
            rows.append((math.inf, [method, group["budget"].iloc[0]] + [status] * (len(head) - 2)))
            notes.append(f"- {method} ({status}): {reason}")
            continue
        cells = [method, good["budget"].iloc[0]] + [_cell(m, good.get(f"test.{m}", [])) for m in metrics]
        for t in transforms:
            cells += [_cell(primary, good.get(f"{t}.{primary}", [])),
                      mean_std(good.get(f"{t}.output_change", []), 1.0, 4)]
        failed = len(group) - len(good)
        cells += [f"{int(good['parameters'].iloc[0]):,}", mean_std(good["train_seconds"], 1.0, 1),
                  mean_std(good["samples_per_second"], 1.0, 0), mean_std(good["peak_memory_mb"], 1.0, 0),
                  f"{len(good)}" + (f" (+{failed} failed)" if failed else ""), _flag_cell(good)]
        if reference is not None:
            ref = reference[(reference["config_id"] == cid) & (reference["status"] == "ok")]
            cells.append(f"{_cell(primary, ref.get(f'test.{primary}', []))} ({len(ref)})" if len(ref) else "–")
        score = pd.to_numeric(good.get(f"test.{primary}"), errors="coerce").mean()
        key = -score if METRICS[primary].higher_is_better else score
        rows.append((math.inf if math.isnan(key) else key, cells))
    rows.sort(key=lambda x: (x[0], x[1][0]))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for _, cells in rows]
    return lines + ([""] + notes if notes else [])


def render(records: list[RunRecord], profiles: tuple[str, ...] = ("paper", "quick"), source: str = "results",
           reference: list[RunRecord] | None = None) -> str:
    """The whole leaderboard for the given profiles. ``source`` names the records' folder;
    ``reference``: the shipped reference records, shown beside runs of the same configuration."""
    runs = frame(records)
    ref = frame(reference) if reference else None
    out = ["# wsbench leaderboard", "",
           f"Generated from `{source}/records` by `python -m benchmarks.leaderboard --out {source}`; do not edit "
           "by hand.",
           "Mean ± std over seeds; test metrics at the best-validation epoch; one row per method and",
           "configuration (its budget: epochs, model profile, data limit, options). Robustness columns: the",
           "same test split after function-preserving transforms (verified on the stored networks);",
           "Δ output is the mean absolute change of the model's output (0 for an invariant model).",
           f"Flags: '{UNDER_BUDGET}' = the best validation epoch was the last (more budget would help);",
           f"'{DID_NOT_LEARN}' = validation never rose above chance.", ""]
    if runs.empty or not runs["profile"].isin(profiles).any():
        out.append("No records yet: run `python -m benchmarks.run --suite inr`.")
        return "\n".join(out)
    runs = runs[runs["profile"].isin(profiles)]
    order = {p: i for i, p in enumerate(PROFILE_ORDER)}
    for (profile, suite, dataset), group in sorted(runs.groupby(["profile", "suite", "dataset"]),
                                                   key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2])):
        out += [f"## {suite} / {dataset} ({profile} profile)", ""]
        metrics = SUITES[suite].metrics if suite in SUITES else tuple(
            c.split(".", 1)[1] for c in group.columns if c.startswith("test."))
        out += table(group, metrics, ref)
        out.append("")
    return "\n".join(out)


def write(out: Path, profiles: tuple[str, ...] = ("paper", "quick"), name: str = "leaderboard.md",
          reference: Path | None = None) -> str:
    """Render from ``out/records`` (with ``reference/records`` beside) and write ``out/<name>``
    atomically; returns the text."""
    metrics_of = {name: suite.metrics for name, suite in SUITES.items()}
    ref = load_records(reference, metrics_of) if reference is not None else None
    text = render(load_records(out, metrics_of), profiles, str(out), ref)
    atomic_write_text(out / name, text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard",
                                     description="Render the leaderboard (Markdown) from the run records.")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="results folder with records/ (default runs)")
    parser.add_argument("--reference", default="shipped",
                        help="results folder shown beside as the reference (default: the repository's results/; "
                             "'none' to leave it out)")
    parser.add_argument("--profiles", nargs="+", default=["paper", "quick"], choices=PROFILE_ORDER)
    args = parser.parse_args(argv)
    try:
        if not (args.out / "records").is_dir():
            raise ConfigError(f"{args.out}: no records/ folder here; give the results folder of your runs "
                              f"(--out DIR, default runs)")
        reference = (reference_folder(args.out) if args.reference == "shipped"
                     else None if args.reference == "none" else Path(args.reference))
        if reference is not None and not (reference / "records").is_dir():
            raise ConfigError(f"{reference}: no records/ folder here to show as the reference")
        print(write(args.out, tuple(args.profiles), reference=reference))
    except WsbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
