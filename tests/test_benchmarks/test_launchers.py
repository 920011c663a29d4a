"""The launchers: the smoke grid on a local Ray cluster of 2 CPUs writes the records the local
launcher writes; a rerun skips finished runs without starting a cluster; a missing Ray is one
line before any work; a worker loads each dataset once."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

import benchmarks.launchers as launchers
import benchmarks.run as run
from benchmarks.runner import RunSpec, load_dataset, plan
from cli_helpers import FAST
from datasets.errors import InvalidData
from datasets.source import LoadOptions

METHODS = ["mlp", "deepsets", "statnn", "ng-gnn"]
VOLATILE = {"created", "environment", "train_seconds", "eval_seconds", "samples_per_second", "peak_memory_mb"}


def grid(data: Path, out: Path, *args: str) -> int:
    """The smoke grid (tiny digits-inr) of :data:`METHODS`."""
    return run.main(["--suite", "inr", "--smoke", "--methods", *METHODS, "--data-root", str(data), "--out", str(out),
                     *FAST, *args])


def records(out: Path) -> dict[str, dict]:
    """Every record under ``out`` by its path, without timings, environment and creation time."""
    found = {}
    for path in sorted((out / "records").rglob("*.json")):
        record = {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}
        record["history"] = [{k: v for k, v in entry.items() if "seconds" not in k} for entry in record["history"]]
        found[path.relative_to(out).as_posix()] = record
    return found


@pytest.mark.slow
def test_ray_writes_the_records_of_the_local_launcher_and_a_rerun_skips_them(tmp_path, caplog):
    pytest.importorskip("ray")
    assert grid(tmp_path / "data", tmp_path / "local", "--jobs", "1") == 0
    with caplog.at_level(logging.INFO, logger="wsbench"):
        assert grid(tmp_path / "data", tmp_path / "ray", "--launcher", "ray", "--jobs", "2") == 0
    assert "ray: a local cluster, 2 CPUs, 0 GPUs" in caplog.text
    assert all(f"/{len(METHODS)}] digits-inr / {m} / seed 0: test accuracy" in caplog.text for m in METHODS)
    local, on_ray = records(tmp_path / "local"), records(tmp_path / "ray")
    assert len(local) == len(METHODS) and all(r["status"] == "ok" for r in local.values())
    assert on_ray == local
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "records").rglob("*.json")}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wsbench"):
        assert grid(tmp_path / "data", tmp_path / "ray", "--launcher", "ray") == 0
    assert f"0 runs to do, {len(METHODS)} already finished" in caplog.text and "ray:" not in caplog.text
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_missing_ray_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    assert grid(tmp_path / "data", tmp_path / "out", "--launcher", "ray") == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: --launcher ray needs Ray, which is not installed: pip install -e ".[ray]"'
    assert not (tmp_path / "data" / "digits-inr").exists() and not (tmp_path / "out" / "records").exists()


def test_a_ray_address_without_the_ray_launcher_is_refused(tmp_path, capsys):
    assert grid(tmp_path / "data", tmp_path / "out", "--ray-address", "127.0.0.1:6379") == 2
    assert capsys.readouterr().err.strip() == "error: --ray-address needs --launcher ray (the launcher is 'local')"


def test_a_worker_loads_each_dataset_once_and_only_the_planned_one(tmp_path, monkeypatch):
    launchers.register_all()
    options = LoadOptions(tmp_path / "data", limit=12, progress=False, params={"steps": "20"})
    dataset = load_dataset("digits-inr", options, "inr")
    runs = [plan(RunSpec("inr", "digits-inr", m, 0, "smoke", options, tmp_path / "out"), dataset) for m in METHODS]
    loads = []

    def counted(name, opts, suite):
        loads.append(name)
        return load_dataset(name, opts, suite)

    monkeypatch.setattr(launchers, "load_dataset", counted)
    monkeypatch.setattr(launchers, "_memo", {})
    assert all(launchers.worker_dataset(p).fingerprint == dataset.fingerprint for p in runs)
    assert loads == ["digits-inr"]
    other = runs[0].config | {"dataset_fingerprint": "0" * 16}  # planned on another copy of the data
    with pytest.raises(InvalidData, match="but the run was planned on 0000000000000000"):
        launchers.worker_dataset(type(runs[0])(runs[0].spec, other))
