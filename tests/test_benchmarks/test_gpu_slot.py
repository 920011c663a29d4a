"""``scripts/gpu_slot.py``: the dry run's plan on small IDX files, its refusals (one line,
exit 2), the real path's refusal without CUDA, and a rehearsal of the slot on the CPU."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from functools import partial
from pathlib import Path

import pytest
import torch
from inr_files import write_mnist_idx

from datasets.method_table import build_method
from datasets.sources.dwsnets_inr import DwsnetsInr
from scripts import gpu_slot


@pytest.fixture
def mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four small IDX files (24 training and 4 test images), taken for the official ones."""
    folder = tmp_path / "mnist"
    write_mnist_idx(folder)
    monkeypatch.setattr(gpu_slot, "MNIST_FILES", {
        p.name: (p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest()) for p in folder.iterdir()})
    # the plan of the repository's files, not of this checkout's untracked ones (a virtualenv in the clone)
    monkeypatch.setattr(gpu_slot, "travelling", partial(gpu_slot.travelling, untracked=False))
    return folder


def slot(tmp_path: Path, *args: str) -> int:
    return gpu_slot.main([*args, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out")])


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


def method_rows(out: str) -> dict[str, list[str]]:
    """The dry run's method table: name -> cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("method "))
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("command:"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def test_the_dry_run_prints_a_plan_that_fits(tmp_path, mnist, capsys):
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist)) == 0
    out = capsys.readouterr().out
    assert "INRs: 28 (train 22 / val 2 / test 4), siren 2-32-32-1: 1,185 parameters each" in out
    assert "chunk 10,000 (1 chunk(s)" in out and "plan fits" in out
    rows = method_rows(out)
    assert list(rows) == [*gpu_slot.CORE, *gpu_slot.EXTRA]
    flops = {name: float(cells[1].replace(",", "")) for name, cells in rows.items()}
    epochs = {name: int(cells[6]) for name, cells in rows.items()}
    assert all(f > 0 for f in flops.values())
    assert flops["mlp"] == flops["mlp-aug"] < flops["dwsnet"] < flops["ng-gnn"] < flops["scalegmn"] \
        < flops["scalegmn-b"] < flops["nft"]
    assert flops["nfn-np"] < flops["nfn-hnp"] and flops["ng-gnn"] < flops["ng-t"]
    assert all(1 <= e <= gpu_slot.EPOCHS for e in epochs.values())  # 22 training INRs: cheap epochs
    travel = re.search(r"travel: (\d+) files, ([\d.,]+) MiB of 64.0 MiB .*carry \[\".slot\"\]", out)
    assert travel and 0 < float(travel[2].replace(",", "")) < 64
    assert "all on the H200 image" in out


def test_a_plan_that_does_not_fit_is_refused_in_one_line(tmp_path, mnist, capsys):
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--methods", "mlp", "--extra", "",
                "--budget", "60") == 2
    assert "the plan does not fit" in one_error_line(capsys)


def test_too_much_to_travel_is_refused_naming_the_largest_entries(tmp_path, mnist, monkeypatch, capsys):
    monkeypatch.setattr(gpu_slot, "TRAVEL_BYTES", 2**20)
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist)) == 2
    line = one_error_line(capsys)
    assert "would travel, more than 1.0 MiB (largest: " in line and "add it to .gitignore" in line
    repo = gpu_slot.REPO
    sizes = {repo / "README.md": 5, repo / "methods" / "graph.py": 7, repo / "methods" / "ng_t.py": 3,
             Path("/elsewhere/x.gz"): 20}
    assert gpu_slot.largest_entries(sizes) == [("/elsewhere/x.gz", 20), ("methods/", 10), ("README.md", 5)]


def test_a_missing_idx_folder_is_refused_in_one_line(tmp_path, capsys):
    assert slot(tmp_path, "--dry-run", "--mnist", str(tmp_path / "absent")) == 2
    line = one_error_line(capsys)
    assert "train-images-idx3-ubyte.gz" in line and "not found" in line


def test_idx_files_that_are_not_the_official_ones_are_refused(tmp_path, capsys):
    write_mnist_idx(tmp_path / "mnist")
    assert slot(tmp_path, "--dry-run", "--mnist", str(tmp_path / "mnist")) == 2
    assert "md5" in one_error_line(capsys)


def test_a_source_that_cannot_fit_on_the_gpu_is_refused(tmp_path, mnist, monkeypatch, capsys):
    options = {k: v for k, v in DwsnetsInr.options.items() if k != gpu_slot.FIT_DEVICE_OPTION}
    monkeypatch.setattr(DwsnetsInr, "options", options)
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist)) == 2
    assert "no dataset option 'device'" in one_error_line(capsys)


def test_the_slot_refuses_to_start_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert slot(tmp_path, "--mnist", str(tmp_path / "absent")) == 2
    assert "no CUDA device" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_rehearsal_on_the_cpu_writes_the_record_the_table_and_the_archive(tmp_path, mnist,
                                                                           monkeypatch):
    params = gpu_slot.dataset_params
    monkeypatch.setattr(gpu_slot, "dataset_params", lambda chunk, device: {**params(chunk, device), "steps": "50"})
    assert slot(tmp_path, "--device", "cpu", "--mnist", str(mnist), "--methods", "mlp", "--extra", "",
                "--budget", "60") == 0
    summary = json.loads((tmp_path / "out" / "slot.json").read_text())
    [row] = summary["rows"]
    assert row["method"] == "mlp" and row["status"] == "ok" and 1 <= row["epochs"] <= gpu_slot.EPOCHS
    assert row["flops_per_sample"] > 0 and row["samples_per_s"] > 0
    assert set(summary["peaks"]) == {"fp32", "tf32", "bf16"}
    assert summary["fit"]["chunk"] == 10_000
    table = (tmp_path / "out" / "table.txt").read_text().splitlines()
    assert table[0].split()[:3] == ["method", "epochs", "test"] and table[1].startswith("mlp ")
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        [name] = [n for n in tar.getnames() if n.endswith("seed0.json")]
        record = json.load(tar.extractfile(name))
    assert record["config"]["train"]["epochs"] == row["epochs"] and record["config"]["profile"] == "paper"
    assert record["metrics"]["accuracy"] == row["accuracy"]


def test_a_concurrent_rehearsal_trains_every_run_at_once_until_its_time_limit(tmp_path, mnist, monkeypatch):
    params = gpu_slot.dataset_params
    monkeypatch.setattr(gpu_slot, "dataset_params", lambda chunk, device: {**params(chunk, device), "steps": "50"})
    monkeypatch.setattr(gpu_slot, "CONCURRENT_OVERHEAD_S", 36)  # a time limit of a few seconds
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert slot(tmp_path, "--device", "cpu", "--mnist", str(mnist), "--methods", "mlp,dwsnet", "--concurrent",
                "--schedule", "constant", "--budget", "60") == 0
    rows = {row["method"]: row for row in json.loads((tmp_path / "out" / "slot.json").read_text())["rows"]}
    assert set(rows) == {"mlp", "dwsnet"} and all(row["status"] == "ok" for row in rows.values())
    # 200 epochs of DWSNet's paper model take longer than the limit on a CPU: its limit stopped it
    dwsnet = rows["dwsnet"]
    assert dwsnet["stopped"] == "time limit" and 1 <= dwsnet["epochs"] < gpu_slot.EPOCHS
    assert len(dwsnet["val_accuracy"]) == dwsnet["epochs"]
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        records = [json.load(tar.extractfile(n)) for n in tar.getnames() if n.endswith("seed0.json")]
    train = {r["config"]["method"]: r["config"]["train"] for r in records}
    assert train["dwsnet"]["schedule"] == "constant" and train["dwsnet"]["epochs"] == gpu_slot.EPOCHS
    assert 1 <= train["dwsnet"]["time_limit"] == train["mlp"]["time_limit"] < 60
    assert (tmp_path / "out" / "dwsnet.log").read_text().count("epoch ") >= dwsnet["epochs"]
    table = (tmp_path / "out" / "table.txt").read_text()
    assert "stopped by its time limit" in table and "dwsnet: validation accuracy % by epoch:" in table


def test_also_compiled_needs_concurrent(tmp_path, mnist, capsys):
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--also-compiled", "ng-gnn") == 2
    assert "--also-compiled needs --concurrent" in one_error_line(capsys)


def test_compile_compiles_the_concurrent_runs_and_needs_no_also_compiled(tmp_path, mnist, capsys):
    args = gpu_slot.build_parser().parse_args(["--concurrent", "--across-slots", "--compile"])
    assert "--compile" in gpu_slot.harness_args(args, "ng-gnn", gpu_slot.EPOCHS, args.compile)
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--methods", "ng-gnn", "--concurrent",
                "--across-slots", "--compile") == 0
    assert "--compile: the estimates are eager steps'" in capsys.readouterr().out
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--compile") == 2
    assert "--compile needs --concurrent" in one_error_line(capsys)
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--compile", "--concurrent",
                "--also-compiled", "ng-gnn") == 2
    assert "no --also-compiled" in one_error_line(capsys)


def test_resume_restores_a_slots_archive_and_refuses_anything_else(tmp_path, mnist, capsys):
    runs = tmp_path / "previous" / "runs" / "records" / "paper" / "inr" / "mnist-inr" / "ng-gnn" / "abc"
    runs.mkdir(parents=True)
    (runs / "seed0.checkpoint.pt").write_bytes(b"state")
    archive = tmp_path / "runs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "previous" / "runs", arcname="runs")
    assert gpu_slot.restore(archive, tmp_path / "data") == 1
    assert (tmp_path / "data" / "runs" / "records" / "paper" / "inr" / "mnist-inr" / "ng-gnn" / "abc" /
            "seed0.checkpoint.pt").read_bytes() == b"state"
    stray = tmp_path / "stray.tar.gz"
    with tarfile.open(stray, "w:gz") as tar:
        tar.add(mnist, arcname="elsewhere")
    across = ("--device", "cpu", "--mnist", str(mnist), "--concurrent", "--across-slots")
    assert slot(tmp_path, *across, "--resume", str(stray)) == 2
    assert "holds 'elsewhere'; valid: a slot's runs.tar.gz" in one_error_line(capsys)
    (tmp_path / "broken.tar.gz").write_bytes(b"not gzip")
    assert slot(tmp_path, *across, "--resume", str(tmp_path / "broken.tar.gz")) == 2
    assert "cannot be read as a slot's runs.tar.gz" in one_error_line(capsys)
    assert slot(tmp_path, "--device", "cpu", "--mnist", str(mnist), "--concurrent", "--resume", str(archive)) == 2
    assert "--resume needs --concurrent --across-slots" in one_error_line(capsys)


def test_resume_is_checked_against_the_run_this_command_plans_before_any_work(tmp_path, mnist, monkeypatch,
                                                                             capsys):
    from benchmarks import checkpoints
    from benchmarks import run as harness
    from benchmarks.checkpoints import Checkpoint
    from benchmarks.records import config_id, run_id
    params = gpu_slot.dataset_params
    monkeypatch.setattr(gpu_slot, "dataset_params", lambda chunk, device: {**params(chunk, device), "steps": "50"})
    monkeypatch.setenv("WANDB_MODE", "disabled")
    flags = ["--mnist", str(mnist), "--data-root", str(tmp_path / "data"), "--concurrent", "--across-slots",
             "--schedule", "constant"]
    # the identity planned before the INRs are built is the one the harness gives the run once they are
    here = gpu_slot.build_parser().parse_args([*flags, "--device", "cpu"])
    planned, task = gpu_slot.planned_run(here, "mlp")
    assert harness.main(gpu_slot.harness_args(here, "mlp", gpu_slot.EPOCHS)) == 0
    [path] = gpu_slot.method_records(gpu_slot.runs_folder(here), "mlp").glob("*/seed0.json")
    record = json.loads(path.read_text())
    assert record["config_id"] == config_id(planned.config) and record["run_id"] == run_id(planned.config, 0)
    # a previous slot's states: the GPU run of mlp this command plans, and one of dwsnet
    gpu, _ = gpu_slot.planned_run(gpu_slot.build_parser().parse_args(flags), "mlp")
    assert gpu.config["data"]["options"]["device"] == "cuda" and gpu.config != planned.config
    model = build_method("mlp", task, profile="paper")
    weights = {"model": model.state_dict(), "best_state": model.state_dict(),
               "optimiser": torch.optim.AdamW(model.parameters()).state_dict()}

    def archive_of(states: dict) -> Path:
        previous = tmp_path / "previous"
        shutil.rmtree(previous, ignore_errors=True)
        for name, (config, epoch, saved) in states.items():
            folder = gpu_slot.method_records(previous / "runs", name) / config_id(config)
            Checkpoint.beside(folder / "seed0.json", run_id(config, 0), config).save(
                {"epoch": epoch, "history": [], **saved})
        with tarfile.open(tmp_path / "runs.tar.gz", "w:gz") as tar:
            tar.add(previous / "runs", arcname="runs")
        return tmp_path / "runs.tar.gz"

    archive = archive_of({"mlp": (gpu.config, 3, weights), "dwsnet": ({"method": "dwsnet"}, 2, {})})
    assert slot(tmp_path, "--dry-run", *flags, "--methods", "mlp,nfn-np", "--resume", str(archive)) == 0
    out = capsys.readouterr().out
    assert f"--resume: mlp resumes after epoch 3 (config {config_id(gpu.config)}, the run this command plans)" in out
    assert "dwsnet's saved state (after epoch 2) is not trained by this command" in out
    assert "nfn-np has no saved state" in out and "plan fits" in out
    assert not list((tmp_path / "data").rglob("*" + checkpoints.SUFFIX))  # a dry run restores nothing
    changed = [*flags[:-1], "cosine"]
    assert slot(tmp_path, "--dry-run", *changed, "--methods", "mlp", "--resume", str(archive)) == 2
    line = one_error_line(capsys)
    assert "mlp's saved state (config" in line and "(train.schedule: constant -> cosine)" in line
    fresh = tmp_path / "fresh"
    assert gpu_slot.main([*changed, "--device", "cpu", "--methods", "mlp", "--resume", str(archive),
                          "--data-root", str(fresh), "--out", str(tmp_path / "out")]) == 2
    assert "is not the run this command plans" in one_error_line(capsys)
    assert not (fresh / "mnist-inr").exists() and not (tmp_path / "out").exists()  # refused before any work
    # the same identity, but weights this code's model does not have (a parameter renamed without a new version)
    renamed = {**weights, "model": {k.replace("0.weight", "first.weight"): v for k, v in weights["model"].items()}}
    archive = archive_of({"mlp": (gpu.config, 3, renamed)})
    assert slot(tmp_path, "--dry-run", *flags, "--methods", "mlp", "--resume", str(archive)) == 2
    line = one_error_line(capsys)
    assert "mlp's saved state (config" in line and "does not load into the model this code builds for it" in line
    assert "Missing key(s)" in line and "first.weight" in line and "a new method version" in line


def test_resume_keeps_a_training_state_that_trained_further(tmp_path, capsys):
    from benchmarks.checkpoints import Checkpoint
    run = Path("runs") / "records" / "paper" / "inr" / "mnist-inr" / "ng-gnn" / "abc" / "seed0.json"

    def archive_at(epoch: int) -> Path:
        Checkpoint.beside(tmp_path / f"e{epoch}" / run, "run").save({"epoch": epoch, "history": []})
        path = tmp_path / f"e{epoch}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(tmp_path / f"e{epoch}" / "runs", arcname="runs")
        return path

    root = tmp_path / "data"
    state = Checkpoint.beside(root / run, "run")
    assert gpu_slot.restore(archive_at(5), root) == 1 and state.load()["epoch"] == 5
    assert gpu_slot.restore(archive_at(3), root) == 0 and state.load()["epoch"] == 5  # a warm machine's newer state
    assert "kept" in capsys.readouterr().out
    assert gpu_slot.restore(archive_at(7), root) == 1 and state.load()["epoch"] == 7
    assert [p.name for p in root.iterdir()] == ["runs"]  # nothing left of the unpacking


def test_a_run_killed_across_slots_is_reported_from_its_saved_state(tmp_path):
    from benchmarks.checkpoints import Checkpoint
    args = gpu_slot.build_parser().parse_args(["--concurrent", "--across-slots", "--data-root", str(tmp_path)])
    assert "--time-limit" not in gpu_slot.harness_args(args, "ng-gnn", gpu_slot.EPOCHS)
    folder = tmp_path / "runs" / "records" / "paper" / "inr" / "mnist-inr" / "ng-gnn" / "abc"
    history = [{"epoch": e, "train_loss": 2.0, "val_accuracy": 0.1 * e} for e in (1, 2, 3)]
    Checkpoint.beside(folder / "seed0.json", "run").save({"epoch": 3, "history": history})
    row, _ = gpu_slot.row_of(args, "ng-gnn", gpu_slot.EPOCHS, 1e6, 500.0, "killed at the deadline")
    assert row.epochs == 3 and row.accuracy is None and row.val_accuracy == [0.1, 0.2, 0.3]
    assert row.status == "killed at the deadline; resumable after epoch 3 (--resume)"


def test_across_slots_needs_concurrent_and_one_run_per_method(tmp_path, mnist, capsys):
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--across-slots") == 2
    assert "--across-slots needs --concurrent" in one_error_line(capsys)
    assert slot(tmp_path, "--dry-run", "--mnist", str(mnist), "--across-slots", "--concurrent",
                "--also-compiled", "ng-gnn") == 2
    assert "no --also-compiled" in one_error_line(capsys)
