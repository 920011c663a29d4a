"""The synthetic fake-inr and fake-zoo datasets: registered facts, determinism, targets
that are properties of the networks' functions, and learnable from the weights."""

import numpy as np
import pytest
import torch
from inr_files import load
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score

from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError
from datasets.sources.fake import ZOO_SPECS, brightness_class, confidence
from datasets.symmetry import permute_hidden
from datasets.weights import MixedWeights, WeightSpace, as_mixed


def flat(ds):
    return [s.weights.flatten() for s in (ds.train, ds.test_split())]


def test_registered_facts():
    inr, zoo = DATASETS["fake-inr"].info, DATASETS["fake-zoo"].info
    assert (inr.suites, inr.task, inr.out_dim, inr.embedded) == (("inr",), "classification", 10, False)
    assert (zoo.suites, zoo.task, zoo.out_dim, zoo.embedded) == (("zoo",), "regression", 1, False)
    assert inr.source and inr.licence and zoo.description


def test_deterministic_and_each_split_has_its_own_stream(tmp_path):
    a = load("fake-inr", tmp_path / "a", train=8)
    b = load("fake-inr", tmp_path / "b", train=8)
    bigger = load("fake-inr", tmp_path / "a", train=12)
    reseeded = load("fake-inr", tmp_path / "a", train=8, seed=1)
    assert a.fingerprint == b.fingerprint and torch.equal(a.train.weights.flatten(), b.train.weights.flatten())
    assert torch.equal(bigger.val.weights.flatten(), a.val.weights.flatten()) and len(bigger.train) == 12
    assert not torch.equal(reseeded.train.weights.flatten(), a.train.weights.flatten())


def test_fake_inr_classes_are_the_brightness_of_the_function(tmp_path):
    ds = load("fake-inr", tmp_path, classes=4, hidden=16, train=40)
    assert ds.out_dim == 4 and ds.train.weights.spec.widths == (2, 16, 16, 1)
    assert ds.card["class_balance"]["train"] == [10, 10, 10, 10]
    for split in ds.splits().values():
        assert torch.equal(brightness_class(split.weights, 4), split.targets)
        # a function-preserving transform keeps the class; changing the function does not
        permuted = permute_hidden(split.weights, torch.Generator().manual_seed(0))
        assert torch.equal(brightness_class(permuted, 4), split.targets)
    ws = ds.train.weights
    brighter = WeightSpace(ws.spec, ws.weights, (*ws.biases[:-1], ws.biases[-1] + 0.25))
    assert torch.equal(brightness_class(brighter, 4), (ds.train.targets + 1).clamp(max=3))


def test_fake_inr_is_learnable_from_the_weights(tmp_path):
    ds = load("fake-inr", tmp_path, classes=2, train=200, test=100)
    train, test = ds.train, ds.test_split()
    # a linear readout of one permutation-invariant weight, the output bias
    clf = LogisticRegression().fit(train.weights.biases[-1].numpy(), train.targets.numpy())
    assert clf.score(test.weights.biases[-1].numpy(), test.targets.numpy()) > 0.9


def test_fake_zoo_mixes_architectures_with_function_derived_targets(tmp_path):
    ds = load("fake-zoo", tmp_path, train=16)
    assert isinstance(ds.train.weights, MixedWeights) and set(ds.specs) == set(ZOO_SPECS) and ds.heterogeneous
    assert [n["networks"] for n in ds.card["architectures"]] == [4 + 8 + 8] * 4
    assert {spec.is_conv for spec in ds.specs} == {True, False}
    for split in ds.splits().values():
        mixed = as_mixed(split.weights)
        assert torch.allclose(mixed.apply(confidence), split.targets)
        assert torch.allclose(permute_hidden(mixed, torch.Generator().manual_seed(0)).apply(confidence),
                              split.targets, atol=1e-5)
        assert split.targets.min() >= 0.1 and split.targets.max() <= 1
    one = load("fake-zoo", tmp_path, architectures=1)
    assert isinstance(one.train.weights, WeightSpace) and one.specs == ZOO_SPECS[:1]


def test_fake_zoo_is_learnable_from_weight_statistics(tmp_path):
    ds = load("fake-zoo", tmp_path, train=200, test=100)

    def features(split):  # per architecture: its indicator and its mean log weight norm
        mixed, out = as_mixed(split.weights), np.zeros((len(split), 2 * len(ZOO_SPECS)))
        for g, ws in enumerate(mixed.groups):
            k, rows = ZOO_SPECS.index(ws.spec), mixed.positions(g).numpy()
            out[rows, 2 * k] = 1
            out[rows, 2 * k + 1] = torch.stack([w.flatten(1).norm(dim=1).log() for w in ws.weights]).mean(0).numpy()
        return out

    model = Ridge(1e-3).fit(features(ds.train), ds.train.targets.numpy())
    assert r2_score(ds.test_split().targets.numpy(), model.predict(features(ds.test_split()))) > 0.6


@pytest.mark.parametrize("name, options, message", [
    ("fake-inr", {"train": 1}, "train=1 is out of range; valid: 2..1,000,000"),
    ("fake-inr", {"classes": 1}, "classes=1 is out of range"),
    ("fake-zoo", {"architectures": 5}, "architectures=5 is out of range; valid: 1..4"),
    ("fake-zoo", {"val": 3}, "val=3 is too small for architectures=4"),
])
def test_degenerate_options_are_refused(tmp_path, name, options, message):
    with pytest.raises(ConfigError, match=message) as err:
        load(name, tmp_path, **options)
    assert str(err.value).count(name) == 1
