"""The run record: one JSON file per run, the source of truth for every table.

Typed in the manner of lm-evaluation-harness's ``result_schema.py``: :class:`RunRecord` is
what the runner writes and what the leaderboard and the paper tables read;
:func:`validate` checks a record on every read, so a malformed one is reported (and redone
by the runner), never met as a ``KeyError`` later.
"""

from __future__ import annotations

from typing import Any, TypedDict

SCHEMA_VERSION = 2
STATUSES = ("ok", "n/a", "failed")


class RunConfig(TypedDict):
    """Everything that changes a run's result, the seed apart. Its hash is the run's
    configuration id: records with the same id differ only in their seed and may be
    averaged; records with different ids never are."""

    suite: str
    dataset: str
    dataset_fingerprint: str  # contents of the data: recipe, options, source files, builder version
    dataset_version: int
    method: str
    method_version: int
    hyperparameters: dict[str, Any]  # the resolved model hyperparameters
    model_profile: str  # the model sizes they start from: "quick" | "paper"
    method_options: dict[str, Any]  # the hyperparameters set on the command line (--method-option)
    profile: str  # the training budget: "quick" | "paper" | "smoke"
    train: dict[str, Any]  # benchmarks.protocol.TrainConfig: budget, optimiser, precision
    protocol_version: int  # the harness's training / evaluation protocol
    data: dict[str, Any]  # what was asked of the dataset: options, limit, skip_invalid (also in the fingerprint)


class Robustness(TypedDict):
    """The test split after one function-preserving transform."""

    test: dict[str, float | None]  # the suite's metrics there
    output_change: float  # mean absolute change of the model's outputs (0 for an invariant model)
    function_error: float  # verified change of the stored networks' function (float rounding only)


class Chance(TypedDict):
    """What a predictor that ignores its input scores on the validation split."""

    metric: str
    value: float
    margin: float  # a score within value + margin may be luck


class RunRecord(TypedDict, total=False):
    schema: int
    status: str  # "ok" | "n/a" (the method cannot take the data) | "failed"
    reason: str  # why "n/a" or "failed"
    config: RunConfig
    config_id: str  # hash of ``config``
    seed: int
    run_id: str  # hash of ``config`` and ``seed``
    created: str  # ISO 8601, UTC
    metrics: dict[str, float | None]  # test metrics at the best-validation epoch
    undefined: dict[str, str]  # metric -> why it has no value on the test split
    robustness: dict[str, Robustness]  # transform name -> result
    val: dict[str, float | None]  # validation metrics at the best epoch
    best_epoch: int
    history: list[dict[str, float]]  # per epoch: epoch, train_loss, val_<metric>...
    stopped: str  # why training ended before its last epoch: "patience" | "time limit" (absent: it did not)
    resumed_after: int  # epochs an interrupted process had trained, resumed from its saved state (absent: none)
    chance: Chance
    parameters: int
    train_seconds: float
    eval_seconds: float
    samples_per_second: float  # training throughput
    peak_memory_mb: float
    environment: dict[str, Any]  # library versions, git commit, device, threads
    migrated_from: int  # the schema this record was converted from (scripts/migrate_records.py)
    claims: list[str]  # the symmetries the method claims (datasets.method_table.SYMMETRIES); older records lack it


REQUIRED = {"ok": ("config", "config_id", "seed", "run_id", "metrics", "robustness", "val", "best_epoch",
                   "history", "chance", "parameters", "train_seconds", "samples_per_second"),
            "n/a": ("config", "config_id", "seed", "run_id", "reason"),
            "failed": ("config", "config_id", "seed", "run_id", "reason")}
CONFIG_KEYS = tuple(RunConfig.__annotations__)


class InvalidRecord(ValueError):
    """A record that does not follow the schema: ``source`` (the file) and ``problem``;
    ``str()`` is ``<source>: <problem>``."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(source, problem)
        self.source, self.problem = source, problem

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"


def validate(record: Any, source: str, metrics: tuple[str, ...] = ()) -> RunRecord:
    """``record`` if it follows the schema (and, for a finished run, holds every metric in
    ``metrics`` on the test split and on every transform), else :class:`InvalidRecord`."""
    if not isinstance(record, dict):
        raise InvalidRecord(source, f"not a JSON object but {type(record).__name__}")
    if record.get("schema") != SCHEMA_VERSION:
        raise InvalidRecord(source, f"schema {record.get('schema')!r}, expected {SCHEMA_VERSION} "
                                    f"(older records: python scripts/migrate_records.py)")
    status = record.get("status")
    if status not in STATUSES:
        raise InvalidRecord(source, f"status {status!r}; valid: {', '.join(STATUSES)}")
    missing = [k for k in REQUIRED[status] if k not in record]
    config = record.get("config")
    if not missing and (not isinstance(config, dict) or any(k not in config for k in CONFIG_KEYS)):
        missing = [f"config.{k}" for k in CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise InvalidRecord(source, f"{status!r} record lacks {', '.join(missing)}")
    claims = record.get("claims", [])
    if not isinstance(claims, list) or not all(isinstance(c, str) for c in claims):
        raise InvalidRecord(source, f"claims {claims!r}: expected a list of symmetry names")
    if status == "ok":
        for name in metrics:
            if name not in record["metrics"]:
                raise InvalidRecord(source, f"finished record lacks the test metric {name!r}")
            for transform, result in record["robustness"].items():
                if name not in result.get("test", {}) or "output_change" not in result:
                    raise InvalidRecord(source, f"robustness {transform!r} lacks {name!r} or output_change")
    return record  # type: ignore[return-value]
