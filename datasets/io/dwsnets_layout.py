"""The DWSNets INR layouts (Navon et al. 2023): finding the published files, reading them,
and writing a dataset back in the same layout.

DWSNets published one SIREN per MNIST and Fashion-MNIST image; Neural Graphs (Kofinas et al.
2024) and ScaleGMN read the same files. Two layouts occur:

- **MNIST** (``kind="mnist"``): ``<inr_folder>/<prefix>_{training|testing}_{label}_{idx}/
  checkpoints/model_final.pth`` and a splits JSON ``{"train"|"val"|"test": {"path": [...],
  "label": [...]}}`` (labels are strings; paths absolute on the authors' machine, or relative).
- **Fashion-MNIST** (``kind="fmnist"``): ``<inr_folder>/{train,test}/model_{idx}.pth`` (a state
  dict plus an int ``label`` entry) and ``<inr_folder>/splits.json`` of plain path lists.

A listed path is resolved as given, relative to the splits file or the source folder, and
finally by its trailing parts under the INR folder (the published JSONs hold absolute paths
of another machine). Without a splits file the split is made like DWSNets'
``generate_data_splits.py``: train / test by folder name, then 1/12 of train (at most 5,000)
drawn as validation with a fixed seed (theirs used no seed, so their split cannot be
reproduced exactly).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.errors import InvalidData, InvalidItem
from datasets.files import atomic_write_text, read_json
from datasets.io.state_dicts import Layers, StateDictError, dwsnets_state_dict, load_file, read_named
from datasets.progress import progress as progress_bar
from datasets.spec import ArchSpec
from datasets.weight_dataset import SPLITS, WeightDataset

VAL_SEED = 0
MAX_VAL = 5000


@dataclass(frozen=True)
class DwsnetsLayout:
    """Where one dataset's INR files sit. ``kind``: ``"mnist"`` or ``"fmnist"`` (see the
    module docstring); ``prefix``: the MNIST-layout folder prefix (``mnist_png``);
    ``splits_names``: the splits file names to look for, the first one also the name an
    export writes."""

    kind: str
    inr_folder: str
    splits_names: tuple[str, ...]
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("mnist", "fmnist"):
            raise ValueError(f"layout kind must be 'mnist' or 'fmnist', got {self.kind!r}")

    @property
    def network_glob(self) -> str:
        """Every network file, relative to the INR folder."""
        return f"{self.prefix}_*/**/*.pth" if self.kind == "mnist" else "*/model_*.pth"

    def network_path(self, split: str, label: int, image: int) -> Path:
        """Where an export puts one network, relative to the export folder."""
        if self.kind == "mnist":
            folder = f"{self.prefix}_{'testing' if split == 'test' else 'training'}_{label}_{image}"
            return Path(self.inr_folder, folder, "checkpoints", "model_final.pth")
        return Path(self.inr_folder, "test" if split == "test" else "train", f"model_{image}.pth")

    def splits_path(self, directory: Path) -> Path:
        """Where an export puts its splits file."""
        base = directory if self.kind == "mnist" else directory / self.inr_folder
        return base / self.splits_names[0]


@dataclass(frozen=True)
class Published:
    """Where the published files were found: the INR folder and the splits file (either may
    be missing, not both)."""

    inr_dir: Path | None
    splits_file: Path | None


@dataclass(frozen=True)
class Entry:
    """One listed network: the path as listed, the file it resolved to (``None`` if it is
    not there), and the label the splits file gives (``None``: read it from the file)."""

    listed: str
    path: Path | None
    label: object = None


def find_published(source: Path, layout: DwsnetsLayout) -> Published | None:
    """The INR folder and splits file under ``source``, or ``None`` if neither is there."""
    marker = f"{layout.prefix}_*" if layout.kind == "mnist" else "train/model_*.pth"
    inr_dir = next((d for d in (source / layout.inr_folder, source) if d.is_dir() and any(d.glob(marker))), None)
    bases = [source] + ([inr_dir, inr_dir.parent] if inr_dir else [])
    splits = next((b / n for b in bases for n in layout.splits_names if (b / n).is_file()), None)
    if inr_dir is None and splits is None:
        return None
    return Published(inr_dir, splits)


def network_files(inr_dir: Path, layout: DwsnetsLayout) -> list[Path]:
    """Every network file under the INR folder, sorted."""
    return sorted(inr_dir.glob(layout.network_glob), key=lambda p: p.as_posix())


def generated_split(files: list[Path], inr_dir: Path) -> dict[str, list[Path]]:
    """DWSNets-style split of ``files``: train / test by folder name, 1/12 of train (at most
    5,000) drawn as validation with seed :data:`VAL_SEED`."""
    is_train = ["train" in p.relative_to(inr_dir).as_posix() for p in files]
    train = [p for p, t in zip(files, is_train) if t]
    order = np.random.default_rng(VAL_SEED).permutation(len(train))
    val_ids = set(order[:min(MAX_VAL, round(len(train) / 12))].tolist())
    return {"train": [p for i, p in enumerate(train) if i not in val_ids],
            "val": [p for i, p in enumerate(train) if i in val_ids],
            "test": [p for p, t in zip(files, is_train) if not t]}


def read_splits_file(path: Path) -> dict[str, dict[str, list]]:
    """``{split: {"path": [...], "label": [...] (optional)}}``; ``InvalidData`` if the file
    is not a splits JSON."""
    data = read_json(path, "splits JSON")
    out = {}
    for split in SPLITS:
        value = data.get(split) if isinstance(data, dict) else None
        if isinstance(value, list):
            value = {"path": value}
        if not isinstance(value, dict) or not isinstance(value.get("path"), list):
            raise InvalidData(f"{path}: split {split!r} missing or malformed (expected a list of paths or "
                              f"{{'path': [...], 'label': [...]}})")
        if "label" in value and (not isinstance(value["label"], list) or len(value["label"]) != len(value["path"])):
            raise InvalidData(f"{path}: split {split!r} has {len(value['path'])} paths but labels "
                              f"{'of another length' if isinstance(value['label'], list) else 'that are not a list'}")
        out[split] = value
    return out


class Resolver:
    """Resolves listed paths (see the module docstring). The number of trailing parts that
    found the previous file is tried first, so a listing of 70,000 foreign absolute paths
    costs about one file-system check per entry (as strings: ``pathlib`` objects would cost
    more than the checks)."""

    def __init__(self, pub: Published, source: Path) -> None:
        self.inr_dir = str(pub.inr_dir) if pub.inr_dir is not None else None
        self.bases = [str(pub.splits_file.parent if pub.splits_file else source), str(source)]
        self.tail: int | None = None

    def __call__(self, listed: str) -> Path | None:
        """The file ``listed`` names, or ``None`` if it is nowhere."""
        direct = [listed] if os.path.isabs(listed) else [os.path.join(base, listed) for base in self.bases]
        for candidate in direct:
            if os.path.isfile(candidate):
                return Path(candidate)
        if self.inr_dir is None:
            return None
        parts = Path(listed).parts
        for k in sorted(range(1, len(parts)), key=lambda k: (k != self.tail, -k)):
            candidate = os.path.join(self.inr_dir, *parts[-k:])
            if os.path.isfile(candidate):
                self.tail = k
                return Path(candidate)
        return None


def listing(pub: Published, layout: DwsnetsLayout, source: Path, limit: int | None) -> dict[str, list[Entry]]:
    """The networks of every split (at most ``limit`` each), from the splits file or, without
    one, the DWSNets-style split of the INR folder."""
    if pub.splits_file is None:
        split = generated_split(network_files(pub.inr_dir, layout), pub.inr_dir)
        return {s: [Entry(str(p), p) for p in paths[:limit]] for s, paths in split.items()}
    resolve = Resolver(pub, source)
    out = {}
    for split, value in read_splits_file(pub.splits_file).items():
        paths, labels = value["path"][:limit], value.get("label")
        out[split] = [Entry(str(p), resolve(str(p)), labels[i] if labels else None) for i, p in enumerate(paths)]
    return out


def listed_files(entries: dict[str, list[Entry]]) -> Iterator[Path]:
    """The files a listing resolved to."""
    return (e.path for split in entries.values() for e in split if e.path is not None)


def image_index(path: Path) -> int:
    """``idx`` from ``..._{label}_{idx}/checkpoints/model_final.pth`` or ``model_{idx}.pth``
    (-1 if neither)."""
    for part in reversed(path.parts):
        match = re.search(r"_(\d+)$", Path(part).stem)
        if match:
            return int(match.group(1))
    return -1


def label_from_path(path: Path) -> int | None:
    """``label`` from an MNIST-layout folder ``..._{label}_{idx}``."""
    for part in reversed(path.parts):
        match = re.search(r"_(\d+)_\d+$", part)
        if match:
            return int(match.group(1))
    return None


def check_label(value: object, path: Path, where: Path, classes: int) -> int:
    """``value`` as a class index in ``[0, classes)``; ``InvalidItem`` naming ``where`` (the
    splits file or the network file that gave it) otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    try:
        label = int(value)
        valid = not isinstance(value, (float, bool)) and str(label) == str(value).strip()
    except (TypeError, ValueError):
        valid = False
    if not valid or not 0 <= label < classes:
        raise InvalidItem(where, f"label {value!r} of {path} is not a class in [0, {classes})", "label")
    return label


def read_network(entry: Entry, spec: ArchSpec, pub: Published, classes: int) -> tuple[Layers, int, int]:
    """The layers, label and image index of one listed network; ``InvalidItem`` if it is
    missing or malformed."""
    if entry.path is None:
        raise InvalidItem(pub.splits_file, f"lists {entry.listed}, which is not there (looked for it as "
                                           f"given, next to the splits file and under {pub.inr_dir})",
                          "missing file")
    state = load_file(entry.path)
    layers = read_named(state, spec, entry.path)
    if entry.label is not None:
        return layers, check_label(entry.label, entry.path, pub.splits_file, classes), image_index(entry.path)
    label = state.get("label", label_from_path(entry.path))
    if label is None:
        raise StateDictError(entry.path, "has no 'label' entry and the splits file lists no label", "label")
    return layers, check_label(label, entry.path, entry.path, classes), image_index(entry.path)


def export(dataset: WeightDataset, layout: DwsnetsLayout, directory: Path, progress: bool = False) -> Path:
    """Write ``dataset`` as state dicts plus a splits JSON in ``layout``, paths relative to
    ``directory``; returns the splits file. The MNIST layout lists string labels; the
    Fashion-MNIST layout stores an int ``label`` in each file. The splits file is removed
    first and written last, so an interrupted export is never read as a whole one."""
    splits_file = layout.splits_path(directory)
    splits_file.unlink(missing_ok=True)
    listed: dict[str, object] = {}
    splits = dataset.splits()
    bar = progress_bar(sum(map(len, splits.values())), f"{dataset.name}: exporting", "INR", progress)
    for name, split in splits.items():
        images = split.extras.get("image", torch.full((len(split),), -1))
        paths, labels = [], []
        for row in range(len(split)):
            label, image = int(split.targets[row]), int(images[row])
            relative = layout.network_path(name, label, image if image >= 0 else row)
            state = dwsnets_state_dict(split.weights, row)
            if layout.kind == "fmnist":
                state["label"] = label
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, directory / relative)
            paths.append(relative.as_posix())
            labels.append(str(label))
            bar.update()
        listed[name] = {"path": paths, "label": labels} if layout.kind == "mnist" else paths
    bar.close()
    atomic_write_text(splits_file, json.dumps(listed))
    return splits_file

