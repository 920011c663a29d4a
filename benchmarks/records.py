"""Run records on disk: one JSON file per run at a path made of its identity, written
atomically; a finished record is never redone unless asked, and a corrupt one is set aside
(renamed, not deleted) and redone.

``out/records/<profile>/<suite>/<dataset>/<method>/<config id>/seed<k>.json``: a run's
configuration id is the hash of everything that changes its result (``RunConfig``), so a
run with another budget, option, dataset build or code version never lands on, or is
mistaken for, an existing record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from benchmarks.record_schema import SCHEMA_VERSION, InvalidRecord, RunConfig, RunRecord, validate
from datasets.files import atomic_write_text

log = logging.getLogger("wsbench")
REFERENCE_MARKER = "REFERENCE.md"
SHIPPED = Path(__file__).resolve().parents[1] / "results"  # the repository's reference results


def digest(value: object) -> str:
    """Stable short hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def config_id(config: RunConfig) -> str:
    return digest(config)


def run_id(config: RunConfig, seed: int) -> str:
    return digest({"config": config, "seed": seed})


def record_path(out: Path, config: RunConfig, seed: int) -> Path:
    return (out / "records" / config["profile"] / config["suite"] / config["dataset"] / config["method"]
            / config_id(config) / f"seed{seed}.json")


def is_reference(out: Path) -> bool:
    """Whether ``out`` holds the shipped reference results (which a run must not change
    unless asked to)."""
    return (out / REFERENCE_MARKER).is_file()


def reference_folder(out: Path) -> Path | None:
    """The shipped reference results to show beside the runs in ``out`` (none if ``out`` is
    the reference itself, or the installation has none)."""
    if not is_reference(SHIPPED) or SHIPPED.resolve() == out.resolve():
        return None
    return SHIPPED


def write_record(path: Path, record: RunRecord) -> None:
    atomic_write_text(path, json.dumps(validate(record, str(path)), indent=2, sort_keys=True, default=str) + "\n")


def read_record(path: Path, metrics: tuple[str, ...] = ()) -> RunRecord | None:
    """The record at ``path``, or None if absent; a corrupt or malformed one is renamed
    ``*.corrupt`` (kept for inspection) and None returned, so the run is redone."""
    if not path.exists():
        return None
    try:
        return validate(json.loads(path.read_text()), str(path), metrics)
    except (json.JSONDecodeError, UnicodeDecodeError, InvalidRecord) as err:
        aside = path.with_suffix(".json.corrupt")
        path.replace(aside)
        log.warning("%s cannot be used (%s); moved to %s and the run will be redone", path, err, aside.name)
        return None


def load_records(out: Path, metrics_of: dict[str, tuple[str, ...]] | None = None) -> list[RunRecord]:
    """Every valid record under ``out/records``; an invalid file is reported in one line
    and skipped. ``metrics_of``: per suite, the metrics a finished record must hold."""
    records, older = [], 0
    for path in sorted((out / "records").rglob("*.json")):
        try:
            record = json.loads(path.read_text())
            if isinstance(record, dict) and isinstance(record.get("schema"), int) and record["schema"] < SCHEMA_VERSION:
                older += 1
                continue
            suite = record.get("config", {}).get("suite") if isinstance(record, dict) else None
            records.append(validate(record, str(path), (metrics_of or {}).get(suite, ())))
        except (json.JSONDecodeError, UnicodeDecodeError, InvalidRecord, AttributeError) as err:
            log.warning("skipping a record: %s", err)
    if older:
        log.warning("skipping %d record(s) of an older schema in %s (convert them: python scripts/migrate_records.py "
                    "%s)", older, out / "records", out)
    return records


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    """Library versions, git commit, device and threads of this process."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "python": platform.python_version(),
        "libraries": {p: _version(p) for p in ("torch", "torch_geometric", "numpy", "scikit-learn", "scipy")},
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
