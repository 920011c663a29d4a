"""The NFN SIREN layout: labels from folder names, split by index, augmented views."""

import math

import pytest
import torch
from inr_files import load, nfn_state, write_nfn_sirens

from datasets.dataset_table import DATASETS
from datasets.errors import DataNotFound, InvalidData
from datasets.io.state_dicts import StateDictError
from datasets.sources import nfn_siren
from datasets.sources.nfn_siren import split_of
from datasets.spec import siren_spec


@pytest.fixture
def small_points(monkeypatch):
    """Split points 4 / 6 instead of 45,000 / 50,000."""
    monkeypatch.setattr(nfn_siren, "SPLIT_POINTS", (4, 6))


def test_split_points_are_nfns():
    assert [split_of(i) for i in (0, 44_999, 45_000, 49_999, 50_000, 69_999)] == \
        ["train", "train", "val", "val", "test", "test"]


def test_reads_labels_from_folders_and_splits_by_index(tmp_path, small_points):
    labels = write_nfn_sirens(tmp_path / "src" / "siren_mnist_wts")
    ds = load("nfn-mnist-siren", tmp_path / "cache", tmp_path / "src")
    assert ds.train.extras["image"].tolist() == [0, 1, 2, 3]
    assert ds.val.extras["image"].tolist() == [4, 5] and ds.test_split().extras["image"].tolist() == [6, 7, 8]
    assert ds.test_split().targets.tolist() == [labels[i] for i in (6, 7, 8)]
    # no +0.5 offset: a different architecture from the DWSNets SIREN
    assert ds.train.weights.spec == siren_spec(output_offset=0.0) and ds.train.weights.spec != siren_spec()
    assert torch.equal(ds.val.weights.weights[2][1], nfn_state(5)["net.2.weight"])
    assert ds.val.weights.biases[0][0, 0].item() == 4.0
    assert "ij" in ds.card["conventions"] and ds.card["views_per_training_image"] == 1


def test_augmented_copies_only_extend_training(tmp_path, small_points):
    write_nfn_sirens(tmp_path / "siren_mnist_wts", views=2)
    ds = load("nfn-mnist-siren", tmp_path / "cache", tmp_path, views=2)
    assert len(ds.train) == 12 and len(ds.val) == 2 and len(ds.test_split()) == 3
    assert sorted(ds.train.extras["view"].tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    aug = ds.train.extras["view"] == 2
    assert ds.train.weights.biases[0][aug][:, 0].tolist() == pytest.approx([0.2, 1.2, 2.2, 3.2])
    base = load("nfn-mnist-siren", tmp_path / "cache", tmp_path)
    assert len(base.train) == 4 and base.fingerprint != ds.fingerprint  # the base set never reads the aug folders
    with pytest.raises(DataNotFound, match="randinit_smaller_aug2"):
        load("nfn-mnist-siren", tmp_path / "cache", tmp_path, views=3)


def test_a_missing_augmented_copy_is_counted(tmp_path, small_points):
    write_nfn_sirens(tmp_path / "siren_mnist_wts", views=1)
    (tmp_path / "siren_mnist_wts" / "randinit_smaller_aug0_3s" / "net1.pth").unlink()
    ds = load("nfn-mnist-siren", tmp_path / "cache", tmp_path, views=1)
    assert len(ds.train) == 7 and ds.card["skipped"] == {"augmented copy missing": 1}


def test_cifar_sirens_have_three_outputs(tmp_path, small_points):
    write_nfn_sirens(tmp_path / "siren_cifar_wts", n=8, out=3)
    ds = load("nfn-cifar-siren", tmp_path / "cache", tmp_path, limit=2)
    assert ds.train.weights.spec.widths == (2, 32, 32, 3) and [len(ds.train), len(ds.test_split())] == [2, 2]


def test_bad_files_fail_or_are_skipped(tmp_path, small_points):
    write_nfn_sirens(tmp_path / "siren_mnist_wts")
    bad = nfn_state(2)
    bad["net.1.linear.bias"][3] = math.nan
    torch.save(bad, tmp_path / "siren_mnist_wts" / "randinit_smaller_6s" / "net2.pth")
    with pytest.raises(StateDictError, match="net2.pth: net.1.linear.bias holds NaN"):
        load("nfn-mnist-siren", tmp_path / "cache", tmp_path)
    ds = load("nfn-mnist-siren", tmp_path / "cache", tmp_path, skip_invalid=True)
    assert len(ds.train) == 3 and ds.card["skipped"] == {"nonfinite": 1}


def test_duplicate_index_and_missing_data(tmp_path):
    write_nfn_sirens(tmp_path / "siren_mnist_wts", n=3)
    torch.save(nfn_state(1), tmp_path / "siren_mnist_wts" / "randinit_smaller_0s" / "net1.pth")
    with pytest.raises(InvalidData, match="index 1 appears twice"):
        load("nfn-mnist-siren", tmp_path / "cache", tmp_path)
    with pytest.raises(DataNotFound, match="drive.google.com") as err:
        load("nfn-mnist-siren", tmp_path / "nothing")
    assert str(tmp_path / "nothing" / "raw" / "nfn-mnist-siren") in str(err.value)
    assert str(err.value).count("nfn-mnist-siren:") == 1


def test_registered_facts():
    for name, outputs in (("nfn-mnist-siren", 1), ("nfn-fmnist-siren", 1), ("nfn-cifar-siren", 3)):
        entry = DATASETS[name]
        assert entry.info.suites == ("inr",) and entry.info.out_dim == 10 and entry.info.splits[:2] == (45_000, 5_000)
        assert entry.constants["channels"] == outputs and entry.info.licence and entry.info.source
