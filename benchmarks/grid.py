"""Run a checked plan (``benchmarks.config.resolve``): every method on every dataset of the
suite and every seed, under the one protocol, one record per run; then the leaderboard.

Finished runs are skipped (a run's record path is its identity); runs that ended "n/a" or
"failed", and finished runs whose record lacks a robustness transform the suite now
measures, are run again; ``force`` redoes them all. A run killed at any moment loses
nothing already finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from benchmarks import leaderboard, paper_tables
from benchmarks.config import Plan
from benchmarks.fetch import fetch_missing
from benchmarks.launchers import create_launcher
from benchmarks.record_schema import RunRecord
from benchmarks.records import load_records, read_record, reference_folder
from benchmarks.runner import (
    RunSpec,
    execute,
    is_finished,
    load_dataset,
    missing_transforms,
)
from benchmarks.runner import plan as plan_run
from datasets.card import render_card
from datasets.dataset_table import DATASETS

log = logging.getLogger("wsbench")


@dataclass
class GridResult:
    """What a grid produced: every record of the plan (finished before or now), the
    leaderboard summary, its Markdown, the runs that failed and the plugins that could not
    be used (each named once, when the plan was made)."""

    records: list[RunRecord]
    leaderboard: pd.DataFrame  # benchmarks.leaderboard.summary of the records, the reference ranked beside
    markdown: str
    out: Path
    failed: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        """The command's exit status: 0, or 1 when a run failed or a plugin was broken."""
        return 1 if self.failed or self.broken else 0


def spec_for(plan: Plan, dataset: str, method: str, seed: int, epochs: int | None) -> RunSpec:
    """One run of the plan."""
    c = plan.config
    return RunSpec(plan.suite.name, dataset, method, seed, c.budget_profile, plan.load, c.results, epochs, c.device,
                   c.track, "paper" if c.profile == "paper" else "quick",
                   tuple(sorted(plan.method_options[method].items())), c.precision, c.compile, c.lr, c.patience,
                   c.schedule, c.batch_size, c.time_limit, c.augment, plan.plugins)


def run_grid(plan: Plan) -> GridResult:
    """Run every run of ``plan`` that is not finished, write the records and the leaderboard."""
    config, suite = plan.config, plan.suite
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    if config.fetch:
        fetch_missing([DATASETS[name] for name in plan.datasets], plan.load)
    todo, loaded, finished, incomplete, lacking = [], {}, [], 0, {}
    for name in plan.datasets:
        dataset = load_dataset(name, plan.load, suite.name)
        loaded[name] = dataset
        log.info(render_card(dataset.card))
        epochs = config.epochs or suite.epoch_budget(config.budget_profile, name)
        for method in plan.methods:
            for seed in config.run_seeds:
                planned = plan_run(spec_for(plan, name, method, seed, epochs), dataset)
                old = None if config.force else read_record(planned.path, suite.metrics)
                if is_finished(old, suite, dataset):
                    finished.append(old)
                    continue
                if old is not None and old["status"] == "ok":
                    incomplete += 1
                    lacking.update(dict.fromkeys(missing_transforms(old, suite, dataset)))
                todo.append(planned)
    log.info("%d runs to do, %d already finished", len(todo), len(finished))
    if incomplete:
        log.info("%d finished run(s) lack a transform the suite now measures (%s): redone", incomplete,
                 ", ".join(lacking))
    jobs = 1 if plan.in_process else config.parallel_jobs
    if plan.in_process and config.parallel_jobs > 1:
        log.info("a method or dataset from __main__ or from inside a function cannot reach worker processes: "
                 "running here, one at a time")
    launcher = create_launcher(config.launcher, threads=config.threads, jobs=jobs, device=config.device,
                               address=config.ray_address)
    records = list(finished)
    for i, (planned, record) in enumerate(launcher.run(todo, lambda p: execute(p, loaded[p.spec.dataset])), 1):
        log.info("[%d/%d] %s: %s", i, len(todo), planned.spec.label(), summarise(record, suite.primary))
        records += [record] if record is not None else []
    out = config.results
    name = "leaderboard.md" if not config.smoke else "leaderboard-smoke.md"
    markdown = leaderboard.write(out, (config.budget_profile,), name, reference=reference_folder(out))
    if not config.smoke:
        paper_tables.write(out)
    failed = [f"{r['config']['dataset']} / {r['config']['method']} / seed {r['seed']}: {r.get('reason', '')}"
              for r in records if r["status"] == "failed"]
    log.info("suite %s: %d runs (%d new, %d failed) in %.1f s; records in %s", suite.name, len(records), len(todo),
             len(failed), time.perf_counter() - start, out / "records")
    reference = reference_folder(out)
    beside = load_records(reference, leaderboard.METRICS_OF)[0] if reference is not None else []
    table = leaderboard.board(records, beside)[1]
    return GridResult(records, table, markdown, out, failed, plan.broken)


def summarise(record: RunRecord | None, primary: str) -> str:
    """One line for a finished run."""
    if record is None:
        return "skipped: another process is running it"
    if record["status"] != "ok":
        return f"{record['status']}: {record.get('reason', '')}"
    value = record["metrics"][primary]
    perm = record["robustness"].get("permutation")
    change = f", Δ output under permutation {perm['output_change']:.4f}" if perm else ""
    shown = "undefined" if value is None else f"{value:.4f}"
    return f"test {primary} {shown}{change} ({record['train_seconds']:.1f} s)"
