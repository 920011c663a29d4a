"""Reading the published DWSNets INR layouts (MNIST, Fashion-MNIST), bad inputs, and the
CIFAR-10 build; all on small files written here in the published formats."""

import json
import math
import pickle

import numpy as np
import pytest
import torch

from datasets.cifar import TEST_BATCHES, TRAIN_BATCHES
from datasets.collection import LoadOptions
from datasets.sources.dwsnets_inr import (
    load_cifar10_inr,
    load_fmnist_inr,
    load_mnist_inr,
)
from datasets.spec import siren_spec
from datasets.state_dicts import StateDictError
from datasets.validation import DataNotFound, InvalidItem

SPEC = siren_spec()
FOREIGN = "/home/author/DWSNets/experiments/mnist/dataset/mnist-inrs"


def state_dict(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, layer in enumerate(SPEC.layers):
        out[f"seq.{i}.weight"] = torch.randn(*layer.weight_shape, generator=g) * 0.05
        out[f"seq.{i}.bias"] = torch.randn(layer.out_features, generator=g) * 0.05
    return out


def write_mnist_inrs(root, counts=(5, 2, 3), absolute=True):
    """``mnist-inrs/mnist_png_{training|testing}_{label}_{idx}/checkpoints/model_final.pth`` plus
    ``mnist_splits.json`` with string labels and the authors' absolute paths."""
    splits, truth, seed = {}, {}, 0
    for split, n in zip(("train", "val", "test"), counts):
        paths, labels = [], []
        for _ in range(n):
            label, idx = seed % 10, 1000 + seed
            folder = f"mnist_png_{'testing' if split == 'test' else 'training'}_{label}_{idx}"
            file = root / "mnist-inrs" / folder / "checkpoints" / "model_final.pth"
            file.parent.mkdir(parents=True)
            torch.save(state_dict(seed), file)
            paths.append(f"{FOREIGN}/{folder}/checkpoints/model_final.pth" if absolute
                         else f"mnist-inrs/{folder}/checkpoints/model_final.pth")
            labels.append(str(label))
            truth[file] = (split, label, seed)
            seed += 1
        splits[split] = {"path": paths, "label": labels}
    (root / "mnist_splits.json").write_text(json.dumps(splits))
    return splits, truth


def write_fmnist_inrs(root, counts=(4, 2, 3)):
    """``fmnist_inrs/{train,test}/model_{idx}.pth`` with an int ``label`` and a splits.json of
    plain path lists."""
    splits, seed = {}, 0
    for split, n in zip(("train", "val", "test"), counts):
        folder = "test" if split == "test" else "train"
        paths = []
        for _ in range(n):
            file = root / "fmnist_inrs" / folder / f"model_{seed}.pth"
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save({**state_dict(seed), "label": seed % 10}, file)
            paths.append(f"/scratch/other/fmnist_inrs/{folder}/model_{seed}.pth")
            seed += 1
        splits[split] = paths
    (root / "fmnist_inrs" / "splits.json").write_text(json.dumps(splits))
    return splits


def opts(tmp_path, source, **kw):
    return LoadOptions(tmp_path / "cache", source, progress=False, **kw)


def test_reads_the_published_mnist_layout(tmp_path):
    splits, truth = write_mnist_inrs(tmp_path / "src")
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "src"))
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [5, 2, 3]
    assert ds.train.weights.spec == SPEC and ds.card["networks"] == {"train": 5, "val": 2, "test": 3}
    assert ds.train.targets.tolist() == [int(x) for x in splits["train"]["label"]]
    # the weights are the file's, in the splits file's order
    first = state_dict(0)
    assert torch.equal(ds.train.weights.weights[1][0], first["seq.1.weight"])
    assert torch.equal(ds.train.weights.biases[2][0], first["seq.2.bias"])
    assert ds.val.extras["image"].tolist() == [1005, 1006]
    assert ds.card["skipped"] == {} and "published DWSNets" in ds.card["source"]
    assert ds.card["layer_statistics"]["weight_std"] and ds.card["published_mnist_inr_std"]


def test_relative_paths_limit_and_cache(tmp_path):
    write_mnist_inrs(tmp_path / "src", absolute=False)
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "src", limit=2))
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [2, 2, 2]
    # a second load comes from our cache: it no longer needs the state dicts
    for file in (tmp_path / "src" / "mnist-inrs").rglob("*.pth"):
        file.unlink()
    again = load_mnist_inr(opts(tmp_path, tmp_path / "src", limit=2))
    assert torch.equal(again.train.weights.weights[0], ds.train.weights.weights[0])


def test_reads_the_published_fmnist_layout(tmp_path):
    write_fmnist_inrs(tmp_path / "src")
    ds = load_fmnist_inr(opts(tmp_path, tmp_path / "src"))
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [4, 2, 3]
    assert ds.train.targets.tolist() == [0, 1, 2, 3] and ds.test_split().targets.tolist() == [6, 7, 8]
    assert ds.test_split().extras["image"].tolist() == [6, 7, 8]
    assert torch.equal(ds.val.weights.weights[0][1], state_dict(5)["seq.0.weight"])


def test_without_a_splits_file_the_split_is_made_like_dwsnets(tmp_path):
    write_mnist_inrs(tmp_path / "src", counts=(20, 4, 6))
    (tmp_path / "src" / "mnist_splits.json").unlink()
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "src"))
    assert len(ds.test_split()) == 6 and len(ds.train) + len(ds.val) == 24 and len(ds.val) == 2
    assert "seed 0" in ds.card["splits_file"]


@pytest.mark.parametrize("damage, reason, message", [
    (lambda f: f.write_bytes(f.read_bytes()[:200]), "unreadable", "truncated or corrupt"),
    (lambda f: torch.save({k: v for k, v in state_dict(0).items() if k != "seq.2.bias"}, f), "keys", "missing"),
    (lambda f: torch.save({**state_dict(0), "seq.1.weight": torch.zeros(32, 16)}, f), "shape", "shape \\(32, 16\\)"),
    (lambda f: torch.save({**state_dict(0), "seq.0.bias": torch.full((32,), math.nan)}, f), "nonfinite", "NaN"),
    (lambda f: f.unlink(), "missing file", "not there"),
])
def test_a_bad_network_fails_or_is_skipped_and_counted(tmp_path, damage, reason, message):
    _, truth = write_mnist_inrs(tmp_path / "src")
    victim = next(f for f, (split, _, _) in truth.items() if split == "val")
    damage(victim)
    with pytest.raises(InvalidItem, match=message) as err:
        load_mnist_inr(opts(tmp_path, tmp_path / "src"))
    assert victim.parent.parent.name in str(err.value)
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "src", skip_invalid=True))
    assert len(ds.val) == 1 and len(ds.train) == 5 and ds.card["skipped"] == {reason: 1}


def test_labels_out_of_range_name_the_splits_file(tmp_path):
    splits, _ = write_mnist_inrs(tmp_path / "src")
    splits["test"]["label"][1] = "11"
    (tmp_path / "src" / "mnist_splits.json").write_text(json.dumps(splits))
    with pytest.raises(InvalidItem, match="label '11' of .* is not a class") as err:
        load_mnist_inr(opts(tmp_path, tmp_path / "src"))
    assert "mnist_splits.json" in str(err.value)
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "src", skip_invalid=True))
    assert len(ds.test_split()) == 2 and ds.card["skipped"] == {"label": 1}


def test_fmnist_label_entry_is_checked(tmp_path):
    write_fmnist_inrs(tmp_path / "src")
    torch.save({**state_dict(1), "label": 42}, tmp_path / "src" / "fmnist_inrs" / "train" / "model_1.pth")
    with pytest.raises(InvalidItem, match="label 42"):
        load_fmnist_inr(opts(tmp_path, tmp_path / "src"))


def test_malformed_splits_file(tmp_path):
    write_mnist_inrs(tmp_path / "src")
    (tmp_path / "src" / "mnist_splits.json").write_text('{"train": {"path": []}}')
    with pytest.raises(ValueError, match="split 'val' missing or malformed"):
        load_mnist_inr(opts(tmp_path, tmp_path / "src"))
    (tmp_path / "src" / "mnist_splits.json").write_text('{"train": ')
    with pytest.raises(ValueError, match="not a readable splits JSON"):
        load_mnist_inr(opts(tmp_path, tmp_path / "src"))


def test_missing_data_says_what_to_download_and_where_it_looked(tmp_path):
    with pytest.raises(DataNotFound) as err:
        load_mnist_inr(LoadOptions(tmp_path, progress=False))
    message = str(err.value)
    assert "\n" not in message and "dropbox.com" in message and "yann.lecun.com" in message
    assert str(tmp_path / "raw" / "mnist") in message and isinstance(err.value, FileNotFoundError)
    with pytest.raises(DataNotFound, match="cifar-10-python.tar.gz"):
        load_cifar10_inr(LoadOptions(tmp_path, progress=False))


def test_state_dict_errors_are_invalid_items():
    assert issubclass(StateDictError, InvalidItem) and issubclass(InvalidItem, ValueError)


def write_cifar_batches(directory, n=3):
    directory.mkdir(parents=True)
    yy, xx = np.mgrid[0:32, 0:32] / 31
    for b, name in enumerate(TRAIN_BATCHES + TEST_BATCHES):
        images = np.stack([np.stack([xx * (i + 1) / n, yy, (xx + yy) / 2]) for i in range(n)])
        data = (images * 255).astype(np.uint8).reshape(n, 3072)
        with open(directory / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [(b + i) % 10 for i in range(n)]}, f)


def test_cifar10_inr_is_built_with_three_output_channels(tmp_path):
    write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    ds = load_cifar10_inr(opts(tmp_path, tmp_path / "src", params={"steps": "60", "compile": "0"}))
    # 15 training images: 10% (2) validation
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [13, 2, 3]
    assert ds.train.weights.spec == siren_spec(out_features=3)
    assert ds.card["fit"]["steps"] == 60 and ds.test_split().targets.tolist() == [5, 6, 7]
    assert ds.card["psnr_db"]["median"] > 20
