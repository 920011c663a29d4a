"""Entry point: ``python -m benchmarks.run --suite inr``.

Loads (building where needed) every dataset of the suite, trains every registered method
that applies on every seed under the one protocol, writes one record per run, and prints
the leaderboard. Finished runs are skipped unless ``--force`` (runs that ended "n/a" or
"failed" are tried again); a run killed at any moment loses nothing already finished.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

from benchmarks import leaderboard, paper_tables
from benchmarks.records import read_record
from benchmarks.runner import RunSpec, execute, load_dataset
from benchmarks.suites import SUITES
from benchmarks.tracking import TRACKERS
from datasets.cache import CacheError, default_data_root
from datasets.card import render_card
from datasets.collection import LoadOptions
from datasets.registry import DATASETS, METHODS, UnknownName

log = logging.getLogger("wsbench")
MAX_SEED, MAX_EPOCHS = 2**31 - 1, 100_000
SMOKE_LIMIT = 40


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, never a usage dump."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see --help)\n")


def bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; valid: {low}..{high}")
        return value
    return parse


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks.run", description="Run a wsbench suite.")
    p.add_argument("--suite", required=True, help=f"one of: {', '.join(SUITES)}")
    p.add_argument("--datasets", nargs="+", help="default: the suite's embedded datasets")
    p.add_argument("--methods", nargs="+", help="default: every registered method")
    p.add_argument("--seeds", nargs="+", type=bounded_int(0, MAX_SEED), default=[0, 1, 2])
    p.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), help="override the profile's epochs")
    p.add_argument("--profile", choices=["quick", "paper"], default="quick",
                   help="quick: CPU budgets (default); paper: the published budgets and model sizes")
    p.add_argument("--smoke", action="store_true",
                   help=f"whole pipeline in about a minute: 1 seed, 1 epoch, {SMOKE_LIMIT} networks per split")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=bounded_int(1, 256), default=1,
                   help="torch threads per process (default 1: fastest on a small shared CPU)")
    p.add_argument("--jobs", type=bounded_int(1, 64), default=None,
                   help="runs in parallel processes (default: CPU cores / threads, at most 4; 1 on CUDA)")
    p.add_argument("--data-root", type=Path, default=None,
                   help="dataset cache folder (default $WSBENCH_DATA or ~/.cache/wsbench)")
    p.add_argument("--dataset-source", type=Path, help="folder of published files or raw data to read")
    p.add_argument("--dataset-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="dataset-specific option, e.g. views=2 or steps=500 (repeatable)")
    p.add_argument("--probes", type=bounded_int(0, 4096), default=0,
                   help="graph methods: K learned probe inputs whose activations become node features (default 0)")
    p.add_argument("--limit", type=bounded_int(1, 10**9), help="at most N networks (or images) per split")
    p.add_argument("--skip-invalid", action="store_true", help="skip malformed networks instead of failing")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default results)")
    p.add_argument("--force", action="store_true", help="redo runs that already have a record")
    p.add_argument("--track", choices=TRACKERS, default="none", help="experiment tracking (wandb: offline without a key)")
    return p


def check_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{what} {folder} cannot be written: {err.strerror or err}") from None


def plan(args: argparse.Namespace) -> tuple[list[str], list[str], LoadOptions]:
    """Validate names and folders; return datasets, methods and load options."""
    suite = SUITES[args.suite]
    names = args.datasets or list(suite.default_datasets)
    for name in names:
        entry = DATASETS[name]
        if entry.suite != suite.name:
            raise ValueError(f"dataset {name!r} belongs to suite {entry.suite!r}, not {suite.name!r}; "
                             f"{suite.name} datasets: {', '.join(suite.datasets())}")
    methods = args.methods or list(METHODS)
    for method in methods:
        METHODS[method]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available to this torch build")
    root = args.data_root or default_data_root()
    check_writable(root, "data root")
    check_writable(args.out, "output folder")
    limit = args.limit or (SMOKE_LIMIT if args.smoke else None)
    return names, methods, LoadOptions(root, args.dataset_source, limit, args.skip_invalid,
                                       sys.stderr.isatty(), dict(args.dataset_option))


def method_options(method: str, args: argparse.Namespace) -> tuple[tuple[str, int], ...]:
    """Model options from the command line that apply to ``method`` (probes: graph methods)."""
    return (("probes", args.probes),) if args.probes and METHODS[method].family == "graph" else ()


def run_in_worker(spec: RunSpec, threads: int) -> dict:
    """Worker-process entry: register everything, load the cached dataset, run."""
    torch.set_num_threads(threads)
    register_all()
    return execute(spec, load_dataset(spec.dataset, spec.data))


def register_all() -> None:
    import baselines  # noqa: F401
    import datasets.sources  # noqa: F401
    import methods  # noqa: F401


def summarise(record: dict, primary: str) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record.get('reason', '')}"
    perm = record["robustness"].get("permutation", {})
    change = f", Δ output under permutation {perm['output_change']:.4f}" if perm else ""
    return f"test {primary} {record['metrics'][primary]:.4f}{change} ({record['train_seconds']:.1f} s)"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    register_all()
    try:
        names, methods, options = plan(args)
    except (UnknownName, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.jobs is None:
        args.jobs = 1 if args.device == "cuda" else max(1, min(4, (os.cpu_count() or 1) // args.threads))
    profile = "smoke" if args.smoke else args.profile
    seeds = [args.seeds[0]] if args.smoke else sorted(set(args.seeds))
    suite = SUITES[args.suite]
    epochs = args.epochs or suite.epochs.get(profile)
    start = time.perf_counter()
    todo, loaded, finished = [], {}, []
    for name in names:
        try:
            dataset = load_dataset(name, options)
        except (FileNotFoundError, ValueError, CacheError) as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            return 2
        loaded[name] = dataset
        log.info(render_card(dataset.card))
        for method in methods:
            for seed in seeds:
                spec = RunSpec(args.suite, name, method, seed, profile, options, args.out, epochs,
                               args.device, args.track, "paper" if args.profile == "paper" else "quick",
                               method_options(method, args))
                old = None if args.force else read_record(spec.path)
                if (old and old["status"] == "ok"
                        and old["fingerprint"] == spec.fingerprint(dataset.card.get("fingerprint", ""))):
                    finished.append(old)
                    continue
                todo.append(spec)
    log.info("%d runs to do, %d already finished", len(todo), len(finished))
    records = finished + list(run_all(todo, loaded, args, suite.primary))
    failed = [r for r in records if r["status"] == "failed"]
    profiles = (profile,)
    text = leaderboard.write(args.out, profiles, "leaderboard.md" if profile != "smoke" else "leaderboard-smoke.md")
    print(text)
    if profile != "smoke":
        paper_tables.write(args.out)
    log.info("suite %s: %d runs (%d new, %d failed) in %.1f s", args.suite, len(records), len(todo),
             len(failed), time.perf_counter() - start)
    return 1 if failed else 0


def run_all(todo: list[RunSpec], loaded: dict, args: argparse.Namespace, primary: str):
    """Execute runs inline or in ``--jobs`` worker processes, yielding records as they end."""
    total = len(todo)
    if args.jobs == 1 or total <= 1:
        for i, spec in enumerate(todo, 1):
            record = execute(spec, loaded[spec.dataset])
            log.info("[%d/%d] %s / %s / seed %d: %s", i, total, spec.dataset, spec.method, spec.seed,
                     summarise(record, primary))
            yield record
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_in_worker, spec, args.threads): spec for spec in todo}
        for i, future in enumerate(as_completed(futures), 1):
            spec, record = futures[future], future.result()
            log.info("[%d/%d] %s / %s / seed %d: %s", i, total, spec.dataset, spec.method, spec.seed,
                     summarise(record, primary))
            yield record


if __name__ == "__main__":
    sys.exit(main())
