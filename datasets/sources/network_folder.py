"""``network-folder``: a folder of your own networks and a table of their targets, read
without writing a loader (``--dataset-source DIR``).

The folder::

    DIR/targets.csv
    DIR/<any path>.pt | .pth | .safetensors

``targets.csv`` has a header and one row per network: ``file``, the network's path relative
to ``DIR`` (``/``-separated, inside ``DIR``, each file once); ``target``, a number
(regression) or a class ``0..K-1`` (classification); optionally ``split``, one of ``train``,
``val``, ``test``. Other columns and unlisted files are ignored. Without a ``split`` column,
the rows are ordered by the sha256 of ``split_seed`` and their ``file``, and the first
``round(test_fraction * rows)`` are the test split, the next ``round(val_fraction * rows)``
the validation split, the rest the training split: a network keeps its split however the
table is ordered. Within a split, networks keep the table's order; ``limit`` takes the
first ones of each split.

A network is a flat state dict of float tensors: ``torch.save(model.state_dict())`` (``.pt``
or ``.pth``, read with ``torch.load(weights_only=True)``, which refuses, unread, a file that
holds any other object) or a safetensors file. Its architecture is inferred from the file:

- the keys are ``(<name>weight, <name>bias)`` pairs in the state dict's order. A ``.pt`` keeps
  the module's order; safetensors stores keys sorted, so there conv layers come before linear
  ones and within each kind layers are ordered by name, numbers compared as numbers
  (``layers.2`` before ``layers.10``);
- a 4-D weight ``(out, in, kh, kw)`` is a conv layer, a 2-D weight ``(out, in)`` a linear
  layer, and each layer takes what the one before gives;
- a linear layer after conv layers takes the last conv's channels: global average pooling
  joins them (``datasets.spec``);
- what a state dict does not record comes from the dataset options, the same for every
  network: ``activation`` after every layer but the last (``omega`` for ``sine``), and the
  conv layers' ``stride`` and ``padding``.

Networks of different architectures make a heterogeneous dataset (a ``MixedWeights``, one
group per architecture). Refused, with one line naming the file, the key and what is valid
(an :class:`~datasets.errors.InvalidItem`): a value that is not a tensor (a whole checkpoint,
a nested dict), a key that is not a weight or its bias (batch-norm statistics), a weight
without its bias, a weight that is neither 2-D nor 4-D (normalisation layers, ``Conv1d``), a
layer that does not chain, a flatten head (a linear layer after convs that takes more than
their channels), non-float or non-finite values; in ``targets.csv``, a row without a file or
a valid target or split (naming the line). A listed file that is absent, or no
``targets.csv``, is :class:`~datasets.errors.DataNotFound`. With ``--skip-invalid``, bad rows,
networks and absent files are skipped and counted in the card (``skipped``).

The registration decides the task: ``network-folder`` is a regression in the ``zoo`` suite;
:func:`register_network_folder` registers others (classification, say) from a plugin.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import Tensor

from datasets.dataset_table import DatasetEntry, DatasetInfo, register_dataset
from datasets.errors import ConfigError, DataNotFound, InvalidData, InvalidItem
from datasets.files import is_inside
from datasets.io.state_dicts import LOAD_ERRORS, StateDictError, load_file, read_ordered, stack_mixed
from datasets.options import Option
from datasets.progress import progress
from datasets.source import Built, DatasetSource
from datasets.spec import ACTIVATIONS, ArchSpec, Layer
from datasets.validation import MIN_NETWORKS, Skipper
from datasets.weight_dataset import SPLITS, Split

TARGETS = "targets.csv"
COLUMNS = ("file", "target")
SPLIT_OPTIONS = ("split_seed", "val_fraction", "test_fraction")
TORCH_SUFFIXES = (".pt", ".pth")
SAFETENSORS = ".safetensors"
LAYERS = "(weight, bias) pairs of linear (2-D weight) or conv (4-D weight) layers, in order"
SOURCE = ("your own networks: pass the folder holding them and targets.csv with --dataset-source DIR "
          "(format: datasets/sources/network_folder.py)")
LICENCE = "that of your networks"
OPTIONS = {
    "activation": Option("relu", "activation after every layer but the last (a state dict does not record it)",
                         choices=ACTIVATIONS),
    "omega": Option(30.0, "frequency of the sine activation, sin(omega * z) (SIREN's 30)", low=1e-3, high=1e4),
    "stride": Option(1, "stride of every conv layer", low=1, high=64),
    "padding": Option(0, "zero padding of every conv layer (PyTorch's default 0)", low=0, high=64),
    "split_seed": Option(0, "seed of the split, without a split column in targets.csv", low=0, high=2**31 - 1),
    "val_fraction": Option(0.1, "validation share of the rows, without a split column", low=0.01, high=0.45),
    "test_fraction": Option(0.2, "test share of the rows, without a split column", low=0.01, high=0.45),
}


@dataclass(frozen=True)
class Row:
    """One row of ``targets.csv`` as text; ``line`` is its line in the file."""

    line: int
    file: str
    target: str
    split: str


@dataclass(frozen=True)
class Entry:
    """One checked row: the network's path relative to the folder and its target."""

    line: int
    file: str
    target: float | int


@dataclass(frozen=True)
class FolderNetwork:
    """One network read from the folder (what ``stack_mixed`` batches)."""

    spec: ArchSpec
    weights: list[Tensor]
    biases: list[Tensor]


# ------------------------------------------------------------------ reading a network


def natural(text: str) -> tuple:
    """Sort key comparing the numbers in ``text`` as numbers (``layers.2`` < ``layers.10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def safetensors_order(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The keys of a safetensors file, which keeps no order, in layer order: conv layers
    first, then by name (numbers as numbers), each weight before the rest of its layer."""
    def rank(key: str) -> tuple:
        prefix = key.rpartition(".")[0]
        weight = state.get(f"{prefix}.weight" if prefix else "weight")
        return (getattr(weight, "ndim", 0) != 4, natural(prefix), not key.endswith("weight"), key)

    return {key: state[key] for key in sorted(state, key=rank)}


def read_state(path: Path) -> dict[str, Tensor]:
    """The flat state dict in ``path``, keys in layer order."""
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        state = dict(load_file(path))
    elif suffix == SAFETENSORS:
        try:
            state = safetensors_order(load_safetensors(path))
        except (SafetensorError, *LOAD_ERRORS) as err:
            raise StateDictError(path, f"cannot be read as a safetensors file (truncated or corrupt?): {err}",
                                 "unreadable") from err
    else:
        raise InvalidItem(path, f"unsupported file type {path.suffix!r}; valid: .pt or .pth (torch.save of a "
                                f"state dict) or .safetensors", "file type")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise StateDictError(path, f"entry {key!r} holds a {type(value).__name__}, not a named tensor; valid: "
                                       "a flat state dict of tensors (model.state_dict(), not a checkpoint that "
                                       "holds one)", "keys")
    if not state:
        raise StateDictError(path, f"holds no tensors; valid: {LAYERS}", "keys")
    return state


def layer_keys(keys: list[str], path: Path) -> Iterator[tuple[str, str]]:
    """``(weight key, bias key)`` of every layer in turn, checking that each weight is
    followed by its own bias (lazily: a caller checking each layer reports the first
    problem in key order)."""
    for at in range(0, len(keys), 2):
        weight = keys[at]
        if not weight.endswith("weight"):
            raise StateDictError(path, f"{weight} is not a layer's weight; valid: {LAYERS} (no normalisation "
                                       "statistics or other buffers)", "keys")
        bias = weight[:-len("weight")] + "bias"
        found = keys[at + 1] if at + 1 < len(keys) else "nothing"
        if found != bias:
            raise StateDictError(path, f"{weight} is followed by {found}, not its bias {bias}; valid: {LAYERS} "
                                       "(every layer has a bias)", "keys")
        yield weight, bias


def infer_layer(path: Path, key: str, weight: Tensor, previous: tuple[str, Layer] | None, config: dict) -> Layer:
    """The layer of one weight, checked against the layer before it (``(key, layer)``)."""
    shape = tuple(weight.shape)
    if weight.ndim == 2:
        layer = Layer("linear", shape[0], shape[1])
    elif weight.ndim == 4:
        layer = Layer("conv", shape[0], shape[1], shape[2:], config["stride"], config["padding"])
    else:
        raise StateDictError(path, f"{key} is a {weight.ndim}-D weight of shape {shape}; valid: a 2-D linear or "
                                   "4-D conv weight (no normalisation layers, no 1-D or 3-D convolutions)",
                             "architecture")
    if previous is None:
        return layer
    before, prior = previous
    if layer.kind == "conv" and prior.kind == "linear":
        raise StateDictError(path, f"{key} is a conv layer after the linear layer {before}; valid: conv layers, "
                                   "then linear layers", "architecture")
    if layer.in_features == prior.out_features:
        return layer
    if layer.kind == "linear" and prior.kind == "conv":
        raise StateDictError(path, f"{key} takes {layer.in_features} inputs but the last conv layer {before} gives "
                                   f"{prior.out_features} channels; valid: global average pooling before the first "
                                   "linear layer (in_features = channels), not a flatten head", "architecture")
    raise StateDictError(path, f"{key} takes {layer.in_features} inputs but {before} gives {prior.out_features}; "
                               "valid: layers that chain (out_features of one = in_features of the next)",
                         "architecture")


def layout_name(layers: tuple[Layer, ...], config: dict) -> str:
    """The architecture in full, e.g. ``conv3x3 1-8 | gap | linear 8-10 (relu; stride 1, padding 1)``."""
    parts = []
    for i, layer in enumerate(layers):
        if layer.kind == "conv":
            parts.append(f"conv{layer.kernel[0]}x{layer.kernel[1]} {layer.in_features}-{layer.out_features}")
            continue
        if i and layers[i - 1].kind == "conv":
            parts.append("gap")
        parts.append(f"linear {layer.in_features}-{layer.out_features}")
    conv = f"; stride {config['stride']}, padding {config['padding']}" if layers[0].kind == "conv" else ""
    return f"{' | '.join(parts)} ({config['activation'] if len(layers) > 1 else 'linear'}{conv})"


def infer_spec(state: Mapping[str, Tensor], path: Path, config: dict) -> ArchSpec:
    """The architecture of one state dict (module docstring), with the options' activation,
    stride and padding."""
    layers, previous = [], None
    for weight, _ in layer_keys(list(state), path):
        layer = infer_layer(path, weight, state[weight], previous, config)
        layers.append(layer)
        previous = (weight, layer)
    omega = config["omega"] if config["activation"] == "sine" else 1.0
    hidden = [replace(layer, activation=config["activation"], omega=omega) for layer in layers[:-1]]
    final = (*hidden, layers[-1])
    return ArchSpec(final, name=layout_name(final, config))


def read_network(path: Path, config: dict) -> FolderNetwork:
    """One network file: its inferred architecture and its float32 weights and biases
    (checked for dtype, bias shapes and finite values by ``read_ordered``)."""
    state = read_state(path)
    spec = infer_spec(state, path, config)
    weights, biases = read_ordered(state, spec, path, ignore=())
    return FolderNetwork(spec, weights, biases)


# ------------------------------------------------------------------ reading the table


def read_table(path: Path) -> tuple[list[Row], bool]:
    """The rows of ``targets.csv`` and whether it has a ``split`` column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = [Row(reader.line_num, *((record.get(c) or "").strip() for c in ("file", "target", "split")))
                    for record in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InvalidData(f"{path}: not a readable CSV table ({err})") from None
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise InvalidData(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}); "
                          "valid: a CSV table with columns file, target and optionally split")
    return rows, "split" in columns


def parse_target(text: str, task: str, classes: int) -> float | int:
    """The target in ``text``; ``ValueError`` saying what is wrong and what is valid."""
    if not text:
        raise ValueError("no target; valid: a number" + (f" (a class 0..{classes - 1})" if task == "classification"
                                                          else ""))
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"target {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"target {text!r} is not finite; valid: a finite number")
    if task != "classification":
        return value
    if not value.is_integer() or not 0 <= value < classes:
        raise ValueError(f"target {text!r} is not a class; valid: an integer 0..{classes - 1}")
    return int(value)


def seeded_splits(rows: list[Row], seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    """The split of every row: rows ordered by sha256 of the seed and their file; the first
    ``test_fraction`` test, the next ``val_fraction`` validation, the rest training."""
    order = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{seed}:{rows[i].file}".encode()).hexdigest())
    n_test, n_val = round(test_fraction * len(rows)), round(val_fraction * len(rows))
    splits = ["train"] * len(rows)
    for rank, i in enumerate(order[:n_test + n_val]):
        splits[i] = "test" if rank < n_test else "val"
    return splits


# ------------------------------------------------------------------ the source


class NetworkFolder(DatasetSource):
    """A folder of state dicts and ``targets.csv``; see the module docstring."""

    options = OPTIONS

    @property
    def csv_path(self) -> Path:
        return self.source_dir / TARGETS

    @cached_property
    def table(self) -> tuple[list[Row], bool]:
        """The rows of ``targets.csv`` and whether it has a split column."""
        if not self.csv_path.is_file():
            raise DataNotFound(f"{TARGETS} of {self.info.name}", "or write the networks and a targets.csv (columns "
                               "file, target, optional split) into one folder", [self.csv_path])
        rows, has_split = read_table(self.csv_path)
        given = sorted(set(SPLIT_OPTIONS) & set(self.load_options.params))
        if has_split and given:
            raise ConfigError(f"{self.info.name} option(s) {', '.join(given)}: {self.csv_path} has a split column, "
                              "which decides the split; valid: drop the option(s) or the column")
        return rows, has_split

    def split_rule(self) -> str:
        """How the split is made, for the card."""
        if self.table[1]:
            return f"the split column of {TARGETS}"
        c = self.config
        return (f"seeded: rows ordered by sha256 of split_seed={c['split_seed']} and the file; test "
                f"{c['test_fraction']:g}, val {c['val_fraction']:g}, train the rest")

    def entry(self, row: Row, split: str, seen: dict[str, int]) -> Entry:
        """A row checked (file, target, split, not listed before), or ``InvalidItem``."""
        where = f"line {row.line} ({row.file or 'no file'})"

        def refuse(problem: str, reason: str) -> InvalidItem:
            return InvalidItem(self.csv_path, f"{where}: {problem}", reason)

        if not row.file or not is_inside(row.file):
            raise refuse("file must be a path inside the folder, relative to it", "file")
        if split not in SPLITS:
            raise refuse(f"split {split!r} is not valid; valid: {', '.join(SPLITS)}", "split")
        try:
            target = parse_target(row.target, self.info.task, self.info.out_dim)
        except ValueError as err:
            raise refuse(str(err), "target") from None
        name = os.path.normpath(row.file)
        if name in seen:
            raise refuse(f"the file is listed already on line {seen[name]}; valid: each network once", "duplicate")
        seen[name] = row.line
        return Entry(row.line, row.file, target)

    @cached_property
    def listing(self) -> tuple[dict[str, list[Entry]], Skipper]:
        """The checked rows of every split (at most ``limit`` each) and the skipper that
        counted the refused ones (and goes on counting while the networks are read)."""
        rows, has_split = self.table
        c = self.config
        splits = ([row.split for row in rows] if has_split else
                  seeded_splits(rows, c["split_seed"], c["val_fraction"], c["test_fraction"]))
        skipper, seen = Skipper(self.load_options.skip_invalid), {}
        entries: dict[str, list[Entry]] = {name: [] for name in SPLITS}
        for row, split in zip(rows, splits):
            entry = skipper.attempt(self.entry, row, split, seen)
            if entry is not None:
                entries[split].append(entry)
        limit = self.load_options.limit
        return {name: kept[:limit] if limit else kept for name, kept in entries.items()}, skipper

    def raw_paths(self) -> list[Path]:
        listed = [(e, self.source_dir / e.file) for rows in self.listing[0].values() for e in rows]
        missing = [(e, path) for e, path in listed if not path.is_file()]
        if missing and not self.load_options.skip_invalid:
            first = missing[0][0]
            raise DataNotFound(f"{len(missing):,} of the {len(listed):,} network files listed in {self.csv_path} "
                               f"(first: {first.file}, line {first.line})",
                               "them or remove their rows (or pass --skip-invalid to skip them)",
                               [path for _, path in missing[:3]])
        return [self.csv_path, *(path for _, path in listed if path.is_file())]

    def recipe(self) -> dict:
        return {"task": self.info.task, "out_dim": self.info.out_dim}

    def read(self, entry: Entry) -> FolderNetwork:
        """The network of one row; ``InvalidItem`` if it is absent or cannot be used."""
        path = self.source_dir / entry.file
        if not path.is_file():
            raise InvalidItem(path, f"listed in {TARGETS} (line {entry.line}) but absent", "missing")
        return read_network(path, self.config)

    def split(self, name: str, networks: list[FolderNetwork], used: list[Entry], homogeneous: bool) -> Split:
        """One split from its networks and their rows (``used``)."""
        if len(networks) < MIN_NETWORKS[name]:
            given, skipped = len(self.listing[0][name]), self.listing[1].summary() or "none"
            raise InvalidData(f"{self.info.name}, {name} split: {len(networks)} usable network(s) of the {given} "
                              f"row(s) of {self.csv_path} it was given; at least {MIN_NETWORKS[name]} are needed "
                              f"(split: {self.split_rule()}; skipped: {skipped})")
        weights = stack_mixed(networks)
        dtype = torch.long if self.info.task == "classification" else torch.float32
        targets = torch.tensor([e.target for e in used], dtype=dtype)
        return Split(weights.groups[0] if homogeneous else weights, targets,
                     {"line": torch.tensor([e.line for e in used])})

    def read_splits(self) -> dict[str, tuple[list[FolderNetwork], list[Entry]]]:
        """Per split, the networks that could be read and their rows."""
        entries, skipper = self.listing
        bar = progress(sum(map(len, entries.values())), f"{self.info.name}: reading networks", "networks",
                       self.progress)
        read = {}
        for name in SPLITS:
            networks, used = [], []
            for entry in entries[name]:
                network = skipper.attempt(self.read, entry)
                bar.update()
                if network is not None:
                    networks.append(network)
                    used.append(entry)
            read[name] = (networks, used)
        bar.close()
        return read

    def card(self, read: dict[str, tuple[list[FolderNetwork], list[Entry]]]) -> dict:
        """This source's card fields: target, split rule, files, inferred architectures, skips."""
        pairs = [(network, entry) for networks, used in read.values() for network, entry in zip(networks, used)]
        counts = Counter(network.spec for network, _ in pairs)
        example = {}
        for network, entry in pairs:
            example.setdefault(network.spec, entry.file)
        return {"target": f"the target column of {TARGETS} ({self.info.task})",
                "split": self.split_rule(),
                "files": {"rows": len(self.table[0]), "read": len(pairs),
                          "types": dict(sorted(Counter(Path(e.file).suffix.lower() for _, e in pairs).items()))},
                "inferred_architectures": {spec.name: {"networks": n, "example": example[spec]}
                                           for spec, n in counts.items()},
                "extras": f"line: the network's line in {TARGETS}",
                "skipped": self.listing[1].summary()}

    def process(self) -> Built:
        read = self.read_splits()
        homogeneous = len({n.spec for networks, _ in read.values() for n in networks}) == 1
        splits = {name: self.split(name, *read[name], homogeneous) for name in SPLITS}
        return Built(splits["train"], splits["val"], splits["test"], self.card(read))


def register_network_folder(name: str, *, task: str = "regression", classes: int | None = None,
                            suites: tuple[str, ...] | None = None,
                            description: str = "networks from a folder of state dicts and its targets.csv"
                            ) -> DatasetEntry:
    """Register ``name`` as another folder of networks (from a plugin module): a regression
    (``classes`` None; suites ``("zoo",)`` by default) or a classification into ``classes``
    classes (suites ``("inr",)`` by default). Read it with ``--dataset-source DIR``."""
    if task == "classification":
        if classes is None or classes < 2:
            raise ConfigError(f"register_network_folder({name!r}): classes={classes!r}; valid: an integer >= 2 "
                              "for classification")
        out_dim, default_suites = classes, ("inr",)
    elif task == "regression":
        if classes is not None:
            raise ConfigError(f"register_network_folder({name!r}): classes={classes!r} with task='regression'; "
                              "valid: no classes (None)")
        out_dim, default_suites = 1, ("zoo",)
    else:
        raise ConfigError(f"register_network_folder({name!r}): task={task!r}; valid: classification, regression")
    info = DatasetInfo(name, tuple(suites or default_suites), task, out_dim, description, SOURCE, LICENCE)
    return register_dataset(info, NetworkFolder, module=sys._getframe(1).f_globals.get("__name__", "__main__"))


register_network_folder(
    "network-folder",
    description="your own zoo: a folder of state dicts (.pt, .pth, .safetensors; MLPs or CNNs, architectures "
                "inferred per file) and targets.csv (file, target, optional split); target: a number")
