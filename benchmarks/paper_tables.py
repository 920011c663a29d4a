"""Paper tables: the published numbers next to ours, rendered from the run records.
``python -m benchmarks.paper_tables [--out runs]`` writes ``OUT/paper_tables.md``;
``benchmarks.run`` renders it after every suite. Each published number names its source."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmarks.leaderboard import METRICS_OF, budget, learning_flags, mean_std, unread_markdown
from benchmarks.metrics import METRICS
from benchmarks.ranking import RankAgreement, kendall
from benchmarks.record_schema import RunRecord
from benchmarks.records import Unread, load_records, report
import datasets.sources  # noqa: F401  (registers every dataset: their published split sizes)
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError, exit_status
from datasets.files import atomic_write_text


@dataclass(frozen=True)
class PaperTable:
    """One published table: per method the published numbers on ``benchmarks`` (label,
    our dataset), each beside ours, then our numbers on the embedded ``local`` datasets."""

    title: str
    source: str
    suite: str
    metric: str
    benchmarks: tuple[tuple[str, str], ...]
    published: dict[str, tuple[float | None, ...]]
    local: tuple[str, ...]
    digits: int


TABLES = (
    PaperTable("INR classification (test accuracy %)",
               "Navon et al. 2023 (DWSNets), Zhou et al. 2023 (NFN), Kofinas et al. 2024 (Neural Graphs), "
               "Kalogeropoulos et al. 2024 (ScaleGMN); DWSNets MNIST / FashionMNIST INRs, ScaleGMN's CIFAR-10 INRs",
               "inr", "accuracy", (("MNIST", "mnist-inr"), ("FashionMNIST", "fmnist-inr"), ("CIFAR-10", "cifar10-inr")),
               {"mlp": (17.55, 19.91, None), "mlp-aug": (29.26, 22.76, None), "inr2vec": (23.69, 22.33, None),
                "dwsnet": (85.71, 67.06, None), "nfn-np": (78.50, 68.19, None), "nfn-hnp": (79.11, 68.94, None),
                "ng-gnn": (91.40, 68.00, None), "ng-gnn, 64 probes": (94.7, 74.2, None),
                "ng-t, 64 probes": (97.3, 74.8, None), "scalegmn": (96.57, 80.46, 36.43),
                "scalegmn-b": (96.59, 80.78, 38.82)},
               ("digits-inr",), 2),
    PaperTable("CNN generalization prediction (Kendall τ)",
               "Zhou et al. 2023 (NFN, NFT), Kofinas et al. 2024 (Neural Graphs); Small CNN Zoo CIFAR10-GS, "
               "CNN Wild Park", "zoo", "kendall_tau",
               (("CIFAR10-GS", "small-cnn-zoo-cifar10"), ("CNN Wild Park", "cnn-wild-park")),
               {"statnn": (0.915, None), "nfn-np": (0.922, None), "nfn-hnp": (0.934, None), "nft": (0.926, None),
                "ng-gnn": (0.930, 0.804), "ng-t": (0.935, 0.817)},
               ("digits-cnn-zoo", "digits-cnn-park"), 3),
    PaperTable("INR editing: dilation (pixel MSE ×10⁻², targets in [0, 1])",
               "Kofinas et al. 2024 (Neural Graphs) Table 2 and Kalogeropoulos et al. 2024 (ScaleGMN), MNIST INRs; "
               "NG-GNN and NG-T with 64 probes. NFN's own setting (Zhou et al. 2023, Table 6: its INRs, targets in "
               "[-1, 1], so not comparable): MLP 0.306, MLP-aug 0.307, NFN-HNP 0.070, NFN-NP 0.068",
               "edit", "pixel_mse", (("MNIST", "mnist-inr"),),
               {"nft": (5.10,), "nfn-np": (2.55,), "dwsnet": (2.29,), "ng-gnn, 64 probes": (2.06,),
                "scalegmn-b": (1.89,), "ng-t, 64 probes": (1.75,)},
               ("digits-inr",), 2),
)


PROFILES = ("quick", "paper")  # our columns: one per model profile that has records


def _rank(records: list[RunRecord]) -> tuple:
    """Which configuration of a method best stands for our number within one profile: the
    most data, the most epochs (under a time limit, the most its runs trained: the limit set
    their budget), then the most seeds."""
    config = records[0]["config"]
    limit = config["data"].get("limit") or 10**12
    epochs = (max(len(r["history"]) for r in records) if config["train"].get("time_limit")
              else config["train"]["epochs"])
    return (limit, epochs, len(records))


@dataclass(frozen=True)
class Ours:
    """Our number for one method on one dataset: the mean over the seeds of one
    configuration, its standard deviation over them (``None`` for one seed), and the table
    cell (mean ± std, budget, data size, epochs trained, seeds)."""

    mean: float | None
    std: float | None
    cell: str


def data_size(record: RunRecord) -> str:
    """How much of the dataset the run saw: the limit per split, out of the published split
    sizes where the registration knows them."""
    config = record["config"]
    limit = config["data"].get("limit")
    entry = DATASETS[config["dataset"]] if config["dataset"] in DATASETS else None
    splits = entry.info.splits if entry is not None else None
    if not limit:
        return "all networks" if splits is None else f"all {' / '.join(f'{n:,}' for n in splits)} networks"
    if splits is None:
        return f"at most {limit:,} networks per split"
    return (f"{' / '.join(f'{min(limit, n):,}' for n in splits)} of {' / '.join(f'{n:,}' for n in splits)} "
            "networks (train / val / test)")


def trained(runs: list[RunRecord]) -> str:
    """The epochs the runs trained, where early stopping or a time limit made them differ
    from the budget."""
    train = runs[0]["config"]["train"]
    if not (train.get("patience") or train.get("time_limit")):
        return ""
    counts = sorted(len(r["history"]) for r in runs)
    return f", trained {counts[0]}" + (f"–{counts[-1]}" if counts[-1] != counts[0] else "") + " ep"


def flag_counts(runs: list[RunRecord]) -> dict[str, int]:
    """How many of the runs carry each learning flag ('still improving', 'did not learn')."""
    counts: dict[str, int] = defaultdict(int)
    for r in runs:
        for flag in learning_flags(r):
            counts[flag] += 1
    return dict(counts)


def ours(records: list[RunRecord], suite: str, dataset: str, metric: str, profile: str) -> dict[str, Ours]:
    """Per method on ``dataset`` in ``suite`` under ``profile``: mean ± std over the seeds of
    one configuration (the largest budget present; configurations are never mixed), with that
    budget, the data size, the epochs trained under early stopping and the number of seeds."""
    by: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        c = r["config"]
        if (c["suite"], c["dataset"], c["profile"]) == (suite, dataset, profile) and r["status"] == "ok":
            by[(c["method"], r["config_id"])].append(r)
    best: dict[str, list[RunRecord]] = {}
    for (method, _), runs in by.items():
        if method not in best or _rank(runs) > _rank(best[method]):
            best[method] = runs
    shown = METRICS[metric]
    result = {}
    for method, runs in sorted(best.items()):
        values = [r["metrics"][metric] for r in runs if r["metrics"][metric] is not None]
        seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
        flags = "".join(f"; {flag} ({n}/{len(runs)})" for flag, n in flag_counts(runs).items())
        cell = (f"{mean_std([r['metrics'][metric] for r in runs], shown.scale, shown.digits)} "
                f"({runs[0]['config']['profile']}, {budget(runs[0])}{trained(runs)}; {data_size(runs[0])}; "
                f"{seeds}{flags})")
        result[method] = Ours(statistics.fmean(values) if values else None,
                              statistics.stdev(values) if len(values) > 1 else None, cell)
    return result


def our_columns(records: list[RunRecord], table: PaperTable, label: str, dataset: str) -> list[tuple[str, dict]]:
    """Our columns for one dataset: one per model profile with records (named by the profile
    when there are two), or one empty column."""
    columns = [(profile, ours(records, table.suite, dataset, table.metric, profile)) for profile in PROFILES]
    present = [(profile, column) for profile, column in columns if column]
    if len(present) < 2:
        return [(f"{label} (ours)", present[0][1] if present else {})]
    return [(f"{label} (ours, {profile} models)", column) for profile, column in present]


def agreement(ours_column: dict[str, Ours], published: dict[str, float | None], metric: str) -> RankAgreement:
    """Kendall's τ between our means and the published numbers over the methods both have,
    also at our resolution (pairs within the seeds' spread tied)."""
    mine = {m: o.mean for m, o in ours_column.items() if o.mean is not None}
    spread = {m: o.std for m, o in ours_column.items() if o.mean is not None and o.std is not None}
    return kendall(mine, {m: v for m, v in published.items() if v is not None}, METRICS[metric].higher_is_better,
                   spread)


def render_table(records: list[RunRecord], table: PaperTable) -> list[str]:
    """The Markdown lines of one published table with our numbers beside, then Kendall's τ
    of each of our columns against the published ranking (the local datasets against the
    first published column)."""
    published = [our_columns(records, table, label, d) for label, d in table.benchmarks]
    local = [column for d in table.local for column in our_columns(records, table, d, d)]
    methods = list(table.published) + sorted(
        {m for _, col in [*(c for cols in published for c in cols), *local] for m in col} - set(table.published))
    header = [h for (label, _), cols in zip(table.benchmarks, published) for h in (f"{label} (paper)", *(n for n, _ in cols))]
    header += [name for name, _ in local]
    lines = ["", f"## {table.title}", "", f"Published: {table.source}.", "",
             "| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for m in methods:
        values = table.published.get(m, (None,) * len(table.benchmarks))
        cells = [c for v, cols in zip(values, published)
                 for c in ("–" if v is None else f"{v:.{table.digits}f}", *(col[m].cell if m in col else "–"
                                                                          for _, col in cols))]
        cells += [col[m].cell if m in col else "–" for _, col in local]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    columns = [(name, label, col, i) for i, ((label, _), cols) in enumerate(zip(table.benchmarks, published))
               for name, col in cols]
    columns += [(name, table.benchmarks[0][0], col, 0) for name, col in local]
    ranked = []
    for name, label, col, i in columns:
        result = agreement(col, {m: v[i] for m, v in table.published.items()}, table.metric)
        if len(result.methods) >= 2:
            ranked.append(f"- {name} against {label} (paper): "
                          f"{result.describe(METRICS[table.metric].higher_is_better)}.")
    return lines + (["", *ranked] if ranked else [])


def render(records: list[RunRecord], source: str = "results", unread: list[Unread] = ()) -> str:
    """The published tables with our numbers beside, as Markdown; ``unread``: the record
    files that could not be read, listed above the tables."""
    lines = ["# Published results next to ours", "",
             f"Generated from `{source}/records` by `python -m benchmarks.paper_tables --out {source}`; do not edit "
             "by hand.",
             "'–': not published, or not run here yet."]
    if unread:
        lines += ["", *unread_markdown(unread)[:-1]]  # each table starts with its blank line
    for table in TABLES:
        lines += render_table(records, table)
    return "\n".join(lines)


def write(out: Path, report_unread: bool = False) -> str:
    """Render from ``out/records`` and write ``out/paper_tables.md``; returns the Markdown.
    With ``report_unread``, each record file not read is also named on stderr, then counted."""
    records, unread = load_records(out, METRICS_OF)
    if report_unread:
        report(unread)
    text = render(records, str(out), unread)
    atomic_write_text(out / "paper_tables.md", text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_tables",
                                     description="Render the published numbers beside ours from the run records.")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="results folder with records/ (default runs)")
    args = parser.parse_args(argv)

    def render_tables() -> None:
        if not (args.out / "records").is_dir():
            raise ConfigError(f"{args.out}: no records/ folder here; give the results folder of your runs (--out DIR)")
        print(write(args.out, report_unread=True))

    return exit_status(render_tables)


if __name__ == "__main__":
    sys.exit(main())
