"""Fault injection for the harness: each fault ends in one clear line, a rebuilt cache or a
``failed`` record with its reason, and nothing finished is lost."""

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

import baselines  # noqa: F401
import benchmarks.run as run
import benchmarks.runner as runner
from benchmarks import leaderboard, paper_tables
from cli_helpers import FAST, cli, record_files, records_by_method
from datasets.files import sha256_file
from datasets.method_table import METHODS

REPO = Path(__file__).resolve().parents[2]


def test_missing_wandb_is_reported_before_any_work(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert cli(tmp_path, "--methods", "mlp", "--track", "wandb") == 2
    err = capsys.readouterr().err.strip()
    assert "--track wandb needs the wandb package" in err and err.count("\n") == 0
    assert not (tmp_path / "data" / "digits-inr").exists()


def test_a_bug_in_one_run_is_recorded_with_its_traceback_and_the_next_run_goes_on(tmp_path, monkeypatch, caplog):
    real = runner.train

    def buggy(model, *args, **kwargs):
        if type(model).__name__ == "StatNN":
            raise ZeroDivisionError("a bug")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(runner, "train", buggy)
    assert cli(tmp_path, "--methods", "statnn", "mlp", "--seeds", "0", "--epochs", "1", "--jobs", "1") == 1
    found = records_by_method(tmp_path)
    assert found["statnn"][0]["status"] == "failed" and found["statnn"][0]["reason"] == "bug: ZeroDivisionError: a bug"
    assert found["mlp"][0]["status"] == "ok"
    assert "Traceback" in caplog.text and "ZeroDivisionError" in caplog.text
    assert "| statnn | 1 ep" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_a_diverging_run_is_failed_with_its_reason_not_a_traceback(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(METHODS._entries, "mlp", replace(METHODS["mlp"], optim={"lr": 1e30}))
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "1", "--epochs", "2", "--jobs", "1") == 1
    failed = [r for r in records_by_method(tmp_path)["mlp"] if r["status"] == "failed"]
    assert failed and failed[0]["reason"].startswith("FloatingPointError: the training loss became")
    assert "Traceback" not in caplog.text


def test_a_run_held_by_another_process_is_skipped_not_trained_twice(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="wsbench")
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1") == 0
    path = record_files(tmp_path)[0]
    path.unlink()
    with open(path.with_suffix(".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1", "--jobs", "1") == 0
        assert not path.exists() and "another process is running it; skipped" in caplog.text
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1") == 0 and path.exists()


def test_damaged_targets_in_a_cache_are_rebuilt_even_with_a_matching_checksum(tmp_path):
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1") == 0
    (cache,) = [p.parent for p in (tmp_path / "data" / "digits-inr").rglob("card.json")]
    split = cache / "test.safetensors"
    tensors = load_file(str(split))
    tensors["targets"][:] = 99  # out of range, and the checksum updated to hide it
    from safetensors import safe_open
    with safe_open(str(split), "pt") as f:
        meta = f.metadata()
    save_file(tensors, str(split), metadata=meta)
    card = json.loads((cache / "card.json").read_text())
    card["checksums"]["test.safetensors"] = sha256_file(split)
    (cache / "card.json").write_text(json.dumps(card))
    assert cli(tmp_path, "--methods", "mlp", "statnn", "--seeds", "0", "--epochs", "1", "--jobs", "2") == 0
    assert int(load_file(str(split))["targets"].max()) < 10
    assert {m: r[0]["status"] for m, r in records_by_method(tmp_path).items()} == {"mlp": "ok", "statnn": "ok"}


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.run", "--suite", "inr", "--data-root", str(tmp_path / "data"),
               "--out", str(tmp_path / "out"), *FAST, *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_loses_nothing_finished_and_the_rerun_resumes(tmp_path):
    args = ("--methods", "mlp", "ng-t", "--seeds", "0", "--epochs", "60", "--jobs", "1")
    proc = _start(tmp_path, *args)
    deadline = time.time() + 120
    while not record_files(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = record_files(tmp_path)
    assert len(done) == 1 and json.loads(done[0].read_text())["config"]["method"] == "mlp"
    stamp = done[0].stat().st_mtime_ns
    rerun = _start(tmp_path, *args)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "1 runs to do, 1 already finished" in err and done[0].stat().st_mtime_ns == stamp
    assert "epoch 1/60" in err  # progress lines even though stderr is not a terminal
    assert len(record_files(tmp_path)) == 2


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_run_leaves_no_worker_training_on(tmp_path):
    proc = _start(tmp_path, "--methods", "ng-t", "nft", "--seeds", "0", "--epochs", "200", "--jobs", "2")
    deadline, workers = time.time() + 120, set()
    while time.time() < deadline and proc.poll() is None:
        workers = {w for w in children(proc.pid) if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text()}
        if len(workers) == 2:
            break
        time.sleep(0.1)
    assert len(workers) == 2, "the run never started its two workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                   for w in workers), "workers kept training after their run was killed"


def test_tables_commands_refuse_a_folder_without_records(tmp_path, capsys):
    typo = tmp_path / "reslts"
    assert leaderboard.main(["--out", str(typo)]) == 2
    assert paper_tables.main(["--out", str(typo)]) == 2
    err = capsys.readouterr().err
    assert err.count("no records/ folder here") == 2 and not typo.exists()


def test_help_texts_are_whole_sentences(capsys):
    for main in (leaderboard.main, paper_tables.main, run.main):
        with pytest.raises(SystemExit):
            main(["--help"])
        first = capsys.readouterr().out.split("\n\n")[1].strip()
        assert first.endswith(".") or first.endswith(")."), first
