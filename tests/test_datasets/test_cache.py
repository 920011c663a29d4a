"""The consolidated cache: round trip, atomic writes, corrupt and stale files rebuilt."""

import logging

import torch

from datasets.cache import cached, load_split, save_split
from datasets.collection import Split, WeightDataset
from datasets.spec import mlp_spec
from datasets.weights import MixedWeights, WeightSpace


def tiny_dataset(seed=0) -> WeightDataset:
    g = torch.Generator().manual_seed(seed)
    spec = mlp_spec([2, 4, 1])
    def split(n):
        return Split(WeightSpace.from_flat(spec, torch.randn(n, spec.num_params, generator=g)),
                     torch.arange(n) % 3, {"psnr": torch.rand(n, generator=g)})
    return WeightDataset("tiny", "classification", 3, split(5), split(2), split(3), {"note": "x"})


def test_mixed_split_round_trip(tmp_path):
    a = WeightSpace.from_flat(mlp_spec([2, 4, 1]), torch.randn(3, 17))
    b = WeightSpace.from_flat(mlp_spec([2, 3, 3, 1]), torch.randn(2, 25))
    split = Split(MixedWeights.from_groups([a, b])[[4, 0, 3, 1, 2]], torch.rand(5))
    save_split(tmp_path / "s.safetensors", split, "fp")
    back = load_split(tmp_path / "s.safetensors", "fp")
    same = lambda w: w.apply(lambda g: g.flatten()[:, :5])  # noqa: E731
    assert torch.equal(same(back.weights), same(split.weights))
    assert torch.equal(back.targets, split.targets)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.safetensors"]  # no temporary files left


def test_build_once_then_load(tmp_path):
    calls = []
    build = lambda: calls.append(1) or tiny_dataset()  # noqa: E731
    first = cached(tmp_path, {"v": 1}, build)
    second = cached(tmp_path, {"v": 1}, build)
    assert len(calls) == 1
    assert torch.equal(first.train.weights.flatten(), second.train.weights.flatten())
    assert torch.equal(second.test_split().extras["psnr"], first.test_split().extras["psnr"])
    assert second.card["note"] == "x" and second.card["recipe"] == {"v": 1}


def test_corrupt_and_stale_caches_are_rebuilt(tmp_path, caplog):
    calls = []
    build = lambda: calls.append(1) or tiny_dataset()  # noqa: E731
    cached(tmp_path, {"v": 1}, build)
    path = tmp_path / "train.safetensors"
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING, "wsbench"):
        ds = cached(tmp_path, {"v": 1}, build)
    assert len(calls) == 2 and "train.safetensors" in caplog.text and len(ds.train) == 5
    caplog.clear()
    with caplog.at_level(logging.WARNING, "wsbench"):
        cached(tmp_path, {"v": 2}, build)
    assert len(calls) == 3 and "different recipe" in caplog.text
