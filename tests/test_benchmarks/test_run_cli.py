"""The CLI end to end: smoke run of the whole suite, resume, options and bad input."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest

import benchmarks.grid as grid
import benchmarks.run as run
from benchmarks.robustness import TOLERANCE, TRANSFORMS
from benchmarks.suites import SUITES
from cli_helpers import FAST, cli, record_files, records_by_method
from datasets.method_table import METHODS


@pytest.mark.slow
def test_smoke_runs_every_method_and_symmetry_claims_hold(tmp_path):
    assert cli(tmp_path, "--smoke") == 0
    found = {m: rs[0] for m, rs in records_by_method(tmp_path, "smoke").items()}
    assert set(found) == set(METHODS)
    for name, record in found.items():
        assert record["status"] == "ok", (name, record.get("reason"))
        for transform, result in record["robustness"].items():
            assert result["function_error"] < TOLERANCE  # float32 storage: a phase shift of 2 pi k / 30 rounds
            if TRANSFORMS[transform].symmetry in METHODS[name].symmetries:
                assert result["output_change"] < 1e-4, (name, transform)
        if not METHODS[name].symmetries:
            assert record["robustness"]["permutation"]["output_change"] > 1e-3, name
    assert set(found["mlp"]["robustness"]) == {"permutation", "sign_flip", "phase"}  # SIRENs: sine, not ReLU
    board = (tmp_path / "out" / "leaderboard-smoke.md").read_text()
    assert all(f"| {name} |" in board for name in METHODS)


def test_resume_skips_finished_runs_and_survives_an_interruption(tmp_path, monkeypatch, caplog):
    real, calls = grid.execute, []

    def interrupted(planned, dataset):
        calls.append(planned.spec.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(planned, dataset)

    monkeypatch.setattr(grid, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1")
    done = record_files(tmp_path)
    assert len(done) == 1 and json.loads(done[0].read_text())["status"] == "ok"
    stamp = done[0].stat().st_mtime_ns
    monkeypatch.setattr(grid, "execute", real)
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1") == 0
    assert len(record_files(tmp_path)) == 3 and done[0].stat().st_mtime_ns == stamp
    # a corrupt record is set aside and redone; the others are left alone
    victim = record_files(tmp_path)[1]
    victim.write_text("{not json")
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1") == 0
    assert json.loads(victim.read_text())["status"] == "ok"
    assert victim.with_suffix(".json.corrupt").exists() and done[0].stat().st_mtime_ns == stamp
    # a changed budget is a different run: a new record beside the old, which stays as it was
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "3") == 0
    epochs = sorted(r["config"]["train"]["epochs"] for r in records_by_method(tmp_path)["mlp"])
    assert epochs == [2, 2, 2, 3] and done[0].stat().st_mtime_ns == stamp
    # a record that lacks a transform the suite measures (written before it was added) is redone
    old = json.loads(victim.read_text())
    del old["robustness"]["phase"]
    victim.write_text(json.dumps(old))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1") == 0
    assert "1 finished run(s) lack a transform the suite now measures (phase): redone" in caplog.text
    redone = json.loads(victim.read_text())
    assert "phase" in redone["robustness"] and redone["metrics"] == old["metrics"]
    assert done[0].stat().st_mtime_ns == stamp


def test_a_dataset_sets_its_own_epoch_budget_and_epochs_overrides_it(tmp_path):
    """digits-inr trains 5x the networks the quick budgets were measured on, so it sets 6
    quick epochs for ``inr`` and 2 for ``edit`` (the same optimiser steps); a dataset without
    one keeps the suite's budget, else the profile's."""
    assert SUITES["inr"].epoch_budget("quick", "digits-inr") == 6
    assert SUITES["edit"].epoch_budget("quick", "digits-inr") == 2
    assert SUITES["edit"].epoch_budget("quick", "mnist-inr") == 10
    assert SUITES["inr"].epoch_budget("quick", "mnist-inr") is None
    assert SUITES["inr"].epoch_budget("paper", "digits-inr") is None
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0") == 0
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1") == 0
    runs = sorted((r["config"]["train"]["epochs"], len(r["history"])) for r in records_by_method(tmp_path)["mlp"])
    assert runs == [(1, 1), (6, 6)]


@pytest.mark.parametrize("args, message", [
    (["--suite", "inrr"], "unknown suite 'inrr'. Did you mean 'inr'?"),
    (["--suite", "inr", "--methods", "mlp-agu"], "Did you mean 'mlp-aug'?"),
    (["--suite", "inr", "--datasets", "digits-cnn-zoo"], "belongs to suite 'zoo'"),
    (["--suite", "inr", "--dataset-option", "steps=0"], "digits-inr option steps=0 is out of range; valid: 1.."),
    (["--suite", "inr", "--dataset-option", "depth=-5"], "option depth=-5 is out of range"),
    (["--suite", "inr", "--dataset-option", "views=0"], "option views=0 is out of range"),
    (["--suite", "inr", "--dataset-option", "hidden=0"], "option hidden=0 is out of range"),
    (["--suite", "inr", "--dataset-option", "stepz=3"], "unknown option(s) stepz; valid: augment, chunk, depth"),
    (["--suite", "inr", "--method-option", "hiden=3"], "no selected method has option 'hiden'"),
    (["--suite", "inr", "--methods", "mlp", "--method-option", "ng-gnn.hidden=3"], "'ng-gnn' is not selected"),
    (["--suite", "inr", "--method-option", "ng-gnn.hidden=x"], "ng-gnn option hidden='x' is not a valid int"),
    (["--list", "--suite", "inr", "--methods", "nope"], None),
    ([], "--suite is required"),
])
def test_bad_input_gets_one_line_with_the_choices(tmp_path, capsys, args, message):
    code = run.main([*args, "--data-root", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    if message is None:  # --list ignores the rest
        assert code == 0
        return
    assert code == 2 and message in err and err.count("\n") == 0 and "Traceback" not in err, err
    assert not (tmp_path / "out" / "records").exists()


def test_method_options_reach_the_methods_that_have_them(tmp_path):
    assert cli(tmp_path, "--smoke", "--methods", "ng-gnn", "statnn", "--method-option", "probes=4") == 0
    found = {m: rs[0] for m, rs in records_by_method(tmp_path, "smoke").items()}
    assert found["ng-gnn"]["config"]["hyperparameters"]["probes"] == 4
    assert found["ng-gnn"]["config"]["method_options"] == {"probes": 4}
    assert "probes" not in found["statnn"]["config"]["hyperparameters"]
    assert found["ng-gnn"]["robustness"]["permutation"]["output_change"] < 1e-4
    assert cli(tmp_path, "--smoke", "--methods", "ng-gnn", "--method-option", "ng-gnn.probes=0") == 0
    assert len(records_by_method(tmp_path, "smoke")["ng-gnn"]) == 2  # another configuration, another record


def test_repeated_names_run_once(tmp_path):
    assert cli(tmp_path, "--smoke", "--methods", "statnn", "statnn", "--datasets", "digits-inr", "digits-inr") == 0
    assert len(record_files(tmp_path, "smoke")) == 1


@pytest.mark.parametrize("args, message", [
    (["--seeds", "-1"], "out of range; valid: 0..2147483647"),
    (["--epochs", "0"], "out of range; valid: 1..100000"),
    (["--seeds", "x"], "'x' is not an integer"),
    (["--data-root", ""], "an empty path is not a folder"),
    (["--dataset-option", "steps"], "'steps' is not KEY=VALUE"),
    (["--schedule", "step"], "invalid choice: 'step'"),
    (["--batch-size", "0"], "out of range; valid: 1..65536"),
    (["--time-limit", "0"], "out of range; valid: a positive number"),
    (["--time-limit", "1h"], "'1h' is not a number"),
    (["--augment", "rotate"], "invalid choice: 'rotate'"),
])
def test_malformed_arguments_are_refused(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        run.main(["--suite", "inr", *args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and message in err and err.count("\n") == 0


def test_unwritable_data_root_is_refused_and_nothing_is_lost(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert run.main(["--suite", "inr", "--data-root", str(blocker / "sub"), "--out", str(tmp_path)]) == 2
    assert "cannot be written" in capsys.readouterr().err and blocker.read_text() == "keep me"


def test_list_prints_both_tables(capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "Datasets" in out and "Methods" in out and "Dataset options" in out
    assert all(name in out for name in METHODS) and "digits-inr" in out and "small-cnn-zoo-cifar10" in out
    assert "steps=300 (1..10,000,000)" in out  # digits-inr's options with their ranges


@pytest.mark.parametrize("option, message", [
    ("ng-gnn.hidden=-1", "ng-gnn option hidden=-1 is out of range; valid: at least 1"),
    ("nfn-np.channels=16,0,16", "nfn-np option channels=16,0,16 is out of range; valid: at least 1"),
    ("dropout=1.5", "option dropout=1.5 is out of range; valid: from 0 up to (not including) 1"),
    ("ng-gnn.sigma=-3", "ng-gnn option sigma=-3 is out of range; valid: at least 0"),
])
def test_method_options_out_of_range_are_one_line_errors(tmp_path, capsys, option, message):
    assert cli(tmp_path, "--smoke", "--methods", "ng-gnn", "nfn-np", "--method-option", option) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "records").exists()  # refused before any work


def test_a_full_disk_mid_run_is_one_line_naming_the_file_and_the_records_stay(tmp_path):
    """The run in a process whose file size limit (RLIMIT_FSIZE) lets the records through but
    not the leaderboard's larger files: exit 2, one line naming the file, no traceback; the
    records written before are intact, and a rerun with room finishes without redoing them."""
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0  # builds the data
    shutil.rmtree(tmp_path / "out")
    args = [sys.executable, "-m", "benchmarks.run", "--suite", "inr", "--data-root", str(tmp_path / "data"),
            "--out", str(tmp_path / "out"), *FAST, "--methods", "statnn", "mlp", "--seeds", "0", "--epochs", "1",
            "--jobs", "1"]

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    # no .pyc writes under the limit: a cut-off one would break every later import
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    full = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, preexec_fn=small_files)
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert len(errors) == 1 and "cannot be written (File too large)" in errors[0] and str(tmp_path / "out") in errors[0]
    warnings = [line for line in full.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("checkpoint.pt: cannot be written" in w and "goes on without saving" in w
                                      for w in warnings)  # each run's training state, once: the runs went on
    written = {p: p.read_bytes() for p in record_files(tmp_path)}
    assert len(written) == 2 and all(json.loads(b)["status"] == "ok" for b in written.values())
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and "0 runs to do, 2 already finished" in again.stderr, again.stderr
    assert {p: p.read_bytes() for p in record_files(tmp_path)} == written


def test_early_stopping_stops_after_its_patience_and_is_part_of_the_identity(tmp_path):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "12", "--patience", "1") == 0
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "12") == 0
    stopped, full = sorted(records_by_method(tmp_path)["statnn"], key=lambda r: "patience" in r["config"]["train"])[::-1]
    assert stopped["config"]["train"]["patience"] == 1 and "patience" not in full["config"]["train"]
    assert stopped["config_id"] != full["config_id"] and len(full["history"]) == 12
    history = stopped["history"]
    assert len(history) == 12 or stopped["best_epoch"] == len(history) - 1  # stopped one epoch after its best
    assert stopped.get("stopped") == ("patience" if len(history) < 12 else None) and "stopped" not in full
    assert "≤12 ep, patience 1" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_the_lr_schedule_and_batch_size_are_part_of_the_identity_and_shown_in_the_budget(tmp_path):
    for options in (["--schedule", "constant"], ["--batch-size", "64"], []):
        assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "2", *options) == 0
    runs = {(r["config"]["train"]["schedule"], r["config"]["train"]["batch_size"]): r
            for r in records_by_method(tmp_path)["mlp"]}
    assert set(runs) == {("constant", 128), ("cosine", 64), ("cosine", 128)}
    assert len({r["config_id"] for r in runs.values()}) == 3
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    for budget in ("2 ep, lr 0.001, constant lr, quick model", "2 ep, lr 0.001, batch 64, quick model",
                   "2 ep, lr 0.001, quick model"):
        assert f"| mlp | {budget}" in board


def test_a_time_limit_ends_the_run_is_part_of_the_identity_and_flagged(tmp_path):
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "4", "--time-limit", "1e-6") == 0
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "4") == 0
    limited, full = sorted(records_by_method(tmp_path)["mlp"], key=lambda r: "time_limit" in r["config"]["train"])[::-1]
    assert limited["config"]["train"]["time_limit"] == 1e-6 and "time_limit" not in full["config"]["train"]
    assert limited["config_id"] != full["config_id"]
    assert len(limited["history"]) == 1 and limited["stopped"] == "time limit"  # the first epoch always runs
    assert len(full["history"]) == 4 and "stopped" not in full
    rows = [line for line in (tmp_path / "out" / "leaderboard.md").read_text().splitlines() if line.startswith("| mlp |")]
    limited_row = next(line for line in rows if line.startswith("| mlp | ≤4 ep, time limit 1e-06 s, lr 0.001, quick model"))
    assert "stopped by its time limit (1/1)" in limited_row
    assert not any("stopped by its time limit" in line for line in rows if line != limited_row)


def test_augmentation_is_part_of_the_identity_shown_in_the_budget_and_refused_where_it_does_not_apply(tmp_path,
                                                                                                     caplog):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "2", "--augment", "inr") == 0
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "2") == 0
    augmented, plain = sorted(records_by_method(tmp_path)["statnn"], key=lambda r: "augment" in r["config"]["train"])[::-1]
    assert augmented["config"]["train"]["augment"] == "inr" and "augment" not in plain["config"]["train"]
    assert augmented["config_id"] != plain["config_id"] and augmented["status"] == plain["status"] == "ok"
    assert augmented["history"] != plain["history"]  # the training batches differed
    assert "| statnn | 2 ep, lr 0.001, inr augmentation, quick model" in (tmp_path / "out" / "leaderboard.md").read_text()
    caplog.clear()
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1", "--augment", "inr", suite="edit") == 1
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error:")]
    assert len(errors) == 1 and "keeps class labels, but this edit task's targets" in errors[0]
    assert "\n" not in errors[0] and "Traceback" not in caplog.text


class Killed(BaseException):
    """Stands for the process being killed (not an error a run records)."""


def test_an_interrupted_run_resumes_after_its_last_epoch_with_the_uninterrupted_record(tmp_path, monkeypatch, caplog):
    import benchmarks.protocol as protocol
    args = ("--methods", "statnn", "--seeds", "0", "--epochs", "5", "--jobs", "1")
    assert cli(tmp_path / "whole", *args) == 0
    real, calls = protocol.compute, []

    def killed_in_epoch_3(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # the third validation: after epoch 2's state was saved
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(protocol, "compute", killed_in_epoch_3)
    with pytest.raises(Killed):
        cli(tmp_path / "cut", *args)
    assert not record_files(tmp_path / "cut")
    [saved] = (tmp_path / "cut" / "out" / "records").rglob("seed0.checkpoint.pt")
    monkeypatch.setattr(protocol, "compute", real)
    caplog.clear()
    caplog.set_level("INFO", logger="wsbench")
    assert cli(tmp_path / "cut", *args) == 0
    assert "statnn / seed 0: resumed after epoch 2" in caplog.text and not saved.exists()  # removed once the record was written
    [whole], [cut] = records_by_method(tmp_path / "whole")["statnn"], records_by_method(tmp_path / "cut")["statnn"]
    assert cut["resumed_after"] == 2 and "resumed_after" not in whole
    assert cut["history"] == whole["history"] and cut["metrics"] == whole["metrics"]
    assert cut["robustness"] == whole["robustness"] and cut["config_id"] == whole["config_id"]
