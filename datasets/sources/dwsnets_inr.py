"""``mnist-inr``, ``fmnist-inr`` (the DWSNets INR datasets) and ``cifar10-inr``: one SIREN
2-32-32-C per image.

When the source folder holds the published DWSNets files (Navon et al. 2023; layouts in
``datasets.io.dwsnets_layout``) they are read. Otherwise the INRs are **built** from the raw
images with the DWSNets recipe (``datasets.inr_fitting``; DWSNets never published their
fitting script) at 1,500 Adam steps of learning rate 1e-3, the setting whose per-layer
weight and bias std match the published MNIST INRs' (within 2% on 512 images; study:
docs/notes/mnist-inr-builder.md): the MNIST / Fashion-MNIST IDX files, split 55,000 / 5,000
/ 10,000 (validation = a fixed-seed 1/12 of the training images, test = the t10k images),
or the CIFAR-10 python batches for ``cifar10-inr`` (3 output channels; 45,000 / 5,000 /
10,000). No CIFAR-10 INRs were published; ``cifar10-inr`` reads its own export back. The
card sets the per-layer std beside the published INRs' (``published_comparison``; MNIST and
Fashion-MNIST).

Options: the recipe (``steps``, ``lr``, ``hidden``, ...; building only), ``compile`` (fit
through ``torch.compile``) and ``device`` (fit on ``cuda``), both speed only, and
``export=DIR``, which writes the dataset (read or built) in the DWSNets layout so other
tools can read it. A build keeps its finished chunks, so an interrupted build resumes where
it stopped.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from datasets.card import PUBLISHED_FMNIST_INR_STD, PUBLISHED_MNIST_INR_STD, published_comparison, summary
from datasets.dataset_table import DatasetInfo, RemoteFile, register_dataset
from datasets.errors import ConfigError, DataNotFound
from datasets.inr_fitting import SirenRecipe, fit_sirens
from datasets.io import cifar, idx
from datasets.io.dwsnets_layout import (
    VAL_SEED,
    DwsnetsLayout,
    Entry,
    Published,
    export,
    find_published,
    listed_files,
    listing,
    network_files,
    read_network,
)
from datasets.io.state_dicts import stack
from datasets.options import Option
from datasets.progress import progress as progress_bar
from datasets.source import Built, DatasetSource
from datasets.spec import siren_spec
from datasets.validation import Skipper
from datasets.weight_dataset import SPLITS, Split, WeightDataset
from datasets.weights import WeightSpace

log = logging.getLogger("wsbench")
DWSNETS_URL = "https://www.dropbox.com/sh/56pakaxe58z29mq/AABtWNkRYroLYe_cE3c90DXVa?dl=0"
# steps and lr: the per-layer std of the published MNIST INRs (docs/notes/mnist-inr-builder.md);
# chunk 32 is the fastest on a CPU for 28x28 images (scripts/bench_inr_fit.py)
RECIPE = SirenRecipe(steps=1500, lr=1e-3, chunk=32)
RAW_IMAGES = {"idx": "the IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                     "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
              "cifar": f"the CIFAR-10 python batches ({cifar.FOLDER}/)"}


def split_indices(n_train: int, n_test: int, val_fraction: float, limit: int | None) -> dict[str, np.ndarray]:
    """Validation = a fixed-seed subset of the training images (MNIST: 5,000 of 60,000);
    test = the test file. Indices into the train (train, val) or test file, sorted; at
    most ``limit`` per split."""
    order = np.random.default_rng(VAL_SEED).permutation(n_train)
    n_val = round(n_train * val_fraction)
    index = {"train": np.sort(order[n_val:]), "val": np.sort(order[:n_val]), "test": np.arange(n_test)}
    return {k: v[:limit] if limit else v for k, v in index.items()}


class DwsnetsInr(DatasetSource):
    """SIRENs of one image dataset: the published files if present, else built from images.

    Constants (set at registration): ``layout`` (where the INR files sit), ``images``
    (``"idx"`` or ``"cifar"``), ``channels`` (SIREN outputs), ``val_fraction`` (share of the
    training images held out for validation), ``inr_download`` (where the published INRs
    are, ``None`` if none were published), ``images_download`` (where the images are) and
    ``published_std`` (the published INRs' per-layer std with their name, ``None`` if none)."""

    layout: DwsnetsLayout | None = None
    images: str = "idx"
    channels: int = 1
    val_fraction: float = 1 / 12
    inr_download: str | None = None
    images_download: str = ""
    published_std: tuple[str, dict[str, list[float]]] | None = None
    options = {**RECIPE.options(),
               "compile": Option(True, "fit through torch.compile (speed only; eager if compiling fails)",
                                 fingerprint=False),
               "device": Option("cpu", "fit on this device (speed only)", choices=("cpu", "cuda"), fingerprint=False),
               "export": Option("", "write the dataset in the DWSNets layout into this folder", fingerprint=False)}

    def check(self) -> None:
        if self.config["device"] == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{self.info.name} option device=cuda: no CUDA device here; use device=cpu")
        target = self.config["export"]
        if target:
            existing = next(p for p in (Path(target), *Path(target).parents) if p.exists())
            if not existing.is_dir():
                raise ConfigError(f"{self.info.name} option export={target}: {existing} is a file, not a folder; "
                                  f"give a folder to write the DWSNets layout into")

    @cached_property
    def published(self) -> Published | None:
        return find_published(self.source_dir, self.layout)

    @cached_property
    def entries(self) -> dict[str, list[Entry]]:
        return listing(self.published, self.layout, self.source_dir, self.load_options.limit)

    def raw_paths(self) -> list[Path]:
        """The splits file and every listed network, or (no splits file) every network file,
        since the split is drawn from their listing; else the raw images."""
        if self.published is not None:
            if self.published.splits_file is None:
                return network_files(self.published.inr_dir, self.layout)
            return [self.published.splits_file, *listed_files(self.entries)]
        source = self.source_dir
        if self.images == "idx" and idx.has_split_files(source):
            return [idx.find_idx_file(source, split, kind) for split in idx.SPLIT_STEMS for kind in ("images", "labels")]
        if self.images == "cifar":
            try:
                directory = cifar.batch_directory(source)
            except DataNotFound:
                pass
            else:
                return [directory / name for name in cifar.TRAIN_BATCHES + cifar.TEST_BATCHES]
        raise self.missing()

    def missing(self) -> DataNotFound:
        """What to download, and where it was looked for."""
        source, images = self.source_dir, RAW_IMAGES[self.images]
        searched = [source / self.layout.inr_folder, source]
        if self.images == "cifar":
            searched.append(source / cifar.FOLDER)
        if self.inr_download is None:
            return DataNotFound(f"{self.info.name}: {images}", self.images_download, searched)
        return DataNotFound(f"{self.info.name}: the published DWSNets INRs ({self.layout.inr_folder}/ and a "
                            f"splits JSON) or {images}",
                            f"the INRs from {self.inr_download} or {self.images_download}", searched)

    def recipe(self) -> dict:
        return {"origin": "published" if self.published is not None else "built", "split_seed": VAL_SEED}

    def process(self) -> Built:
        return self.read_published() if self.published is not None else self.build()

    def read_published(self) -> Built:
        """Read the listed state dicts of every split."""
        spec = siren_spec(out_features=self.channels)
        skipper = Skipper(self.load_options.skip_invalid)
        bar = progress_bar(sum(map(len, self.entries.values())), f"{self.info.name}: reading INRs", "INR",
                           self.progress)
        splits = {}
        for name, entries in self.entries.items():
            rows = []
            for entry in entries:
                row = skipper.attempt(read_network, entry, spec, self.published, self.info.out_dim)
                if row is not None:
                    rows.append(row)
                bar.update()
            splits[name] = Split(stack(spec, [r[0] for r in rows]), torch.tensor([r[1] for r in rows], dtype=torch.long),
                                 {"image": torch.tensor([r[2] for r in rows], dtype=torch.long)})
        bar.close()
        pub = self.published
        card = {"origin": f"published DWSNets INRs, read from {pub.inr_dir or self.source_dir}",
                "splits_file": str(pub.splits_file) if pub.splits_file else
                f"none: DWSNets-style split, seed {VAL_SEED}",
                "target": "image class (10)", **self.comparison(WeightSpace.cat([s.weights for s in splits.values()])),
                "skipped": skipper.summary()}
        return Built(splits["train"], splits["val"], splits["test"], card)

    def comparison(self, ws: WeightSpace) -> dict:
        """``{"published_comparison": ...}``: the per-layer std of ``ws`` beside the published
        INRs'; empty where none were published."""
        if self.published_std is None or not len(ws):
            return {}
        against, std = self.published_std
        return {"published_comparison": published_comparison(ws, std, against)}

    def read_images(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train"|"test": (images (N, C, H, W) uint8, labels (N,))}``."""
        if self.images == "cifar":
            directory = cifar.batch_directory(self.source_dir)
            return {s: cifar.read_split(directory, s) for s in ("train", "test")}
        out = {}
        for s in ("train", "test"):
            images, labels = idx.read_split(self.source_dir, s, self.info.out_dim)
            out[s] = (images[:, None], labels)
        return out

    def build(self) -> Built:
        """Fit one SIREN per image of the selected splits (resumable: ``self.checkpoints``)."""
        data = self.read_images()
        index = split_indices(len(data["train"][0]), len(data["test"][0]), self.val_fraction, self.load_options.limit)
        file_of = {"train": "train", "val": "train", "test": "test"}
        images = np.concatenate([data[file_of[s]][0][index[s]] for s in SPLITS])
        recipe, compiled, device = SirenRecipe.of(self.config), self.config["compile"], self.config["device"]
        start = time.perf_counter()
        ws, scores = fit_sirens(torch.from_numpy(images).float() / 255, recipe, progress=self.progress,
                                description=f"{self.info.name}: fitting SIRENs", compile=compiled,
                                store=self.checkpoints, device=device)
        seconds = time.perf_counter() - start
        splits, at = {}, 0
        for s in SPLITS:
            rows = slice(at, at + len(index[s]))
            labels = torch.from_numpy(data[file_of[s]][1][index[s]]).long()
            pixels = torch.from_numpy(images[rows])  # uint8 (N, C, H, W): what the SIREN was fitted to, x 255
            splits[s] = Split(ws[rows], labels, {"psnr": scores[rows], "image": torch.from_numpy(index[s]).long(),
                                                 "pixels": pixels})
            at += len(index[s])
        card = {"origin": f"built from the raw images in {self.source_dir}",
                "target": "image class (10)",
                "split": f"validation = a fixed-seed ({VAL_SEED}) {self.val_fraction:.4g} of the training images, "
                         f"test = the test images",
                "fit": {**recipe.to_dict(), "optimizer": "Adam", "compiled": compiled, "device": device,
                        "seconds": round(seconds, 1), "inrs_per_second": round(len(ws) / max(seconds, 1e-9), 2)},
                "psnr_db": summary(scores), **self.comparison(ws)}
        return Built(splits["train"], splits["val"], splits["test"], card)

    def after_load(self, dataset: WeightDataset) -> None:
        if self.config["export"]:
            written = export(dataset, self.layout, Path(self.config["export"]), self.progress)
            log.info("%s: exported %s networks in the DWSNets layout (%s)", self.info.name,
                     f"{sum(map(len, dataset.splits().values())):,}", written)


def idx_files(base_url: str) -> tuple[RemoteFile, ...]:
    """The four IDX files under ``base_url``, saved under their own names."""
    names = [f"{stem}-{kind}-ubyte.gz" for stem in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]
    return tuple(RemoteFile(base_url + name, name) for name in names)


MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
NG_SPLITS = ("https://raw.githubusercontent.com/mkofinas/neural-graphs/1f2b671ab4988ef212469363005a5b99eec16580/"
             "experiments/inr_classification/dataset/")
# The published INRs (DWSNets' Dropbox folder, as linked from the Neural Graphs README; no checksum is
# published: the first download's is recorded) with the splits files of the Neural Graphs repository.
MNIST_INRS = (RemoteFile("https://www.dropbox.com/sh/56pakaxe58z29mq/AABrctdu2U65jGYr2WQRzmMna/mnist-inrs.zip?dl=1",
                         "mnist-inrs.zip"),
              RemoteFile(NG_SPLITS + "mnist_splits.json", "mnist_splits.json"))
FMNIST_INRS = (RemoteFile("https://www.dropbox.com/sh/56pakaxe58z29mq/AAAssoHq719OmSHSKKTiKKHGa/fmnist_inrs.zip?dl=1",
                          "fmnist_inrs.zip"),
               RemoteFile(NG_SPLITS + "fmnist_splits.json", "fmnist_splits.json",
                          "73fd51cad2449284618460f34d4bba456de9707f481a83a66b66450e360adbd1"))

register_dataset(DatasetInfo(
    "mnist-inr", ("inr", "edit"), "classification", 10, version=3, splits=(55_000, 5_000, 10_000),
    files=MNIST_INRS + idx_files(MNIST_MIRROR),
    description="SIRENs 2-32-32-1 of MNIST digits (DWSNets): the published files, or built from the IDX files",
    source=f"DWSNets INRs (Navon et al. 2023) {DWSNETS_URL}; MNIST images http://yann.lecun.com/exdb/mnist/",
    licence="MNIST images CC BY-SA 3.0 (LeCun, Cortes, Burges); the DWSNets INR release states no licence"),
    DwsnetsInr, raw_folder="mnist", images="idx", channels=1, val_fraction=5_000 / 60_000,
    layout=DwsnetsLayout("mnist", "mnist-inrs", ("mnist_splits.json", "splits.json"), prefix="mnist_png"),
    inr_download=f"{DWSNETS_URL} (mnist-inrs.zip)",
    published_std=("DWSNets MNIST INRs (Navon et al. 2023)", PUBLISHED_MNIST_INR_STD),
    images_download=f"the MNIST IDX files from {MNIST_MIRROR} or http://yann.lecun.com/exdb/mnist/")

register_dataset(DatasetInfo(
    "fmnist-inr", ("inr", "edit"), "classification", 10, version=3, splits=(55_000, 5_000, 10_000),
    files=FMNIST_INRS + idx_files(FASHION_MIRROR),
    description="SIRENs 2-32-32-1 of Fashion-MNIST images (DWSNets): the published files, or built from the IDX files",
    source=f"DWSNets INRs (Navon et al. 2023) {DWSNETS_URL}; Fashion-MNIST images "
           f"https://github.com/zalandoresearch/fashion-mnist",
    licence="Fashion-MNIST images MIT (Zalando Research); the DWSNets INR release states no licence"),
    DwsnetsInr, raw_folder="fashion-mnist", images="idx", channels=1, val_fraction=5_000 / 60_000,
    layout=DwsnetsLayout("fmnist", "fmnist_inrs", ("splits.json", "fmnist_splits.json")),
    inr_download=f"{DWSNETS_URL} (fmnist_inrs.zip)",
    published_std=("DWSNets Fashion-MNIST INRs (Navon et al. 2023)", PUBLISHED_FMNIST_INR_STD),
    images_download=f"the Fashion-MNIST IDX files from {FASHION_MIRROR} or "
                    f"https://github.com/zalandoresearch/fashion-mnist (data/fashion/)")

register_dataset(DatasetInfo(
    "cifar10-inr", ("inr", "edit"), "classification", 10, version=3, splits=(45_000, 5_000, 10_000),
    description="SIRENs 2-32-32-3 of CIFAR-10 images (RGB), built locally with the DWSNets recipe",
    source=f"CIFAR-10 python batches (Krizhevsky 2009) {cifar.URL}",
    licence="CIFAR-10 images (Krizhevsky 2009): no licence stated by the authors"),
    DwsnetsInr, raw_folder="cifar10", images="cifar", channels=3, val_fraction=5_000 / 50_000,
    layout=DwsnetsLayout("mnist", "cifar10-inrs", ("cifar10_splits.json",), prefix="cifar10_png"),
    images_download=f"{cifar.URL} and extract it")
