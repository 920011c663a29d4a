"""The training protocol: schedule, best-on-validation selection, determinism."""

import pytest
import torch
from torch import nn

from benchmarks.protocol import TrainConfig, profile_config, schedule, train
from datasets.weight_dataset import Split
from datasets.spec import mlp_spec
from datasets.weights import WeightSpace


def test_warmup_then_cosine_to_zero():
    f = schedule(TrainConfig(epochs=10, warmup_fraction=0.1), 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5, abs=0.01) and f(100) < 1e-6
    g = schedule(TrainConfig(epochs=10, schedule="constant"), 100)
    assert g(80) == 1.0


def test_method_overrides_and_epoch_override():
    config = profile_config("quick", {"lr": 5e-3, "weight_decay": 5e-4}, epochs=7)
    assert (config.lr, config.weight_decay, config.epochs) == (5e-3, 5e-4, 7)


@pytest.mark.parametrize("profile, model_profile, lr, expected", [
    ("quick", "quick", None, 3e-3),    # mlp-aug's quick learning rate (the threshold study's)
    ("smoke", "quick", None, 3e-3),    # the smoke budget keeps the quick model and its optimiser
    ("paper", "paper", None, 1e-3),    # the published protocol's
    ("quick", "quick", 2e-4, 2e-4),    # --lr wins
])
def test_a_profile_specific_learning_rate_follows_the_model_profile(tmp_path, profile, model_profile, lr, expected):
    from benchmarks.runner import RunSpec
    from datasets.source import LoadOptions
    import baselines.flat_mlp  # noqa: F401  (registers mlp-aug)
    spec = RunSpec("inr", "digits-inr", "mlp-aug", 0, profile, LoadOptions(tmp_path), tmp_path,
                   model_profile=model_profile, lr=lr)
    assert spec.train_config().lr == pytest.approx(expected)
    plain = RunSpec("inr", "digits-inr", "mlp", 0, profile, LoadOptions(tmp_path), tmp_path,
                    model_profile=model_profile)
    assert plain.train_config().lr == pytest.approx(1e-3)


class Readout(nn.Module):
    """A linear readout of the 9 flat weights of a 2-2-1 MLP."""

    def __init__(self, outputs: int = 2):
        super().__init__()
        self.net = nn.Linear(9, outputs)

    def forward(self, ws):
        return self.net(ws.flatten())


def splits():
    g = torch.Generator().manual_seed(0)
    spec = mlp_spec([2, 2, 1])
    def make(n):
        ws = WeightSpace.from_flat(spec, torch.randn(n, 9, generator=g))
        return Split(ws, (ws.flatten()[:, 0] > 0).long())
    return make(64), make(32)


def test_training_learns_keeps_the_best_epoch_and_is_deterministic():
    tr, va = splits()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Readout()
        res = train(model, tr, va, task="classification", metrics=("accuracy",),
                    config=TrainConfig(epochs=8, batch_size=16, lr=0.05), seed=3, device=torch.device("cpu"))
        results.append((res, model.net.weight.detach().clone()))
    (a, wa), (b, wb) = results
    assert a.best_val["accuracy"] >= 0.9
    assert a.best_val["accuracy"] == max(h["val_accuracy"] for h in a.history)
    assert a.history[a.best_epoch - 1]["val_accuracy"] == a.best_val["accuracy"]
    assert torch.equal(wa, wb) and a.history == b.history


def test_bf16_autocast_trains_and_selects_like_fp32():
    tr, va = splits()
    torch.manual_seed(0)
    model = Readout()
    res = train(model, tr, va, task="classification", metrics=("accuracy",),
                config=TrainConfig(epochs=8, batch_size=16, lr=0.05, precision="bf16"), seed=3,
                device=torch.device("cpu"))
    assert res.best_val["accuracy"] >= 0.9 and model.net.weight.dtype == torch.float32


def test_an_undefined_validation_metric_never_selects_an_epoch():
    from benchmarks.metrics import Undefined
    tr, va = splits()
    constant = Split(va.weights, torch.full((len(va),), 0.5))
    with pytest.raises(Undefined, match="undefined in every epoch"):
        train(Readout(1), Split(tr.weights, tr.targets.float()), constant, task="regression",
              metrics=("kendall_tau",), config=TrainConfig(epochs=2, batch_size=16), seed=0,
              device=torch.device("cpu"))


class Clock:
    """A stand-in for ``time`` in ``benchmarks.protocol``: seconds pass only when a model
    runs a batch, so the time limit's arithmetic is exact."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class TimedReadout(Readout):
    """``Readout`` that takes one clock second per batch."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def forward(self, ws):
        self.clock.now += 1.0
        return super().forward(ws)


@pytest.mark.parametrize("limit, epochs_run, stopped", [
    (12.0, 2, "time limit"),  # 5 s an epoch (4 batches, 1 validation): after 2 (10 s) a third would end at 15
    (15.0, 3, "time limit"),  # a third ends exactly at the limit; a fourth would not
    (2.0, 1, "time limit"),  # the first epoch always runs
    (100.0, 6, None),  # the limit is never reached
    (None, 6, None),
])
def test_a_time_limit_starts_no_epoch_that_would_end_after_it(monkeypatch, limit, epochs_run, stopped):
    import benchmarks.protocol as protocol
    clock = Clock()
    monkeypatch.setattr(protocol, "time", clock)
    tr, va = splits()
    config = TrainConfig(epochs=6, batch_size=16, lr=0.05, time_limit=limit)
    res = train(TimedReadout(clock), tr, va, task="classification", metrics=("accuracy",), config=config, seed=0,
                device=torch.device("cpu"))
    assert len(res.history) == epochs_run and res.stopped == stopped
    assert res.train_seconds == 5.0 * epochs_run and (limit is None or res.train_seconds <= max(limit, 5.0))
    assert ("time_limit" in config.to_dict()) == (limit is not None)


def test_early_stopping_says_it_stopped_the_run():
    tr, va = splits()
    frozen = Split(va.weights, torch.zeros(len(va), dtype=torch.long))  # every epoch ties the first: no improvement
    res = train(Readout(), tr, frozen, task="classification", metrics=("accuracy",),
                config=TrainConfig(epochs=10, batch_size=16, lr=0.0, patience=2), seed=0, device=torch.device("cpu"))
    assert len(res.history) == 3 and res.stopped == "patience"


def test_augmentation_changes_the_training_batches_only_and_is_reproducible():
    from benchmarks.augmentation import NotAugmentable
    tr, va = splits()
    seen = []

    class Recording(Readout):
        def forward(self, ws):
            if self.training:
                seen.append(ws.flatten().clone())
            return super().forward(ws)

    runs = []
    for augment in ("inr", "inr", "none"):
        seen.clear()
        torch.manual_seed(0)
        res = train(Recording(), tr, va, task="classification", metrics=("accuracy",),
                    config=TrainConfig(epochs=2, batch_size=16, augment=augment), seed=5, device=torch.device("cpu"))
        runs.append((torch.cat(seen), res.history))
    (first, h1), (again, h2), (plain, _) = runs
    assert torch.equal(first, again) and h1 == h2  # the seed fixes the draws
    assert first.shape == plain.shape and not torch.allclose(first, plain)
    assert sorted(plain[:64].sum(1).tolist()) == pytest.approx(sorted(tr.weights.flatten().sum(1).tolist()))
    assert "augment" not in TrainConfig(epochs=1).to_dict() and TrainConfig(epochs=1, augment="inr").to_dict()["augment"] == "inr"
    with pytest.raises(NotAugmentable, match="regression task"):
        train(Readout(1), Split(tr.weights, tr.targets.float()), Split(va.weights, va.targets.float()),
              task="regression", metrics=("mse",), config=TrainConfig(epochs=1, augment="inr"), seed=0,
              device=torch.device("cpu"))


class Interrupted(Exception):
    """Stands for a process killed between two epochs."""


class DroppingReadout(Readout):
    """``Readout`` with dropout: its masks come from torch's global generator."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.3)

    def forward(self, ws):
        return self.net(self.drop(ws.flatten()))


def test_an_interrupted_run_resumes_after_its_last_epoch_with_the_uninterrupted_result(tmp_path):
    from benchmarks.checkpoints import Checkpoint
    tr, va = splits()
    config = TrainConfig(epochs=6, batch_size=16, lr=0.05, augment="inr")

    def run(checkpoint, stop_at=None):
        torch.manual_seed(0)
        model = DroppingReadout()

        def on_epoch(entry):
            if entry["epoch"] == stop_at:
                raise Interrupted

        res = train(model, tr, va, task="classification", metrics=("accuracy",), config=config, seed=2,
                    device=torch.device("cpu"), on_epoch=on_epoch, checkpoint=checkpoint)
        return res, model.net.weight.detach().clone()

    whole, weights = run(None)
    checkpoint = Checkpoint.beside(tmp_path / "seed2.json", "run-a")
    with pytest.raises(Interrupted):
        run(checkpoint, stop_at=4)
    assert checkpoint.path == tmp_path / "seed2.checkpoint.pt" and checkpoint.load()["epoch"] == 3
    resumed, resumed_weights = run(checkpoint)
    assert resumed.resumed_after == 3 and whole.resumed_after == 0
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    assert torch.equal(resumed_weights, weights)  # dropout, augmentation and data order resumed exactly
    assert Checkpoint(checkpoint.path, "run-b").load() is None  # another run's state is not used
    checkpoint.path.write_bytes(b"not a checkpoint")
    assert checkpoint.load() is None
    checkpoint.remove()
    assert not checkpoint.path.exists()
    checkpoint.remove()  # nothing to remove: no error


def test_a_state_saved_for_another_configuration_is_set_aside_naming_what_changed(tmp_path, caplog):
    from benchmarks.checkpoints import Checkpoint
    saved = {"train": {"epochs": 200, "schedule": "constant"}, "protocol_version": 2}
    planned = {"train": {"epochs": 200, "schedule": "cosine"}, "protocol_version": 2}
    Checkpoint(tmp_path / "seed0.checkpoint.pt", "run-a", saved).save({"epoch": 3})
    assert Checkpoint(tmp_path / "seed0.checkpoint.pt", "run-a", saved).load()["config"] == saved
    assert Checkpoint(tmp_path / "seed0.checkpoint.pt", "run-b", planned).load() is None
    assert "belongs to another run (train.schedule: constant -> cosine)" in caplog.text
    Checkpoint(tmp_path / "seed1.checkpoint.pt", "run-c").save({"epoch": 3})  # a state that holds no configuration
    assert Checkpoint(tmp_path / "seed1.checkpoint.pt", "run-b", planned).load() is None
    assert "seed1.checkpoint.pt belongs to another run; the run starts" in caplog.text


def test_a_run_that_had_stopped_resumes_to_its_end(tmp_path, monkeypatch):
    from benchmarks.checkpoints import Checkpoint
    tr, va = splits()
    frozen = Split(va.weights, torch.zeros(len(va), dtype=torch.long))
    config = TrainConfig(epochs=10, batch_size=16, lr=0.0, patience=2)
    checkpoint = Checkpoint(tmp_path / "seed0.checkpoint.pt", "k")
    first = train(Readout(), tr, frozen, task="classification", metrics=("accuracy",), config=config, seed=0,
                  device=torch.device("cpu"), checkpoint=checkpoint)
    monkeypatch.setattr(Readout, "forward", lambda self, ws: pytest.fail("a stopped run trained again"))
    again = train(Readout(), tr, frozen, task="classification", metrics=("accuracy",), config=config, seed=0,
                  device=torch.device("cpu"), checkpoint=checkpoint)
    assert first.stopped == again.stopped == "patience" and again.history == first.history
    assert again.resumed_after == 3


def test_the_shipped_slot_state_restores_and_saves_back_what_it_holds(tmp_path):
    """The GPU slot's saved NG-GNN state (epoch 109 of 200, in the repository) must resume under
    this code: every key restores into the paper model and saves back unchanged."""
    import tarfile
    from pathlib import Path
    from benchmarks.checkpoints import read_state
    from benchmarks.protocol import PROFILES, TrainingState
    from dataclasses import replace
    from datasets.method_table import build_method
    from datasets.spec import siren_spec
    import methods.ng_gnn  # noqa: F401  (registers ng-gnn)
    from wsbench import TaskInfo
    archive = Path(__file__).parents[2] / "results/slots/mnist-inr-ng-gnn-compiled-epoch109.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    saved = read_state(next(tmp_path.rglob("*.checkpoint.pt")))
    model = build_method("ng-gnn", TaskInfo((siren_spec(32, 2, 2, 1, 30.0),), 10, "classification"), profile="paper")
    optimiser = torch.optim.AdamW(model.parameters())
    config = replace(PROFILES["paper"], schedule="constant")
    state = TrainingState(model, optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, schedule(config, 430 * 200)),
                          torch.Generator(), None, torch.device("cpu"))
    with torch.random.fork_rng():  # restoring sets the global generator: keep it from the tests that follow
        progress = state.restore(saved)
    assert (progress.result.resumed_after, progress.result.best_epoch, len(progress.result.history)) == (109, 100, 109)
    again = state.saved(saved["epoch"], progress, saved["seconds"])
    assert set(again) == set(saved) - {"key", "config"}  # the two a Checkpoint adds
    assert torch.equal(again["order"], saved["order"]) and again["best_value"] == saved["best_value"]
    assert all(torch.equal(again["model"][k], saved["model"][k]) for k in saved["model"])
    assert again["scheduler"]["last_epoch"] == saved["scheduler"]["last_epoch"] == 109 * 430
