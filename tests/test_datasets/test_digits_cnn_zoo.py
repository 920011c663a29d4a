"""The embedded CNN zoos: run-grouped splits, stored accuracies, mixed batching, symmetries,
option checks and resumable builds."""

import numpy as np
import pytest
import torch

import datasets.cnn_training as cnn_training
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError
from datasets.functional import forward
from datasets.source import LoadOptions
from datasets.sources.digits_cnn_zoo import (
    HELD_OUT_IMAGES,
    checkpoint_epochs,
    digits_task,
    park_architectures,
    split_runs,
    zoo_spec,
)
from datasets.symmetry import permute_hidden, rescale_positive
from datasets.weights import MixedWeights, WeightSpace, as_mixed

SMALL = {"runs": "60", "epochs": "2", "checkpoints": "2"}
TINY = {**SMALL, "epochs": "1", "checkpoints": "1"}


def open_zoo(name, root, **kw):
    return DATASETS[name].open(LoadOptions(root, progress=False, **kw))


def load_digits_cnn_zoo(options):
    return DATASETS["digits-cnn-zoo"].open(options).load()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return load_digits_cnn_zoo(LoadOptions(tmp_path_factory.mktemp("zoo"), limit=12, progress=False,
                                           params=SMALL))


@pytest.fixture(scope="module")
def park(tmp_path_factory):
    return open_zoo("digits-cnn-park", tmp_path_factory.mktemp("park"), limit=24,
                    params={**SMALL, "runs": "120"}).load()


def splits(ds):
    return {"train": ds.train, "val": ds.val, "test": ds.test_split()}


def accuracy_of(weights, dtype=torch.float32):
    """Re-evaluate stored networks on the held-out digits, as the builder does."""
    task = digits_task()
    x = task.test_images.to(dtype)
    return as_mixed(weights).apply(
        lambda g: (forward(g.to(dtype), x).argmax(-1) == task.test_labels).float().mean(1))


def test_small_zoo_is_built_grouped_by_run_and_cached(zoo, tmp_path):
    parts = splits(zoo)
    assert {k: len(v) for k, v in parts.items()} == {"train": 12, "val": 12, "test": 12}
    runs = {k: set(v.extras["run"].tolist()) for k, v in parts.items()}
    assert not runs["train"] & runs["val"] and not runs["train"] & runs["test"] and not runs["val"] & runs["test"]
    for split in parts.values():  # every run keeps both checkpoints, side by side
        assert split.extras["epoch"].tolist() == [1, 2] * (len(split) // 2)
        assert torch.equal(split.extras["run"][::2], split.extras["run"][1::2])
        assert split.targets.dtype == torch.float32 and 0 <= split.targets.min() and split.targets.max() <= 1
    assert zoo.task == "regression" and zoo.out_dim == 1
    assert {s.describe() for s in zoo.specs} <= {"conv 1-8-8-8-10 relu", "conv 1-8-8-8-10 tanh"}
    card = zoo.card
    assert card["checkpoint_epochs"] == [1, 2] and card["runs"] == {"train": 6, "val": 6, "test": 6}
    assert len(card["test_accuracy_histogram"]) == 10 and {"min", "median", "max"} <= set(card["test_accuracy"])
    assert sum(int(v.split()[-1]) for v in card["test_accuracy_histogram"].values()) == 36
    assert {"learning_rate", "l2", "dropout", "train_fraction", "optimizer", "epoch", "activation"} <= set(
        zoo.train.extras)


def test_cache_returns_the_same_zoo(tmp_path):
    opts = LoadOptions(tmp_path, limit=2, progress=False, params=TINY)
    first, again = load_digits_cnn_zoo(opts), load_digits_cnn_zoo(opts)
    assert torch.equal(first.train.targets, again.train.targets)
    assert torch.equal(as_mixed(first.train.weights).groups[0].flatten(),
                       as_mixed(again.train.weights).groups[0].flatten())


def test_recorded_accuracy_is_the_stored_networks_accuracy(zoo, park):
    for ds in (zoo, park):
        for split in splits(ds).values():
            assert torch.equal(accuracy_of(split.weights), split.targets)
    assert len(digits_task().test_labels) == HELD_OUT_IMAGES


def test_held_out_digits_are_disjoint_and_stratified():
    task = digits_task()
    assert len(task.train_labels) + len(task.test_labels) == 1797
    train = {tuple(x.flatten().tolist()) for x in task.train_images}
    assert not any(tuple(x.flatten().tolist()) in train for x in task.test_images)
    assert task.test_labels.bincount(minlength=10).min() >= 45
    assert -1 <= task.train_images.min() and task.train_images.max() <= 1


def test_mixed_batches_keep_weights_and_targets_aligned(park):
    split = park.train
    assert isinstance(split.weights, MixedWeights) and len(split.weights.groups) > 2
    index = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:15]
    weights, targets = split.batch(index)
    assert torch.equal(accuracy_of(weights), targets)
    assert torch.equal(targets, split.targets[index])


def test_rescaling_preserves_relu_cnns_and_changes_tanh_cnns(zoo, generator):
    groups = {g.spec.activation_of(1): g.double() for g in as_mixed(zoo.train.weights).groups}
    assert set(groups) == {"relu", "tanh"}
    x = digits_task().test_images[:64].double()
    relu, tanh = groups["relu"], groups["tanh"]
    assert (forward(relu, x) - forward(rescale_positive(relu, generator), x)).abs().max() < 1e-9
    assert (rescale_positive(relu, generator).flatten() - relu.flatten()).abs().max() > 1e-3
    assert (forward(tanh, x) - forward(rescale_positive(tanh, generator, any_activation=True), x)).abs().max() > 1e-3


def test_permutation_preserves_park_networks_with_residuals(park, generator):
    residual = [g.double() for g in as_mixed(park.train.weights).groups if g.spec.residual]
    assert any(g.spec.widths[a] != g.spec.widths[b] for g in residual for a, b in g.spec.residual)
    x = digits_task().test_images[:32].double()
    for ws in residual:
        moved = permute_hidden(ws, generator)
        assert (forward(ws, x) - forward(moved, x)).abs().max() < 1e-9
        assert (moved.flatten() - ws.flatten()).abs().max() > 1e-3


def test_park_architectures_follow_the_family():
    pool = park_architectures(12, torch.Generator().manual_seed(2))
    assert len(set(pool)) == 12 and any(s.residual for s in pool) and any(not s.residual for s in pool)
    widths = [(s.widths[a], s.widths[b]) for s in pool for a, b in s.residual]
    assert any(x != y for x, y in widths) and any(x == y for x, y in widths)  # as in the Wild Park: both kinds
    for spec in pool:
        convs = spec.layers[:-1]
        assert 2 <= len(convs) <= 4 and spec.layers[-1].kind == "linear" and spec.layers[-1].out_features == 10
        assert {c.out_features for c in convs} <= {4, 8, 16} and {c.kernel[0] for c in convs} <= {3, 5}
        assert len({c.activation for c in convs}) == 1 and convs[0].stride == 2
        assert all(c.stride == 1 and c.padding == c.kernel[0] // 2 for c in convs[1:])
        x = torch.zeros(1, 1, 8, 8)
        _, values = forward(WeightSpace.from_flat(spec, torch.zeros(1, spec.num_params)), x, return_hidden=True)
        assert all(v.shape[-2:] == (4, 4) for v in values[1:-1])


def test_zoo_architecture_and_options():
    spec = zoo_spec("relu")
    assert spec.num_params == 1338 and [layer.stride for layer in spec.layers[:3]] == [2, 2, 2]
    assert checkpoint_epochs(8, 4) == (1, 2, 4, 8) and checkpoint_epochs(10, 4) == (1, 2, 5, 10)
    assert checkpoint_epochs(5, 1) == (5,)
    assert open_zoo("digits-cnn-zoo", "unused", params={"runs": "7"}).config["runs"] == 7
    assert "architectures" in DATASETS["digits-cnn-park"].source.options
    with pytest.raises(ConfigError, match="unknown option"):
        open_zoo("digits-cnn-zoo", "unused", params={"architectures": "3"})


def test_split_runs_is_fixed_and_70_10_20():
    a, b = split_runs(1000), split_runs(1000)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [len(a[k]) for k in ("train", "val", "test")] == [700, 100, 200]
    assert len(set(np.concatenate(list(a.values())))) == 1000


def test_single_activation_gives_one_architecture(tmp_path):
    ds = load_digits_cnn_zoo(LoadOptions(tmp_path, limit=2, progress=False, params={**TINY, "activations": "tanh"}))
    assert isinstance(ds.train.weights, WeightSpace) and ds.specs == (zoo_spec("tanh"),)
    with pytest.raises(ConfigError, match="activations"):
        load_digits_cnn_zoo(LoadOptions(tmp_path, limit=2, progress=False, params={"activations": "gelu"}))


def test_both_zoos_are_declared_as_regression_on_one_output():
    for name in ("digits-cnn-zoo", "digits-cnn-park"):
        info = DATASETS[name].info
        assert (info.task, info.out_dim, info.suites, info.embedded) == ("regression", 1, ("zoo",), True)
        assert info.version >= 2 and info.licence == "CC BY 4.0"
    source = open_zoo("digits-cnn-zoo", "unused")
    assert source.config["activations"] == ("relu", "tanh") and source.options["runs"].low == 1


class Interrupted(Exception):
    """Stands for a build stopped part-way (Ctrl-C, a lost machine)."""


def test_interrupted_build_resumes_with_the_same_networks(tmp_path, monkeypatch):
    options = {"limit": 2, "params": {**TINY, "runs": "20", "chunk": "2"}}
    real, trained = cnn_training._train_chunk, []

    def counting(*args, **kwargs):
        trained.append(len(args[1]))
        return real(*args, **kwargs)

    def stop_after_first(*args, **kwargs):
        if trained:
            raise Interrupted
        return counting(*args, **kwargs)

    monkeypatch.setattr(cnn_training, "_train_chunk", counting)
    uninterrupted = open_zoo("digits-cnn-zoo", tmp_path / "a", **options).load()
    chunks = len(trained)
    assert chunks >= 3

    trained.clear()
    monkeypatch.setattr(cnn_training, "_train_chunk", stop_after_first)
    with pytest.raises(Interrupted):
        open_zoo("digits-cnn-zoo", tmp_path / "b", **options).load()
    assert len(trained) == 1 and len(list((tmp_path / "b").rglob("partial/cnns-*.safetensors"))) == 1

    trained.clear()
    monkeypatch.setattr(cnn_training, "_train_chunk", counting)
    resumed = open_zoo("digits-cnn-zoo", tmp_path / "b", **options).load()
    assert len(trained) == chunks - 1  # the finished chunk was not trained again
    assert resumed.fingerprint == uninterrupted.fingerprint and not list((tmp_path / "b").rglob("partial"))
    for name, split in uninterrupted.splits().items():
        again = resumed.splits()[name]
        assert len(as_mixed(split.weights).groups) == len(as_mixed(again.weights).groups)
        assert all(torch.equal(a.flatten(), b.flatten())
                   for a, b in zip(as_mixed(split.weights).groups, as_mixed(again.weights).groups))
        assert torch.equal(split.targets, again.targets) and torch.equal(split.extras["run"], again.extras["run"])
