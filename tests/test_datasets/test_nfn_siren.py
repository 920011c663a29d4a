"""The NFN SIREN layout: labels from folder names, split by index, augmented views."""

import math
from collections import OrderedDict

import pytest
import torch

from datasets.collection import LoadOptions
from datasets.registry import DATASETS
from datasets.sources import nfn_siren
from datasets.sources.nfn_siren import split_of
from datasets.spec import siren_spec
from datasets.state_dicts import StateDictError
from datasets.validation import DataNotFound


def siren_state(idx: int, view: int = 0, out: int = 1) -> OrderedDict:
    """NFN's ``Siren`` state dict, values tagged by (idx, view) so rows can be identified."""
    spec = siren_spec(out_features=out, output_offset=0.0)
    g = torch.Generator().manual_seed(idx * 100 + view)
    keys = ["net.0.linear", "net.1.linear", "net.2"]
    state = OrderedDict()
    for key, layer in zip(keys, spec.layers):
        state[f"{key}.weight"] = torch.randn(*layer.weight_shape, generator=g)
        state[f"{key}.bias"] = torch.full((layer.out_features,), float(idx) + view / 10)
    return state


@pytest.fixture
def small_points(monkeypatch):
    """Split points 4 / 6 instead of 45,000 / 50,000."""
    monkeypatch.setattr(nfn_siren, "SPLIT_POINTS", (4, 6))


def write_sirens(root, n=9, views=0, out=1):
    labels = {}
    for view in range(views + 1):
        prefix = "randinit_smaller" if view == 0 else f"randinit_smaller_aug{view - 1}"
        for idx in range(n):
            label = (idx * 3) % 10
            folder = root / f"{prefix}_{label}s"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(siren_state(idx, view, out), folder / f"net{idx}.pth")
            labels[idx] = label
    return labels


def test_split_points_are_nfns():
    assert [split_of(i) for i in (0, 44_999, 45_000, 49_999, 50_000, 69_999)] == \
        ["train", "train", "val", "val", "test", "test"]


def test_reads_labels_from_folders_and_splits_by_index(tmp_path, small_points):
    labels = write_sirens(tmp_path / "src" / "siren_mnist_wts")
    ds = DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path / "src", progress=False))
    assert ds.train.extras["image"].tolist() == [0, 1, 2, 3]
    assert ds.val.extras["image"].tolist() == [4, 5] and ds.test_split().extras["image"].tolist() == [6, 7, 8]
    assert ds.test_split().targets.tolist() == [labels[i] for i in (6, 7, 8)]
    # no +0.5 offset: a different architecture from the DWSNets SIREN
    assert ds.train.weights.spec == siren_spec(output_offset=0.0) and ds.train.weights.spec != siren_spec()
    assert torch.equal(ds.val.weights.weights[2][1], siren_state(5)["net.2.weight"])
    assert ds.val.weights.biases[0][0, 0].item() == 4.0
    assert "ij" in ds.card["conventions"] and ds.card["views_per_training_image"] == 1


def test_augmented_copies_only_extend_training(tmp_path, small_points):
    write_sirens(tmp_path / "siren_mnist_wts", views=2)
    ds = DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, progress=False, params={"views": "2"}))
    assert len(ds.train) == 12 and len(ds.val) == 2 and len(ds.test_split()) == 3
    assert sorted(ds.train.extras["view"].tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    aug = ds.train.extras["view"] == 2
    assert ds.train.weights.biases[0][aug][:, 0].tolist() == pytest.approx([0.2, 1.2, 2.2, 3.2])
    base = DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, progress=False))
    assert len(base.train) == 4  # the base set never picks up the aug folders
    with pytest.raises(DataNotFound, match="randinit_smaller_aug2"):
        DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, progress=False, params={"views": "3"}))


def test_cifar_sirens_have_three_outputs(tmp_path, small_points):
    write_sirens(tmp_path / "siren_cifar_wts", n=7, out=3)
    ds = DATASETS["nfn-cifar-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, limit=2, progress=False))
    assert ds.train.weights.spec.widths == (2, 32, 32, 3) and [len(ds.train), len(ds.test_split())] == [2, 1]


def test_bad_files_fail_or_are_skipped(tmp_path, small_points):
    write_sirens(tmp_path / "siren_mnist_wts")
    bad = siren_state(2)
    bad["net.1.linear.bias"][3] = math.nan
    torch.save(bad, tmp_path / "siren_mnist_wts" / "randinit_smaller_6s" / "net2.pth")
    with pytest.raises(StateDictError, match="net2.pth: net.1.linear.bias holds NaN"):
        DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, progress=False))
    ds = DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, progress=False, skip_invalid=True))
    assert len(ds.train) == 3 and ds.card["skipped"] == {"nonfinite": 1}


def test_duplicate_index_and_missing_data(tmp_path):
    write_sirens(tmp_path / "siren_mnist_wts", n=3)
    torch.save(siren_state(1), tmp_path / "siren_mnist_wts" / "randinit_smaller_0s" / "net1.pth")
    with pytest.raises(ValueError, match="index 1 appears twice"):
        DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "cache", tmp_path, progress=False))
    with pytest.raises(DataNotFound, match="drive.google.com") as err:
        DATASETS["nfn-mnist-siren"].load(LoadOptions(tmp_path / "nothing", progress=False))
    assert str(tmp_path / "nothing" / "raw" / "nfn-mnist-siren") in str(err.value)
