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
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from benchmarks.record_schema import InvalidRecord, RunConfig, RunRecord, validate
from datasets.files import atomic_write_text

log = logging.getLogger("wsbench")
REFERENCE_MARKER = "REFERENCE.md"
SHIPPED = Path(__file__).resolve().parents[1] / "results"  # the repository's reference results
YOURS, REFERENCE = "yours", "reference"  # the source of a table row: your runs, or shipped reference runs beside
UNREAD = "Records not read"  # the heading that lists the record files no table shows


def digest(value: object) -> str:
    """Stable short hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def config_id(config: RunConfig) -> str:
    return digest(config)


def run_id(config: RunConfig, seed: int) -> str:
    return digest({"config": config, "seed": seed})


def config_changes(before: RunConfig, after: RunConfig) -> list[str]:
    """The settings in which two run configurations differ, one ``setting: before -> after``
    each (nested ones dotted, as ``train.schedule``; ``unset`` where one lacks it)."""
    def changes(a: dict, b: dict, prefix: str) -> list[str]:
        found = []
        for key in sorted(set(a) | set(b)):
            old, new = a.get(key, "unset"), b.get(key, "unset")
            if isinstance(old, dict) and isinstance(new, dict):
                found += changes(old, new, f"{prefix}{key}.")
            elif old != new:
                found.append(f"{prefix}{key}: {old} -> {new}")
        return found

    return changes(*(json.loads(json.dumps(c, sort_keys=True, default=str)) for c in (before, after)), "")


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
    ``*.json.corrupt`` (kept for inspection, and listed by :func:`load_records`) and None
    returned, so the run is redone."""
    if not path.exists():
        return None
    try:
        return validate(_parse(path), str(path), metrics)
    except InvalidRecord as err:
        aside = path.with_suffix(".json.corrupt")
        path.replace(aside)
        log.warning("%s cannot be used (%s); moved to %s and the run will be redone", path, err, aside.name)
        return None


@dataclass(frozen=True)
class Unread:
    """A record file that no table shows: the file and the problem."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def load_records(out: Path, metrics_of: dict[str, tuple[str, ...]] | None = None
                 ) -> tuple[list[RunRecord], list[Unread]]:
    """Every valid record under ``out/records``, and every file there that is not one: an
    invalid record (unreadable, not JSON, another schema, malformed) with its problem, and a
    record a run set aside (``*.json.corrupt``). ``metrics_of``: per suite, the metrics a
    finished record must hold."""
    records, unread = [], []
    for path in sorted((out / "records").rglob("*.json")):
        try:
            records.append(_load(path, metrics_of or {}))
        except InvalidRecord as err:
            unread.append(Unread(path, err.problem))
    for path in sorted((out / "records").rglob("*.json.corrupt")):
        redone = "redone" if path.with_suffix("").exists() else "not redone yet"
        unread.append(Unread(path, f"set aside, {redone} ({_problem(path, metrics_of or {})})"))
    return records, unread


def _parse(path: Path) -> object:
    """The JSON value in the file ``path``; :class:`InvalidRecord` if it is not UTF-8 JSON."""
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError as err:
        raise InvalidRecord(str(path), f"not UTF-8 text ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidRecord(str(path), f"not valid JSON ({err})") from None


def _load(path: Path, metrics_of: dict[str, tuple[str, ...]]) -> RunRecord:
    """The valid record at ``path``, else :class:`InvalidRecord` with the problem."""
    try:
        record = _parse(path)
    except OSError as err:
        raise InvalidRecord(str(path), f"cannot be read ({err.strerror or err})") from None
    config = record.get("config") if isinstance(record, dict) else None
    suite = config.get("suite") if isinstance(config, dict) else None
    return validate(record, str(path), metrics_of.get(suite, ()))


def _problem(path: Path, metrics_of: dict[str, tuple[str, ...]]) -> str:
    """Why the record at ``path`` cannot be used (``valid now`` if it can)."""
    try:
        _load(path, metrics_of)
    except InvalidRecord as err:
        return err.problem
    return "valid now"


def report(unread: list[Unread]) -> None:
    """Name each record not read, one line each on stderr, then their count."""
    for item in unread:
        print(f"record not read: {item}", file=sys.stderr)
    if unread:
        print(f"{len(unread)} record file(s) not read", file=sys.stderr)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_state(folder: Path = Path(__file__).resolve().parent) -> tuple[str | None, bool | None]:
    """The commit checked out where ``folder`` is, and whether tracked files differ from it
    (then the commit does not name the code that ran, as in a copy of a working tree whose
    ``.git`` is older); ``(None, None)`` outside a git repository or without git."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=folder,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    changes = None if commit is None else git("status", "--porcelain", "--untracked-files=no")
    return commit, None if changes is None else bool(changes)


def environment(device: torch.device) -> dict:
    """Library versions, git commit (and whether the tracked files differ from it), device
    and threads of this process."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    commit, dirty = git_state()
    return {
        "python": platform.python_version(),
        "libraries": {p: _version(p) for p in ("torch", "torch_geometric", "numpy", "scikit-learn", "scipy")},
        "git_commit": commit,
        "git_dirty": dirty,
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
