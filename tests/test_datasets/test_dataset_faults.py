"""Fault injection: every INR source (and the fake datasets) meets damaged caches, caches
holding invalid data under a valid checksum, diverging builds, changed source files,
degenerate options, splits emptied by ``--skip-invalid`` and malicious checkpoints, and
either recovers (rebuilt, with a warning) or refuses with one clear line."""

import json
import logging
import re

import pytest
import torch
from inr_files import (
    Payload,
    dwsnets_state,
    fingerprint,
    load,
    nfn_state,
    same_data,
    write_fmnist_inrs,
    write_mnist_idx,
    write_mnist_inrs,
    write_nfn_sirens,
    write_smooth_cifar,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from datasets.cache import CARD
from datasets.errors import ConfigError, InvalidData, InvalidItem
from datasets.files import sha256_file
from datasets.options import Option
from datasets.sources import nfn_siren
from datasets.sources.digits_inr import DigitsInr
from datasets.sources.dwsnets_inr import DwsnetsInr

# ---------------------------------------------------------------- scenarios: (name, source, options)


def digits(tmp_path):
    return "digits-inr", None, {"limit": 3, "steps": 2}


def mnist_built(tmp_path):
    write_mnist_idx(tmp_path / "src")
    return "mnist-inr", tmp_path / "src", {"steps": 2, "compile": 0}


def mnist_published(tmp_path):
    write_mnist_inrs(tmp_path / "src", counts=(5, 3, 3))
    return "mnist-inr", tmp_path / "src", {}


def fmnist_published(tmp_path):
    write_fmnist_inrs(tmp_path / "src", counts=(4, 3, 3))
    return "fmnist-inr", tmp_path / "src", {}


def cifar_built(tmp_path):
    write_smooth_cifar(tmp_path / "src" / "cifar-10-batches-py")
    return "cifar10-inr", tmp_path / "src", {"steps": 2, "compile": 0}


def nfn(tmp_path):
    write_nfn_sirens(tmp_path / "src" / "siren_mnist_wts")
    return "nfn-mnist-siren", tmp_path / "src", {}


def fake_inr(tmp_path):
    return "fake-inr", None, {"train": 6, "val": 3, "test": 3}


def fake_zoo(tmp_path):
    return "fake-zoo", None, {"train": 8, "val": 4, "test": 4}


SCENARIOS = [digits, mnist_built, mnist_published, fmnist_published, cifar_built, nfn, fake_inr, fake_zoo]


@pytest.fixture(autouse=True)
def small_nfn_split(monkeypatch):
    """NFN split points 4 / 6 instead of 45,000 / 50,000 (nine networks: 4 / 2 / 3)."""
    monkeypatch.setattr(nfn_siren, "SPLIT_POINTS", (4, 6))


def run(scenario, tmp_path, **extra):
    name, source, options = scenario(tmp_path) if callable(scenario) else scenario
    return load(name, tmp_path / "cache", source, **{**options, **extra})


def cache_folder(tmp_path, ds):
    return tmp_path / "cache" / ds.name / ds.fingerprint


# ---------------------------------------------------------------- damaged caches


def zeros(folder):
    with open(folder / "train.safetensors", "r+b") as f:
        f.write(b"\x00" * 40_960)


def ones(folder):
    path = folder / "val.safetensors"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))


def truncate(folder):
    path = folder / "test.safetensors"
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def delete(folder):
    (folder / "train.safetensors").unlink()


def garbage_card(folder):
    (folder / CARD).write_text("{this is not JSON")


@pytest.mark.parametrize("damage", [zeros, ones, truncate, delete, garbage_card])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog, scenario, damage):
    setup = scenario(tmp_path)
    first = run(setup, tmp_path)
    damage(cache_folder(tmp_path, first))
    with caplog.at_level(logging.WARNING, "wsbench"):
        again = run(setup, tmp_path)
    assert "cannot be used" in caplog.text and "rebuilding it" in caplog.text
    assert same_data(first, again) and again.fingerprint == first.fingerprint
    assert sha256_file(cache_folder(tmp_path, again) / "train.safetensors") == again.card["checksums"]["train.safetensors"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_invalid_targets_under_a_matching_checksum_are_caught_by_validation(tmp_path, caplog, scenario):
    setup = scenario(tmp_path)
    first = run(setup, tmp_path)
    folder = cache_folder(tmp_path, first)
    path = folder / "val.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    bad = torch.full_like(tensors["targets"], float("nan")) if first.task == "regression" else \
        torch.full_like(tensors["targets"], first.out_dim)
    save_file({**tensors, "targets": bad}, str(path), metadata=metadata)
    card = json.loads((folder / CARD).read_text())
    card["checksums"][path.name] = sha256_file(path)  # a checksum cannot tell: the file is as written
    (folder / CARD).write_text(json.dumps(card))
    with caplog.at_level(logging.WARNING, "wsbench"):
        again = run(setup, tmp_path)
    assert re.search(r"val split: \d+ target\(s\) (outside the classes|are NaN)", caplog.text)
    assert same_data(first, again)


# ---------------------------------------------------------------- builds that diverge


@pytest.mark.parametrize("source_class, scenario", [(DigitsInr, digits), (DwsnetsInr, mnist_built)])
def test_a_diverging_build_is_refused_and_nothing_is_cached(tmp_path, monkeypatch, source_class, scenario):
    with pytest.raises(ConfigError, match="lr=1000000000.0 is out of range; valid: 1e-12..10"):
        run(scenario, tmp_path, lr=1e9)
    # lift the range guard: the fitter itself really diverges at lr=1e9 (all or nearly all
    # networks NaN: an AVX-512 CPU kept 1 of 12 digits INRs finite where AVX2 kept none)
    monkeypatch.setitem(source_class.options, "lr", Option(5e-3, low=0))
    with pytest.raises(InvalidData, match=r"train split: [1-9][\d,]* of [\d,]+ networks hold NaN or infinite") as err:
        run(scenario, tmp_path, lr=1e9)
    assert "\n" not in str(err.value) and "fitting diverge" in str(err.value)
    assert not list((tmp_path / "cache").rglob(CARD)) and not list((tmp_path / "cache").rglob("train.safetensors"))


# ---------------------------------------------------------------- changed source files


def test_published_mnist_files_replaced_added_or_removed_give_a_new_fingerprint(tmp_path):
    _, truth = write_mnist_inrs(tmp_path / "src", counts=(5, 3, 3))
    source = tmp_path / "src"
    prints = [fingerprint("mnist-inr", tmp_path / "cache", source)]
    victim = next(iter(truth))
    torch.save(dwsnets_state(42), victim)  # replaced
    prints.append(fingerprint("mnist-inr", tmp_path / "cache", source))
    splits = json.loads((source / "mnist_splits.json").read_text())
    splits["train"]["label"][0] = "9"  # the splits file changed
    (source / "mnist_splits.json").write_text(json.dumps(splits))
    prints.append(fingerprint("mnist-inr", tmp_path / "cache", source))
    victim.unlink()  # removed
    prints.append(fingerprint("mnist-inr", tmp_path / "cache", source))
    (source / "mnist_splits.json").unlink()  # no splits file: the whole listing counts
    prints.append(fingerprint("mnist-inr", tmp_path / "cache", source))
    extra = source / "mnist-inrs" / "mnist_png_training_3_4242" / "checkpoints" / "model_final.pth"
    extra.parent.mkdir(parents=True)
    torch.save(dwsnets_state(7), extra)  # added
    prints.append(fingerprint("mnist-inr", tmp_path / "cache", source))
    assert len(set(prints)) == len(prints)


def test_a_replaced_file_is_read_again_not_taken_from_the_old_cache(tmp_path):
    _, truth = write_mnist_inrs(tmp_path / "src", counts=(5, 3, 3))
    first = load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    victim = next(f for f, (split, _, seed) in truth.items() if split == "train" and seed == 0)
    torch.save(dwsnets_state(42), victim)
    again = load("mnist-inr", tmp_path / "cache", tmp_path / "src")
    assert again.fingerprint != first.fingerprint
    assert torch.equal(again.train.weights.weights[0][0], dwsnets_state(42)["seq.0.weight"])


def test_another_source_folder_of_corrupt_idx_files_is_refused_not_served_from_cache(tmp_path):
    write_mnist_idx(tmp_path / "good")
    good = load("mnist-inr", tmp_path / "cache", tmp_path / "good", steps=2, compile=0)
    write_mnist_idx(tmp_path / "bad")
    path = tmp_path / "bad" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    assert fingerprint("mnist-inr", tmp_path / "cache", tmp_path / "bad", steps=2) != good.fingerprint
    with pytest.raises(InvalidData, match="train-images-idx3-ubyte.gz: cannot decompress or read") as err:
        load("mnist-inr", tmp_path / "cache", tmp_path / "bad", steps=2, compile=0)
    assert "\n" not in str(err.value)


def test_replaced_cifar_batch_and_nfn_files_give_a_new_fingerprint(tmp_path):
    write_smooth_cifar(tmp_path / "cifar" / "cifar-10-batches-py")
    before = fingerprint("cifar10-inr", tmp_path / "cache", tmp_path / "cifar")
    batch = tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes().replace(b"\x00", b"\x01", 1))
    assert fingerprint("cifar10-inr", tmp_path / "cache", tmp_path / "cifar") != before

    root = tmp_path / "nfn" / "siren_mnist_wts"
    write_nfn_sirens(root)
    prints = [fingerprint("nfn-mnist-siren", tmp_path / "cache", tmp_path / "nfn")]
    torch.save(nfn_state(2, view=5), root / "randinit_smaller_6s" / "net2.pth")  # replaced
    prints.append(fingerprint("nfn-mnist-siren", tmp_path / "cache", tmp_path / "nfn"))
    (root / "randinit_smaller_7s").mkdir()
    torch.save(nfn_state(9), root / "randinit_smaller_7s" / "net9.pth")  # added
    prints.append(fingerprint("nfn-mnist-siren", tmp_path / "cache", tmp_path / "nfn"))
    (root / "randinit_smaller_0s" / "net0.pth").unlink()  # removed
    prints.append(fingerprint("nfn-mnist-siren", tmp_path / "cache", tmp_path / "nfn"))
    assert len(set(prints)) == 4


# ---------------------------------------------------------------- degenerate options


@pytest.mark.parametrize("scenario, option, value, valid", [
    (digits, "steps", 0, "1..10,000,000"), (digits, "steps", -5, "1..10,000,000"), (digits, "depth", 0, "1..64"),
    (digits, "hidden", 0, "1..4096"), (digits, "views", 0, "1..1000"), (mnist_built, "steps", 0, "1..10,000,000"),
    (mnist_built, "hidden", 0, "1..4096"), (cifar_built, "depth", 0, "1..64"), (nfn, "views", -1, "0..1000"),
    (mnist_built, "compile", "maybe", None), (fake_inr, "hidden", 0, "1..256"),
])
def test_degenerate_options_are_refused_with_the_valid_range(tmp_path, scenario, option, value, valid):
    name = scenario(tmp_path)[0]
    with pytest.raises(ConfigError) as err:
        run(scenario, tmp_path, **{option: value})
    message = str(err.value)
    assert message.startswith(f"{name} option {option}=") and message.count(name) == 1 and "\n" not in message
    assert re.search(f"valid: {valid}$", message) if valid else "not a valid true/false" in message
    assert not (tmp_path / "cache" / name).exists()


# ---------------------------------------------------------------- skipping, unsafe files


def test_skip_invalid_that_leaves_a_split_too_small_is_refused(tmp_path):
    _, truth = write_mnist_inrs(tmp_path / "src", counts=(5, 2, 3))
    victim = next(f for f, (split, _, _) in truth.items() if split == "val")
    victim.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidData, match="mnist-inr, val split: 1 network\\(s\\); at least 2") as err:
        load("mnist-inr", tmp_path / "cache", tmp_path / "src", skip_invalid=True)
    assert "--skip-invalid" in str(err.value) and not list((tmp_path / "cache").rglob(CARD))
    write_nfn_sirens(tmp_path / "nfn")
    (tmp_path / "nfn" / "randinit_smaller_5s" / "net5.pth").write_bytes(b"")
    with pytest.raises(InvalidData, match="nfn-mnist-siren, val split: 1 network"):
        load("nfn-mnist-siren", tmp_path / "cache", tmp_path / "nfn", skip_invalid=True)


@pytest.mark.parametrize("scenario", [mnist_published, fmnist_published, nfn])
def test_a_malicious_checkpoint_is_refused_and_never_run(tmp_path, scenario):
    name, source, _ = scenario(tmp_path)
    victim = sorted(source.rglob("*.pth"))[1]
    marker = tmp_path / "was-run"
    torch.save({"seq.0.weight": Payload(f"touch {marker}")}, victim)
    with pytest.raises(InvalidItem, match=r"refused to unpickle global posix\.system") as err:
        load(name, tmp_path / "cache", source)
    assert str(victim) in str(err.value) and err.value.reason == "unsafe" and not marker.exists()
    ds = load(name, tmp_path / "cache", source, skip_invalid=True)
    assert ds.card["skipped"] == {"unsafe": 1} and not marker.exists()
