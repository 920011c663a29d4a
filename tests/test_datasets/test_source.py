"""The dataset source protocol: options refused before any work, registration constants,
the content fingerprint, caching with validation, checkpoints, and side outputs."""

import math
from dataclasses import replace

import pytest
import torch

from datasets.cache import CARD
from datasets.dataset_table import DatasetEntry, DatasetInfo
from datasets.errors import ConfigError, DataNotFound, InvalidData
from datasets.options import Option
from datasets.source import Built, DatasetSource, LoadOptions
from datasets.spec import mlp_spec
from datasets.validation import all_finite, validate_dataset
from datasets.weight_dataset import Split
from datasets.weights import WeightSpace

INFO = DatasetInfo("toy", ("test",), "classification", 2, "networks made from text files", "tests", "none")
SPEC = mlp_spec([2, 3, 1])


class Toy(DatasetSource):
    """One split of three networks per ``*.txt`` file's bytes; counts its calls."""

    pattern: str = "*.txt"
    options = {"scale": Option(1.0, "weight scale", low=0.1, high=10.0),
               "workers": Option(1, "speed only", low=1, high=8, fingerprint=False)}
    calls: list = []

    def raw_paths(self):
        paths = sorted(self.source_dir.glob(self.pattern))
        if not paths:
            raise DataNotFound(f"{self.info.name}: text files", "nothing", [self.source_dir])
        return paths

    def process(self):
        self.calls.append("process")
        assert self.checkpoints is not None and self.checkpoints.directory.name == "partial"
        seed = sum(b for p in self.raw_paths() for b in p.read_bytes())
        g = torch.Generator().manual_seed(seed)
        value = self.config["scale"] * torch.randn(9, SPEC.num_params, generator=g)
        if self.config["scale"] == 10.0:
            value[4, 0] = math.nan
        splits = [Split(WeightSpace.from_flat(SPEC, value[i:i + 3]), torch.tensor([0, 1, 0])) for i in (0, 3, 6)]
        return Built(*splits, {"files": len(self.raw_paths())})

    def after_load(self, dataset):
        self.calls.append("after_load")


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.txt").write_text("beta")
    Toy.calls = []
    return folder


def toy(tmp_path, source, info=INFO, limit=None, skip_invalid=False, **params):
    options = LoadOptions(tmp_path / "cache", source, limit, skip_invalid, progress=False,
                          params={k: str(v) for k, v in params.items()})
    return DatasetEntry(info, Toy).open(options)


def test_options_are_typed_and_range_checked_before_any_work(tmp_path, source):
    assert toy(tmp_path, source, scale="2.5").config == {"scale": 2.5, "workers": 1}
    for params, message in (({"scale": "0"}, "toy option scale=0.0 is out of range; valid: 0.1..10"),
                            ({"scale": "big"}, "toy option scale='big' is not a valid float"),
                            ({"workers": "9"}, "valid: 1..8"), ({"colour": "red"}, "unknown option")):
        with pytest.raises(ConfigError, match=message):
            toy(tmp_path, source, **params)
    assert Toy.calls == []


def test_constants_become_attributes_and_must_be_declared(tmp_path, source):
    options = LoadOptions(tmp_path, source, progress=False)
    assert DatasetEntry(INFO, Toy, {"pattern": "a.*"}).open(options).raw_paths() == [source / "a.txt"]
    with pytest.raises(TypeError, match="declares no constant 'patern'"):
        DatasetEntry(INFO, Toy, {"patern": "a.*"}).open(options)


def test_the_fingerprint_follows_the_contents(tmp_path, source):
    base = toy(tmp_path, source).fingerprint()
    assert toy(tmp_path, source, workers=4).fingerprint() == base  # speed only
    changed = {toy(tmp_path, source, scale=2).fingerprint(), toy(tmp_path, source, limit=5).fingerprint(),
               toy(tmp_path, source, skip_invalid=True).fingerprint(),
               toy(tmp_path, source, info=replace(INFO, version=2)).fingerprint()}
    assert base not in changed and len(changed) == 4
    # the same files in another folder are the same contents
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in source.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    assert toy(tmp_path, copy).fingerprint() == base
    (source / "b.txt").write_text("gamma")
    replaced = toy(tmp_path, source).fingerprint()
    (source / "c.txt").write_text("delta")
    added = toy(tmp_path, source).fingerprint()
    (source / "a.txt").unlink()
    removed = toy(tmp_path, source).fingerprint()
    assert len({base, replaced, added, removed}) == 4


def test_load_builds_validates_caches_once_and_fills_the_card(tmp_path, source):
    first = toy(tmp_path, source).load()
    second = toy(tmp_path, source).load()
    assert Toy.calls == ["process", "after_load", "after_load"]
    assert torch.equal(first.train.weights.flatten(), second.train.weights.flatten())
    card = second.card
    assert card["name"] == "toy" and card["licence"] == "none" and card["files"] == 2
    assert card["networks"] == {"train": 3, "val": 3, "test": 3} and card["class_balance"]["val"] == [2, 1]
    assert card["options"] == {"scale": 1.0, "workers": 1} and card["source_folder"] == str(source)
    folder = tmp_path / "cache" / "toy" / first.fingerprint
    assert (folder / CARD).is_file() and not (folder / "partial").exists()


def test_an_invalid_build_is_refused_and_not_cached(tmp_path, source):
    with pytest.raises(InvalidData, match="toy, val split: 1 of 3 networks hold NaN"):
        toy(tmp_path, source, scale=10).load()
    assert not list((tmp_path / "cache" / "toy").glob(f"*/{CARD}"))


def test_missing_files_are_reported_before_any_work(tmp_path):
    with pytest.raises(DataNotFound, match="toy: text files not found"):
        toy(tmp_path, tmp_path / "empty").load()
    assert not (tmp_path / "cache" / "toy").exists()


def test_validation_takes_huge_finite_weights_and_refuses_one_nan(tmp_path, source):
    dataset = toy(tmp_path, source).load()
    huge = dataset.train.weights.map(lambda t: torch.full_like(t, 3e38))  # the sum overflows, every entry is finite
    assert not all_finite(huge) and not huge.nonfinite_rows().any()
    validate_dataset(replace(dataset, train=Split(huge, dataset.train.targets)))
    one_nan = huge.map(lambda t: t.clone())
    one_nan.biases[1][2, 0] = math.nan
    with pytest.raises(InvalidData, match="train split: 1 of 3 networks hold NaN or infinite weights \\(first: network 2\\)"):
        validate_dataset(replace(dataset, train=Split(one_nan, dataset.train.targets)))
