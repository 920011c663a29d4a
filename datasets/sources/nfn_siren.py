"""``nfn-mnist-siren``, ``nfn-fmnist-siren``, ``nfn-cifar-siren``: the NFN SIREN datasets.

Zhou et al. 2023 (NFN, and NFT for the augmented copies) released one SIREN per image of
MNIST, Fashion-MNIST and CIFAR-10 (Google Drive folder in :data:`URL`, archives
``siren_{mnist,fashion,cifar}_wts.tar``). Layout, read from their ``SirenDataset``
(``experiments/data_utils.py``):

- ``siren_<d>_wts/randinit_smaller_{c}s/net{idx}.pth``: the network of image ``idx``, whose
  class ``c`` is the digit in the folder name (NFN's label regex ``_(\\d)s``). ``idx`` is
  the image's position in torchvision's train + test concatenation (NFN's
  ``SirenAndOriginalDataset`` pairs them and asserts the labels agree).
- split by index: train ``idx < 45,000``, val ``45,000 <= idx < 50,000``, test the rest (for
  MNIST and Fashion-MNIST that is the last 10,000 training images plus the test images).
- ``randinit_smaller_aug{i}_{c}s/``: further fits of the *training* images, used as extra
  training views (option ``views=K`` adds ``aug0 .. aug{K-1}``; NFN's ``extra_aug``).
- SIREN 2-32-32-C (C = 1, or 3 for CIFAR), sine omega 30, linear output, keys
  ``net.{i}.linear.weight`` ... read in (weight, bias) order; fitted to pixels in [-1, 1]
  (``Normalize(0.5, 0.5)``) with no output offset, on a ``meshgrid(..., indexing='ij')`` grid
  (first coordinate = row), unlike the DWSNets 'xy' grid.

Deliberate difference: NFN globs ``randinit_smaller_*`` for the base set, which also matches
the ``aug`` folders, so which copy it reads for an index depends on file-system order (a
TODO in their code); we read exactly ``randinit_smaller_{c}s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from datasets.cache import cached
from datasets.card import class_balance, describe_architectures, layer_statistics
from datasets.collection import LoadOptions, Split, WeightDataset
from datasets.registry import register_dataset
from datasets.sources.digits_inr import parse_params
from datasets.spec import siren_spec
from datasets.state_dicts import load_file, read_ordered, stack
from datasets.validation import DataNotFound, Skipper
from datasets.weights import WeightSpace

URL = "https://drive.google.com/drive/folders/15CdOTPWHqDcS4SwbIdm100rXkTYZPcC5 (NFN SIREN weights)"
PREFIX = "randinit_smaller"
SPLIT_POINTS = (45_000, 50_000)
NUM_CLASSES = 10
DEFAULTS = {"views": 0}


@dataclass(frozen=True)
class SirenSet:
    name: str
    folder: str          # siren_<x>_wts
    channels: int
    images: str


SETS = {
    "nfn-mnist-siren": SirenSet("nfn-mnist-siren", "siren_mnist_wts", 1, "MNIST (CC BY-SA 3.0)"),
    "nfn-fmnist-siren": SirenSet("nfn-fmnist-siren", "siren_fashion_wts", 1, "Fashion-MNIST (MIT)"),
    "nfn-cifar-siren": SirenSet("nfn-cifar-siren", "siren_cifar_wts", 3, "CIFAR-10"),
}


def find_root(source: Path, sset: SirenSet) -> Path:
    """The ``siren_<x>_wts`` folder: ``source`` itself or its subfolder."""
    candidates = [source / sset.folder, source]
    for directory in candidates:
        if any((directory / f"{PREFIX}_{c}s").is_dir() for c in range(NUM_CLASSES)):
            return directory
    raise DataNotFound(f"{sset.name}: NFN SIREN folders {PREFIX}_{{0..9}}s/net*.pth",
                       f"{sset.folder}.tar from {URL} and extract it", candidates)


def index_files(root: Path, prefix: str) -> dict[int, tuple[Path, int]]:
    """``{idx: (path, class)}`` over the ten ``<prefix>_{c}s`` folders; an index present in
    two class folders is an error."""
    found: dict[int, tuple[Path, int]] = {}
    for label in range(NUM_CLASSES):
        for path in (root / f"{prefix}_{label}s").glob("net*.pth"):
            match = re.fullmatch(r"net(\d+)\.pth", path.name)
            if not match:
                continue
            idx = int(match.group(1))
            if idx in found:
                raise ValueError(f"{root}: image index {idx} appears twice: {found[idx][0]} and {path}")
            found[idx] = (path, label)
    return found


def split_of(idx: int) -> str:
    val_point, test_point = SPLIT_POINTS
    return "train" if idx < val_point else "val" if idx < test_point else "test"


def read(root: Path, sset: SirenSet, views: int, opts: LoadOptions) -> WeightDataset:
    """Read the selected networks of every split (no caching)."""
    spec = siren_spec(32, 2, 2, sset.channels, 30.0, output_offset=0.0)
    base = index_files(root, PREFIX)
    chosen = {s: sorted(i for i in base if split_of(i) == s) for s in ("train", "val", "test")}
    if opts.limit:
        chosen = {s: v[:opts.limit] for s, v in chosen.items()}
    # (idx, view, path, label) per split; views only for training images
    todo = {s: [(i, 0, *base[i]) for i in v] for s, v in chosen.items()}
    skipper = Skipper(opts.skip_invalid)
    for view in range(1, views + 1):
        prefix = f"{PREFIX}_aug{view - 1}"
        if not any((root / f"{prefix}_{c}s").is_dir() for c in range(NUM_CLASSES)):
            raise DataNotFound(f"{sset.name}: augmented copies {prefix}_{{0..9}}s (views={views})",
                               f"{sset.folder}.tar from {URL}", [root])
        aug = index_files(root, prefix)
        todo["train"] += [(i, view, *aug[i]) for i in chosen["train"] if i in aug]
        skipper.record("augmented copy missing", sum(i not in aug for i in chosen["train"]))
    splits = {}
    for s, items in todo.items():
        rows = []
        for idx, view, path, label in tqdm(items, desc=f"{sset.name}: reading {s}", disable=not opts.progress):
            layers = skipper.attempt(lambda p=path: read_ordered(load_file(p), spec, p))
            if layers is not None:
                rows.append((layers, label, idx, view))
        splits[s] = Split(stack(spec, [r[0] for r in rows]), torch.tensor([r[1] for r in rows], dtype=torch.long),
                          {"image": torch.tensor([r[2] for r in rows], dtype=torch.long),
                           "view": torch.tensor([r[3] for r in rows], dtype=torch.long)})
    everything = WeightSpace.cat([s.weights for s in splits.values()])
    card = {
        "source": f"NFN SIRENs (Zhou et al. 2023), {URL}; read from {root}",
        "licence": f"images: {sset.images}; the SIREN release states no licence",
        "networks": {k: len(v) for k, v in splits.items()},
        "architectures": describe_architectures(everything),
        "target": "image class (10): the digit c of the folder randinit_smaller_{c}s",
        "split": "by image index (position in torchvision train + test): train < 45,000 <= val < 50,000 <= test",
        "views_per_training_image": 1 + views,
        "conventions": "pixels in [-1, 1], no output offset, grid meshgrid(indexing='ij') (first coordinate = row)",
        "class_balance": {k: class_balance(v.targets, NUM_CLASSES) for k, v in splits.items()},
        "layer_statistics": layer_statistics(everything) if len(everything) > 1 else {},
        "skipped": skipper.summary(),
    }
    return WeightDataset(sset.name, "classification", NUM_CLASSES, splits["train"], splits["val"],
                         splits["test"], card)


def load(sset: SirenSet, opts: LoadOptions) -> WeightDataset:
    """Read (first time) or load the cached NFN SIREN dataset from the source, which
    defaults to ``root/raw/<name>``. Option ``views=K``: K augmented copies per training image."""
    views = parse_params(opts.params, DEFAULTS)["views"]
    if views < 0:
        raise ValueError(f"views must be >= 0, got {views}")
    root = find_root(Path(opts.source) if opts.source else opts.root / "raw" / sset.name, sset)
    counts = [len(list((root / f"{PREFIX}_{c}s").glob("net*.pth"))) for c in range(NUM_CLASSES)]
    recipe = {"dataset": sset.name, "source": str(root.resolve()), "files": counts, "views": views,
              "limit": opts.limit, "skip_invalid": opts.skip_invalid}
    directory = opts.root / sset.name / (f"limit{opts.limit}" if opts.limit else "full") / f"views{views}"
    return cached(directory, recipe, lambda: read(root, sset, views, opts))


for _set, _images in zip(SETS.values(), ("MNIST", "Fashion-MNIST", "CIFAR-10, RGB")):
    register_dataset(_set.name, suite="inr", description=f"NFN {_images} SIRENs (published files)")(partial(load, _set))
