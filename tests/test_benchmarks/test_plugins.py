"""Methods from outside the repository: a plugin file (``--plugin``), an installed entry point,
a ``module:object`` name and a method registered by an imported module all reach every worker
(``--jobs 2``, Ray); a record names its method's origin and version; a broken plugin is one
line and the other runs finish. Each case runs in its own interpreter, as a user's would, so
no registration leaks into the other tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "neuron_stats.py"
FAST = ["--seeds", "0", "--epochs", "1", "--limit", "12", "--dataset-option", "steps=20"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def wsbench(cwd: Path, *args: str, data: Path, pythonpath: Path | None = None,
            module: str = "benchmarks.run") -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", module, *args, "--data-root", str(data), "--out", str(cwd / "out")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def records(cwd: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted((cwd / "out" / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        found.setdefault(record["config"]["method"], []).append(record)
    return found


def test_a_plugin_file_reaches_two_worker_processes_and_its_records_name_its_origin(tmp_path, data_root):
    shutil.copy(EXAMPLE, tmp_path / "neuron_stats.py")
    done = wsbench(tmp_path, "--suite", "inr", "--plugin", "neuron_stats.py", "--methods", "neuron-stats", "mlp",
                   "--jobs", "2", *FAST[:1], "0", "1", *FAST[2:], data=data_root)
    assert done.returncode == 0, done.stderr
    found = records(tmp_path)
    assert [r["status"] for r in found["neuron-stats"]] == ["ok", "ok"]
    origin = found["neuron-stats"][0]["config"]["method_origin"]
    assert origin["module"] == "neuron_stats" and origin["distribution"] is None and len(origin["source_sha256"]) == 16
    assert "method_origin" not in found["mlp"][0]["config"]  # built-in: its identity is unchanged
    assert found["neuron-stats"][0]["claims"] == ["permutation"]
    assert "neuron-stats" in (tmp_path / "out" / "leaderboard.md").read_text()
    # a changed plugin is a new configuration: its old records stay, a new one is made
    (tmp_path / "neuron_stats.py").write_text(EXAMPLE.read_text().replace('"hidden": 64', '"hidden": 32'))
    again = wsbench(tmp_path, "--suite", "inr", "--plugin", "neuron_stats.py", "--methods", "neuron-stats",
                    *FAST, data=data_root)
    assert again.returncode == 0, again.stderr
    assert len({r["config_id"] for r in records(tmp_path)["neuron-stats"]}) == 2


def install_entry_point(site: Path, version: str) -> None:
    """The example as an installed distribution ``outsider`` with a ``wsbench.methods`` entry
    point, laid out as pip would (no pip needed)."""
    shutil.rmtree(site, ignore_errors=True)
    (site / "outsider").mkdir(parents=True)
    (site / "outsider" / "__init__.py").write_text(EXAMPLE.read_text())
    info = site / f"outsider-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: outsider\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[wsbench.methods]\nneuron-stats = outsider\n")
    (info / "top_level.txt").write_text("outsider\n")
    (info / "RECORD").write_text("outsider/__init__.py,,\n")


@pytest.mark.parametrize("launcher", ["local", "ray"])
def test_an_installed_entry_point_reaches_every_worker_and_its_version_is_part_of_the_identity(tmp_path, data_root,
                                                                                             launcher):
    if launcher == "ray":
        pytest.importorskip("ray")
    site = tmp_path / "site"
    install_entry_point(site, "1.2")
    args = ["--suite", "inr", "--methods", "neuron-stats", "--jobs", "2", "--launcher", launcher, *FAST[:1], "0", "1",
            *FAST[2:]]
    done = wsbench(tmp_path, *args, data=data_root, pythonpath=site)
    assert done.returncode == 0, done.stderr
    found = records(tmp_path)["neuron-stats"]
    assert len(found) == 2 and all(r["status"] == "ok" for r in found)
    assert found[0]["config"]["method_origin"]["distribution"] == "outsider"
    assert found[0]["config"]["method_origin"]["version"] == "1.2"
    if launcher == "local":
        install_entry_point(site, "1.3")
        again = wsbench(tmp_path, *args, data=data_root, pythonpath=site)
        assert again.returncode == 0 and "2 runs to do" in again.stderr, again.stderr
        assert len({r["config_id"] for r in records(tmp_path)["neuron-stats"]}) == 2


def test_evaluate_from_an_imported_module_reaches_worker_processes(tmp_path, data_root):
    """The method is registered by a module the caller imported (no --plugin): the workers
    import that module too; and the calling script, which has no ``if __name__ ==
    "__main__"`` guard, is not run again in them."""
    shutil.copy(EXAMPLE, tmp_path / "neuron_stats.py")
    (tmp_path / "driver.py").write_text(
        "import neuron_stats  # registers neuron-stats\n"
        "import wsbench\n\n"
        "def go(data, out):\n"
        "    return wsbench.evaluate('neuron-stats', 'inr', seeds=[0, 1], epochs=1, limit=12, jobs=2,\n"
        "                            dataset_options={'steps': '20'}, data_root=data, out=out)\n")
    (tmp_path / "script.py").write_text("import sys, driver\n"
                                        "result = driver.go(sys.argv[1], sys.argv[2])\n"
                                        "print(len(result.records), result.status, sorted(result.leaderboard['method']))\n")
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "script.py", str(data_root), str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["2", "0"] and "neuron-stats" in done.stdout


def test_a_method_defined_in_main_runs_in_process_and_is_refused_on_ray(tmp_path, data_root):
    code = (EXAMPLE.read_text().split('"""', 2)[2] +
            "\nimport logging, sys\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "result = wsbench.evaluate(build, 'inr', seeds=[0], epochs=1, limit=12, jobs=2,\n"
            "                          dataset_options={'steps': '20'}, data_root=sys.argv[1], out=sys.argv[2],\n"
            "                          launcher=sys.argv[3])\n"
            "print(result.status, [r['config']['method'] for r in result.records])\n")
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

    def run(launcher: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, str(data_root), str(tmp_path / "out"), launcher],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    local = run("local")
    assert local.returncode == 0 and local.stdout.split()[0] == "0", local.stderr
    assert "neuron-stats" in local.stdout and "running here, one at a time" in local.stderr
    if _has_ray():
        refused = run("ray")
        assert refused.returncode != 0
        assert "registered in __main__ or inside a function, which a Ray worker cannot import" in refused.stderr.strip().splitlines()[-1]


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


BROKEN = {
    "broken_import.py": "import not_a_module_anyone_has\n",
    "raising.py": "def build(task, **hparams):\n    raise ValueError('no weights today')\n",
    "false_claim.py": ("import torch\nfrom torch import nn\nimport wsbench\n\n"
                       "@wsbench.register_method('false-claim', symmetries=('permutation',))\n"
                       "def build(task):\n"
                       "    return nn.Sequential(wsbench.Normaliser(task.stats), Flat(), nn.LazyLinear(task.out_dim))\n\n"
                       "class Flat(nn.Module):\n    def forward(self, weights):\n"
                       "        return weights.flatten().float()\n"),
    "wrong_shape.py": ("import torch\nfrom torch import nn\n\n"
                       "class Three(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                       "        self.lin = nn.Linear(1, 3)\n\n"
                       "    def forward(self, weights):\n        return self.lin(weights.flatten()[:, :1])\n\n"
                       "def build(task, **hparams):\n    return Three()\n"),
}


def test_broken_plugins_are_one_line_each_and_the_other_runs_finish(tmp_path, data_root):
    for name, text in BROKEN.items():
        (tmp_path / name).write_text(text)
    done = wsbench(tmp_path, "--suite", "inr", "--plugin", "broken_import.py", "--plugin", "false_claim.py",
                   "--methods", "mlp", "raising.py:build", "wrong_shape.py:build", "not_there.py:build", "false-claim",
                   *FAST, data=data_root)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert any("plugin broken_import cannot be imported: ModuleNotFoundError" in line for line in errors), errors
    assert any("plugin not_there.py: no such file" in line for line in errors), errors
    found = records(tmp_path)
    assert found["mlp"][0]["status"] == "ok"
    assert found["raising:build"][0]["status"] == "failed"
    assert "ValueError: no weights today" in found["raising:build"][0]["reason"]
    wrong = found["wrong_shape:build"][0]
    assert wrong["status"] == "failed" and "outputs of shape (" in wrong["reason"] and ", 3)" in wrong["reason"]
    assert any("raising:build" in line and "no weights today" in line for line in errors), errors
    # a claim that does not hold: the run finishes, and its row says the claim is broken
    assert found["false-claim"][0]["status"] == "ok" and found["false-claim"][0]["claims"] == ["permutation"]
    row = next(line for line in (tmp_path / "out" / "leaderboard.md").read_text().splitlines()
               if line.startswith("| false-claim |"))
    assert "claimed invariance broken: permutation" in row
