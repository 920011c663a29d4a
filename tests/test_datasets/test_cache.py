"""The cache protocol: splits as safetensors with sha256 checksums in the data card,
content-addressed folders, the chunk store of resumable builds, file permissions, atomic
writes, and the memoised source hashes."""

import json
import logging
import os
import stat

import pytest
import torch
from inr_files import load, same_data

from datasets import cache
from datasets.cache import CARD, ChunkStore, load_split, read_cache, save_split, write_cache
from datasets.dataset_table import DatasetInfo
from datasets.errors import CacheError
from datasets.files import HashMemo, atomic_write, atomic_write_bytes, sha256_file, try_lock
from datasets.spec import mlp_spec
from datasets.weight_dataset import Split, WeightDataset
from datasets.weights import MixedWeights, WeightSpace

INFO = DatasetInfo("tiny", ("test",), "classification", 3, "a tiny dataset", "tests", "none")


def tiny_dataset(seed=0, fingerprint="f" * 16) -> WeightDataset:
    g = torch.Generator().manual_seed(seed)
    spec = mlp_spec([2, 4, 1])

    def split(n):
        return Split(WeightSpace.from_flat(spec, torch.randn(n, spec.num_params, generator=g)),
                     torch.arange(n) % 3, {"psnr": torch.rand(n, generator=g)})
    return WeightDataset(INFO, split(5), split(2), split(3), {"note": "x"}, fingerprint)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_mixed_split_round_trip(tmp_path):
    a = WeightSpace.from_flat(mlp_spec([2, 4, 1]), torch.randn(3, 17))
    b = WeightSpace.from_flat(mlp_spec([2, 3, 3, 1]), torch.randn(2, 25))
    split = Split(MixedWeights.from_groups([a, b])[[4, 0, 3, 1, 2]], torch.rand(5))
    save_split(tmp_path / "s.safetensors", split)
    back = load_split(tmp_path / "s.safetensors")
    assert isinstance(back.weights, MixedWeights) and back.specs == split.specs
    assert torch.equal(back.weights.group_index, split.weights.group_index)
    for x, y in zip(back.weights.groups, split.weights.groups):
        assert torch.equal(x.flatten(), y.flatten())
    assert torch.equal(back.targets, split.targets)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.safetensors"]  # no temporary files left


def test_the_card_holds_the_checksum_of_every_split_file(tmp_path):
    ds = tiny_dataset()
    card = write_cache(tmp_path, ds)
    assert json.loads((tmp_path / CARD).read_text()) == json.loads(json.dumps(card, default=str))
    assert card["fingerprint"] == ds.fingerprint and card["note"] == "x"
    assert card["checksums"] == {f"{s}.safetensors": sha256_file(tmp_path / f"{s}.safetensors")
                                 for s in ("train", "val", "test")}
    back = read_cache(tmp_path, INFO, ds.fingerprint)
    assert same_data(back, ds) and back.card["checksums"] == card["checksums"]


def test_a_damaged_split_or_another_recipe_is_not_used(tmp_path, caplog):
    write_cache(tmp_path, tiny_dataset())
    assert read_cache(tmp_path / "nowhere", INFO, "f" * 16) is None
    with caplog.at_level(logging.WARNING, "wsbench"):
        assert read_cache(tmp_path, INFO, "0" * 16) is None
    assert "made for another recipe" in caplog.text
    caplog.clear()
    path = tmp_path / "val.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # one flipped bit in the data: still a readable safetensors file
    path.write_bytes(bytes(raw))
    load_split(path)
    with caplog.at_level(logging.WARNING, "wsbench"):
        assert read_cache(tmp_path, INFO, "f" * 16) is None
    assert "val.safetensors: missing or damaged" in caplog.text and "rebuilding" in caplog.text


def test_a_mixed_split_whose_rows_are_not_each_held_once_is_a_cache_error(tmp_path):
    a = WeightSpace.from_flat(mlp_spec([2, 4, 1]), torch.randn(3, 17))
    b = WeightSpace.from_flat(mlp_spec([2, 3, 3, 1]), torch.randn(2, 25))
    mixed = MixedWeights.from_groups([a, b])
    save_split(tmp_path / "s.safetensors", Split(MixedWeights(mixed.groups, mixed.group_index,
                                                              torch.tensor([0, 0, 2, 0, 1])), torch.rand(5)))
    with pytest.raises(CacheError, match="s.safetensors: unreadable cache file .*exactly once"):
        load_split(tmp_path / "s.safetensors")


def test_unreadable_split_file_is_a_cache_error(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CacheError, match="x.safetensors: unreadable cache file"):
        load_split(tmp_path / "x.safetensors")


def test_files_get_the_permissions_of_a_plain_open(tmp_path, umask_022):
    write_cache(tmp_path / "c", tiny_dataset())
    ChunkStore(tmp_path / "c" / "partial").put("chunk", {"x": torch.zeros(2)})
    written = [*(tmp_path / "c").glob("*.safetensors"), tmp_path / "c" / CARD, tmp_path / "c" / "partial" / "chunk.safetensors"]
    assert len(written) == 5
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_bytes(tmp_path / "f", b"old")

    def fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "f", fail)
    assert (tmp_path / "f").read_bytes() == b"old" and list(tmp_path.iterdir()) == [tmp_path / "f"]


def test_a_cache_interrupted_before_its_card_is_never_read(tmp_path, monkeypatch, caplog):
    write_cache(tmp_path, tiny_dataset(seed=0))
    real_save = cache.save_split

    def save_until_test(path, split):
        if path.name == "test.safetensors":
            raise KeyboardInterrupt
        real_save(path, split)

    monkeypatch.setattr(cache, "save_split", save_until_test)
    with pytest.raises(KeyboardInterrupt):
        write_cache(tmp_path, tiny_dataset(seed=1))  # a rewrite removes the old card first
    with caplog.at_level(logging.WARNING, "wsbench"):
        assert read_cache(tmp_path, INFO, "f" * 16) is None
    assert caplog.text == ""  # no card: simply not cached, nothing to warn about


def test_chunk_store_keeps_finished_chunks_and_skips_unreadable_ones(tmp_path, caplog):
    store = ChunkStore(tmp_path / "partial")
    assert store.get("a") is None
    store.put("a", {"weights": torch.arange(6.0).reshape(2, 3).t(), "psnr": torch.ones(3)})
    got = store.get("a")
    assert torch.equal(got["weights"], torch.arange(6.0).reshape(2, 3).t()) and torch.equal(got["psnr"], torch.ones(3))
    (tmp_path / "partial" / "a.safetensors").write_bytes(b"\xff" * 64)
    with caplog.at_level(logging.WARNING, "wsbench"):
        assert store.get("a") is None
    assert "redoing that chunk" in caplog.text


def test_folders_are_content_addressed(tmp_path):
    small = load("fake-inr", tmp_path, train=4)
    other = load("fake-inr", tmp_path, train=6)
    again = load("fake-inr", tmp_path, train=4)
    folders = sorted(p.name for p in (tmp_path / "fake-inr").iterdir() if p.is_dir())
    assert folders == sorted([small.fingerprint, other.fingerprint]) and again.fingerprint == small.fingerprint
    assert (tmp_path / "fake-inr" / small.fingerprint / CARD).is_file() and same_data(again, small)
    assert not any((tmp_path / "fake-inr").glob("*/partial"))


def test_source_hashes_are_remembered_until_a_file_changes(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"one")
    memo = HashMemo(tmp_path / "memo.json")
    first = memo.sha256(tmp_path / "a")
    memo.save()
    calls = []
    monkeypatch.setattr("datasets.files.sha256_file", lambda p: calls.append(p) or "recomputed")
    assert HashMemo(tmp_path / "memo.json").sha256(tmp_path / "a") == first and not calls
    (tmp_path / "a").write_bytes(b"two")
    assert HashMemo(tmp_path / "memo.json").sha256(tmp_path / "a") == "recomputed" and len(calls) == 1


def test_try_lock_skips_while_another_holder_has_it(tmp_path):
    with try_lock(tmp_path / "l") as first:
        with try_lock(tmp_path / "l") as second:
            assert first and not second
    with try_lock(tmp_path / "l") as third:
        assert third
