"""``mnist-inr``, ``fmnist-inr`` (the DWSNets INR datasets) and ``cifar10-inr``.

Navon et al. 2023 (DWSNets) published one SIREN 2-32-32-1 per MNIST and Fashion-MNIST image;
Neural Graphs (Kofinas et al. 2024) and ScaleGMN use the same files. If the published files
are in the source directory they are read (DESIGN.md section 3):

- MNIST: ``mnist-inrs/mnist_png_{training|testing}_{label}_{idx}/checkpoints/model_final.pth``
  and a splits JSON ``{"train"|"val"|"test": {"path": [...], "label": [...]}}`` (labels are
  strings; paths absolute on the authors' machine or relative).
- Fashion-MNIST: ``fmnist_inrs/{train,test}/model_{idx}.pth`` (state dict plus an int
  ``label``) and ``fmnist_inrs/splits.json`` with plain path lists.

A listed path is resolved as given, relative to the splits file or the source, and
finally by its trailing parts under the INR folder (the published JSONs hold absolute paths
of another machine). Without a splits file, the split is made like DWSNets'
``generate_data_splits.py``: train/test by folder name, 5,000 validation networks drawn
from train with a fixed seed (theirs used no seed, so it cannot be reproduced exactly).

Otherwise the INRs are **built** from the raw images with the DWSNets recipe
(``datasets.inr_fitting``; the original fitting script was never published, see DESIGN.md):
MNIST / Fashion-MNIST IDX files, the published split 55,000 / 5,000 / 10,000 (validation =
a fixed-seed subset of 1/12 of the training images, test = the t10k images), and CIFAR-10
python batches for ``cifar10-inr`` (3 output channels; 45,000 / 5,000 / 10,000). Option
``export=DIR`` writes the dataset (read or built) in the DWSNets MNIST layout (the
Fashion-MNIST layout for ``fmnist-inr``) so other tools can read it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from datasets import cifar, idx
from datasets.cache import atomic_write_text, cached
from datasets.card import (PUBLISHED_MNIST_INR_STD, class_balance, describe_architectures,
                           layer_statistics, summary)
from datasets.collection import LoadOptions, Split, WeightDataset
from datasets.inr_fitting import SirenRecipe, fit_sirens
from datasets.registry import register_dataset
from datasets.sources.digits_inr import parse_params
from datasets.spec import ArchSpec, siren_spec
from datasets.state_dicts import (StateDictError, dwsnets_state_dict, load_file, read_named, stack)
from datasets.validation import DataNotFound, InvalidItem, Skipper
from datasets.weights import WeightSpace

SPLITS = ("train", "val", "test")
NUM_CLASSES = 10
VAL_SEED = 0
DWSNETS_URL = "https://www.dropbox.com/sh/56pakaxe58z29mq/AABtWNkRYroLYe_cE3c90DXVa?dl=0"
# Tuned for 28x28 images on a CPU (scripts/bench_inr_fit.py; numbers in the data card).
# ``compile`` (1/0) changes the fitting speed, not the recipe, so it is not in the fingerprint.
DEFAULTS = {**SirenRecipe(steps=300, lr=5e-3, chunk=32).to_dict(), "export": "", "compile": 1}


@dataclass(frozen=True)
class Collection:
    """One INR dataset: where its images come from and how its files are laid out."""

    name: str
    images: str          # "idx" | "cifar"
    raw_folder: str      # default source: root/raw/<raw_folder>
    layout: str          # published/export layout: "mnist" | "fmnist"
    prefix: str          # MNIST-layout folder prefix, e.g. "mnist_png"
    inr_folder: str      # "mnist-inrs" | "fmnist_inrs" | ...
    splits_names: tuple[str, ...]
    images_url: str
    images_licence: str
    readable: bool       # published INRs exist for it


COLLECTIONS = {
    "mnist-inr": Collection("mnist-inr", "idx", "mnist", "mnist", "mnist_png", "mnist-inrs",
                            ("mnist_splits.json", "splits.json"),
                            "http://yann.lecun.com/exdb/mnist/ (the four *-ubyte.gz files)",
                            "MNIST, CC BY-SA 3.0 (LeCun, Cortes, Burges)", True),
    "fmnist-inr": Collection("fmnist-inr", "idx", "fashion-mnist", "fmnist", "fmnist_png", "fmnist_inrs",
                             ("splits.json", "fmnist_splits.json"),
                             "https://github.com/zalandoresearch/fashion-mnist (data/fashion/*-ubyte.gz)",
                             "Fashion-MNIST, MIT (Zalando Research)", True),
    "cifar10-inr": Collection("cifar10-inr", "cifar", "cifar10", "mnist", "cifar10_png", "cifar10-inrs",
                              ("cifar10_splits.json",), cifar.URL, "CIFAR-10 (Krizhevsky 2009)", False),
}


# ---------------------------------------------------------------- published files


@dataclass(frozen=True)
class Published:
    """Where the published files of one collection were found."""

    inr_dir: Path | None
    splits_file: Path | None


def find_published(source: Path, coll: Collection) -> Published | None:
    """The INR folder and splits file under ``source``, or ``None`` if neither exists."""
    marker = f"{coll.prefix}_*" if coll.layout == "mnist" else "train"
    inr_dir = next((d for d in (source / coll.inr_folder, source) if d.is_dir() and any(d.glob(marker))), None)
    bases = [source] + ([inr_dir, inr_dir.parent] if inr_dir else [])
    splits = next((b / n for b in bases for n in coll.splits_names if (b / n).is_file()), None)
    if inr_dir is None and splits is None:
        return None
    return Published(inr_dir, splits)


def _image_index(path: Path) -> int:
    """``idx`` from ``..._{label}_{idx}/checkpoints/model_final.pth`` or ``model_{idx}.pth``."""
    for part in reversed(path.parts):
        match = re.search(r"_(\d+)$", Path(part).stem)
        if match:
            return int(match.group(1))
    return -1


def _label_from_path(path: Path) -> int | None:
    for part in reversed(path.parts):
        match = re.search(r"_(\d+)_\d+$", part)
        if match:
            return int(match.group(1))
    return None


def _resolve(entry: str, pub: Published, source: Path, splits_file: Path) -> Path:
    path = Path(entry)
    candidates = [path] if path.is_absolute() else [splits_file.parent / path, source / path]
    if pub.inr_dir is not None:
        candidates += [pub.inr_dir / Path(*path.parts[-k:]) for k in range(len(path.parts) - 1, 0, -1)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InvalidItem(splits_file, f"lists {entry}, which is not there (looked in "
                                   f"{', '.join(str(c) for c in candidates[:3])}, ...)", "missing file")


def _generated_splits(pub: Published, coll: Collection) -> dict[str, dict[str, list]]:
    """DWSNets-style split when no splits file exists: train/test by folder name, 5,000
    fixed-seed validation networks from train."""
    pattern = f"{coll.prefix}_*/**/*.pth" if coll.layout == "mnist" else "*/model_*.pth"
    files = sorted(pub.inr_dir.glob(pattern), key=lambda p: (p.as_posix()))
    is_train = ["train" in p.relative_to(pub.inr_dir).as_posix() for p in files]
    train = [p for p, t in zip(files, is_train) if t]
    test = [p for p, t in zip(files, is_train) if not t]
    order = np.random.default_rng(VAL_SEED).permutation(len(train))
    val_ids = set(order[:min(5000, round(len(train) / 12))].tolist())
    out = {"train": [p for i, p in enumerate(train) if i not in val_ids],
           "val": [p for i, p in enumerate(train) if i in val_ids], "test": test}
    return {s: {"path": [str(p) for p in v]} for s, v in out.items()}


def _split_entries(pub: Published, coll: Collection) -> dict[str, dict[str, list]]:
    """``{split: {"path": [...], "label": [...] (optional)}}`` from the splits file."""
    if pub.splits_file is None:
        return _generated_splits(pub, coll)
    try:
        data = json.loads(pub.splits_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{pub.splits_file}: not a readable splits JSON ({err})") from err
    out = {}
    for split in SPLITS:
        value = data.get(split) if isinstance(data, dict) else None
        if isinstance(value, list):
            value = {"path": value}
        if not isinstance(value, dict) or not isinstance(value.get("path"), list):
            raise ValueError(f"{pub.splits_file}: split {split!r} missing or malformed (expected a list of "
                             f"paths or {{'path': [...], 'label': [...]}})")
        if "label" in value and len(value["label"]) != len(value["path"]):
            raise ValueError(f"{pub.splits_file}: split {split!r} has {len(value['path'])} paths but "
                             f"{len(value['label'])} labels")
        out[split] = value
    return out


def _check_label(value, path: Path, where: Path) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    try:
        label = int(value)
        valid = not isinstance(value, float) and str(label) == str(value).strip()
    except (TypeError, ValueError):
        valid = False
    if not valid or not 0 <= label < NUM_CLASSES:
        raise InvalidItem(where, f"label {value!r} of {path} is not a class in [0, {NUM_CLASSES})", "label")
    return label


def _read_one(entry: str, label, pub: Published, source: Path, spec: ArchSpec):
    path = _resolve(entry, pub, source, pub.splits_file or pub.inr_dir)
    state = load_file(path)
    layers = read_named(state, spec, path)
    if label is None:
        label = state.get("label", _label_from_path(path))
        if label is None:
            raise StateDictError(path, "has no 'label' entry and the splits file lists no label", "label")
        return layers, _check_label(label, path, path), _image_index(path)
    return layers, _check_label(label, path, pub.splits_file), _image_index(path)


def read_published(pub: Published, coll: Collection, source: Path, opts: LoadOptions) -> WeightDataset:
    """Read the published state dicts of every split (no caching)."""
    spec = siren_spec()
    entries = _split_entries(pub, coll)
    skipper = Skipper(opts.skip_invalid)
    splits = {}
    for split in SPLITS:
        paths, labels = entries[split]["path"], entries[split].get("label")
        if opts.limit:
            paths, labels = paths[:opts.limit], labels[:opts.limit] if labels else None
        rows = []
        for i, entry in enumerate(tqdm(paths, desc=f"{coll.name}: reading {split}", disable=not opts.progress)):
            row = skipper.attempt(_read_one, str(entry), labels[i] if labels else None, pub, source, spec)
            if row is not None:
                rows.append(row)
        ws = stack(spec, [r[0] for r in rows])
        splits[split] = Split(ws, torch.tensor([r[1] for r in rows], dtype=torch.long),
                              {"image": torch.tensor([r[2] for r in rows], dtype=torch.long)})
    card = {
        "source": f"published DWSNets INRs ({DWSNETS_URL}), read from {pub.inr_dir or source}",
        "splits_file": str(pub.splits_file) if pub.splits_file else "none: DWSNets-style split, seed 0",
        "licence": f"images: {coll.images_licence}; the INR release states no licence",
        **_common_card(splits),
        "skipped": skipper.summary(),
    }
    return WeightDataset(coll.name, "classification", NUM_CLASSES, splits["train"], splits["val"],
                         splits["test"], card)


# ---------------------------------------------------------------- building from images


def read_images(coll: Collection, source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train"|"test": (images (N, C, H, W) uint8, labels (N,))}``."""
    if coll.images == "cifar":
        directory = cifar.batch_directory(source)
        return {s: cifar.read_split(directory, s) for s in ("train", "test")}
    out = {}
    for s in ("train", "test"):
        images, labels = idx.read_split(source, s, NUM_CLASSES)
        out[s] = (images[:, None], labels)
    return out


def split_indices(n_train: int, n_test: int, val_fraction: float, limit: int | None) -> dict[str, np.ndarray]:
    """Validation = a fixed-seed subset of the training images (MNIST 5,000 of 60,000);
    test = the test file. Indices into the train (train, val) or test file, sorted."""
    order = np.random.default_rng(VAL_SEED).permutation(n_train)
    n_val = round(n_train * val_fraction)
    index = {"train": np.sort(order[n_val:]), "val": np.sort(order[:n_val]), "test": np.arange(n_test)}
    return {k: v[:limit] if limit else v for k, v in index.items()}


def build(coll: Collection, source: Path, config: dict, opts: LoadOptions,
          compile_loss: bool = True) -> WeightDataset:
    """Fit one SIREN per image of the selected splits (``compile_loss``: through
    ``torch.compile``) and assemble the dataset."""
    data = read_images(coll, source)
    val_fraction = 5000 / (60000 if coll.images == "idx" else 50000)
    index = split_indices(len(data["train"][0]), len(data["test"][0]), val_fraction, opts.limit)
    file_of = {"train": "train", "val": "train", "test": "test"}
    images = np.concatenate([data[file_of[s]][0][index[s]] for s in SPLITS])
    recipe = SirenRecipe(**{k: v for k, v in config.items() if k in SirenRecipe.__dataclass_fields__})
    start = time.perf_counter()
    ws, scores = fit_sirens(torch.from_numpy(images).float() / 255, recipe, progress=opts.progress,
                            description=f"{coll.name}: fitting SIRENs", compile=compile_loss)
    seconds = time.perf_counter() - start
    splits, at = {}, 0
    for s in SPLITS:
        rows = slice(at, at + len(index[s]))
        labels = torch.from_numpy(data[file_of[s]][1][index[s]])
        splits[s] = Split(ws[rows], labels, {"psnr": scores[rows], "image": torch.from_numpy(index[s]).long()})
        at += len(index[s])
    card = {
        "source": f"built from raw images in {source}: {coll.images_licence}",
        "licence": coll.images_licence,
        "split": f"validation = fixed-seed ({VAL_SEED}) {val_fraction:.4g} of the training images, "
                 f"test = the test images",
        **_common_card(splits),
        "fit": {"steps": recipe.steps, "lr": recipe.lr, "optimizer": "Adam", "chunk": recipe.chunk,
                "compiled": compile_loss,
                "seconds": round(seconds, 1), "inrs_per_second": round(len(ws) / max(seconds, 1e-9), 2)},
        "psnr_db": summary(scores) if len(scores) else {},
    }
    return WeightDataset(coll.name, "classification", NUM_CLASSES, splits["train"], splits["val"],
                         splits["test"], card)


def _common_card(splits: dict[str, Split]) -> dict:
    everything = WeightSpace.cat([s.weights for s in splits.values()])
    return {
        "networks": {k: len(v) for k, v in splits.items()},
        "architectures": describe_architectures(everything),
        "target": "image class (10)",
        "class_balance": {k: class_balance(v.targets, NUM_CLASSES) for k, v in splits.items()},
        "layer_statistics": layer_statistics(everything) if len(everything) > 1 else {},
        "published_mnist_inr_std": PUBLISHED_MNIST_INR_STD,
    }


# ---------------------------------------------------------------- export


def export(ds: WeightDataset, coll: Collection, directory: Path, progress: bool = False) -> Path:
    """Write ``ds`` as state dicts plus a splits JSON in the DWSNets layout; returns the
    splits file. MNIST layout: ``<inr_folder>/<prefix>_{training|testing}_{label}_{idx}/
    checkpoints/model_final.pth`` and ``<name>_splits.json`` with string labels;
    Fashion-MNIST layout: ``fmnist_inrs/{train,test}/model_{idx}.pth`` with an int ``label``
    and ``fmnist_inrs/splits.json`` of plain path lists. Paths are relative to ``directory``."""
    listing: dict[str, dict[str, list]] = {}
    total = sum(len(s) for s in (ds.train, ds.val, ds.test_split()))
    bar = tqdm(total=total, desc=f"{coll.name}: exporting", disable=not progress)
    for name, split in (("train", ds.train), ("val", ds.val), ("test", ds.test_split())):
        paths, labels = [], []
        images = split.extras.get("image", torch.full((len(split),), -1))
        for row in range(len(split)):
            label, image = int(split.targets[row]), int(images[row])
            image = image if image >= 0 else row
            state = dwsnets_state_dict(split.weights, row)
            if coll.layout == "mnist":
                folder = "training" if name != "test" else "testing"
                rel = Path(coll.inr_folder, f"{coll.prefix}_{folder}_{label}_{image}", "checkpoints",
                           "model_final.pth")
            else:
                rel = Path(coll.inr_folder, "train" if name != "test" else "test", f"model_{image}.pth")
                state["label"] = label
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, directory / rel)
            paths.append(rel.as_posix())
            labels.append(str(label))
            bar.update()
        listing[name] = {"path": paths, "label": labels} if coll.layout == "mnist" else paths
    bar.close()
    splits_file = (directory / f"{coll.name.removesuffix('-inr')}_splits.json" if coll.layout == "mnist"
                   else directory / coll.inr_folder / "splits.json")
    atomic_write_text(splits_file, json.dumps(listing))
    return splits_file


# ---------------------------------------------------------------- loader


def _missing(coll: Collection, source: Path) -> DataNotFound:
    images = ("the IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)" if coll.images == "idx"
              else "the CIFAR-10 python batches (cifar-10-batches-py/)")
    if coll.readable:
        return DataNotFound(f"{coll.name}: the published DWSNets INRs ({coll.inr_folder}/ + splits JSON) or {images}",
                            f"the INRs ({coll.inr_folder}.zip) from {DWSNETS_URL} or the images from "
                            f"{coll.images_url}", [source / coll.inr_folder, source])
    return DataNotFound(f"{coll.name}: {images}", f"{coll.images_url} and extract it",
                        [source, source / cifar.FOLDER])


def _has_raw_images(coll: Collection, source: Path) -> bool:
    if coll.images == "cifar":
        try:
            cifar.batch_directory(source)
            return True
        except DataNotFound:
            return False
    return idx.has_split_files(source)


def _file_stamp(path: Path | None) -> list | None:
    if path is None:
        return None
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def load(coll: Collection, opts: LoadOptions) -> WeightDataset:
    """Read the published INRs if present in the source, else build (or load the cached
    build); then export if asked."""
    config = parse_params(opts.params, DEFAULTS)
    target, compile_loss = config.pop("export"), bool(config.pop("compile"))
    source = Path(opts.source) if opts.source else opts.root / "raw" / coll.raw_folder
    pub = find_published(source, coll) if coll.readable else None
    sub = f"limit{opts.limit}" if opts.limit else "full"
    if pub is not None:
        recipe = {"dataset": coll.name, "origin": "published", "inr_dir": str(pub.inr_dir and pub.inr_dir.resolve()),
                  "splits": _file_stamp(pub.splits_file), "limit": opts.limit, "skip_invalid": opts.skip_invalid}
        ds = cached(opts.root / coll.name / "published" / sub, recipe,
                    lambda: read_published(pub, coll, source, opts))
    else:
        if not _has_raw_images(coll, source):
            raise _missing(coll, source)
        recipe = {"dataset": coll.name, "origin": "built", "limit": opts.limit, "val_seed": VAL_SEED, **config}
        ds = cached(opts.root / coll.name / "built" / sub, recipe,
                    lambda: build(coll, source, config, opts, compile_loss))
    if target:
        export(ds, coll, Path(target), opts.progress)
    return ds


@register_dataset("mnist-inr", suite="inr", description="DWSNets MNIST SIRENs: published files, or built from IDX")
def load_mnist_inr(opts: LoadOptions) -> WeightDataset:
    """``mnist-inr``: source (default ``root/raw/mnist``) holds the published DWSNets files or
    the MNIST IDX files. Options: ``steps``, ``lr``, ``chunk``, ``seed``, ``hidden``, ``depth``,
    ``omega`` (building), ``compile=0`` (fit without ``torch.compile``), ``export=DIR``."""
    return load(COLLECTIONS["mnist-inr"], opts)


@register_dataset("fmnist-inr", suite="inr",
                  description="DWSNets Fashion-MNIST SIRENs: published files, or built from IDX")
def load_fmnist_inr(opts: LoadOptions) -> WeightDataset:
    """``fmnist-inr``: as ``mnist-inr``, default source ``root/raw/fashion-mnist``."""
    return load(COLLECTIONS["fmnist-inr"], opts)


@register_dataset("cifar10-inr", suite="inr", description="SIRENs of CIFAR-10 images (RGB), built locally")
def load_cifar10_inr(opts: LoadOptions) -> WeightDataset:
    """``cifar10-inr``: built from the CIFAR-10 python batches in the source (default
    ``root/raw/cifar10``); same recipe and options as ``mnist-inr``."""
    return load(COLLECTIONS["cifar10-inr"], opts)
