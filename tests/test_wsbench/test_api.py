"""The public surface: everything in ``wsbench.__all__`` exists and is documented; the
Python API is the command line's configuration (same records); ``load_dataset`` + ``score``
serve a researcher's own loop; the ``wsbench`` console script dispatches to every tool."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wsbench
from benchmarks.config import EvaluationConfig
from benchmarks import run

FAST = {"limit": 12, "dataset_options": {"steps": "20"}}


def test_every_public_name_exists_and_has_a_docstring():
    for name in wsbench.__all__:
        value = getattr(wsbench, name)
        assert inspect.getdoc(value), f"wsbench.{name} has no docstring"
    assert len(set(wsbench.__all__)) == len(wsbench.__all__)


def test_an_outsider_needs_no_import_of_the_implementation_packages():
    code = ("import wsbench, torch\n"
            "spec = wsbench.siren_spec(8, 2)\n"
            "ws = wsbench.WeightSpace.from_flat(spec, torch.randn(3, spec.num_params))\n"
            "task = wsbench.TaskInfo((spec,), 10, 'classification')\n"
            "net = wsbench.build_method('statnn', task)\n"
            "print(tuple(net(ws).shape))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "(3, 10)", done.stderr


def test_evaluate_writes_the_records_the_command_line_writes(tmp_path):
    result = wsbench.evaluate(["statnn", "mlp"], "inr", seeds=[0], epochs=1, data_root=tmp_path / "data",
                              out=tmp_path / "api", **FAST)
    assert result.status == 0 and sorted(r["config"]["method"] for r in result.records) == ["mlp", "statnn"]
    assert set(result.leaderboard["method"]) >= {"mlp", "statnn"} and "statnn" in result.markdown
    assert run.main(["--suite", "inr", "--methods", "statnn", "mlp", "--seeds", "0", "--epochs", "1", "--limit", "12",
                     "--dataset-option", "steps=20", "--data-root", str(tmp_path / "data"),
                     "--out", str(tmp_path / "cli")]) == 0
    by_cli = {json.loads(p.read_text())["run_id"] for p in (tmp_path / "cli" / "records").rglob("*.json")}
    assert by_cli == {r["run_id"] for r in result.records}  # the same configurations, the same identities


def test_the_configuration_is_checked_before_any_work(tmp_path):
    with pytest.raises(wsbench.WsbenchError, match="epochs=0 is out of range"):
        EvaluationConfig(epochs=0)
    with pytest.raises(wsbench.WsbenchError, match="unknown suite 'im'"):
        EvaluationConfig(suite="im")
    with pytest.raises(wsbench.WsbenchError, match="schedule='step'; valid: cosine, constant"):
        EvaluationConfig(schedule="step")
    with pytest.raises(wsbench.WsbenchError, match="batch_size=0 is out of range; valid: an integer 1..65536"):
        EvaluationConfig(batch_size=0)
    with pytest.raises(wsbench.WsbenchError, match="time_limit=-1 is out of range; valid: a positive number"):
        EvaluationConfig(time_limit=-1)
    with pytest.raises(wsbench.WsbenchError, match="no selected method has option 'width'"):
        wsbench.evaluate("statnn", "inr", method_options={"width": 3}, data_root=tmp_path, out=tmp_path / "o")
    assert not (tmp_path / "o" / "records").exists()


def test_a_plain_builder_callable_is_a_method_that_claims_nothing(tmp_path):
    def linear_probe(task, **hparams):
        return torch.nn.Sequential(wsbench.Normaliser(task.stats), Flat(), torch.nn.LazyLinear(task.out_dim))

    result = wsbench.evaluate(linear_probe, "inr", seeds=[0, 1], epochs=1, jobs=2, data_root=tmp_path / "data",
                              out=tmp_path / "out", **FAST)  # defined in a function: runs here, not in workers
    record = result.records[0]
    assert [r["status"] for r in result.records] == ["ok", "ok"] and record["claims"] == []
    assert record["config"]["method"].endswith(":test_a_plain_builder_callable_is_a_method_that_claims_nothing."
                                               "<locals>.linear_probe")


class Flat(torch.nn.Module):
    def forward(self, weights):
        return weights.flatten().float()


def test_own_loop_load_dataset_and_score(tmp_path):
    data = wsbench.load_dataset("digits-inr", "inr", data_root=tmp_path, limit=12, options={"steps": 20})
    logits = torch.zeros(len(data.val), 10)
    logits[torch.arange(len(data.val)), data.val.targets] = 1.0  # a perfect classifier
    assert wsbench.score(logits, data.val, "inr") == {"accuracy": 1.0}
    with pytest.raises(wsbench.WsbenchError, match=r"score\(inr\): classification expects \(N, C\) logits"):
        wsbench.score(torch.zeros(len(data.val)), data.val, "inr")
    with pytest.raises(wsbench.WsbenchError, match="belongs to suite"):
        wsbench.load_dataset("digits-cnn-zoo", "inr", data_root=tmp_path)


@pytest.mark.parametrize("command, expected", [
    (["--help"], "commands:"), (["list"], "digits-inr"), (["check", "statnn", "--random-only"], "checks passed"),
    (["leaderboard", "--help"], "--reference"), (["paper-tables", "--help"], "--out"), (["fetch", "--help"], "NAME"),
    (["run", "--help"], "--plugin")])
def test_the_console_script_reaches_every_tool(command, expected):
    done = subprocess.run([sys.executable, "-m", "wsbench.cli", *command], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and expected in done.stdout, done.stderr


def test_an_unknown_command_is_one_line():
    done = subprocess.run([sys.executable, "-m", "wsbench.cli", "rnu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == ("error: unknown command 'rnu'; valid: run, list, check, "
                                                            "fetch, leaderboard, paper-tables")


def test_the_console_script_is_installed():
    assert Path(sys.executable).with_name("wsbench").exists() or any(
        (Path(p) / "wsbench").exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def test_a_method_with_only_a_quick_profile_runs_the_paper_profile_with_its_quick_sizes(tmp_path):
    def tiny(task, hidden):
        return torch.nn.Sequential(Flat(), torch.nn.LazyLinear(hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))

    info = wsbench.MethodInfo("tiny-quick-only", tiny, {"quick": {"hidden": 8}}, symmetries=frozenset())
    result = wsbench.evaluate(info, "inr", seeds=[0], epochs=1, profile="paper", data_root=tmp_path / "data",
                              out=tmp_path / "out", **FAST)
    config = result.records[0]["config"]
    assert config["model_profile"] == "paper" and config["model_profile_used"] == "quick"
    assert config["hyperparameters"] == {"hidden": 8}
    assert "paper model (quick sizes: no paper profile)" in result.markdown
