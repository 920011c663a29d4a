"""Our on-disk cache of a dataset: one safetensors file per split and a JSON data card.

A cache lives in a content-addressed folder, ``root/<dataset>/<fingerprint>``, where the
fingerprint covers everything that determines its contents (see ``datasets.source``). The
card, written last, holds the sha256 of every split file; on load each file is checked
against it and the dataset is validated again, so a damaged, truncated or half-written
cache is never used: it is reported and rebuilt. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from datasets.dataset_table import DatasetInfo
from datasets.errors import CacheError, InvalidData
from datasets.files import atomic_write, atomic_write_text, sha256_file
from datasets.spec import ArchSpec
from datasets.validation import validate_dataset
from datasets.weight_dataset import SPLITS, Split, WeightDataset
from datasets.weights import MixedWeights, WeightSpace, as_mixed

log = logging.getLogger("wsbench")
FORMAT_VERSION = 2
DATA_ROOT_ENV = "WSBENCH_DATA"
CARD = "card.json"


def default_data_root() -> Path:
    """``$WSBENCH_DATA`` if set, else ``~/.cache/wsbench`` (outside the repository)."""
    return Path(os.environ.get(DATA_ROOT_ENV) or Path.home() / ".cache" / "wsbench")


def split_tensors(split: Split) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A split as flat named tensors plus string metadata (its architectures)."""
    tensors = {"targets": split.targets}
    tensors.update({f"extra.{k}": v for k, v in split.extras.items()})
    mixed = as_mixed(split.weights)
    if isinstance(split.weights, MixedWeights):
        tensors["group_index"], tensors["row_index"] = mixed.group_index, mixed.row_index
    for g, ws in enumerate(mixed.groups):
        for i, (w, b) in enumerate(ws):
            tensors[f"g{g}.w{i}"], tensors[f"g{g}.b{i}"] = w, b
    meta = {"specs": json.dumps([g.spec.to_dict() for g in mixed.groups]),
            "mixed": str(isinstance(split.weights, MixedWeights))}
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta


def save_split(path: Path, split: Split) -> None:
    """Write ``split`` to ``path`` atomically."""
    tensors, meta = split_tensors(split)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_split(path: Path) -> Split:
    """Read a split written by :func:`save_split`; ``CacheError`` if it cannot be used."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        specs = [ArchSpec.from_dict(d) for d in json.loads(meta["specs"])]
        groups = [WeightSpace(spec, tuple(tensors[f"g{g}.w{i}"] for i in range(len(spec.layers))),
                              tuple(tensors[f"g{g}.b{i}"] for i in range(len(spec.layers))))
                  for g, spec in enumerate(specs)]
        weights = (MixedWeights(tuple(groups), tensors["group_index"], tensors["row_index"])
                   if meta.get("mixed") == "True" else groups[0])
        if isinstance(weights, MixedWeights):
            weights.check_rows()
        extras = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
        return Split(weights, tensors["targets"], extras)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:
        raise CacheError(f"{path}: unreadable cache file ({type(err).__name__}: {err})") from err


def read_cache(directory: Path, info: DatasetInfo, fingerprint: str) -> WeightDataset | None:
    """The dataset cached in ``directory``, or ``None`` if there is none or it cannot be
    used (then a warning says why, and the caller rebuilds it)."""
    card_path = directory / CARD
    if not card_path.exists():
        return None
    try:
        try:
            card = json.loads(card_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CacheError(f"{card_path}: unreadable data card ({err})") from err
        if not isinstance(card, dict) or card.get("fingerprint") != fingerprint:
            raise CacheError(f"{card_path}: made for another recipe (fingerprint "
                             f"{card.get('fingerprint') if isinstance(card, dict) else None!r}, expected {fingerprint!r})")
        splits = {}
        for name in SPLITS:
            path = directory / f"{name}.safetensors"
            expected = card.get("checksums", {}).get(path.name)
            if not path.exists() or sha256_file(path) != expected:
                raise CacheError(f"{path}: missing or damaged (its sha256 does not match the data card)")
            splits[name] = load_split(path)
        dataset = WeightDataset(info, splits["train"], splits["val"], splits["test"], card, fingerprint)
        try:
            validate_dataset(dataset)
        except InvalidData as err:
            raise CacheError(str(err)) from err
        return dataset
    except CacheError as err:
        log.warning("cache in %s cannot be used (%s); rebuilding it", directory, err)
        return None


def write_cache(directory: Path, dataset: WeightDataset) -> dict:
    """Write every split, then the card with their checksums (last, so a cache interrupted
    before the card exists is never read). Returns the card as written."""
    (directory / CARD).unlink(missing_ok=True)
    checksums = {}
    for name, split in dataset.splits().items():
        path = directory / f"{name}.safetensors"
        save_split(path, split)
        checksums[path.name] = sha256_file(path)
    card = {**dataset.card, "fingerprint": dataset.fingerprint, "checksums": checksums}
    atomic_write_text(directory / CARD, json.dumps(card, indent=2, default=str))
    return card


def chunk_generator(*seed: int) -> torch.Generator:
    """A random generator seeded from ``seed`` (integers naming a chunk of a build, its
    index last) through numpy's ``SeedSequence``: distinct chunks draw independent streams,
    so any chunk can be built again on its own and a build can resume at any finished chunk
    with the networks an uninterrupted build would give."""
    state = np.random.SeedSequence(list(seed)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class ChunkStore:
    """Finished chunks of a long build (fitted INRs, trained CNNs), one safetensors file
    each, so an interrupted build resumes without redoing them. ``key`` names a chunk; the
    folder sits inside the content-addressed cache folder, so chunks of another recipe are
    never mixed in. Removed once the dataset is cached."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The chunk's tensors, or ``None`` if it was not finished (or cannot be read)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            log.warning("%s cannot be read (%s); redoing that chunk", path, err)
            return None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(self._path(key), lambda tmp: save_file(tensors, tmp))
