"""Published state-dict formats <-> :class:`WeightSpace`.

Two key formats occur in the published INR datasets:

- **DWSNets** (Navon et al. 2023; also read by Neural Graphs and ScaleGMN): ``seq.{i}.weight``
  ``(out, in)`` and ``seq.{i}.bias`` ``(out,)`` for layer ``i``; the Fashion-MNIST files add an
  int ``label`` entry. Read by name; unknown keys are an error.
- **NFN** (Zhou et al. 2023): the SIREN of the ``siren`` package, ``net.{i}.linear.weight`` for
  the sine layers and ``net.{L-1}.weight`` for the output. NFN reads these *by order*
  (weight, bias, weight, bias, ...), which is what :func:`read_ordered` does: it checks the
  alternation of ``*weight`` / ``*bias`` names instead of the exact names.

Files are opened with ``torch.load(..., weights_only=True)``, which refuses arbitrary
objects. Every problem (unreadable or truncated file, missing or unexpected keys, wrong
shapes, non-float or non-finite values) raises :class:`StateDictError` naming the file;
its ``reason`` is the key under which a skip is counted.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from datasets.spec import ArchSpec
from datasets.errors import InvalidItem
from datasets.weights import MixedWeights, WeightSpace

Layers = tuple[list[Tensor], list[Tensor]]
LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile,
               KeyError, AttributeError, TypeError, IndexError, UnicodeDecodeError)


class StateDictError(InvalidItem):
    """A state-dict file that cannot be used; ``reason`` in
    ``unreadable | unsafe | keys | shape | dtype | nonfinite``."""


def load_file(path: Path | str) -> Mapping:
    """The mapping stored in ``path``, loaded with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if isinstance(err, pickle.UnpicklingError) and refused:
            raise StateDictError(path, f"refused to unpickle global {refused.group(1)}: the file holds "
                                       "objects other than tensors, and wsbench never unpickles arbitrary "
                                       "objects", "unsafe") from err
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StateDictError(path, f"cannot be read as a PyTorch state dict (truncated or corrupt?): "
                                   f"{first_line}", "unreadable") from err
    if not isinstance(state, Mapping):
        raise StateDictError(path, f"holds a {type(state).__name__}, not a state dict", "unreadable")
    return state


def dwsnets_keys(spec: ArchSpec) -> list[tuple[str, str]]:
    """``[(seq.{i}.weight, seq.{i}.bias), ...]``."""
    return [(f"seq.{i}.weight", f"seq.{i}.bias") for i in range(len(spec.layers))]


def _check(path: Path | str, spec: ArchSpec, weights: list, biases: list, names: list[tuple[str, str]]) -> Layers:
    out_w, out_b = [], []
    for i, (layer, w, b, (wn, bn)) in enumerate(zip(spec.layers, weights, biases, names)):
        for name, value, shape in ((wn, w, layer.weight_shape), (bn, b, (layer.out_features,))):
            if not isinstance(value, Tensor) or not value.is_floating_point():
                kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
                raise StateDictError(path, f"{name} is {kind}, expected a float tensor", "dtype")
            if tuple(value.shape) != shape:
                raise StateDictError(path, f"{name} has shape {tuple(value.shape)}, expected {shape} "
                                           f"(layer {i} of {spec.describe()})", "shape")
            if not torch.isfinite(value).all():
                raise StateDictError(path, f"{name} holds NaN or infinite values", "nonfinite")
        out_w.append(w.float())
        out_b.append(b.float())
    return out_w, out_b


def read_named(state: Mapping, spec: ArchSpec, path: Path | str, *, ignore: tuple[str, ...] = ("label",)) -> Layers:
    """Weights and biases of one network in the DWSNets format (``seq.{i}.*``); keys in
    ``ignore`` may be present and are not parameters."""
    names = dwsnets_keys(spec)
    wanted = {k for pair in names for k in pair}
    present = set(state) - set(ignore)
    if present != wanted:
        missing, unexpected = sorted(wanted - present), sorted(present - wanted)
        raise StateDictError(path, f"wrong keys for {spec.describe()}: missing {missing}, unexpected "
                                   f"{unexpected}", "keys")
    return _check(path, spec, [state[w] for w, _ in names], [state[b] for _, b in names], names)


def read_ordered(state: Mapping, spec: ArchSpec, path: Path | str, *, ignore: tuple[str, ...] = ("label",)) -> Layers:
    """Weights and biases of one network stored as (weight, bias) pairs in key order, the
    way NFN reads its SIREN files."""
    keys = [k for k in state if k not in ignore]
    if len(keys) != 2 * len(spec.layers):
        raise StateDictError(path, f"{len(keys)} entries, expected {2 * len(spec.layers)} (weight and bias "
                                   f"of {len(spec.layers)} layers): {keys}", "keys")
    names = list(zip(keys[0::2], keys[1::2]))
    for wn, bn in names:
        if not (str(wn).endswith("weight") and str(bn).endswith("bias")):
            raise StateDictError(path, f"keys are not in (weight, bias) order: {keys}", "keys")
    return _check(path, spec, [state[w] for w, _ in names], [state[b] for _, b in names], names)


def stack(spec: ArchSpec, networks: list[Layers]) -> WeightSpace:
    """One :class:`WeightSpace` from per-network layer lists (``(0, ...)`` if empty)."""
    if not networks:
        return WeightSpace(spec, tuple(torch.zeros(0, *layer.weight_shape) for layer in spec.layers),
                           tuple(torch.zeros(0, layer.out_features) for layer in spec.layers))
    n = len(spec.layers)
    return WeightSpace(spec, tuple(torch.stack([net[0][i] for net in networks]) for i in range(n)),
                       tuple(torch.stack([net[1][i] for net in networks]) for i in range(n)))


class ReadNetwork(Protocol):
    """A network read from a file: its architecture and its layers' weights and biases."""

    spec: ArchSpec
    weights: list[Tensor]
    biases: list[Tensor]


def stack_mixed(networks: Sequence[ReadNetwork]) -> MixedWeights:
    """The networks as one batch, one group per architecture, rows in the given order."""
    specs: dict[ArchSpec, list[int]] = {}
    for i, net in enumerate(networks):
        specs.setdefault(net.spec, []).append(i)
    group_index, row_index = torch.empty(len(networks), dtype=torch.long), torch.empty(len(networks), dtype=torch.long)
    groups = []
    for g, (spec, rows) in enumerate(specs.items()):
        groups.append(stack(spec, [(networks[i].weights, networks[i].biases) for i in rows]))
        group_index[rows], row_index[rows] = g, torch.arange(len(rows))
    return MixedWeights(tuple(groups), group_index, row_index)


def dwsnets_state_dict(ws: WeightSpace, row: int) -> OrderedDict[str, Tensor]:
    """Network ``row`` of ``ws`` as a DWSNets state dict (``seq.{i}.weight/bias``)."""
    state: OrderedDict[str, Tensor] = OrderedDict()
    for (wn, bn), (w, b) in zip(dwsnets_keys(ws.spec), ws):
        state[wn] = w[row].detach().clone().contiguous()
        state[bn] = b[row].detach().clone().contiguous()
    return state
