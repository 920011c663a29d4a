"""Reader of the CIFAR-10 "python version" batches (Krizhevsky 2009) without trusting pickle.

The batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) are pickles of a dict
with ``data`` (N x 3072 uint8: 1024 red, 1024 green, 1024 blue values, each a 32x32 image
in row-major order) and ``labels`` (N ints). ``pickle.load`` on a file from the internet
can run arbitrary code: the stream names globals (``module.name``) that the unpickler
imports and calls. :class:`RestrictedUnpickler` resolves a global only if it is one of

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``: makes an
  empty array of a given ndarray subclass (the only class reachable here is ``ndarray``);
- ``numpy.ndarray``: the class itself, passed to ``_reconstruct``;
- ``numpy.dtype``: builds a dtype from a type string.

and refuses every other name, so the only callables the stream can reach are these three
numpy constructors; ``BUILD`` then only calls ``ndarray.__setstate__`` /
``dtype.__setstate__``, which copy bytes into the new array. Dicts, lists, strings, bytes
and numbers need no globals. Arrays of dtype ``object`` are rejected after loading. The
original files were written by Python 2, so they are read with ``encoding="latin1"`` (as
torchvision does); keys may then be ``str`` or, from Python 3 writers, ``bytes``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from datasets.errors import DataNotFound, InvalidData

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's own array-unpickling function
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class CifarError(InvalidData):
    """A malformed or refused CIFAR batch file; the message names the file."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals in :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _field(batch: dict, key: str):
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def load_batch(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one batch file."""
    path = Path(path)
    try:
        batch = RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as err:
        raise CifarError(f"{path}: not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise CifarError(f"{path}: expected a dict, found {type(batch).__name__}")
    try:
        data, labels = _field(batch, "data"), _field(batch, "labels")
    except KeyError as err:
        raise CifarError(f"{path}: missing key {err.args[0]!r} (keys: {sorted(map(str, batch))})") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise CifarError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
                         f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise CifarError(f"{path}: 'labels' is not a list of integers ({err})") from err
    if labels.shape != (len(data),):
        raise CifarError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.argmax((labels < 0) | (labels > 9)))
        raise CifarError(f"{path}: label {labels[bad]} at position {bad} is outside [0, 10)")
    return data.reshape(-1, 3, 32, 32), labels


def batch_directory(source: Path) -> Path:
    """``source`` itself or its ``cifar-10-batches-py`` subfolder, whichever holds the
    batches; :class:`DataNotFound` otherwise."""
    candidates = [source, source / FOLDER]
    for directory in candidates:
        if all((directory / name).is_file() for name in TRAIN_BATCHES + TEST_BATCHES):
            return directory
    raise DataNotFound("CIFAR-10 python batches (data_batch_1..5, test_batch)",
                       f"{URL} and extract it", candidates)


def read_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``train`` (50,000) or ``test`` (10,000) images and labels, in file order."""
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    parts = [load_batch(directory / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
