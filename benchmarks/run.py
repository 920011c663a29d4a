"""The command line: ``python -m benchmarks.run --suite inr`` (or ``wsbench run``; ``--list``
prints the catalogue).

A shell around one typed configuration (``benchmarks.config.EvaluationConfig``), which
``wsbench.evaluate`` builds too: the arguments become the configuration, ``resolve`` checks
it (every name, option and folder, before any work; plugins imported) and
``benchmarks.grid.run_grid`` trains every registered method that applies on every dataset
of the suite and every seed, one record per run, then prints the leaderboard. A run's
record path is its identity (everything that changes its result), so finished runs are
skipped and a run of another configuration never overwrites one; ``--force`` redoes them.
Runs go to your own results folder (``--out``, default ``$WSBENCH_RESULTS`` or ``./runs``);
the shipped reference results in the repository's ``results/`` are shown beside yours and
are changed only with ``--update-reference``. ``--fetch`` first downloads the published
files of datasets that lack them (``benchmarks.fetch``); ``--launcher ray`` runs the grid
on a Ray cluster (``benchmarks.launchers``); ``--plugin MODULE`` and ``--methods
pkg.module:builder`` bring methods and datasets from outside (``benchmarks.plugins``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks import catalogue, tracking
from benchmarks.config import MAX_BATCH, MAX_EPOCHS, MAX_SEED, RESULTS_ENV, SMOKE_LIMIT, EvaluationConfig, resolve
from benchmarks.augmentation import AUGMENTATIONS, NO_AUGMENTATION
from benchmarks.grid import run_grid
from benchmarks.launchers import LAUNCHERS, register_all
from benchmarks.plugins import PLUGINS_ENV, import_plugin, requested
from benchmarks.protocol import DEFAULT_BATCH, DEFAULT_SCHEDULE, PRECISIONS, SCHEDULES
from benchmarks.suites import SUITES
from datasets.errors import ConfigError, exit_status

log = logging.getLogger("wsbench")


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
    p.add_argument("--schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE,
                   help="learning rate after the linear warm-up: cosine decay to 0 (default) or constant")
    p.add_argument("--augment", choices=AUGMENTATIONS, default=NO_AUGMENTATION,
                   help="weight-space augmentation of the training batches: inr = the INR recipe of Neural Graphs "
                        "and DWSNets (translation, rotation, shift, dropout, zoom of the SIRENs)")
    p.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH),
                   help=f"training batch size (default {DEFAULT_BATCH})")
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
    p.add_argument("--patience", type=bounded_int(1, MAX_EPOCHS),
                   help="stop a run after N epochs without a better validation score (--epochs: the most it trains)")
    p.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="seconds of training per run: no epoch starts that would end after them (the first always "
                        "runs; --epochs: the most it trains); the record says when the limit stopped it")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help=f"import MODULE (a module name or a .py file) that registers methods or datasets "
                        f"(repeatable; also ${PLUGINS_ENV}, comma-separated)")
    return p


def config_from(args: argparse.Namespace) -> EvaluationConfig:
    """The configuration the parsed arguments ask for."""
    given = {k.replace("-", "_"): v for k, v in vars(args).items()}
    return EvaluationConfig(
        suite=args.suite, datasets=tuple(args.datasets or ()), methods=tuple(args.methods or ()),
        seeds=tuple(args.seeds), dataset_options=dict(args.dataset_option), method_options=dict(args.method_option),
        plugins=tuple(args.plugin),
        **{k: v for k, v in given.items() if k in EvaluationConfig.field_names() and k not in (
            "suite", "datasets", "methods", "seeds", "plugins")})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    register_all()

    def command() -> int:
        if args.list:
            for name in requested(tuple(args.plugin)):
                import_plugin(name)
            print(catalogue.render())
            return 0
        if args.suite is None:
            raise ConfigError(f"--suite is required (one of: {', '.join(SUITES)}), or --list")
        result = run_grid(resolve(config_from(args)))
        print(result.markdown)
        for failure in result.failed:
            log.error("error: %s", failure)
        if result.broken:
            log.error("error: %d plugin(s) could not be used (named above)", len(result.broken))
        return result.status

    return exit_status(command)


if __name__ == "__main__":
    sys.exit(main())
