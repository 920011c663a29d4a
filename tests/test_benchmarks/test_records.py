"""A record is what it says it is: its identity covers everything that changes its result,
tables never average different configurations, the shipped reference is never overwritten,
and a malformed record is reported (and redone), never met as a KeyError."""

import json
import os
import shutil
from dataclasses import replace

import pytest

import baselines  # noqa: F401
import benchmarks.records as records
import benchmarks.run as run
from benchmarks import leaderboard, protocol
from benchmarks.record_schema import InvalidRecord, validate
from cli_helpers import FAST, cli, record_files, records_by_method
from datasets.method_table import METHODS


def config_ids(tmp_path, method="statnn"):
    return {r["config_id"] for r in records_by_method(tmp_path)[method]}


@pytest.mark.parametrize("change", [
    ["--epochs", "2"],
    ["--method-option", "hidden=32"],
    ["--dataset-option", "steps=21"],
    ["--limit", "11"],
    ["--profile", "paper"],
    ["--precision", "bf16"],
])
def test_anything_that_changes_the_result_is_a_new_configuration(tmp_path, change):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    first = record_files(tmp_path) + record_files(tmp_path, "paper")
    stamp = first[0].stat().st_mtime_ns
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1", *change) == 0
    every = record_files(tmp_path) + record_files(tmp_path, "paper")
    assert len(every) == 2 and first[0].stat().st_mtime_ns == stamp  # the old record is untouched


def test_a_new_method_version_does_not_reuse_old_records(tmp_path, monkeypatch):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    monkeypatch.setitem(METHODS._entries, "statnn", replace(METHODS["statnn"], version=METHODS["statnn"].version + 1))
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    assert len(config_ids(tmp_path)) == 2


def test_a_new_bf16_version_starts_new_records_for_bf16_runs_only(tmp_path, monkeypatch):
    for precision in ("fp32", "bf16"):
        assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1", "--precision", precision) == 0
    monkeypatch.setattr(protocol, "BF16_VERSION", protocol.BF16_VERSION + 1)
    for precision in ("fp32", "bf16"):
        assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1", "--precision", precision) == 0
    trains = [r["config"]["train"] for r in records_by_method(tmp_path)["statnn"]]
    assert sorted(t.get("bf16_version", 0) for t in trains) == [0, protocol.BF16_VERSION - 1, protocol.BF16_VERSION]


def test_the_budget_cell_names_precision_and_compilation(tmp_path):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1", "--precision", "bf16", "--compile") == 0
    [record] = records_by_method(tmp_path)["statnn"]
    assert leaderboard.budget(record).endswith(", bf16, compiled")


def test_the_leaderboard_never_averages_configurations_and_states_budgets(tmp_path):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "1", "--epochs", "2") == 0
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("| statnn |")]
    assert len(rows) == 2
    seeds = {row.split("|")[2].strip(): row.split("|")[-4].strip() for row in rows}
    assert seeds == {"2 ep, lr 0.001, quick model, limit 12, data steps=20": "2",
                     "1 ep, lr 0.001, quick model, limit 12, data steps=20": "1"}


def test_the_shipped_reference_is_refused_as_output_and_shown_beside(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "reference"
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    shutil.copytree(tmp_path / "out", reference)
    (reference / records.REFERENCE_MARKER).write_text("reference")
    before = sorted(p.read_bytes() for p in reference.rglob("*.json"))
    code = run.main(["--suite", "inr", "--data-root", str(tmp_path / "data"), "--out", str(reference), *FAST,
                     "--methods", "statnn", "--epochs", "1", "--force"])
    assert code == 2 and "holds the shipped reference" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in reference.rglob("*.json")) == before
    monkeypatch.setattr(records, "SHIPPED", reference)
    mine = tmp_path / "mine"
    assert run.main(["--suite", "inr", "--data-root", str(tmp_path / "data"), "--out", str(mine), *FAST,
                     "--methods", "statnn", "--seeds", "0", "--epochs", "1"]) == 0
    row = next(line for line in (mine / "leaderboard.md").read_text().splitlines() if line.startswith("| statnn |"))
    assert row.rstrip(" |").endswith("(1)")  # the reference of the same configuration, one seed
    assert run.main(["--suite", "inr", "--data-root", str(tmp_path / "data"), "--out", str(reference), *FAST,
                     "--methods", "statnn", "--seeds", "0", "--epochs", "1", "--update-reference"]) == 0


def test_a_record_lacking_a_metric_is_reported_and_redone(tmp_path, capsys):
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    path = record_files(tmp_path)[0]
    record = json.loads(path.read_text())
    del record["metrics"]["accuracy"]
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert leaderboard.main(["--out", str(tmp_path / "out"), "--reference", "none"]) == 0
    problem = "finished record lacks the test metric 'accuracy'"
    assert f"record not read: {path}: {problem}\n1 record file(s) not read" in capsys.readouterr().err
    assert cli(tmp_path, "--methods", "statnn", "--seeds", "0", "--epochs", "1") == 0
    assert "accuracy" in json.loads(path.read_text())["metrics"]
    corrupt, aside = path.with_suffix(".json.corrupt"), f"set aside, redone ({problem})"
    assert f"record not read: {corrupt}: {aside}" in capsys.readouterr().err
    assert f"- `{corrupt}`: {aside}" in (tmp_path / "out" / "leaderboard.md").read_text()


@pytest.mark.parametrize("damage, message", [
    (lambda r: r.pop("config"), "lacks config"),
    (lambda r: r["config"].pop("method_version"), "lacks config.method_version"),
    (lambda r: r.update(status="done"), "status 'done'"),
    (lambda r: r.update(schema=1), "schema 1"),
    (lambda r: r["robustness"]["permutation"].pop("output_change"), "lacks 'accuracy' or output_change"),
    (lambda r: r.update(claims="rescale"), "claims 'rescale': expected a list of symmetry names"),
])
def test_validation_names_the_problem(tmp_path, damage, message):
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "1") == 0
    record = json.loads(record_files(tmp_path)[0].read_text())
    damage(record)
    with pytest.raises(InvalidRecord, match=message.replace("(", r"\(")):
        validate(record, "x.json", ("accuracy",))


def test_the_git_state_names_the_commit_and_whether_tracked_files_differ_from_it(tmp_path):
    import subprocess

    from benchmarks.records import git_state
    assert git_state(tmp_path) == (None, None)  # not a repository
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        if args[0] == "add":
            (tmp_path / "code.py").write_text("x = 1\n")
        subprocess.run(["git", *args], cwd=tmp_path, check=True, env={**os.environ, **env})
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "new.py").write_text("")  # untracked: the commit still names the tracked code
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "code.py").write_text("x = 2\n")  # what a copied working tree on another machine looks like
    assert git_state(tmp_path) == (commit, True)


def test_config_changes_names_every_setting_that_differs_nested_and_unset():
    before = {"method": "ng-gnn", "train": {"epochs": 200, "schedule": "constant", "compile": True},
              "hyperparameters": {"hidden": (64, 64)}, "protocol_version": 2}
    after = {"method": "ng-gnn", "train": {"epochs": 200, "schedule": "cosine", "compile": True, "patience": 5},
             "hyperparameters": {"hidden": [64, 64]}, "protocol_version": 3}
    assert records.config_changes(before, after) == [
        "protocol_version: 2 -> 3", "train.patience: unset -> 5", "train.schedule: constant -> cosine"]
    assert records.config_changes(after, after) == []
