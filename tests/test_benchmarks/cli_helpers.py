"""Running the command line in tests on a tiny real ``digits-inr`` build (importable
because ``pyproject.toml`` puts ``tests/`` on pytest's ``pythonpath``)."""

from __future__ import annotations

import json
from pathlib import Path

import benchmarks.run as run

FAST = ["--dataset-option", "steps=20", "--limit", "12"]


def cli(tmp_path: Path, *args: str, suite: str = "inr") -> int:
    """``python -m benchmarks.run`` with a fresh data root and results folder under ``tmp_path``."""
    return run.main(["--suite", suite, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                     *FAST, *args])


def record_files(tmp_path: Path, profile: str = "quick") -> list[Path]:
    return sorted((tmp_path / "out" / "records" / profile).rglob("*.json"))


def records_by_method(tmp_path: Path, profile: str = "quick") -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in record_files(tmp_path, profile):
        record = json.loads(path.read_text())
        found.setdefault(record["config"]["method"], []).append(record)
    return found
