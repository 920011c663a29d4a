"""Entry point: ``python -m benchmarks.run --suite inr`` (``--list`` prints the catalogue).

Loads (building where needed) every dataset of the suite, trains every registered method
that applies on every seed under the one protocol, writes one record per run, and prints
the leaderboard. A run's record path is its identity (everything that changes its result),
so finished runs are skipped and a run of another configuration never overwrites one;
``--force`` redoes them. Runs that ended "n/a" or "failed" are tried again, and so are finished
runs whose record lacks a robustness transform the suite now measures; a run killed at
any moment loses nothing already finished. Runs go to your own results folder (``--out``,
default ``$WSBENCH_RESULTS`` or ``./runs``); the shipped reference results in the
repository's ``results/`` are shown beside yours and are changed only with
``--update-reference``. ``--fetch`` first downloads the published files of datasets that lack
them (``benchmarks.fetch``); ``--launcher ray`` runs the grid on a Ray cluster
(``benchmarks.launchers``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import catalogue, leaderboard, paper_tables, tracking
from benchmarks.fetch import fetch_missing
from benchmarks.launchers import LAUNCHERS, check_launcher, create_launcher, register_all
from benchmarks.protocol import PRECISIONS
from benchmarks.records import is_reference, read_record, reference_folder
from benchmarks.runner import Planned, RunSpec, execute, is_finished, load_dataset, missing_transforms, plan
from benchmarks.suites import SUITES, Suite
from datasets.cache import default_data_root
from datasets.card import render_card
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError, exit_status
from datasets.method_table import METHODS
from datasets.source import LoadOptions

log = logging.getLogger("wsbench")
MAX_SEED, MAX_EPOCHS = 2**31 - 1, 100_000
SMOKE_LIMIT = 40
RESULTS_ENV = "WSBENCH_RESULTS"


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is out of range; valid: a positive number")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def folder(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a folder")
    return Path(text)


def default_out() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or "runs")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks.run", description="Run a wsbench suite (or --list the catalogue).")
    p.add_argument("--list", action="store_true", help="print the dataset and method tables and exit")
    p.add_argument("--suite", help=f"one of: {', '.join(SUITES)}")
    p.add_argument("--datasets", nargs="+", help="default: the suite's embedded datasets")
    p.add_argument("--methods", nargs="+", help="default: every registered method")
    p.add_argument("--seeds", nargs="+", type=bounded_int(0, MAX_SEED), default=[0, 1, 2])
    p.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), help="override the profile's epochs")
    p.add_argument("--profile", choices=["quick", "paper"], default="quick",
                   help="quick: CPU budgets (default); paper: the published budgets and model sizes")
    p.add_argument("--smoke", action="store_true",
                   help=f"whole pipeline in about a minute: 1 seed, 1 epoch, {SMOKE_LIMIT} networks per split")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--lr", type=positive_float, help="override the learning rate (method and profile default)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="bf16: bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="train through torch.compile")
    p.add_argument("--threads", type=bounded_int(1, 256), default=1,
                   help="torch threads per process (default 1: fastest on a small shared CPU)")
    p.add_argument("--jobs", type=bounded_int(1, 64), default=None,
                   help="runs in parallel processes (default: CPU cores / threads, at most 4; 1 on CUDA)")
    p.add_argument("--data-root", type=folder, default=None,
                   help="dataset cache folder (default $WSBENCH_DATA or ~/.cache/wsbench)")
    p.add_argument("--dataset-source", type=folder, help="folder of published files or raw data to read")
    p.add_argument("--fetch", action="store_true",
                   help="download the published files of every selected dataset that lacks them (checked, unpacked)")
    p.add_argument("--dataset-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. views=2 or steps=500 (repeatable; --list shows them)")
    p.add_argument("--method-option", type=key_value, action="append", default=[], metavar="[METHOD.]KEY=VALUE",
                   help="model hyperparameter, e.g. probes=64 (every selected method that has it) or "
                        "ng-gnn.hidden=64 (repeatable; --list shows them)")
    p.add_argument("--limit", type=bounded_int(1, 10**9), help="at most N networks (or images) per split")
    p.add_argument("--skip-invalid", action="store_true", help="skip malformed networks instead of failing")
    p.add_argument("--out", type=folder, default=None,
                   help=f"your results folder (default ${RESULTS_ENV} or ./runs)")
    p.add_argument("--update-reference", action="store_true",
                   help="allow writing into the shipped reference results (maintainers)")
    p.add_argument("--force", action="store_true", help="redo runs that already have a record")
    p.add_argument("--track", choices=tracking.TRACKERS, default="none",
                   help="experiment tracking (wandb: offline without a key)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: worker processes here (default); ray: one Ray task per run")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join this Ray cluster (default: start a local one of --jobs x --threads CPUs)")
    return p


def check_writable(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be written: {err.strerror or err}") from None


def unique(names: list[str]) -> list[str]:
    """``names`` without repeats, in order (``--methods statnn statnn`` trains once)."""
    return list(dict.fromkeys(names))


def method_options(methods: list[str], given: list[tuple[str, str]], profile: str) -> dict[str, dict[str, str]]:
    """Per method, the ``--method-option`` values that apply to it (``KEY=VALUE``: every
    selected method that has ``KEY``; ``METHOD.KEY=VALUE``: that method). An option no
    selected method has, or a value of the wrong type, is refused now, before any work."""
    chosen: dict[str, dict[str, str]] = {m: {} for m in methods}
    for key, value in given:
        target, _, name = key.rpartition(".")
        if target and METHODS[target] and target not in chosen:
            raise ConfigError(f"--method-option {key}: method {target!r} is not selected "
                              f"(selected: {', '.join(methods)})")
        candidates = [target] if target else methods
        takers = [m for m in candidates if name in METHODS[m].option_names(profile)]
        if not takers:
            valid = sorted(set().union(*(METHODS[m].option_names(profile) for m in candidates)))
            raise ConfigError(f"--method-option {key}: no selected method has option {name!r}; valid: "
                              f"{', '.join(valid)}")
        for m in takers:
            METHODS[m].check_option(profile, name, value)
            chosen[m][name] = value
    return chosen


def plan_suite(args: argparse.Namespace) -> tuple[Suite, list[str], list[str], LoadOptions, dict]:
    """Validate everything the command line names before any work; return the suite,
    datasets, methods, load options and per-method options."""
    if args.suite is None:
        raise ConfigError(f"--suite is required (one of: {', '.join(SUITES)}), or --list")
    suite = SUITES[args.suite]
    names = unique(args.datasets or suite.default_datasets())
    for name in names:
        info = DATASETS[name].info
        if suite.name not in info.suites:
            raise ConfigError(f"dataset {name!r} belongs to suite {'/'.join(info.suites)!r}, not {suite.name!r}; "
                              f"{suite.name} datasets: {', '.join(suite.datasets())}")
    methods = unique(args.methods or list(METHODS))
    for method in methods:
        METHODS[method]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available to this torch build")
    tracking.check(args.track)
    check_launcher(args.launcher, args.ray_address)
    if is_reference(args.out) and not args.update_reference:
        raise ConfigError(f"{args.out} holds the shipped reference results; write your runs to another folder "
                          f"(--out DIR; default ./runs), or pass --update-reference to change the reference")
    root = args.data_root or default_data_root()
    check_writable(root, "data root")
    check_writable(args.out, "output folder")
    limit = args.limit or (SMOKE_LIMIT if args.smoke else None)
    options = LoadOptions(root, args.dataset_source, limit, args.skip_invalid, True, dict(args.dataset_option))
    for name in names:
        DATASETS[name].open(options)  # parses and range-checks the dataset options now
    return suite, names, methods, options, method_options(methods, args.method_option, args.profile)


def summarise(record: dict | None, primary: str) -> str:
    if record is None:
        return "skipped: another process is running it"
    if record["status"] != "ok":
        return f"{record['status']}: {record.get('reason', '')}"
    value = record["metrics"][primary]
    perm = record["robustness"].get("permutation")
    change = f", Δ output under permutation {perm['output_change']:.4f}" if perm else ""
    shown = "undefined" if value is None else f"{value:.4f}"
    return f"test {primary} {shown}{change} ({record['train_seconds']:.1f} s)"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    register_all()
    args.out = args.out or default_out()
    if args.list:
        print(catalogue.render())
        return 0
    return exit_status(lambda: run_suite(args, *plan_suite(args)))


def run_suite(args: argparse.Namespace, suite: Suite, names: list[str], methods: list[str], options: LoadOptions,
              per_method: dict[str, dict[str, str]]) -> int:
    torch.set_num_threads(args.threads)
    jobs = args.jobs or (1 if args.device == "cuda" else max(1, min(4, (os.cpu_count() or 1) // args.threads)))
    profile = "smoke" if args.smoke else args.profile
    seeds = [args.seeds[0]] if args.smoke else sorted(set(args.seeds))
    start = time.perf_counter()
    if args.fetch:
        fetch_missing([DATASETS[name] for name in names], options)
    todo, loaded, finished, incomplete, lacking = [], {}, [], 0, {}
    for name in names:
        dataset = load_dataset(name, options, suite.name)
        loaded[name] = dataset
        log.info(render_card(dataset.card))
        epochs = args.epochs or suite.epoch_budget(profile, name)
        for method in methods:
            for seed in seeds:
                spec = RunSpec(suite.name, name, method, seed, profile, options, args.out, epochs, args.device,
                               args.track, "paper" if args.profile == "paper" else "quick",
                               tuple(sorted(per_method[method].items())), args.precision, args.compile, args.lr)
                planned = plan(spec, dataset)
                old = None if args.force else read_record(planned.path, suite.metrics)
                if is_finished(old, suite, dataset):
                    finished.append(old)
                else:
                    if old is not None and old["status"] == "ok":
                        incomplete += 1
                        lacking.update(dict.fromkeys(missing_transforms(old, suite, dataset)))
                    todo.append(planned)
    log.info("%d runs to do, %d already finished", len(todo), len(finished))
    if incomplete:
        log.info("%d finished run(s) lack a transform the suite now measures (%s): redone", incomplete,
                 ", ".join(lacking))
    launcher = create_launcher(args.launcher, threads=args.threads, jobs=jobs, device=args.device,
                               address=args.ray_address)
    records = list(finished)

    def here(planned: Planned) -> dict | None:
        return execute(planned, loaded[planned.spec.dataset])

    for i, (planned, record) in enumerate(launcher.run(todo, here), 1):
        log.info("[%d/%d] %s: %s", i, len(todo), planned.spec.label(), summarise(record, suite.primary))
        records += [record] if record is not None else []
    failed = [r for r in records if r["status"] == "failed"]
    name = "leaderboard.md" if profile != "smoke" else "leaderboard-smoke.md"
    print(leaderboard.write(args.out, (profile,), name, reference=reference_folder(args.out)))
    if profile != "smoke":
        paper_tables.write(args.out)
    log.info("suite %s: %d runs (%d new, %d failed) in %.1f s; records in %s", suite.name, len(records), len(todo),
             len(failed), time.perf_counter() - start, args.out / "records")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
