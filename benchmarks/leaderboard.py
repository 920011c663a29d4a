"""Leaderboard: a pure function of the run records, rendered as Markdown, CSV, JSON and HTML.

``python -m benchmarks.leaderboard [--out runs] [--reference results|none]`` writes, in OUT:
``leaderboard.md``; ``leaderboard.csv`` and ``leaderboard.json``, the summary behind it;
``runs.csv``, every run shown; and ``leaderboard.html``, a self-contained page with the same
tables (sortable) and the figures of ``benchmarks.figures``, which also go to ``figures/``.

Records become one tidy ``pandas.DataFrame`` (:func:`frame`: one row per run, its
configuration, every metric, its learning flags and claimed symmetries), yours and, ranked
beside them, the shipped reference runs on the same data and budget (:func:`beside`,
``source`` ``reference``). :func:`summary` turns it, once, into one row per profile, suite,
dataset, method *and configuration* (a table never averages different configurations: each
row states its budget) with the mean, std and count over seeds of every measure: the test
metrics, the metric on each robustness transform and the mean output change under it,
parameters, training time, throughput and peak memory; the shipped reference of the same
configuration where there is one; how many seeds were still improving at their last epoch
or never rose above chance on validation; and the claimed symmetries whose transforms moved
the outputs by more than :data:`CLAIM_TOLERANCE`. Every table, file and figure is rendered
from that summary; every record file that cannot be read is named on stderr and in the page.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmarks import figures, leaderboard_html
from benchmarks.augmentation import NO_AUGMENTATION
from benchmarks.metrics import METRICS
from benchmarks.protocol import DEFAULT_BATCH, DEFAULT_SCHEDULE
from benchmarks.record_schema import RunRecord
from benchmarks.records import REFERENCE, UNREAD, YOURS, Unread, load_records, reference_folder, report
from benchmarks.robustness import TRANSFORMS
from benchmarks.suites import SUITES
from datasets.errors import ConfigError, exit_status
from datasets.files import atomic_write_bytes, atomic_write_text, remove_file
from datasets.method_table import METHODS

PROFILE_ORDER = ("paper", "quick", "smoke")
UNDER_BUDGET, DID_NOT_LEARN, OUT_OF_TIME = "still improving", "did not learn", "stopped by its time limit"
FLAG_COLUMNS = {UNDER_BUDGET: "still_improving", DID_NOT_LEARN: "did_not_learn", OUT_OF_TIME: "out_of_time"}
BROKEN_CLAIM = "claimed invariance broken"
ID = ["profile", "suite", "dataset", "method", "config_id"]
RUN_COLUMNS = ID + ["source", "seed", "status", "reason", "budget", "flags", "claims"]
LIST_COLUMNS = ("flags", "claims", "broken_claims")  # lists of names: joined by "; " in CSV
METRICS_OF = {name: suite.metrics for name, suite in SUITES.items()}
# The largest mean absolute change of a configuration's outputs under a transform of a
# symmetry its method claims that still counts as invariant, by training precision. fp32: in
# the shipped reference records an invariant model moves by float32 rounding alone, at most
# 8.3e-6 (a SIREN phase shift; 1.4e-6 under permutation), and every model under a transform
# it does not claim moves by 3.3e-3 or more (median 0.1): 1e-3 is 100x above the one and 3x
# below the other. bf16: autocast rounds every linear layer to 8 bits; invariant models moved
# by up to 1.1e-3 (digits-cnn-zoo, one epoch) and 2.1e-2 relative (tests/test_methods/
# test_precision.py), so a bf16 row is flagged above 5e-2 only, a break as large as the flat
# MLP's (0.06 to 0.44 under permutation).
CLAIM_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2}
STATS = ("mean", "std", "count")  # pandas': NaN-skipping mean, sample std (ddof 1), count of defined values


def learning_flags(record: RunRecord) -> list[str]:
    """``still improving``: the best validation epoch is the last (the budget cut it off; a
    one-epoch run counts, as nothing shows it had stopped improving);
    ``did not learn``: the best validation score never left chance (within its margin);
    ``stopped by its time limit``: ``--time-limit`` ended it before its last epoch (how far it
    got depends on the machine)."""
    if record["status"] != "ok":
        return []
    flags = []
    history, metric = record["history"], record["chance"]["metric"]
    if record["best_epoch"] == len(history):
        flags.append(UNDER_BUDGET)
    best = record["val"].get(metric)
    level, margin = record["chance"]["value"], record["chance"]["margin"]
    higher = METRICS[metric].higher_is_better
    if best is None or (best <= level + margin if higher else best >= level - margin):
        flags.append(DID_NOT_LEARN)
    if record.get("stopped") == "time limit":
        flags.append(OUT_OF_TIME)
    return flags


def budget(record: RunRecord) -> str:
    """The run's budget and options, as a table cell: epochs (at most that many, with the
    early-stopping patience and the time limit, where set), learning rate (and a schedule
    other than cosine, a batch size other than the protocol's, an augmentation), model
    profile (and the one used, for a method without a paper profile), data limit, method and
    dataset options, precision, compilation."""
    config = record["config"]
    train = config["train"]
    rules = ([f"patience {train['patience']}"] if train.get("patience") else []) + \
        ([f"time limit {train['time_limit']:g} s"] if train.get("time_limit") else [])
    epochs = [f"≤{train['epochs']} ep", *rules] if rules else [f"{train.get('epochs', '?')} ep"]
    parts = epochs + ([f"lr {train['lr']:g}"] if "lr" in train else [])
    if train.get("schedule", DEFAULT_SCHEDULE) != DEFAULT_SCHEDULE:
        parts.append(f"{train['schedule']} lr")
    if train.get("batch_size", DEFAULT_BATCH) != DEFAULT_BATCH:
        parts.append(f"batch {train['batch_size']}")
    if train.get("augment", NO_AUGMENTATION) != NO_AUGMENTATION:
        parts.append(f"{train['augment']} augmentation")
    used = config.get("model_profile_used")
    parts.append(f"{config['model_profile']} model" + (f" ({used} sizes: no {config['model_profile']} profile)"
                                                      if used else ""))
    if config["data"].get("limit"):
        parts.append(f"limit {config['data']['limit']:,}")
    parts += [f"{k}={v}" for k, v in sorted(config["method_options"].items())]
    parts += [f"data {k}={v}" for k, v in sorted(config["data"].get("options", {}).items())]
    if train.get("precision", "fp32") != "fp32":
        parts.append(train["precision"])
    if train.get("compile"):
        parts.append("compiled")
    return ", ".join(parts)


def claims(record: RunRecord) -> list[str]:
    """The symmetries the record's method claims: the record's ``claims``; for an older record
    without them, the registry's claims if the method is registered (a built-in one, or one
    registered in this process), else none."""
    if "claims" in record:
        return sorted(record["claims"])
    import baselines  # noqa: F401  (registers the built-in methods)
    import methods  # noqa: F401

    method = record["config"]["method"]
    return sorted(METHODS[method].symmetries) if method in METHODS else []


def comparable(record: RunRecord) -> str:
    """What a reference run must share with a run to be ranked beside it, as JSON text: its
    table (profile, suite, dataset), the dataset's fingerprint and the budget (epochs, data
    limit, options and skipping, protocol version, precision, early-stopping patience, lr schedule,
    batch size, time limit, augmentation)."""
    config, train, data = record["config"], record["config"]["train"], record["config"]["data"]
    return json.dumps([config["profile"], config["suite"], config["dataset"], config["dataset_fingerprint"],
                       train.get("epochs"), data.get("limit"), data.get("options", {}), data.get("skip_invalid", False),
                       config["protocol_version"], train.get("precision", "fp32"), train.get("patience"),
                       train.get("schedule", DEFAULT_SCHEDULE), train.get("batch_size", DEFAULT_BATCH),
                       train.get("time_limit"), train.get("augment", NO_AUGMENTATION)],
                      sort_keys=True, default=str)


def beside(records: list[RunRecord], reference: list[RunRecord]) -> list[RunRecord]:
    """The reference records to rank in the tables of ``records``: :func:`comparable` to one
    of them, of a configuration none of them has (that one's mean joins its row instead)."""
    keys, ids = {comparable(r) for r in records}, {r["config_id"] for r in records}
    return [r for r in reference if r["config_id"] not in ids and comparable(r) in keys]


def _flatten(value: dict, prefix: str) -> dict:
    """Nested dicts as ``prefix<key>.<key>`` columns; lists as JSON text."""
    out: dict = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(item) if isinstance(item, (list, tuple)) else item
    return out


def _row(r: RunRecord, source: str) -> dict:
    """One run as a row of :func:`frame`."""
    c = r["config"]
    row = {"profile": c["profile"], "suite": c["suite"], "dataset": c["dataset"], "method": c["method"],
           "config_id": r["config_id"], "source": source, "seed": r["seed"], "status": r["status"],
           "reason": r.get("reason", ""), "budget": budget(r), "flags": learning_flags(r), "claims": claims(r)}
    if r["status"] == "ok":
        row.update({f"test.{k}": v for k, v in r["metrics"].items()})
        for t, rob in r["robustness"].items():
            row.update({f"{t}.{k}": v for k, v in rob["test"].items()})
            row[f"{t}.output_change"] = rob["output_change"]
        row.update(parameters=r["parameters"], train_seconds=r["train_seconds"],
                   samples_per_second=r["samples_per_second"], peak_memory_mb=r.get("peak_memory_mb"),
                   best_epoch=r["best_epoch"], epochs=len(r["history"]), chance=r["chance"]["value"])
    row.update(_flatten({k: v for k, v in c.items() if k not in ID}, "config."))
    return row


def frame(records: list[RunRecord], reference: list[RunRecord] = ()) -> pd.DataFrame:
    """One row per run, ``records`` (``source`` :data:`YOURS`) then ``reference`` (ranked
    beside them, :data:`REFERENCE`): identity, status, budget, flags, claims, every metric as
    a column (``test.<metric>``, ``<transform>.<metric>``, ``<transform>.output_change``;
    ``chance``: the primary metric of a predictor that ignores its input, on validation),
    then the configuration (``config.hyperparameters.<name>``, ``config.data.options.<name>``, ...)."""
    table = pd.DataFrame([_row(r, YOURS) for r in records] + [_row(r, REFERENCE) for r in reference])
    config = sorted(col for col in table.columns if col.startswith("config."))
    return table[[col for col in table.columns if col not in config] + config]


def measure_columns(runs: pd.DataFrame) -> list[str]:
    """The columns of :func:`frame` that hold a measured number."""
    return [c for c in runs.columns if c not in RUN_COLUMNS and not c.startswith("config.")]


def describe(table: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean, std and count (:data:`STATS`) of each column per group of ``by``, as columns
    ``<column>.<stat>``: the one place the leaderboard's statistics are computed."""
    keys = [table[b] for b in by]
    if not columns:
        return pd.DataFrame(index=table.groupby(keys).size().index)
    values = table[columns].apply(pd.to_numeric, errors="coerce")
    out = values.groupby(keys).agg(list(STATS))
    out.columns = [f"{column}.{stat}" for column, stat in out.columns]
    return out


def show(mean: float, std: float, count: int, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` as a table cell: the mean alone for one value, ``–`` for none."""
    if not count:
        return "–"
    if count == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def mean_std(values, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (sample std) of the defined values, scaled; ``–`` if there are none."""
    series = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
    mean, std, count = series.agg(list(STATS))
    return show(mean, std, int(count), scale, digits)


def suite_metrics(suite: str, columns) -> tuple[str, ...]:
    """The suite's metrics, primary first (for an unknown suite: every test metric present)."""
    return SUITES[suite].metrics if suite in SUITES else tuple(
        c.split(".", 1)[1] for c in columns if c.startswith("test."))


def summary(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (profile, suite, dataset, method, config_id), in leaderboard order (per
    table, best primary test metric first): source, budget, status (``ok`` when any seed
    finished), reason, finished and failed seeds, flag counts, claims and the claims broken
    (:func:`broken_claims`), ``<measure>.mean/.std/.count`` over the finished seeds,
    ``reference.test.<metric>.*`` and ``reference_seeds`` (the runs of ``reference``, a
    :func:`frame`, of a configuration of your rows), then the configuration."""
    if runs.empty:
        return pd.DataFrame(columns=ID)
    good, bad = runs[runs["status"] == "ok"], runs[runs["status"] != "ok"]
    groups = runs.groupby(ID, sort=False)
    first = groups.first()
    table = pd.DataFrame(index=first.index)
    table["source"] = first["source"]
    table["budget"] = first["budget"]
    table["seeds"] = good.groupby(ID).size().reindex(table.index, fill_value=0)
    table["status"] = first["status"].where(table["seeds"] == 0, "ok")
    table["reason"] = bad.groupby(ID)["reason"].first().reindex(table.index, fill_value="")
    table["failed"] = groups.size() - table["seeds"]
    for flag, column in FLAG_COLUMNS.items():
        flagged = good["flags"].map(lambda flags, flag=flag: flag in flags).astype(int)
        table[column] = flagged.groupby([good[c] for c in ID]).sum().reindex(table.index, fill_value=0)
    table["claims"] = first["claims"]
    measures = measure_columns(runs)
    if not good.empty:
        table = table.join(describe(good, ID, measures))
    table = table.reset_index()
    if reference is not None:
        tests = [c for c in measures if c.startswith("test.")]
        ref = reference.reindex(columns=["config_id", "status"] + tests)
        ref = ref[(ref["status"] == "ok") & ref["config_id"].isin(runs.loc[runs["source"] == YOURS, "config_id"])]
        table = table.join(describe(ref, ["config_id"], tests).add_prefix("reference."), on="config_id")
        table["reference_seeds"] = table["config_id"].map(ref.groupby("config_id").size())
    counts = [c for c in table.columns if c.endswith(".count") or c == "reference_seeds"]
    table[counts] = table[counts].fillna(0).astype(int)
    table = table.join(first[[c for c in first.columns if c.startswith("config.")]], on=ID)
    broken = pd.Series([broken_claims(row) for _, row in table.iterrows()], index=table.index, name="broken_claims")
    table = pd.concat([table, broken], axis=1)
    head = ID + ["source", "budget", "status", "reason", "seeds", "failed", *FLAG_COLUMNS.values(), "claims",
                 "broken_claims"]
    table = table[head + [c for c in table.columns if c not in head]]
    # copy(): one block per dtype again after the column-by-column assembly (figures add columns)
    return table.iloc[_order(table, runs.columns)].reset_index(drop=True).copy()


def broken_claims(row: pd.Series) -> list[str]:
    """The claims of a row of :func:`summary` whose mean output change over seeds under a
    transform of that symmetry exceeds :data:`CLAIM_TOLERANCE` for the row's precision."""
    tolerance = CLAIM_TOLERANCE.get(row.get("config.train.precision"), CLAIM_TOLERANCE["fp32"])
    return [claim for claim in row["claims"]
            if any(row.get(f"{name}.output_change.mean", 0.0) > tolerance
                   for name, transform in TRANSFORMS.items() if transform.symmetry == claim)]


def _order(table: pd.DataFrame, columns) -> list[int]:
    """Row positions in leaderboard order: profile, suite, dataset, best primary metric, method."""
    def key(i: int) -> tuple:
        row = table.iloc[i]
        primary = suite_metrics(row["suite"], columns)[0]
        score = row.get(f"test.{primary}.mean", math.nan)
        score = -score if METRICS[primary].higher_is_better else score
        return (PROFILE_ORDER.index(row["profile"]), row["suite"], row["dataset"],
                math.inf if pd.isna(score) else score, row["method"], row["config_id"])
    return sorted(range(len(table)), key=key)


def curves(records: list[RunRecord]) -> pd.DataFrame:
    """Learning curves: per configuration and epoch, mean, std and count over the finished
    seeds of every per-epoch value of the history (``train_loss``, ``val_<metric>``)."""
    rows = [{**{k: r["config"][k] for k in ID[:-1]}, "config_id": r["config_id"], **h}
            for r in records if r["status"] == "ok" for h in r["history"]]
    if not rows:
        return pd.DataFrame(columns=ID + ["epoch"])
    table = pd.DataFrame(rows)
    values = [c for c in table.columns if c not in ID and c != "epoch"]
    return describe(table, ID + ["epoch"], values).reset_index()


@dataclass(frozen=True)
class Section:
    """One table of the leaderboard: its summary rows and the cells shown for them."""

    profile: str
    suite: str
    dataset: str
    metrics: tuple[str, ...]  # primary first
    transforms: tuple[str, ...]  # robustness transforms measured on some finished run
    rows: pd.DataFrame  # rows of :func:`summary`
    head: list[str]
    cells: list[list[str]]
    notes: list[str]  # why methods are n/a or failed

    @property
    def heading(self) -> str:
        return f"{self.suite} / {self.dataset} ({self.profile} profile)"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.profile}-{self.suite}-{self.dataset}")


def _cell(rows: pd.Series, column: str, scale: float = 1.0, digits: int = 2) -> str:
    return show(rows.get(f"{column}.mean"), rows.get(f"{column}.std"), rows.get(f"{column}.count", 0), scale, digits)


def _metric_cell(row: pd.Series, column: str, metric: str) -> str:
    return _cell(row, column, METRICS[metric].scale, METRICS[metric].digits)


def flags_cell(row: pd.Series) -> str:
    """The flags of a finished row of :func:`summary`: each learning flag with the seeds it
    marks, and the claimed symmetries it breaks, joined by ``; ``."""
    flags = [f"{flag} ({row[column]}/{row['seeds']})" for flag, column in FLAG_COLUMNS.items() if row[column]]
    if row["broken_claims"]:
        flags.append(f"{BROKEN_CLAIM}: {', '.join(row['broken_claims'])}")
    return "; ".join(flags)


def cells(rows: pd.DataFrame, metrics: tuple[str, ...], transforms: tuple[str, ...]
          ) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, cells and notes of one table, from its rows of :func:`summary`."""
    primary, reference = metrics[0], "reference_seeds" in rows.columns
    head = ["method", "budget"] + [METRICS[m].label for m in metrics]
    for t in transforms:
        head += [f"{METRICS[primary].label} ({t})", f"Δ output ({t})"]
    head += ["params", "train s", "samples/s", "peak MB", "seeds", "flags"]
    if reference:
        head.append(f"reference {METRICS[primary].label}")
    body, notes = [], []
    for _, row in rows.iterrows():
        method = figures.method_label(row["method"], row["source"])
        if row["status"] != "ok":
            body.append([method, row["budget"]] + [row["status"]] * (len(head) - 2))
            notes.append(f"{method} ({row['status']}): {row['reason']}")
            continue
        line = [method, row["budget"]] + [_metric_cell(row, f"test.{m}", m) for m in metrics]
        for t in transforms:
            line += [_metric_cell(row, f"{t}.{primary}", primary), _cell(row, f"{t}.output_change", 1.0, 4)]
        line += [f"{int(row['parameters.mean']):,}", _cell(row, "train_seconds", 1.0, 1),
                 _cell(row, "samples_per_second", 1.0, 0), _cell(row, "peak_memory_mb", 1.0, 0),
                 f"{row['seeds']}" + (f" (+{row['failed']} failed)" if row["failed"] else ""), flags_cell(row)]
        if reference:
            line.append(f"{_metric_cell(row, f'reference.test.{primary}', primary)} ({row['reference_seeds']})"
                        if row["reference_seeds"] else "–")
        body.append(line)
    return head, body, notes


def sections(table: pd.DataFrame, profiles: tuple[str, ...]) -> list[Section]:
    """The tables of the leaderboard for the given profiles, from :func:`summary`."""
    out = []
    shown = table[table["profile"].isin(profiles)]
    for (profile, suite, dataset), rows in shown.groupby(["profile", "suite", "dataset"], sort=False):
        metrics = suite_metrics(suite, [c.removesuffix(".mean") for c in rows.columns if c.endswith(".mean")])
        ok = rows[rows["status"] == "ok"]
        transforms = tuple(sorted(c.split(".")[0] for c in rows.columns
                                  if c.endswith(".output_change.count") and ok[c].sum() > 0))
        out.append(Section(profile, suite, dataset, metrics, transforms, rows,
                           *cells(rows, metrics, transforms)))
    return out


def intro(source: str) -> list[str]:
    """The lines above the tables: where the numbers come from and how to read them."""
    return [f"Generated from `{source}/records` by `python -m benchmarks.leaderboard --out {source}`; do not edit "
            "by hand.",
            "Mean ± std over seeds; test metrics at the best-validation epoch; one row per method and",
            "configuration (its budget: epochs, model profile, data limit, options). Robustness columns: the",
            "same test split after function-preserving transforms (verified on the stored networks);",
            "Δ output is the mean absolute change of the model's output (0 for an invariant model).",
            f"Flags: '{UNDER_BUDGET}' = the best validation epoch was the last (more budget would help);",
            f"'{DID_NOT_LEARN}' = validation never rose above chance; '{OUT_OF_TIME}' = `--time-limit` ended",
            f"it before its last epoch (how far it got depends on the machine); "
            f"'{BROKEN_CLAIM}: <symmetry>' = the mean",
            "Δ output under a transform of a symmetry the method claims exceeds "
            f"{CLAIM_TOLERANCE['fp32']:g} ({CLAIM_TOLERANCE['bf16']:g} in bf16).",
            f"A method marked '({REFERENCE})' is a shipped reference run on the same data and budget, ranked",
            "beside the runs here (`--reference none` leaves them out)."]


TITLE = "wsbench leaderboard"
NO_RECORDS = "No records yet: run `python -m benchmarks.run --suite inr`."


def unread_markdown(unread: list[Unread]) -> list[str]:
    """The Markdown lines naming each record not read with its problem, under a heading that
    counts them (none if every record was read)."""
    if not unread:
        return []
    return [f"## {UNREAD} ({len(unread)})", "", *(f"- `{u.path}`: {u.problem}" for u in unread), ""]


def markdown(tables: list[Section], source: str, unread: list[Unread] = ()) -> str:
    """The leaderboard as Markdown: the intro, the records not read (each named with its
    problem, and their count), then the tables."""
    out = [f"# {TITLE}", "", *intro(source), ""]
    out += unread_markdown(unread)
    if not tables:
        out.append(NO_RECORDS)
        return "\n".join(out)
    for section in tables:
        out += [f"## {section.heading}", "", "| " + " | ".join(section.head) + " |", "|" + "---|" * len(section.head)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in section.cells]
        out += ([""] + [f"- {note}" for note in section.notes] if section.notes else []) + [""]
    return "\n".join(out)


def board(records: list[RunRecord], reference: list[RunRecord] | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The runs (:func:`frame`: ``records``, then the ``reference`` records ranked beside
    them, :func:`beside`), their :func:`summary` (with the reference means of your
    configurations) and their learning :func:`curves`."""
    shown = beside(records, reference or [])
    runs = frame(records, shown)
    return runs, summary(runs, frame(reference) if reference else None), curves(records + shown)


def render(records: list[RunRecord], profiles: tuple[str, ...] = ("paper", "quick"), source: str = "results",
           reference: list[RunRecord] | None = None, unread: list[Unread] = ()) -> str:
    """The whole leaderboard for the given profiles, as Markdown. ``source`` names the
    records' folder; ``reference``: the shipped reference records (:func:`board`);
    ``unread``: the record files that could not be read."""
    return markdown(sections(board(records, reference)[1], profiles), source, unread)


def to_csv(table: pd.DataFrame) -> str:
    """A frame as CSV text (lists joined by ``; ``, floats to 10 significant digits)."""
    table = table.assign(**{c: table[c].map("; ".join) for c in table.columns if c in LIST_COLUMNS})
    return table.to_csv(index=False, float_format="%.10g", lineterminator="\n")


def write(out: Path, profiles: tuple[str, ...] = ("paper", "quick"), name: str = "leaderboard.md",
          reference: Path | None = None) -> str:
    """Render from ``out/records`` (with ``reference/records`` beside) and write, atomically,
    in ``out``: ``name`` (Markdown) and, with its stem, ``.csv`` and ``.json`` (the summary) and
    ``.html`` (the page); ``runs.csv`` (every run shown); ``figures/<table>-<figure>.png``
    (reference rows included). Each record file not read is named on stderr, then counted.
    Returns the Markdown."""
    records, unread = load_records(out, METRICS_OF)
    ref, ref_unread = load_records(reference, METRICS_OF) if reference is not None else ([], [])
    unread += ref_unread
    report(unread)
    runs, table, learning = board(records, ref)
    tables = sections(table, profiles)
    text = markdown(tables, str(out), unread)
    stem = Path(name).stem
    shown = table[table["profile"].isin(profiles)] if len(table) else table
    atomic_write_text(out / name, text + "\n")
    atomic_write_text(out / f"{stem}.csv", to_csv(shown))
    atomic_write_text(out / f"{stem}.json", shown.to_json(orient="records", indent=1) + "\n")
    atomic_write_text(out / "runs.csv", to_csv(runs))
    drawn = {s.slug: figures.draw(s, learning[learning["config_id"].isin(s.rows["config_id"])]) for s in tables}
    folder = out / "figures"
    kept = {folder / f"{slug}-{f.name}.png" for slug, figs in drawn.items() for f in figs
            if isinstance(f, figures.Figure)}
    for profile in profiles:
        for stale in set(folder.glob(f"{profile}-*.png")) - kept:
            remove_file(stale)
    for slug, figs in drawn.items():
        for f in figs:
            if isinstance(f, figures.Figure):
                atomic_write_bytes(folder / f"{slug}-{f.name}.png", f.png)
    page = leaderboard_html.page(TITLE, intro(str(out)), tables, drawn, NO_RECORDS,
                                 data=[f"{stem}.csv", f"{stem}.json", "runs.csv"], unread=unread)
    atomic_write_text(out / f"{stem}.html", page)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard",
                                     description="Render the leaderboard (Markdown, CSV, JSON, HTML with figures) "
                                                 "from the run records.")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="results folder with records/ (default runs)")
    parser.add_argument("--reference", default="shipped",
                        help="results folder whose runs on the same data and budget are ranked beside yours, "
                             "marked (reference) (default: the repository's results/; 'none' to leave them out)")
    parser.add_argument("--profiles", nargs="+", default=["paper", "quick"], choices=PROFILE_ORDER)
    args = parser.parse_args(argv)

    def render() -> None:
        if not (args.out / "records").is_dir():
            raise ConfigError(f"{args.out}: no records/ folder here; give the results folder of your runs "
                              f"(--out DIR, default runs)")
        reference = (reference_folder(args.out) if args.reference == "shipped"
                     else None if args.reference == "none" else Path(args.reference))
        if reference is not None and not (reference / "records").is_dir():
            raise ConfigError(f"{reference}: no records/ folder here to show as the reference")
        print(write(args.out, tuple(args.profiles), reference=reference))

    return exit_status(render)


if __name__ == "__main__":
    sys.exit(main())
