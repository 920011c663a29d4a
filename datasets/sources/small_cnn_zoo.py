"""``small-cnn-zoo-{cifar10,svhn,mnist,fashion-mnist}``: the Small CNN Zoo (Unterthiner et al. 2020).

About 30,000 trained CNNs per image dataset, each ``3 x Conv2D(16, 3x3, stride 2, 'valid') +
activation, global average pool, Dense(10)`` on grayscale inputs in [-1, 1] (4,970
parameters), with different hyperparameters. Files (``<dataset>.tar.xz`` from the GCS bucket
in :data:`URL`): ``weights.npy`` (rows x 4970 float32; 9 checkpoints per run),
``metrics.csv.gz`` (one row per checkpoint: ``step``, ``test_accuracy``,
``config.activation``, ...), and ``layout.csv`` (``varname,start_idx,end_idx,shape``: each
layer's bias then kernel; kernels in TF layout ``(h, w, in, out)``, dense ``(in, out)``).
The stride (2) is not in the layout; it is the zoo's fixed architecture.

Protocol of NFN (Zhou et al. 2023, ``ZooDataset``), also used by Neural Graphs: permute the
rows by the published split file (``<dataset>_split.csv`` in NFN's
``experiments/predict_gen_data_splits``; its first line is a stray header "0" which
``pd.read_csv(header=None)`` keeps, so row 0 appears twice: reproduced here), keep the
final checkpoints (``step == 86``) and rows with finite weights, then the last 50% is the
test split and the first 50%, shuffled with ``random.Random(0)``, gives 80% train / 20%
val. Target: ``test_accuracy`` (regression). The networks differ in activation
(``config.activation``: relu or tanh), so the zoo is heterogeneous: one architecture per
activation, batched as a :class:`MixedWeights`; option ``activation=relu`` keeps one.
Conversion to our layout: conv kernel ``(h, w, in, out) -> (out, in, h, w)``, dense
``(in, out) -> (out, in)`` (TF convolution is a cross-correlation like torch's).
"""

from __future__ import annotations

import ast
import gzip
import random
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datasets.cache import cached
from datasets.card import summary
from datasets.collection import LoadOptions, Split, WeightDataset
from datasets.registry import register_dataset
from datasets.sources.digits_inr import parse_params
from datasets.spec import ArchSpec, Layer
from datasets.validation import DataNotFound, InvalidItem, Skipper
from datasets.weights import MixedWeights, WeightSpace

URL = "https://storage.cloud.google.com/gresearch/smallcnnzoo-dataset/"
SPLITS_URL = "https://github.com/AllanYangZhou/nfn/tree/main/experiments/predict_gen_data_splits"
FINAL_STEP = 86
STRIDE = 2
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "linear": "identity"}
METRIC_COLUMNS = ("step", "test_accuracy", "config.activation")
DEFAULTS = {"split_file": "", "activation": "all"}
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class Zoo:
    name: str
    folder: str       # folder inside the archive
    split_name: str   # NFN split file


ZOOS = {
    "small-cnn-zoo-cifar10": Zoo("small-cnn-zoo-cifar10", "cifar10", "cifar10_split.csv"),
    "small-cnn-zoo-svhn": Zoo("small-cnn-zoo-svhn", "svhn_cropped", "svhn_split.csv"),
    "small-cnn-zoo-mnist": Zoo("small-cnn-zoo-mnist", "mnist", "mnist_split.csv"),
    "small-cnn-zoo-fashion-mnist": Zoo("small-cnn-zoo-fashion-mnist", "fashion_mnist", "fashion_mnist_split.csv"),
}


@dataclass(frozen=True)
class LayerSlices:
    """Where one layer's kernel and bias sit in a flat row, and their TF shapes."""

    kernel: tuple[int, int, tuple[int, ...]]
    bias: tuple[int, int, tuple[int, ...]]


# ---------------------------------------------------------------- files


def read_layout(path: Path, width: int) -> list[LayerSlices]:
    """Parse ``layout.csv``: per layer (in order of appearance) its kernel and bias slices.
    Slices must match their shapes and tile ``[0, width)`` exactly."""
    try:
        table = pd.read_csv(path)
        rows = [(str(r.varname), int(r.start_idx), int(r.end_idx), ast.literal_eval(str(r.shape)))
                for r in table.itertuples()]
    except (OSError, ValueError, SyntaxError, AttributeError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: not a layout table with columns varname,start_idx,end_idx,shape ({err})") from err
    layers: dict[str, dict[str, tuple]] = {}
    for name, start, end, shape in rows:
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(isinstance(d, int) and d > 0 for d in shape) or end - start != int(np.prod(shape)):
            raise ValueError(f"{path}: {name} spans [{start}, {end}) which does not hold shape {shape}")
        layer, _, kind = name.rpartition("/")
        kind = kind.split(":")[0]
        if kind not in ("kernel", "bias"):
            raise ValueError(f"{path}: variable {name} is neither a kernel nor a bias")
        layers.setdefault(layer, {})[kind] = (start, end, shape)
    covered = sorted((s, e) for parts in layers.values() for s, e, _ in parts.values())
    if [s for s, _ in covered] != [0] + [e for _, e in covered[:-1]] or (covered and covered[-1][1] != width):
        raise ValueError(f"{path}: the slices do not tile the {width} columns of weights.npy exactly")
    out = []
    for layer, parts in layers.items():
        if set(parts) != {"kernel", "bias"}:
            raise ValueError(f"{path}: layer {layer} needs one kernel and one bias, has {sorted(parts)}")
        out.append(LayerSlices(parts["kernel"], parts["bias"]))
    return out


def architecture(layout: list[LayerSlices], activation: str, path: Path) -> ArchSpec:
    """Our spec of the zoo CNN with ``activation`` after every conv layer."""
    layers = []
    for slices in layout:
        shape = slices.kernel[2]
        if len(shape) == 4:
            h, w, c_in, c_out = shape
            layers.append(Layer("conv", c_out, c_in, (h, w), STRIDE, 0, activation))
        elif len(shape) == 2:
            layers.append(Layer("linear", shape[1], shape[0]))
        else:
            raise ValueError(f"{path}: kernel of shape {shape} is neither conv (h, w, in, out) nor dense (in, out)")
        if slices.bias[2] != (layers[-1].out_features,):
            raise ValueError(f"{path}: bias of shape {slices.bias[2]} does not fit kernel {shape}")
    try:
        return ArchSpec(tuple(layers), name=f"small-cnn {activation}")
    except ValueError as err:
        raise ValueError(f"{path}: layers do not chain ({err})") from err


def to_weight_space(spec: ArchSpec, layout: list[LayerSlices], flat: np.ndarray) -> WeightSpace:
    """Rows of flat TF-layout parameters -> :class:`WeightSpace` (torch layout)."""
    weights, biases = [], []
    for slices in layout:
        start, end, shape = slices.kernel
        kernel = flat[:, start:end].reshape(len(flat), *shape)
        kernel = kernel.transpose(0, 4, 3, 1, 2) if len(shape) == 4 else kernel.transpose(0, 2, 1)
        weights.append(torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32)))
        start, end, _ = slices.bias
        biases.append(torch.from_numpy(np.ascontiguousarray(flat[:, start:end], dtype=np.float32)))
    return WeightSpace(spec, tuple(weights), tuple(biases))


def read_split_file(path: Path, rows: int) -> np.ndarray:
    """The published row permutation, every line kept (the stray "0" header included)."""
    try:
        lines = path.read_text().split()
        order = np.array([int(x) for x in lines], dtype=np.int64)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a list of row numbers ({err})") from err
    if len(order) == 0 or order.min() < 0 or order.max() >= rows:
        raise ValueError(f"{path}: row numbers must lie in [0, {rows}) (weights.npy has {rows} rows)")
    return order


def read_metrics(path: Path, rows: int) -> pd.DataFrame:
    try:
        metrics = pd.read_csv(path, compression="gzip", usecols=lambda c: c in METRIC_COLUMNS)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError, ValueError,
            pd.errors.ParserError) as err:
        raise ValueError(f"{path}: cannot read the metrics table ({err}); truncated or corrupt?") from err
    missing = set(METRIC_COLUMNS) - set(metrics.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    if len(metrics) != rows:
        raise ValueError(f"{path}: {len(metrics)} rows but weights.npy has {rows}")
    return metrics


# ---------------------------------------------------------------- protocol


def protocol_rows(weights: np.ndarray, metrics: pd.DataFrame, order: np.ndarray, skipper: Skipper,
                  metrics_path: Path) -> np.ndarray:
    """Row numbers in NFN order: permuted, final step only, finite weights; rows with a
    non-finite accuracy or an unknown activation are errors unless skipped."""
    rows = order[metrics["step"].to_numpy()[order] == FINAL_STEP]
    finite = np.concatenate([np.isfinite(weights[rows[i:i + CHUNK_ROWS]]).all(axis=1)
                             for i in range(0, len(rows), CHUNK_ROWS)] or [np.zeros(0, bool)])
    skipper.record("non-finite weights (dropped by the protocol)", int((~finite).sum()))
    rows = rows[finite]
    accuracy = metrics["test_accuracy"].to_numpy(dtype=np.float64)[rows]
    activation = metrics["config.activation"].astype(str).to_numpy()[rows]
    keep = np.ones(len(rows), dtype=bool)
    for i in np.flatnonzero(~np.isfinite(accuracy) | ~np.isin(activation, list(ACTIVATIONS))):
        problem = (f"row {rows[i]}: test_accuracy {accuracy[i]} is not finite" if not np.isfinite(accuracy[i])
                   else f"row {rows[i]}: activation {activation[i]!r} is not one of {sorted(ACTIVATIONS)}")
        reason = "non-finite target" if not np.isfinite(accuracy[i]) else "unsupported activation"
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


# ---------------------------------------------------------------- loader


def find_files(source: Path, zoo: Zoo, split_file: str) -> tuple[Path, Path]:
    """The folder with weights.npy / metrics.csv.gz / layout.csv, and the split file."""
    candidates = [source, source / zoo.folder]
    folder = next((d for d in candidates if (d / "weights.npy").is_file()), None)
    if folder is None:
        raise DataNotFound(f"{zoo.name}: weights.npy, metrics.csv.gz, layout.csv",
                           f"{URL}{zoo.folder}.tar.xz and extract it", candidates)
    for name in ("metrics.csv.gz", "layout.csv"):
        if not (folder / name).is_file():
            raise DataNotFound(f"{zoo.name}: {name}", f"{URL}{zoo.folder}.tar.xz and extract it", [folder])
    places = [Path(split_file)] if split_file else [folder / zoo.split_name, folder.parent / zoo.split_name]
    split = next((p for p in places if p.is_file()), None)
    if split is None:
        raise DataNotFound(f"{zoo.name}: split file {zoo.split_name}",
                           f"it from {SPLITS_URL} (or give --dataset-option split_file=PATH)", places)
    return folder, split


def read(zoo: Zoo, folder: Path, split_path: Path, activation: str, opts: LoadOptions) -> WeightDataset:
    """Apply the protocol and convert the selected networks (no caching)."""
    weights_path = folder / "weights.npy"
    try:
        weights = np.load(weights_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{weights_path}: cannot read as a .npy array ({err}); truncated or corrupt?") from err
    if weights.ndim != 2 or weights.dtype != np.float32:
        raise ValueError(f"{weights_path}: expected a 2-D float32 array, got {weights.dtype} {weights.shape}")
    layout = read_layout(folder / "layout.csv", weights.shape[1])
    metrics = read_metrics(folder / "metrics.csv.gz", len(weights))
    skipper = Skipper(opts.skip_invalid)
    rows = protocol_rows(weights, metrics, read_split_file(split_path, len(weights)), skipper,
                         folder / "metrics.csv.gz")
    acts = metrics["config.activation"].astype(str).to_numpy()[rows]
    if activation != "all":
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be 'all' or one of {sorted(ACTIVATIONS)}, got {activation!r}")
        skipper.record(f"activation is not {activation} (option)", int((acts != activation).sum()))
        rows, acts = rows[acts == activation], acts[acts == activation]
    positions = split_positions(len(rows))
    if opts.limit:
        positions = {k: v[:opts.limit] for k, v in positions.items()}
    kinds = sorted(set(acts.tolist())) or ["relu"]
    specs = {a: architecture(layout, ACTIVATIONS[a], folder / "layout.csv") for a in kinds}
    accuracy = metrics["test_accuracy"].to_numpy(dtype=np.float32)
    splits = {}
    for name, pos in positions.items():
        chosen, split_acts = rows[pos], acts[pos]
        flat = np.asarray(weights[chosen]) if len(chosen) else np.zeros((0, weights.shape[1]), np.float32)
        present = [a for a in kinds if (split_acts == a).any()] or kinds[:1]
        groups = [to_weight_space(specs[a], layout, flat[split_acts == a]) for a in present]
        batch = groups[0] if len(kinds) == 1 else _mixed(groups, split_acts, present)
        splits[name] = Split(batch, torch.from_numpy(accuracy[chosen].copy()),
                             {"row": torch.from_numpy(chosen.copy())})
    card = {
        "source": f"Small CNN Zoo (Unterthiner et al. 2020), {URL}{zoo.folder}.tar.xz; read from {folder}",
        "licence": "CC BY 4.0",
        "split_file": str(split_path),
        "protocol": "NFN: permute by split file (stray '0' header kept), step == 86, finite weights; "
                    "last 50% test, first 50% shuffled with random.Random(0) into 80% train / 20% val",
        "networks": {k: len(v) for k, v in splits.items()},
        "architectures": [{"architecture": specs[a].describe(), "parameters": specs[a].num_params,
                           "networks": int((acts == a).sum())} for a in kinds],
        "activations": {a: int((acts == a).sum()) for a in kinds},
        "target": "test_accuracy (regression)",
        "accuracy": {k: summary(v.targets) for k, v in splits.items() if len(v)},
        "skipped": skipper.summary(),
    }
    return WeightDataset(zoo.name, "regression", 1, splits["train"], splits["val"], splits["test"], card)


def _mixed(groups: list[WeightSpace], acts: np.ndarray, kinds: list[str]) -> MixedWeights:
    """Groups per activation, rows in the split's order."""
    group_index = torch.from_numpy(np.searchsorted(kinds, acts)).long()
    row_index = torch.empty_like(group_index)
    for g in range(len(kinds)):
        mask = group_index == g
        row_index[mask] = torch.arange(int(mask.sum()))
    return MixedWeights(tuple(groups), group_index, row_index)


def load(zoo: Zoo, opts: LoadOptions) -> WeightDataset:
    """Read (first time) or load the cached zoo. Source defaults to
    ``root/raw/small-cnn-zoo/<archive folder>``. Options: ``split_file=PATH`` (default: the
    NFN file in the source or its parent), ``activation=all|relu|tanh``."""
    config = parse_params(opts.params, DEFAULTS)
    source = Path(opts.source) if opts.source else opts.root / "raw" / "small-cnn-zoo" / zoo.folder
    folder, split_path = find_files(source, zoo, config["split_file"])
    stamps = [[p.name, p.stat().st_size, p.stat().st_mtime_ns]
              for p in (folder / "weights.npy", folder / "metrics.csv.gz", folder / "layout.csv", split_path)]
    recipe = {"dataset": zoo.name, "source": str(folder.resolve()), "files": stamps,
              "activation": config["activation"], "limit": opts.limit, "skip_invalid": opts.skip_invalid}
    directory = opts.root / zoo.name / (f"limit{opts.limit}" if opts.limit else "full") / config["activation"]
    return cached(directory, recipe, lambda: read(zoo, folder, split_path, config["activation"], opts))


for _zoo, _images in zip(ZOOS.values(), ("CIFAR-10 (grayscale)", "SVHN (grayscale)", "MNIST", "Fashion-MNIST")):
    register_dataset(_zoo.name, suite="zoo", description=f"Small CNN Zoo, {_images}")(partial(load, _zoo))
