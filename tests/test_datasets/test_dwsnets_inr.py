"""Reading the published DWSNets INR layouts (MNIST, Fashion-MNIST), bad inputs, and the
CIFAR-10 build; all on small files written here in the published formats."""

import json
import math

import pytest
import torch
from inr_files import dwsnets_state, load, write_fmnist_inrs, write_mnist_inrs, write_smooth_cifar

from datasets.card import PUBLISHED_FMNIST_INR_STD
from datasets.dataset_table import DATASETS
from datasets.errors import DataNotFound, InvalidData, InvalidItem, WsbenchError
from datasets.io.dwsnets_layout import Published, Resolver
from datasets.io.state_dicts import StateDictError
from datasets.spec import siren_spec

SPEC = siren_spec()


def test_reads_the_published_mnist_layout(tmp_path):
    splits, _ = write_mnist_inrs(tmp_path / "src")
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [5, 2, 3]
    assert ds.train.weights.spec == SPEC and ds.card["networks"] == {"train": 5, "val": 2, "test": 3}
    assert ds.train.targets.tolist() == [int(x) for x in splits["train"]["label"]]
    # the weights are the file's, in the splits file's order
    first = dwsnets_state(0)
    assert torch.equal(ds.train.weights.weights[1][0], first["seq.1.weight"])
    assert torch.equal(ds.train.weights.biases[2][0], first["seq.2.bias"])
    assert ds.val.extras["image"].tolist() == [1005, 1006]
    assert ds.card["skipped"] == {} and "published DWSNets" in ds.card["origin"]
    assert ds.card["layer_statistics"][SPEC.describe()]["weight_std"]
    rows = ds.card["published_comparison"]["rows"]
    assert [r["published"] for r in rows] == [0.0628, 0.0213, 0.0183, 0.0110, 0.1179, 0.0999]
    assert all(r["ratio"] == pytest.approx(r["ours"] / r["published"], rel=1e-2, abs=2e-3) for r in rows)
    assert "dropbox.com" in ds.card["source"] and ds.card["licence"].startswith("MNIST images CC BY-SA 3.0")


def test_relative_paths_limit_and_cache(tmp_path):
    write_mnist_inrs(tmp_path / "src", absolute=False)
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "src", limit=2)
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [2, 2, 2]
    again = load("mnist-inr", tmp_path / "cache", tmp_path / "src", limit=2)
    assert again.fingerprint == ds.fingerprint
    assert torch.equal(again.train.weights.weights[0], ds.train.weights.weights[0])
    # a state dict that is not read (beyond the limit) is not part of the fingerprint
    torch.save(dwsnets_state(99), next((tmp_path / "src" / "mnist-inrs").glob("mnist_png_training_4_*"))
               / "checkpoints" / "model_final.pth")
    assert load("mnist-inr", tmp_path / "cache", tmp_path / "src", limit=2).fingerprint == ds.fingerprint


def test_reads_the_published_fmnist_layout(tmp_path):
    write_fmnist_inrs(tmp_path / "src")
    ds = load("fmnist-inr", tmp_path / "cache", tmp_path / "src")
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [4, 2, 3]
    assert ds.train.targets.tolist() == [0, 1, 2, 3] and ds.test_split().targets.tolist() == [6, 7, 8]
    assert ds.test_split().extras["image"].tolist() == [6, 7, 8]
    assert torch.equal(ds.val.weights.weights[0][1], dwsnets_state(5)["seq.0.weight"])
    comparison = ds.card["published_comparison"]
    assert comparison["against"].startswith("DWSNets Fashion-MNIST INRs")
    assert [r["published"] for r in comparison["rows"][::2]] == PUBLISHED_FMNIST_INR_STD["weights"]


def test_without_a_splits_file_the_split_is_made_like_dwsnets(tmp_path):
    write_mnist_inrs(tmp_path / "src", counts=(20, 4, 6))
    (tmp_path / "src" / "mnist_splits.json").unlink()
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    assert len(ds.test_split()) == 6 and len(ds.train) + len(ds.val) == 24 and len(ds.val) == 2
    assert "seed 0" in ds.card["splits_file"]
    assert not set(ds.train.extras["image"].tolist()) & set(ds.val.extras["image"].tolist())


def test_resolver_tries_the_tail_that_worked_first(tmp_path):
    splits, _ = write_mnist_inrs(tmp_path / "src")
    pub = Published(tmp_path / "src" / "mnist-inrs", tmp_path / "src" / "mnist_splits.json")
    resolve = Resolver(pub, tmp_path / "src")
    listed = splits["train"]["path"]
    assert resolve(listed[0]).relative_to(pub.inr_dir).parts[1:] == ("checkpoints", "model_final.pth")
    assert resolve.tail == 3
    assert all(resolve(p) is not None for p in listed) and resolve("/elsewhere/x/model_final.pth") is None


@pytest.mark.parametrize("damage, reason, message", [
    (lambda f: f.write_bytes(f.read_bytes()[:200]), "unreadable", "truncated or corrupt"),
    (lambda f: torch.save({k: v for k, v in dwsnets_state(0).items() if k != "seq.2.bias"}, f), "keys", "missing"),
    (lambda f: torch.save({**dwsnets_state(0), "seq.1.weight": torch.zeros(32, 16)}, f), "shape",
     "shape \\(32, 16\\)"),
    (lambda f: torch.save({**dwsnets_state(0), "seq.0.bias": torch.full((32,), math.nan)}, f), "nonfinite", "NaN"),
    (lambda f: f.unlink(), "missing file", "not there"),
])
def test_a_bad_network_fails_or_is_skipped_and_counted(tmp_path, damage, reason, message):
    _, truth = write_mnist_inrs(tmp_path / "src", counts=(5, 3, 3))
    victim = next(f for f, (split, _, _) in truth.items() if split == "val")
    damage(victim)
    with pytest.raises(InvalidItem, match=message) as err:
        load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    assert victim.parent.parent.name in str(err.value) and err.value.reason == reason
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "src", skip_invalid=True)
    assert len(ds.val) == 2 and len(ds.train) == 5 and ds.card["skipped"] == {reason: 1}


def test_labels_out_of_range_name_the_splits_file(tmp_path):
    splits, _ = write_mnist_inrs(tmp_path / "src")
    splits["test"]["label"][1] = "11"
    (tmp_path / "src" / "mnist_splits.json").write_text(json.dumps(splits))
    with pytest.raises(InvalidItem, match="label '11' of .* is not a class") as err:
        load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    assert "mnist_splits.json" in str(err.value)
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "src", skip_invalid=True)
    assert len(ds.test_split()) == 2 and ds.card["skipped"] == {"label": 1}


def test_fmnist_label_entry_is_checked(tmp_path):
    write_fmnist_inrs(tmp_path / "src")
    torch.save({**dwsnets_state(1), "label": 42}, tmp_path / "src" / "fmnist_inrs" / "train" / "model_1.pth")
    with pytest.raises(InvalidItem, match="label 42"):
        load("fmnist-inr", tmp_path / "cache", tmp_path / "src")


def test_malformed_splits_file(tmp_path):
    write_mnist_inrs(tmp_path / "src")
    (tmp_path / "src" / "mnist_splits.json").write_text('{"train": {"path": []}}')
    with pytest.raises(InvalidData, match="split 'val' missing or malformed"):
        load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    (tmp_path / "src" / "mnist_splits.json").write_text('{"train": ')
    with pytest.raises(InvalidData, match="not a readable splits JSON") as err:
        load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path / "src" / "mnist_splits.json"))


def test_missing_data_says_what_to_download_and_where_it_looked(tmp_path):
    with pytest.raises(DataNotFound) as err:
        load("mnist-inr", tmp_path)
    message = str(err.value)
    assert "\n" not in message and "dropbox.com" in message and "yann.lecun.com" in message
    assert str(tmp_path / "raw" / "mnist") in message and isinstance(err.value, FileNotFoundError)
    assert message.count("mnist-inr:") == 1
    with pytest.raises(DataNotFound, match="cifar-10-python.tar.gz") as err:
        load("cifar10-inr", tmp_path)
    assert "dropbox" not in str(err.value)


def test_state_dict_errors_are_invalid_items():
    assert issubclass(StateDictError, InvalidItem) and issubclass(InvalidItem, WsbenchError)


def test_registered_facts():
    for name, sizes in (("mnist-inr", (55_000, 5_000, 10_000)), ("fmnist-inr", (55_000, 5_000, 10_000)),
                        ("cifar10-inr", (45_000, 5_000, 10_000))):
        info = DATASETS[name].info
        assert (info.suites, info.task, info.out_dim, info.splits) == (("inr", "edit"), "classification", 10, sizes)
        assert info.source and info.licence and info.description and not info.embedded
    assert [f.name for f in DATASETS["mnist-inr"].info.files] == [
        "mnist-inrs.zip", "mnist_splits.json", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_cifar10_inr_is_built_with_three_output_channels_and_reads_its_export(tmp_path):
    write_smooth_cifar(tmp_path / "src" / "cifar-10-batches-py")
    ds = load("cifar10-inr", tmp_path / "cache", tmp_path / "src", steps=60, compile=0, export=tmp_path / "out")
    # 15 training images: 10% (2) validation
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [13, 2, 3]
    assert ds.train.weights.spec == siren_spec(out_features=3)
    assert ds.card["fit"]["steps"] == 60 and ds.test_split().targets.tolist() == [5, 6, 7]
    assert ds.card["psnr_db"]["median"] > 20 and "published_comparison" not in ds.card  # none were published
    assert (tmp_path / "out" / "cifar10_splits.json").is_file()
    back = load("cifar10-inr", tmp_path / "cache", tmp_path / "out")
    assert torch.equal(back.train.weights.flatten(), ds.train.weights.flatten())
    assert torch.equal(back.test_split().targets, ds.test_split().targets)
