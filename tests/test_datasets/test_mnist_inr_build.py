"""Building mnist-inr / fmnist-inr from IDX files, resuming an interrupted build, and
exporting in the DWSNets layouts."""

import json

import numpy as np
import pytest
import torch
from inr_files import blob_images, fingerprint, load, write_mnist_idx

from datasets import inr_fitting
from datasets.card import PUBLISHED_MNIST_INR_STD, render_card
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError
from datasets.functional import forward
from datasets.inr_fitting import pixel_grid
from datasets.io.state_dicts import load_file
from datasets.sources.dwsnets_inr import RECIPE, DwsnetsInr, split_indices

EAGER = {"compile": 0}  # compiling would dominate these tiny builds (tested in test_digits_inr)


def test_published_split_proportions_and_fixed_seed():
    index = split_indices(60000, 10000, 5000 / 60000, None)
    assert [len(index[s]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    assert not set(index["train"]) & set(index["val"])
    again = split_indices(60000, 10000, 5000 / 60000, 7)
    assert np.array_equal(again["val"], index["val"][:7])


def test_builds_from_idx_files_with_the_recipe_in_the_card(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", steps=150, **EAGER)
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [22, 2, 4]
    images = {s: set(split.extras["image"].tolist()) for s, split in (("train", ds.train), ("val", ds.val))}
    assert not images["train"] & images["val"]
    assert ds.train.targets.tolist() == [i % 10 for i in sorted(images["train"])]
    card = ds.card
    assert card["fit"]["steps"] == 150 and card["fit"]["lr"] > 0 and card["fit"]["inrs_per_second"] > 0
    assert card["fit"]["compiled"] is False and card["fit"]["device"] == "cpu" and card["options"]["steps"] == 150
    assert card["psnr_db"]["min"] > 25
    assert len(card["layer_statistics"]["siren 2-32-32-1"]["weight_std"]) == 3
    assert "built from the raw images" in card["origin"]
    # the stored networks render the images they were fitted to (DWSNets grid, +0.5 offset)
    test = ds.test_split()
    rendered = forward(test.weights, pixel_grid(28, 28)).reshape(-1, 28, 28)
    truth = torch.from_numpy(blob_images(4, 1)).float() / 255
    assert (rendered - truth).abs().mean() < 0.03


def test_the_card_sets_ours_beside_the_published_std(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    card = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", steps=3, **EAGER).card
    comparison, ours = card["published_comparison"], card["layer_statistics"]["siren 2-32-32-1"]
    assert comparison["against"].startswith("DWSNets MNIST INRs")
    rows = comparison["rows"]
    assert [(r["layer"], r["tensor"]) for r in rows] == [(k, t) for k in (1, 2, 3) for t in ("weight", "bias")]
    assert [r["published"] for r in rows[::2]] == PUBLISHED_MNIST_INR_STD["weights"]
    assert [r["published"] for r in rows[1::2]] == PUBLISHED_MNIST_INR_STD["biases"]
    assert [r["ours"] for r in rows[::2]] == pytest.approx(ours["weight_std"], abs=1e-4)
    assert all(r["ratio"] == pytest.approx(r["ours"] / r["published"], rel=1e-2, abs=2e-3) for r in rows)
    text = render_card(card)
    assert "  published_comparison:\n" in text and "layer  tensor  ours" in text
    assert any(line.split()[:2] == ["1", "weight"] for line in text.splitlines())


def test_the_default_recipe_is_the_one_matched_to_the_published_std():
    """1,500 Adam steps at lr 1e-3 from the DWSNets init (docs/notes/mnist-inr-builder.md),
    shared by the three builders, each at version 3."""
    assert (RECIPE.steps, RECIPE.lr, RECIPE.hidden, RECIPE.omega) == (1500, 1e-3, 32, 30.0)
    for name in ("mnist-inr", "fmnist-inr", "cifar10-inr"):
        assert DATASETS[name].info.version == 3
    assert DwsnetsInr.options["steps"].default == 1500 and DwsnetsInr.options["lr"].default == 1e-3


def test_the_fitting_device_is_an_option_outside_the_fingerprint(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    assert (fingerprint("mnist-inr", tmp_path / "cache", tmp_path / "raw", device="cpu")
            == fingerprint("mnist-inr", tmp_path / "cache", tmp_path / "raw"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda: no CUDA device"):
            load("mnist-inr", tmp_path / "cache", tmp_path / "raw", device="cuda")


def test_limit_selects_a_subset(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", limit=3, steps=2, **EAGER)
    assert [len(ds.train), len(ds.val), len(ds.test_split())] == [3, 2, 3]


def test_an_interrupted_build_resumes_without_refitting_finished_chunks(tmp_path, monkeypatch):
    write_mnist_idx(tmp_path / "raw")
    options = dict(steps=5, chunk=8, **EAGER)  # 22 train + 2 val + 4 test: chunks of 8, 8, 8, 4
    fitted, real_fit = [], inr_fitting._fit_chunk

    def fit_then_stop(*args, **kwargs):
        if fitted:
            raise KeyboardInterrupt
        fitted.append(len(args[1]))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(inr_fitting, "_fit_chunk", fit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        load("mnist-inr", tmp_path / "cache", tmp_path / "raw", **options)
    partial = list((tmp_path / "cache" / "mnist-inr").glob("*/partial/*.safetensors"))
    assert [p.name for p in partial] == ["sirens-000000.safetensors"]

    def counting_fit(*args, **kwargs):
        fitted.append(len(args[1]))
        return real_fit(*args, **kwargs)

    fitted.clear()
    monkeypatch.setattr(inr_fitting, "_fit_chunk", counting_fit)
    resumed = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", **options)
    assert fitted == [8, 8, 4]  # chunk 0 came from the checkpoint
    assert not partial[0].parent.exists()  # checkpoints go once the dataset is cached
    fitted.clear()
    whole = load("mnist-inr", tmp_path / "fresh", tmp_path / "raw", **options)
    assert fitted == [8, 8, 8, 4] and whole.fingerprint == resumed.fingerprint
    for a, b in zip(resumed.splits().values(), whole.splits().values()):
        assert torch.equal(a.weights.flatten(), b.weights.flatten()) and torch.equal(a.targets, b.targets)


def test_export_writes_the_dwsnets_mnist_layout_and_reads_back(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    ds = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", steps=3, export=tmp_path / "out", **EAGER)
    splits = json.loads((tmp_path / "out" / "mnist_splits.json").read_text())
    assert [len(splits[s]["path"]) for s in ("train", "val", "test")] == [22, 2, 4]
    first = splits["test"]["path"][0]
    assert first == f"mnist-inrs/mnist_png_testing_{splits['test']['label'][0]}_0/checkpoints/model_final.pth"
    assert all(isinstance(x, str) for x in splits["train"]["label"])
    state = load_file(tmp_path / "out" / first)
    assert list(state) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]
    back = load("mnist-inr", tmp_path / "cache2", tmp_path / "out")
    for a, b in zip(ds.splits().values(), back.splits().values()):
        assert torch.equal(a.targets, b.targets) and torch.equal(a.weights.flatten(), b.weights.flatten())
        assert torch.equal(a.extras["image"], b.extras["image"])
    assert "published" in back.card["origin"]


def test_export_is_not_part_of_the_fingerprint_and_a_file_is_refused(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    plain = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", steps=2, **EAGER)
    exported = load("mnist-inr", tmp_path / "cache", tmp_path / "raw", steps=2, export=tmp_path / "out", compile=1)
    assert exported.fingerprint == plain.fingerprint and (tmp_path / "out" / "mnist_splits.json").is_file()
    (tmp_path / "a-file").write_text("x")
    for target in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        with pytest.raises(ConfigError, match="is a file, not a folder") as err:
            load("mnist-inr", tmp_path / "cache", tmp_path / "raw", steps=2, export=target)
        assert "\n" not in str(err.value) and str(err.value).count("mnist-inr") == 1


def test_fmnist_builds_and_exports_in_its_own_layout(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    ds = load("fmnist-inr", tmp_path / "cache", tmp_path / "raw", steps=3, export=tmp_path / "out", **EAGER)
    splits = json.loads((tmp_path / "out" / "fmnist_inrs" / "splits.json").read_text())
    assert isinstance(splits["val"], list) and splits["val"][0].startswith("fmnist_inrs/train/model_")
    state = load_file(tmp_path / "out" / splits["test"][0])
    assert state["label"] == int(ds.test_split().targets[0])
    back = load("fmnist-inr", tmp_path / "cache2", tmp_path / "out")
    assert torch.equal(ds.val.weights.flatten(), back.val.weights.flatten())
    assert torch.equal(ds.val.targets, back.val.targets)


def test_unknown_option_is_refused(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    with pytest.raises(ConfigError, match="mnist-inr: unknown option\\(s\\) step; valid: .*steps"):
        load("mnist-inr", tmp_path / "cache", tmp_path / "raw", step=3)
