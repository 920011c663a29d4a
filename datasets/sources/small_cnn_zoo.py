"""``small-cnn-zoo-{cifar10,svhn,mnist,fashion-mnist}``: the Small CNN Zoo (Unterthiner et al. 2020).

About 30,000 trained CNNs per image dataset, each ``3 x Conv2D(16, 3x3, stride 2, 'valid') +
activation, global average pool, Dense(10)`` on grayscale inputs in [-1, 1] (4,970
parameters), with different hyperparameters, and 9 checkpoints per run. The published
files and their conversion to our layout are read by ``datasets.io.small_cnn_zoo``.

Protocol of NFN (Zhou et al. 2023, ``ZooDataset``), also used by Neural Graphs: permute the
rows by the published split file (``<dataset>_split.csv`` in NFN's
``experiments/predict_gen_data_splits``; its stray "0" header line is kept, so row 0
appears twice, as in NFN), keep the final checkpoints (``step == 86``) and rows with finite
weights, then the last 50% is the test split and the first 50%, shuffled with
``random.Random(0)``, gives 80% train / 20% val. Target: ``test_accuracy`` (regression).
The networks differ in activation (``config.activation``: relu or tanh), so the zoo is
heterogeneous: one architecture per activation, batched as a :class:`MixedWeights`; option
``activation=relu`` keeps one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datasets.dataset_table import DatasetInfo, RemoteFile, register_dataset
from datasets.errors import DataNotFound, InvalidItem
from datasets.io.small_cnn_zoo import (architecture, read_layout, read_metrics, read_split_file, read_weights,
                                       to_weight_space)
from datasets.options import Option
from datasets.source import Built, DatasetSource, LoadOptions
from datasets.validation import Skipper
from datasets.weight_dataset import SPLITS, Split
from datasets.weights import MixedWeights, WeightSpace

URL = "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/"  # public; no checksums published
SPLITS_URL = "https://github.com/AllanYangZhou/nfn/tree/main/experiments/predict_gen_data_splits"
# NFN's split files at the commit they were read from; sha256 of the files in that commit
SPLITS_RAW = ("https://raw.githubusercontent.com/AllanYangZhou/nfn/ce783221fd7c511596220d805c7a5beccd764ee8/"
              "experiments/predict_gen_data_splits/")
SPLIT_SHA256 = {
    "cifar10_split.csv": "04fb71937dc796fc64f6306457de9d95f0d2d8a343db856213b965a4953a4f67",
    "svhn_split.csv": "c1dcfc521f38071bb4ac2af4866a38a4d2d468630ef60bb70f9ae75c681fc60c",
    "mnist_split.csv": "b516aea9d62a8c8f2acb5b92abfedc4c1f0c2f6f9afd716835ec75103c25cf3b",
    "fashion_mnist_split.csv": "0d13165d28963acdac000d3d033da58b5719920f7d19aadf310173823053b021",
}
FINAL_STEP = 86
# config.activation in metrics.csv.gz -> our activation name
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "linear": "identity"}
CHUNK_ROWS = 4096
PROTOCOL = ("NFN: permute by split file (stray '0' header kept), step == 86, finite weights; "
            "last 50% test, first 50% shuffled with random.Random(0) into 80% train / 20% val")


@dataclass(frozen=True)
class ZooFiles:
    """The four files a zoo is read from."""

    weights: Path
    metrics: Path
    layout: Path
    split: Path


def protocol_rows(weights: np.ndarray, metrics: pd.DataFrame, order: np.ndarray, skipper: Skipper,
                  metrics_path: Path) -> np.ndarray:
    """Row numbers in NFN order: permuted, final step only, finite weights; a row with a
    non-finite accuracy, an accuracy outside [0, 1] or an unknown activation is an
    :class:`InvalidItem` (counted instead when skipping)."""
    rows = order[metrics["step"].to_numpy()[order] == FINAL_STEP]
    finite = np.concatenate([np.isfinite(weights[rows[i:i + CHUNK_ROWS]]).all(axis=1)
                             for i in range(0, len(rows), CHUNK_ROWS)] or [np.zeros(0, bool)])
    skipper.record("non-finite weights (dropped by the protocol)", int((~finite).sum()))
    rows = rows[finite]
    accuracy = metrics["test_accuracy"].to_numpy()[rows]
    activation = metrics["config.activation"].to_numpy()[rows]
    keep = np.ones(len(rows), dtype=bool)
    valid_target = np.isfinite(accuracy) & (accuracy >= 0) & (accuracy <= 1)
    for i in np.flatnonzero(~valid_target | ~np.isin(activation, list(ACTIVATIONS))):
        if not np.isfinite(accuracy[i]):
            problem, reason = f"row {rows[i]}: test_accuracy {accuracy[i]} is not finite", "non-finite target"
        elif not valid_target[i]:
            problem, reason = f"row {rows[i]}: test_accuracy {accuracy[i]} is outside [0, 1]", "target out of range"
        else:
            problem = f"row {rows[i]}: activation {activation[i]!r} is not one of {', '.join(ACTIVATIONS)}"
            reason = "unsupported activation"
        skipper.reject(InvalidItem(metrics_path, problem, reason))
        keep[i] = False
    return rows[keep]


def split_positions(n: int) -> dict[str, list[int]]:
    """NFN's ``_split_indices_iid``: last half test; first half shuffled with
    ``random.Random(0)`` into 80% train, 20% val."""
    test_point = int(0.5 * n)
    trainval = list(range(test_point))
    random.Random(0).shuffle(trainval)
    val_point = int(0.8 * len(trainval))
    return {"train": trainval[:val_point], "val": trainval[val_point:], "test": list(range(test_point, n))}


def activation_groups(groups: list[WeightSpace], acts: np.ndarray, kinds: list[str]) -> MixedWeights:
    """One group per activation in ``kinds`` (sorted), rows in the split's order."""
    group_index = torch.from_numpy(np.searchsorted(kinds, acts)).long()
    row_index = torch.empty_like(group_index)
    for g in range(len(kinds)):
        mask = group_index == g
        row_index[mask] = torch.arange(int(mask.sum()))
    return MixedWeights(tuple(groups), group_index, row_index)


class SmallCnnZoo(DatasetSource):
    """One zoo of the Small CNN Zoo, read from its published files under NFN's protocol.
    ``folder``: the archive's folder name; ``split_name``: NFN's split file for it."""

    options = {
        "activation": Option("all", "keep the networks of one activation (one architecture), or all",
                             choices=("all", *ACTIVATIONS)),
        "split_file": Option("", "path of NFN's split file (default: <split_name> next to weights.npy or in "
                                 "its parent folder); its content is fingerprinted, not its path",
                             fingerprint=False),
    }

    def __init__(self, info: DatasetInfo, load: LoadOptions, *, folder: str, split_name: str) -> None:
        self.folder, self.split_name = folder, split_name
        super().__init__(info, load)

    @property
    def source_dir(self) -> Path:
        given = self.load_options.source
        return Path(given) if given else self.load_options.root / "raw" / "small-cnn-zoo" / self.folder

    @property
    def archive_url(self) -> str:
        return f"{URL}{self.folder}.tar.xz"

    def locate(self) -> ZooFiles:
        """The zoo's files: ``weights.npy`` & co in the source folder or its ``<folder>``
        subfolder, the split file where ``split_file`` says or next to them."""
        source = self.source_dir
        candidates = [source, source / self.folder]
        folder = next((d for d in candidates if (d / "weights.npy").is_file()), None)
        download = f"{self.archive_url} and extract it"
        if folder is None:
            raise DataNotFound(f"{self.info.name}: weights.npy, metrics.csv.gz, layout.csv", download, candidates)
        for name in ("metrics.csv.gz", "layout.csv"):
            if not (folder / name).is_file():
                raise DataNotFound(f"{self.info.name}: {name}", download, [folder])
        given = self.config["split_file"]
        places = [Path(given)] if given else [folder / self.split_name, folder.parent / self.split_name]
        split = next((p for p in places if p.is_file()), None)
        if split is None:
            raise DataNotFound(f"{self.info.name}: split file {Path(given).name if given else self.split_name}",
                               f"it from {SPLITS_URL} (or give --dataset-option split_file=PATH)", places)
        return ZooFiles(folder / "weights.npy", folder / "metrics.csv.gz", folder / "layout.csv", split)

    def raw_paths(self) -> list[Path]:
        files = self.locate()
        return [files.weights, files.metrics, files.layout, files.split]

    def recipe(self) -> dict:
        return {"final_step": FINAL_STEP}

    def process(self) -> Built:
        files = self.locate()
        weights = read_weights(files.weights)
        layout = read_layout(files.layout, weights.shape[1])
        metrics = read_metrics(files.metrics, len(weights))
        order = read_split_file(files.split, len(weights))
        skipper = Skipper(self.load_options.skip_invalid)
        rows = protocol_rows(weights, metrics, order, skipper, files.metrics)
        acts = metrics["config.activation"].to_numpy()[rows]
        excluded = {}
        if self.config["activation"] != "all":
            chosen = acts == self.config["activation"]
            excluded = {f"activation is not {self.config['activation']}": int((~chosen).sum())}
            rows, acts = rows[chosen], acts[chosen]
        positions = split_positions(len(rows))
        if self.load_options.limit:
            positions = {k: v[:self.load_options.limit] for k, v in positions.items()}
        kinds = sorted(set(acts.tolist())) or ["relu"]  # no rows left: empty splits, refused by validation
        specs = {a: architecture(layout, ACTIVATIONS[a], files.layout) for a in kinds}
        accuracy = metrics["test_accuracy"].to_numpy(dtype=np.float32)
        splits = {}
        for name in SPLITS:
            chosen, split_acts = rows[positions[name]], acts[positions[name]]
            flat = np.asarray(weights[chosen]) if len(chosen) else np.zeros((0, weights.shape[1]), np.float32)
            present = [a for a in kinds if (split_acts == a).any()] or kinds[:1]
            groups = [to_weight_space(specs[a], layout, flat[split_acts == a]) for a in present]
            batch = groups[0] if len(kinds) == 1 else activation_groups(groups, split_acts, present)
            splits[name] = Split(batch, torch.from_numpy(accuracy[chosen].copy()),
                                 {"row": torch.from_numpy(chosen.copy())})
        card = {"read_from": str(files.weights.parent), "split_file": str(files.split), "protocol": PROTOCOL,
                "activations": {a: int((acts == a).sum()) for a in kinds},
                "target": "test_accuracy (regression)", "skipped": skipper.summary(),
                "excluded_by_option": excluded}
        return Built(splits["train"], splits["val"], splits["test"], card)


def register_zoo(name: str, image_set: str, folder: str, split_name: str, rows: str) -> None:
    """Register one published Small CNN Zoo subset: its archive (unpacked, it holds
    ``<folder>/weights.npy`` & co) and NFN's split file."""
    files = (RemoteFile(f"{URL}{folder}.tar.xz", f"{folder}.tar.xz"),
             RemoteFile(f"{SPLITS_RAW}{split_name}", split_name, SPLIT_SHA256[split_name]))
    register_dataset(DatasetInfo(
        name, ("zoo",), "regression", 1, version=1,
        description=f"Small CNN Zoo (Unterthiner et al. 2020), {image_set}: {COMMON}; {rows} rows",
        source=f"{URL}{folder}.tar.xz", licence="CC BY 4.0", files=files),
        SmallCnnZoo, folder=folder, split_name=split_name)


# Row counts per archive as published with the zoo (google-research dnn_predict_accuracy README).
COMMON = "4,970-parameter CNNs (ReLU or tanh), 30,000 runs x 9 checkpoints; NFN protocol (final checkpoints, " \
         "published split file); target: test accuracy"

register_zoo("small-cnn-zoo-cifar10", "grayscale CIFAR-10", "cifar10", "cifar10_split.csv", "270,000")
register_zoo("small-cnn-zoo-svhn", "grayscale SVHN (cropped)", "svhn_cropped", "svhn_split.csv", "269,892")
register_zoo("small-cnn-zoo-mnist", "MNIST", "mnist", "mnist_split.csv", "269,973")
register_zoo("small-cnn-zoo-fashion-mnist", "Fashion-MNIST", "fashion_mnist", "fashion_mnist_split.csv", "270,000")
