"""The CLI end to end: smoke run of the whole suite, resume, and bad input."""

import json

import pytest

import benchmarks.run as run
from datasets.registry import METHODS

FAST = ["--dataset-option", "steps=20", "--limit", "12"]


def cli(tmp_path, *args):
    return run.main(["--suite", "inr", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                     *FAST, *args])


def records(tmp_path, profile="quick"):
    return sorted((tmp_path / "out" / "records" / profile).rglob("*.json"))


@pytest.mark.slow
def test_smoke_runs_every_method_and_symmetry_claims_hold(tmp_path):
    assert cli(tmp_path, "--smoke") == 0
    found = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in records(tmp_path, "smoke")}
    assert set(found) == set(METHODS)
    for name, record in found.items():
        assert record["status"] == "ok", (name, record.get("reason"))
        change = record["robustness"]["permutation"]["output_change"]
        if METHODS[name].invariant:
            assert change < 1e-4, name
        else:
            assert change > 1e-3, name
    board = (tmp_path / "out" / "leaderboard-smoke.md").read_text()
    assert all(f"| {name} |" in board for name in METHODS)


def test_resume_skips_finished_runs_and_survives_an_interruption(tmp_path, monkeypatch):
    real, calls = run.execute, []

    def interrupted(spec, dataset):
        calls.append(spec.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, dataset)

    monkeypatch.setattr(run, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1")
    done = records(tmp_path)
    assert len(done) == 1 and json.loads(done[0].read_text())["status"] == "ok"
    stamp = done[0].stat().st_mtime_ns
    monkeypatch.setattr(run, "execute", real)
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1") == 0
    assert len(records(tmp_path)) == 3 and done[0].stat().st_mtime_ns == stamp
    # a corrupt record is set aside and redone; the others are left alone
    victim = records(tmp_path)[1]
    victim.write_text("{not json")
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "1", "2", "--epochs", "2", "--jobs", "1") == 0
    assert json.loads(victim.read_text())["status"] == "ok"
    assert victim.with_suffix(".json.corrupt").exists() and done[0].stat().st_mtime_ns == stamp
    # a changed budget is a different run: redone, not skipped
    assert cli(tmp_path, "--methods", "mlp", "--seeds", "0", "--epochs", "3") == 0
    assert json.loads(done[0].read_text())["config"]["train"]["epochs"] == 3


@pytest.mark.parametrize("args, message", [
    (["--suite", "inrr"], "unknown suite 'inrr'. Did you mean 'inr'?"),
    (["--suite", "inr", "--methods", "mlp-agu"], "Did you mean 'mlp-aug'?"),
    (["--suite", "inr", "--datasets", "digits-cnn-zoo"], "belongs to suite 'zoo'"),
])
def test_unknown_names_get_one_line_with_the_choices(tmp_path, capsys, args, message):
    assert run.main([*args, "--data-root", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and "Traceback" not in err


def test_probes_reach_the_graph_methods_only(tmp_path):
    assert cli(tmp_path, "--smoke", "--methods", "ng-gnn", "statnn", "--probes", "4") == 0
    found = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in records(tmp_path, "smoke")}
    assert found["ng-gnn"]["config"]["model"]["probes"] == 4
    assert "probes" not in found["statnn"]["config"]["model"]
    assert found["ng-gnn"]["robustness"]["permutation"]["output_change"] < 1e-4


@pytest.mark.parametrize("args, message", [
    (["--seeds", "-1"], "out of range; valid: 0..2147483647"),
    (["--epochs", "0"], "out of range; valid: 1..100000"),
    (["--seeds", "x"], "'x' is not an integer"),
])
def test_out_of_range_numbers_are_refused(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        run.main(["--suite", "inr", *args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and message in err and err.count("\n") == 0


def test_unwritable_data_root_is_refused_and_nothing_is_lost(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert run.main(["--suite", "inr", "--data-root", str(blocker / "sub"), "--out", str(tmp_path)]) == 2
    assert "cannot be written" in capsys.readouterr().err and blocker.read_text() == "keep me"
