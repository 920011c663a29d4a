"""Our on-disk cache: one safetensors file per split plus a JSON data card, keyed by a
recipe fingerprint, written atomically. A corrupt, truncated or stale cache is detected
on load and rebuilt with a message; nothing is ever unpickled."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from datasets.collection import Split, WeightDataset
from datasets.spec import ArchSpec
from datasets.weights import MixedWeights, WeightSpace

log = logging.getLogger("wsbench")
FORMAT_VERSION = "1"
DATA_ROOT_ENV = "WSBENCH_DATA"


class CacheError(ValueError):
    """A cache file that cannot be used; the message names the file and the problem."""


def default_data_root() -> Path:
    """``$WSBENCH_DATA`` if set, else ``~/.cache/wsbench`` (outside the repository)."""
    return Path(os.environ.get(DATA_ROOT_ENV) or Path.home() / ".cache" / "wsbench")


def fingerprint(recipe: dict) -> str:
    """Stable hash of everything that determines a build's contents."""
    blob = json.dumps({"format": FORMAT_VERSION, **recipe}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _split_tensors(split: Split) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {"targets": split.targets}
    tensors.update({f"extra.{k}": v for k, v in split.extras.items()})
    groups = split.weights.groups if isinstance(split.weights, MixedWeights) else (split.weights,)
    if isinstance(split.weights, MixedWeights):
        tensors["group_index"] = split.weights.group_index
        tensors["row_index"] = split.weights.row_index
    for g, ws in enumerate(groups):
        for i, (w, b) in enumerate(zip(ws.weights, ws.biases)):
            tensors[f"g{g}.w{i}"] = w
            tensors[f"g{g}.b{i}"] = b
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, [g.spec.to_dict() for g in groups]


def save_split(path: Path, split: Split, fp: str) -> None:
    """Write ``split`` to ``path`` atomically, tagged with fingerprint ``fp``."""
    tensors, specs = _split_tensors(split)
    meta = {"fingerprint": fp, "specs": json.dumps(specs), "mixed": str(isinstance(split.weights, MixedWeights))}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_split(path: Path, fp: str) -> Split:
    """Read a split written by :func:`save_split`; ``CacheError`` if unusable or stale."""
    try:
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CacheError(f"{path}: unreadable cache file ({err})") from err
    if meta.get("fingerprint") != fp:
        raise CacheError(f"{path}: built by a different recipe (fingerprint "
                         f"{meta.get('fingerprint')!r}, expected {fp!r})")
    try:
        specs = [ArchSpec.from_dict(d) for d in json.loads(meta["specs"])]
        groups = [WeightSpace(spec, tuple(tensors[f"g{g}.w{i}"] for i in range(len(spec.layers))),
                              tuple(tensors[f"g{g}.b{i}"] for i in range(len(spec.layers))))
                  for g, spec in enumerate(specs)]
        weights = (MixedWeights(tuple(groups), tensors["group_index"], tensors["row_index"])
                   if meta.get("mixed") == "True" else groups[0])
        extras = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
        return Split(weights, tensors["targets"], extras)
    except (KeyError, ValueError, json.JSONDecodeError) as err:
        raise CacheError(f"{path}: cache file has missing or malformed entries ({err})") from err


def cached(directory: Path, recipe: dict, build: Callable[[], WeightDataset]) -> WeightDataset:
    """Load the dataset cached in ``directory`` for ``recipe``; build and save it if absent,
    corrupt or stale. The card is written last, so a half-written cache is never taken."""
    fp = fingerprint(recipe)
    card_path = directory / "card.json"
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
            if card.get("fingerprint") != fp:
                raise CacheError(f"{card_path}: built by a different recipe; rebuilding")
            splits = {s: load_split(directory / f"{s}.safetensors", fp) for s in ("train", "val", "test")}
            return WeightDataset(card["name"], card["task"], card["num_classes"],
                                 splits["train"], splits["val"], splits["test"], card)
        except (CacheError, json.JSONDecodeError, KeyError) as err:
            log.warning("cache in %s cannot be used (%s); rebuilding", directory, err)
    ds = build()
    card = {**ds.card, "name": ds.name, "task": ds.task, "num_classes": ds.num_classes,
            "fingerprint": fp, "recipe": recipe}
    card_path.unlink(missing_ok=True)
    for s, split in (("train", ds.train), ("val", ds.val), ("test", ds.test_split())):
        save_split(directory / f"{s}.safetensors", split, fp)
    atomic_write_text(card_path, json.dumps(card, indent=2, default=str))
    return WeightDataset(ds.name, ds.task, ds.num_classes, ds.train, ds.val, ds.test_split(), card)
