"""Building mnist-inr / fmnist-inr from IDX files, and exporting in the DWSNets layouts."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from datasets.card import PUBLISHED_MNIST_INR_STD
from datasets.collection import LoadOptions
from datasets.functional import forward
from datasets.inr_fitting import pixel_grid
from datasets.sources.dwsnets_inr import load_fmnist_inr, load_mnist_inr, split_indices
from datasets.state_dicts import load_file


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def blob_images(n, seed):
    """Smooth 28x28 'digits': one Gaussian blob each, so a few steps fit them well."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(9, 19, (n, 2))
    images = [np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 30) for cx, cy in centres]
    return (np.stack(images) * 255).astype(np.uint8)


def write_raw(directory, n_train=24, n_test=4):
    directory.mkdir(parents=True, exist_ok=True)
    for stem, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        write_idx(directory / f"{stem}-images-idx3-ubyte.gz", blob_images(n, seed))
        write_idx(directory / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def opts(tmp_path, source, **params):
    """Eager fitting: compiling would dominate these tiny builds (tested in test_digits_inr)."""
    params = {"compile": 0, **params}
    return LoadOptions(tmp_path / "cache", source, progress=False, params={k: str(v) for k, v in params.items()})


def test_published_split_proportions_and_fixed_seed():
    index = split_indices(60000, 10000, 5000 / 60000, None)
    assert [len(index[s]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    assert not set(index["train"]) & set(index["val"])
    again = split_indices(60000, 10000, 5000 / 60000, 7)
    assert np.array_equal(again["val"], index["val"][:7])


def test_builds_from_idx_files_with_the_recipe_in_the_card(tmp_path):
    write_raw(tmp_path / "raw")
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "raw", steps=150))
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [22, 2, 4]
    images = {s: set(split.extras["image"].tolist()) for s, split in (("train", ds.train), ("val", ds.val))}
    assert not images["train"] & images["val"]
    assert ds.train.targets.tolist() == [i % 10 for i in sorted(images["train"])]
    card = ds.card
    assert card["fit"]["steps"] == 150 and card["fit"]["lr"] > 0 and card["fit"]["inrs_per_second"] > 0
    assert card["psnr_db"]["min"] > 25 and card["published_mnist_inr_std"] == PUBLISHED_MNIST_INR_STD
    assert len(card["layer_statistics"]["weight_std"]) == 3 and "built from raw images" in card["source"]
    # the stored networks render the images they were fitted to (DWSNets grid, +0.5 offset)
    test = ds.test_split()
    rendered = forward(test.weights, pixel_grid(28, 28)).reshape(-1, 28, 28)
    truth = torch.from_numpy(blob_images(4, 1)).float() / 255
    assert (rendered - truth).abs().mean() < 0.03


def test_limit_selects_a_subset(tmp_path):
    write_raw(tmp_path / "raw")
    ds = load_mnist_inr(LoadOptions(tmp_path / "cache", tmp_path / "raw", limit=3, progress=False,
                                    params={"steps": "2", "compile": "0"}))
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [3, 2, 3]


def test_export_writes_the_dwsnets_mnist_layout_and_reads_back(tmp_path):
    write_raw(tmp_path / "raw")
    ds = load_mnist_inr(opts(tmp_path, tmp_path / "raw", steps=3, export=tmp_path / "out"))
    splits = json.loads((tmp_path / "out" / "mnist_splits.json").read_text())
    assert [len(splits[s]["path"]) for s in ("train", "val", "test")] == [22, 2, 4]
    first = splits["test"]["path"][0]
    assert first == f"mnist-inrs/mnist_png_testing_{splits['test']['label'][0]}_0/checkpoints/model_final.pth"
    assert all(isinstance(x, str) for x in splits["train"]["label"])
    state = load_file(tmp_path / "out" / first)
    assert list(state) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]
    back = load_mnist_inr(LoadOptions(tmp_path / "cache2", tmp_path / "out", progress=False))
    for a, b in ((ds.train, back.train), (ds.val, back.val), (ds.test_split(), back.test_split())):
        assert torch.equal(a.targets, b.targets) and torch.equal(a.weights.flatten(), b.weights.flatten())
    assert "published" in back.card["source"]


def test_fmnist_builds_and_exports_in_its_own_layout(tmp_path):
    write_raw(tmp_path / "raw")
    ds = load_fmnist_inr(opts(tmp_path, tmp_path / "raw", steps=3, export=tmp_path / "out"))
    splits = json.loads((tmp_path / "out" / "fmnist_inrs" / "splits.json").read_text())
    assert isinstance(splits["val"], list) and splits["val"][0].startswith("fmnist_inrs/train/model_")
    state = load_file(tmp_path / "out" / splits["test"][0])
    assert state["label"] == int(ds.test_split().targets[0])
    back = load_fmnist_inr(LoadOptions(tmp_path / "cache2", tmp_path / "out", progress=False))
    assert torch.equal(ds.val.weights.flatten(), back.val.weights.flatten())
    assert torch.equal(ds.val.targets, back.val.targets)


def test_unknown_option_is_refused(tmp_path):
    write_raw(tmp_path / "raw")
    with pytest.raises(ValueError, match="unknown dataset option"):
        load_mnist_inr(opts(tmp_path, tmp_path / "raw", step=3))
