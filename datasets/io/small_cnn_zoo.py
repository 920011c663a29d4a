"""Readers of the Small CNN Zoo's published files (Unterthiner et al. 2020) and of NFN's
split files, and the conversion of the zoo's TensorFlow layout to ours.

An archive ``<dataset>.tar.xz`` holds ``weights.npy`` (rows x 4970 float32, one row per
checkpoint), ``metrics.csv.gz`` (one row per checkpoint: ``step``, ``test_accuracy``,
``config.activation`` and more) and ``layout.csv`` (``varname,start_idx,end_idx,shape``:
where each variable sits in a row; kernels in TF layout ``(h, w, in, out)`` for
convolutions, ``(in, out)`` for dense layers). NFN (Zhou et al. 2023) publishes a row
permutation per zoo, ``<dataset>_split.csv``: one row number per line.

Every reader checks what it reads and raises :class:`~datasets.errors.InvalidData` naming
the file, the problem and what is valid. ``weights.npy`` is read through a memory map
after its header has been checked; a file holding Python objects is refused, never
unpickled.
"""

from __future__ import annotations

import ast
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datasets.errors import InvalidData
from datasets.spec import ArchSpec, Layer
from datasets.weights import WeightSpace

STRIDE = 2  # the zoo's fixed stride; layout.csv does not record it
METRIC_COLUMNS = ("step", "test_accuracy", "config.activation")
LAYOUT_COLUMNS = ("varname", "start_idx", "end_idx", "shape")
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}

Slice = tuple[int, int, tuple[int, ...]]  # start, end, TF shape


@dataclass(frozen=True)
class LayerSlices:
    """Where one layer's kernel and bias sit in a flat row, and their TF shapes."""

    kernel: Slice
    bias: Slice


def read_weights(path: Path) -> np.ndarray:
    """``weights.npy`` as a read-only memory map of shape ``(rows, parameters)``. The header
    is checked first: a 2-D float32 array, no Python objects, and a file long enough to
    hold every row."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in NPY_HEADERS:
                raise InvalidData(f"{path}: .npy format version {version} is not supported; valid: 1.0, 2.0")
            shape, _, dtype = NPY_HEADERS[version](f)
            offset = f.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as err:
        raise InvalidData(f"{path}: not a .npy array ({err}); truncated or corrupt?") from err
    if dtype.hasobject:
        raise InvalidData(f"{path}: holds Python objects (a pickled object array), which wsbench never "
                          f"unpickles; valid: a 2-D float32 array")
    if len(shape) != 2 or dtype.kind != "f" or dtype.itemsize != 4:
        raise InvalidData(f"{path}: holds a {dtype} array of shape {shape}; valid: a 2-D float32 array "
                          f"(rows x parameters)")
    if shape[0] == 0 or shape[1] == 0:
        raise InvalidData(f"{path}: holds no networks (shape {shape})")
    expected = offset + shape[0] * shape[1] * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise InvalidData(f"{path}: {size:,} bytes, but its header declares {shape[0]:,} x {shape[1]:,} float32 "
                          f"({expected:,} bytes); truncated or corrupt?")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InvalidData(f"{path}: cannot be mapped as a .npy array ({err})") from err


def _shape(text: str, path: Path, name: str) -> tuple[int, ...]:
    try:
        shape = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        shape = None
    shape = (shape,) if isinstance(shape, int) else shape
    if not isinstance(shape, (tuple, list)) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise InvalidData(f"{path}: {name} has shape {text!r}; valid: a tuple of positive integers such as "
                          f"(3, 3, 1, 16)")
    return tuple(shape)


def read_layout(path: Path, width: int) -> list[LayerSlices]:
    """``layout.csv``: per layer (in order of appearance) its kernel and bias slices. Every
    slice must hold its shape, and together they must tile ``[0, width)`` exactly."""
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InvalidData(f"{path}: not a CSV table ({type(err).__name__}: {err})") from err
    missing = [c for c in LAYOUT_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidData(f"{path}: missing column(s) {', '.join(missing)}; valid: a table with columns "
                          f"{','.join(LAYOUT_COLUMNS)}")
    layers: dict[str, dict[str, Slice]] = {}
    for row in table.itertuples(index=False):
        name = str(row.varname)
        try:
            start, end = int(row.start_idx), int(row.end_idx)
        except (TypeError, ValueError):
            raise InvalidData(f"{path}: {name} has start_idx {row.start_idx!r} and end_idx {row.end_idx!r}; "
                              f"valid: integers") from None
        shape = _shape(str(row.shape), path, name)
        if start < 0 or end - start != int(np.prod(shape)):
            raise InvalidData(f"{path}: {name} spans [{start}, {end}) which does not hold shape {shape}")
        layer, _, kind = name.rpartition("/")
        kind = kind.split(":")[0]
        if kind not in ("kernel", "bias"):
            raise InvalidData(f"{path}: variable {name} is neither a kernel nor a bias; valid: <layer>/kernel:0, "
                              f"<layer>/bias:0")
        if kind in layers.setdefault(layer, {}):
            raise InvalidData(f"{path}: layer {layer} has two {kind}s")
        layers[layer][kind] = (start, end, shape)
    covered = sorted((s, e) for parts in layers.values() for s, e, _ in parts.values())
    if not covered or [s for s, _ in covered] != [0] + [e for _, e in covered[:-1]] or covered[-1][1] != width:
        raise InvalidData(f"{path}: the slices do not tile the {width} columns of weights.npy exactly")
    out = []
    for layer, parts in layers.items():
        if set(parts) != {"kernel", "bias"}:
            raise InvalidData(f"{path}: layer {layer} needs one kernel and one bias, has {', '.join(sorted(parts))}")
        out.append(LayerSlices(parts["kernel"], parts["bias"]))
    return out


def architecture(layout: list[LayerSlices], activation: str, path: Path) -> ArchSpec:
    """Our spec of the zoo CNN with ``activation`` after every conv layer (stride
    :data:`STRIDE`, no padding: TF's 'valid')."""
    layers = []
    for slices in layout:
        shape = slices.kernel[2]
        if len(shape) == 4:
            h, w, c_in, c_out = shape
            layers.append(Layer("conv", c_out, c_in, (h, w), STRIDE, 0, activation))
        elif len(shape) == 2:
            layers.append(Layer("linear", shape[1], shape[0]))
        else:
            raise InvalidData(f"{path}: kernel of shape {shape} is neither conv (h, w, in, out) nor dense (in, out)")
        if slices.bias[2] != (layers[-1].out_features,):
            raise InvalidData(f"{path}: bias of shape {slices.bias[2]} does not fit kernel {shape}")
    try:
        return ArchSpec(tuple(layers), name=f"small-cnn {activation}")
    except ValueError as err:
        raise InvalidData(f"{path}: the layers do not chain ({err})") from err


def to_weight_space(spec: ArchSpec, layout: list[LayerSlices], flat: np.ndarray) -> WeightSpace:
    """Rows of flat TF-layout parameters -> :class:`WeightSpace` in torch layout: conv kernel
    ``(h, w, in, out) -> (out, in, h, w)``, dense ``(in, out) -> (out, in)`` (a TF
    convolution is a cross-correlation, like torch's, so no kernel flip)."""
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
    """NFN's row permutation, every line kept (its first line, a stray "0" header, too: NFN
    reads the file with ``pd.read_csv(header=None)``, so row 0 appears twice)."""
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidData(f"{path}: cannot be read as text ({err})") from err
    if not lines:
        raise InvalidData(f"{path}: empty; valid: one row number of weights.npy per line")
    try:
        order = np.array([int(x) for x in lines], dtype=np.int64)
    except ValueError:
        line = next(i for i, x in enumerate(lines) if not x.lstrip("-").isdigit())
        raise InvalidData(f"{path}: line {line + 1} holds {lines[line]!r}; valid: one row number of weights.npy "
                          f"per line") from None
    outside = np.flatnonzero((order < 0) | (order >= rows))
    if len(outside):
        raise InvalidData(f"{path}: row numbers must lie in [0, {rows}) (weights.npy has {rows:,} rows); "
                          f"{len(outside)} do not (first: {order[outside[0]]} on line {outside[0] + 1})")
    return order


def read_metrics(path: Path, rows: int) -> pd.DataFrame:
    """The columns of ``metrics.csv.gz`` that the protocol uses, one row per row of
    ``weights.npy``. ``step`` must hold integers; ``test_accuracy`` is coerced to numbers
    (anything else becomes NaN, which the caller treats as an invalid item)."""
    try:
        metrics = pd.read_csv(path, compression="gzip", usecols=lambda c: c in METRIC_COLUMNS,
                              dtype={"config.activation": str})
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError, ValueError,
            pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InvalidData(f"{path}: cannot read the metrics table ({type(err).__name__}: {err}); "
                          f"truncated or corrupt?") from err
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise InvalidData(f"{path}: missing column(s) {', '.join(missing)}; valid: a table with at least "
                          f"{', '.join(METRIC_COLUMNS)}")
    if len(metrics) != rows:
        raise InvalidData(f"{path}: {len(metrics):,} rows but weights.npy has {rows:,}; the two files must "
                          f"come from the same archive")
    step = pd.to_numeric(metrics["step"], errors="coerce")
    bad = np.flatnonzero(step.isna().to_numpy() | (step.to_numpy() % 1 != 0))
    if len(bad):
        raise InvalidData(f"{path}: row {bad[0]} has step {metrics['step'].iloc[bad[0]]!r}; valid: integer "
                          f"training steps")
    metrics["step"] = step.astype(np.int64)
    metrics["test_accuracy"] = pd.to_numeric(metrics["test_accuracy"], errors="coerce").astype(np.float64)
    metrics["config.activation"] = metrics["config.activation"].fillna("").astype(str)
    return metrics
