"""Run records: one JSON file per (profile, suite, dataset, method, seed), the source of
truth for leaderboards and tables. Written atomically; a finished record is never redone
unless asked, and a corrupt one is set aside (renamed, not deleted) and redone."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from datasets.cache import atomic_write_text

log = logging.getLogger("wsbench")
SCHEMA_VERSION = 1
REQUIRED = ("schema", "suite", "dataset", "method", "seed", "profile", "status", "fingerprint")
STATUSES = ("ok", "n/a", "failed")


def record_path(out: Path, profile: str, suite: str, dataset: str, method: str, seed: int) -> Path:
    return out / "records" / profile / suite / dataset / method / f"seed{seed}.json"


def run_fingerprint(config: dict) -> str:
    """Hash of everything that determines a run's outcome."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def validate(record: dict, source: Path | str = "record") -> dict:
    """Check the schema; ``ValueError`` naming the source and the problem."""
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{source}: record lacks {missing}")
    if record["schema"] != SCHEMA_VERSION or record["status"] not in STATUSES:
        raise ValueError(f"{source}: unknown schema {record['schema']!r} or status {record['status']!r}")
    if record["status"] == "ok":
        for key in ("metrics", "robustness", "best_epoch", "parameters", "train_seconds"):
            if key not in record:
                raise ValueError(f"{source}: finished record lacks {key!r}")
    return record


def write_record(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(validate(record, path), indent=2, sort_keys=True, default=str))


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None if absent; a corrupt one is renamed ``*.corrupt``."""
    if not path.exists():
        return None
    try:
        return validate(json.loads(path.read_text()), path)
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as err:
        aside = path.with_suffix(".json.corrupt")
        path.replace(aside)
        log.warning("%s is corrupt (%s); moved to %s and the run will be redone", path, err, aside.name)
        return None


def load_records(out: Path) -> list[dict]:
    """Every valid record under ``out/records``; invalid files are reported and skipped."""
    records = []
    for path in sorted((out / "records").rglob("*.json")):
        try:
            records.append(validate(json.loads(path.read_text()), path))
        except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as err:
            log.warning("skipping %s: %s", path, err)
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
