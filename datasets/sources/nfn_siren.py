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
from functools import cached_property
from pathlib import Path

import torch

from datasets.dataset_table import DatasetInfo, register_dataset
from datasets.errors import DataNotFound, InvalidData
from datasets.io.state_dicts import load_file, read_ordered, stack
from datasets.options import Option
from datasets.progress import progress as progress_bar
from datasets.source import Built, DatasetSource
from datasets.spec import siren_spec
from datasets.validation import Skipper
from datasets.weight_dataset import SPLITS, Split

URL = "https://drive.google.com/drive/folders/15CdOTPWHqDcS4SwbIdm100rXkTYZPcC5 (NFN SIREN weights)"
PREFIX = "randinit_smaller"
SPLIT_POINTS = (45_000, 50_000)
NUM_CLASSES = 10
Item = tuple[int, int, Path, int]  # image index, view, file, class


def split_of(idx: int) -> str:
    """NFN's split of image index ``idx``."""
    val_point, test_point = SPLIT_POINTS
    return "train" if idx < val_point else "val" if idx < test_point else "test"


def index_files(root: Path, prefix: str) -> dict[int, tuple[Path, int]]:
    """``{idx: (path, class)}`` over the ten ``<prefix>_{c}s`` folders; ``InvalidData`` if an
    index is in two class folders."""
    found: dict[int, tuple[Path, int]] = {}
    for label in range(NUM_CLASSES):
        for path in sorted((root / f"{prefix}_{label}s").glob("net*.pth")):
            match = re.fullmatch(r"net(\d+)\.pth", path.name)
            if not match:
                continue
            idx = int(match.group(1))
            if idx in found:
                raise InvalidData(f"{root}: image index {idx} appears twice: {found[idx][0]} and {path}; "
                                  f"each image has one class folder")
            found[idx] = (path, label)
    return found


class NfnSiren(DatasetSource):
    """The NFN SIRENs of one image dataset. Constants (set at registration): ``folder`` (the
    ``siren_<d>_wts`` folder name) and ``channels`` (SIREN outputs)."""

    folder: str = ""
    channels: int = 1
    options = {"views": Option(0, "augmented copies per training image (NFN's extra_aug)", low=0, high=1000)}

    @cached_property
    def root(self) -> Path:
        """The ``siren_<d>_wts`` folder: the source folder itself or its subfolder."""
        candidates = [self.source_dir / self.folder, self.source_dir]
        for directory in candidates:
            if any((directory / f"{PREFIX}_{c}s").is_dir() for c in range(NUM_CLASSES)):
                return directory
        raise DataNotFound(f"{self.info.name}: NFN SIREN folders {PREFIX}_{{0..9}}s/net*.pth",
                           f"{self.folder}.tar from {URL} and extract it", candidates)

    @cached_property
    def items(self) -> dict[str, list[Item]]:
        """The networks to read per split: base fits of the first ``limit`` images of each
        split, then ``views`` augmented fits of the training images (where present)."""
        base = index_files(self.root, PREFIX)
        chosen = {s: sorted(i for i in base if split_of(i) == s)[:self.load_options.limit] for s in SPLITS}
        items = {s: [(i, 0, *base[i]) for i in indices] for s, indices in chosen.items()}
        for view in range(1, self.config["views"] + 1):
            prefix = f"{PREFIX}_aug{view - 1}"
            if not any((self.root / f"{prefix}_{c}s").is_dir() for c in range(NUM_CLASSES)):
                raise DataNotFound(f"{self.info.name}: augmented copies {prefix}_{{0..9}}s (views={self.config['views']})",
                                   f"{self.folder}.tar from {URL}", [self.root])
            aug = index_files(self.root, prefix)
            items["train"] += [(i, view, *aug[i]) for i in chosen["train"] if i in aug]
        return items

    def raw_paths(self) -> list[Path]:
        """Every network file that is read."""
        return [path for items in self.items.values() for _, _, path, _ in items]

    def recipe(self) -> dict:
        return {"split_points": list(SPLIT_POINTS)}

    def process(self) -> Built:
        spec = siren_spec(32, 2, 2, self.channels, 30.0, output_offset=0.0)
        skipper = Skipper(self.load_options.skip_invalid)
        views = self.config["views"]
        base_train = sum(view == 0 for _, view, _, _ in self.items["train"])
        skipper.record("augmented copy missing", base_train * (1 + views) - len(self.items["train"]))
        bar = progress_bar(sum(map(len, self.items.values())), f"{self.info.name}: reading SIRENs", "INR", self.progress)
        splits = {}
        for name, items in self.items.items():
            rows = []
            for idx, view, path, label in items:
                layers = skipper.attempt(lambda p=path: read_ordered(load_file(p), spec, p))
                if layers is not None:
                    rows.append((layers, label, idx, view))
                bar.update()
            splits[name] = Split(stack(spec, [r[0] for r in rows]), torch.tensor([r[1] for r in rows], dtype=torch.long),
                                 {"image": torch.tensor([r[2] for r in rows], dtype=torch.long),
                                  "view": torch.tensor([r[3] for r in rows], dtype=torch.long)})
        bar.close()
        card = {"origin": f"NFN SIRENs read from {self.root}",
                "target": f"image class (10): the digit c of the folder {PREFIX}_{{c}}s",
                "split": "by image index (position in torchvision train + test): train < 45,000 <= val < 50,000 <= test",
                "views_per_training_image": 1 + views,
                "conventions": "pixels in [-1, 1], no output offset, grid meshgrid(indexing='ij') (first coordinate = row)",
                "skipped": skipper.summary()}
        return Built(splits["train"], splits["val"], splits["test"], card)


LICENCE = "the NFN SIREN release states no licence"
register_dataset(DatasetInfo(
    "nfn-mnist-siren", ("inr",), "classification", 10, version=1, splits=(45_000, 5_000, 20_000),
    description="NFN SIRENs 2-32-32-1 of MNIST digits (published files)",
    source=f"NFN (Zhou et al. 2023) {URL}", licence=f"MNIST images CC BY-SA 3.0; {LICENCE}"),
    NfnSiren, folder="siren_mnist_wts", channels=1)
register_dataset(DatasetInfo(
    "nfn-fmnist-siren", ("inr",), "classification", 10, version=1, splits=(45_000, 5_000, 20_000),
    description="NFN SIRENs 2-32-32-1 of Fashion-MNIST images (published files)",
    source=f"NFN (Zhou et al. 2023) {URL}", licence=f"Fashion-MNIST images MIT (Zalando Research); {LICENCE}"),
    NfnSiren, folder="siren_fashion_wts", channels=1)
register_dataset(DatasetInfo(
    "nfn-cifar-siren", ("inr",), "classification", 10, version=1, splits=(45_000, 5_000, 10_000),
    description="NFN SIRENs 2-32-32-3 of CIFAR-10 images (published files)",
    source=f"NFN (Zhou et al. 2023) {URL}", licence=f"CIFAR-10 images (Krizhevsky 2009), no licence stated; {LICENCE}"),
    NfnSiren, folder="siren_cifar_wts", channels=3)
