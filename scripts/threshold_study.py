"""Learning-threshold study: for each method, the smallest configuration that leaves the
starting plateau within the quick budget at the learning rate its profile trains with,
chosen on validation only, and the best learning rate seen beside it.

    python scripts/threshold_study.py [--methods ...] [--datasets digits-inr] [--lrs ... | --lr-factors 1/3 1 3]
        [--sizes all|smallest|default] [--dataset-option KEY=VALUE] [--seeds 0]
        [--mnist-source DIR_WITH_IDX --mnist-limit 1000] [--out runs/threshold] [--report-only]

For every method, every candidate size in :data:`CANDIDATES` (smallest first; a candidate
equal to the quick profile runs as the plain profile) is trained with every learning rate
(default: the method's own times ``--lr-factors``) on one seed under the quick profile,
through the harness's configuration (``benchmarks.config.EvaluationConfig``; records under
``--out``, so a rerun skips what is done). Per run the study finds the first epoch whose validation metric leaves chance (above
the majority-class accuracy plus two standard deviations of a guessing classifier): that, in
optimiser steps, is the "steps to leave the plateau". Per method it picks, at the method's
own learning rate, the smallest size whose validation score is within ``--within`` of the
best size's and that left the plateau; the best learning rate of each size is shown beside
(a ``--lr`` to try; the profiles keep one learning rate per method). The test split is never
read. Prints the table (Markdown) of docs/notes/threshold-study.md."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import EvaluationConfig, resolve  # noqa: E402
from benchmarks.grid import run_grid  # noqa: E402
from benchmarks.launchers import register_all  # noqa: E402
from datasets.errors import exit_status  # noqa: E402
from datasets.method_table import METHODS  # noqa: E402

# Candidate quick sizes per method, smallest first (hyperparameter overrides of the quick profile).
CANDIDATES: dict[str, list[dict]] = {
    "mlp": [{"hidden": 128, "layers": 2}, {"hidden": 256, "layers": 3}],
    "mlp-aug": [{"hidden": 128, "layers": 2}, {"hidden": 256, "layers": 3}],
    "deepsets": [{"phi_hidden": 64, "rho_hidden": 64}, {"phi_hidden": 128, "rho_hidden": 128},
                 {"phi_hidden": 256, "rho_hidden": 256}],
    "statnn": [{"hidden": 128}, {"hidden": 256}, {"hidden": 512}],
    "dwsnet": [{"width": 8}, {"width": 16}, {"width": 32}],
    "nfn-np": [{"channels": (16, 16, 16)}, {"channels": (32, 32, 32)}],
    "nfn-hnp": [{"channels": (16, 16, 16)}, {"channels": (32, 32, 32)}],
    "nft": [{"channels": 16, "fourier_scale": 0.3}, {"channels": 16, "fourier_scale": 1.0},
            {"channels": 32, "fourier_scale": 3.0}],
    "ng-gnn": [{"hidden": 16}, {"hidden": 32}],
    "ng-t": [{"d_node": 32, "d_edge": 8}, {"d_node": 64, "d_edge": 16}],
    "scalegmn": [{"hidden": 16}, {"hidden": 32}],
    "scalegmn-b": [{"hidden": 16}, {"hidden": 32}],
    "probing": [{}],
}


def label(options: dict) -> str:
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in options.items()) \
        or "profile default"


def quick_default(method: str) -> dict:
    """The quick profile's hyperparameters (of the MLP domain for methods sized per domain)."""
    info = METHODS[method]
    return info.profiles["quick"]["mlp"] if info.by_domain else info.profiles["quick"]


def method_options(method: str, options: dict) -> dict:
    """The method options that differ from the quick profile (so a candidate equal to it is
    the same configuration as a plain run, and reuses its record)."""
    return {f"{method}.{key}": value for key, value in options.items() if quick_default(method).get(key) != value}


def train_grid(args: argparse.Namespace, method: str, dataset: str, data: dict) -> None:
    """Every candidate size of ``method`` at every learning rate, on ``dataset`` (``data``:
    the other fields of the configuration: data root, source, limit, dataset options)."""
    default_lr = METHODS[method].optimiser("quick").get("lr", 1e-3)
    lrs = args.lrs or [default_lr * f for f in args.lr_factors]
    sizes = CANDIDATES.get(method, [{}])
    sizes = {"all": sizes, "smallest": sizes[:1], "default": [{}]}[args.sizes]
    for options in sizes:
        for lr in lrs:
            config = EvaluationConfig(suite="inr", datasets=(dataset,), methods=(method,), seeds=tuple(args.seeds),
                                      lr=float(f"{lr:g}"), out=args.out, jobs=args.jobs,
                                      method_options=method_options(method, options), **data)
            if exit_status(lambda: run_grid(resolve(config)).status) == 2:
                raise SystemExit(f"{method} {label(options)} lr {lr:g}: refused (see the error above)")


def leave_epoch(record: dict) -> int | None:
    """The first epoch whose validation score leaves chance, or None."""
    metric, chance = record["chance"]["metric"], record["chance"]
    for entry in record["history"]:
        value = entry.get(f"val_{metric}")
        if value is not None and value > chance["value"] + chance["margin"]:
            return entry["epoch"]
    return None


def studied_size(record: dict) -> dict:
    """The record's values of the hyperparameters the study varies for its method."""
    c = record["config"]
    studied = {k for size in CANDIDATES.get(c["method"], []) for k in size}
    return {k: c["hyperparameters"][k] for k in sorted(studied) if k in c["hyperparameters"]}


def plateau_steps(record: dict) -> int | None:
    """Optimiser steps until validation first leaves chance (None: never)."""
    epoch = leave_epoch(record)
    if epoch is None:
        return None
    seen = record["samples_per_second"] * record["train_seconds"]  # training samples over all epochs
    per_epoch = math.ceil(round(seen / len(record["history"])) / record["config"]["train"]["batch_size"])
    return epoch * per_epoch


def is_quick(method: str, size: dict) -> bool:
    defaults = quick_default(method)
    return all(tuple(v) == tuple(defaults[k]) if isinstance(v, list) else v == defaults.get(k) for k, v in size.items())


def report(args: argparse.Namespace) -> str:
    """The table: per method and size, at the method's own learning rate (the one its profile
    trains with) the steps to leave the plateau and the validation accuracy, then the best
    learning rate seen on validation. Chosen: the smallest size within ``--within`` of the
    best that left the plateau at the method's learning rate."""
    runs: dict[tuple, dict[float, dict]] = defaultdict(dict)
    for path in sorted((args.out / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        if record["status"] == "ok":
            c = record["config"]
            size = studied_size(record) or c["method_options"]
            runs[(c["dataset"], c["method"], json.dumps(size, sort_keys=True))][c["train"]["lr"]] = record
    lines = ["| dataset | method | configuration | parameters | steps to leave the plateau | val accuracy % | "
             "best lr on validation (val %) |", "|---|---|---|---|---|---|---|"]
    by_method: dict[tuple, list] = defaultdict(list)
    for (dataset, method, size), by_lr in runs.items():
        own = METHODS[method].optimiser("quick").get("lr", 1e-3)
        record = next((r for lr, r in by_lr.items() if math.isclose(lr, own, rel_tol=1e-6)), None)
        best_lr, best = max(by_lr.items(), key=lambda item: item[1]["val"]["accuracy"])
        by_method[(dataset, method)].append((json.loads(size), record, best_lr, best))
    for (dataset, method), sizes in sorted(by_method.items()):
        sizes.sort(key=lambda s: (s[3]["parameters"], -(s[1]["val"]["accuracy"] if s[1] else 0.0)))  # ties: best first
        scored = [s for s in sizes if s[1] is not None]
        top = max((s[1]["val"]["accuracy"] for s in scored), default=0.0)
        pick = next((s for s in scored if s[1]["val"]["accuracy"] >= top - args.within
                     and plateau_steps(s[1]) is not None), None)
        for size, record, best_lr, best in sizes:
            mark = " **(chosen)**" if pick is not None and size == pick[0] else ""
            mark += " (quick profile)" if is_quick(method, size) else ""
            steps = None if record is None else plateau_steps(record)
            shown = ("not run" if record is None else "did not leave it" if steps is None else f"{steps:,}")
            val = "–" if record is None else f"{100 * record['val']['accuracy']:.2f}"
            lines.append(f"| {dataset} | {method} | {label(size)}{mark} | {best['parameters']:,} | {shown} | {val} | "
                         f"{best_lr:.2g} ({100 * best['val']['accuracy']:.2f}) |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="Learning-threshold study of every method's quick configuration.")
    p.add_argument("--methods", nargs="+", default=list(CANDIDATES))
    p.add_argument("--datasets", nargs="*", default=["digits-inr"], help="(none: only the MNIST subset)")
    p.add_argument("--mnist-source", type=Path, help="MNIST IDX folder: also study mnist-inr built from it")
    p.add_argument("--mnist-limit", type=int, default=1000, help="mnist-inr networks per split")
    p.add_argument("--lrs", nargs="+", type=float, help="learning rates (default: the method's times --lr-factors)")
    p.add_argument("--lr-factors", nargs="+", type=float, default=[1 / 3, 1, 3],
                   help="multiples of the method's learning rate to try (default 1/3 1 3; 1 for the method's only)")
    p.add_argument("--sizes", choices=("all", "smallest", "default"), default="all",
                   help="candidate sizes to train: all, the smallest only, or the quick profile's only")
    p.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to every run (as benchmarks.run's)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--within", type=float, default=0.02, help="smallest size within this of the best (0.02 = 2 points)")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/threshold"))
    p.add_argument("--report-only", action="store_true", help="only print the table of the records in --out")
    args = p.parse_args()
    register_all()
    if not args.report_only:
        data = {"data_root": args.data_root, "dataset_options": dict(o.split("=", 1) for o in args.dataset_option)}
        for method in args.methods:
            for dataset in args.datasets:
                train_grid(args, method, dataset, data)
            if args.mnist_source:
                train_grid(args, method, "mnist-inr", {**data, "dataset_source": args.mnist_source,
                                                       "limit": args.mnist_limit})
    print(report(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
