"""Reader of the IDX files MNIST and Fashion-MNIST ship in (LeCun et al. 1998).

Format: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
sizes, then the data in C order, big-endian. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64. Files may be gzip-compressed (``.gz``). Checks are
strict: the magic, the dimension count the caller expects, and the exact byte length
(truncated files and trailing bytes are both errors), each reported with the file name.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from datasets.errors import DataNotFound, InvalidData

DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
# file stems of the two splits, as distributed
SPLIT_STEMS = {"train": "train", "test": "t10k"}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801


class IdxError(InvalidData):
    """A malformed IDX file; the message names the file and the problem."""


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise IdxError(f"{path}: cannot decompress or read ({err}); the file is truncated or corrupt") from err


def read_idx(path: Path | str, ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (native byte order). ``ndim``: required rank."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero, code, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in DTYPES:
        raise IdxError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000 then a type "
                       f"code in {[hex(c) for c in DTYPES]})")
    if ndim is not None and rank != ndim:
        raise IdxError(f"{path}: IDX file has {rank} dimensions, expected {ndim}")
    header = 4 + 4 * rank
    if len(raw) < header:
        raise IdxError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(f"{path}: header declares shape {shape} ({expected} bytes of data) but the file "
                       f"holds {len(raw) - header}; the file is truncated or corrupt")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def find_idx_file(directory: Path, split: str, kind: str) -> Path:
    """Locate ``{train|t10k}-{images-idx3|labels-idx1}-ubyte[.gz]`` (also the
    ``images.idx3-ubyte`` spelling) in ``directory``; ``DataNotFound`` if it is not there."""
    stem, idx = SPLIT_STEMS[split], {"images": "idx3", "labels": "idx1"}[kind]
    names = [f"{stem}-{kind}-{idx}-ubyte.gz", f"{stem}-{kind}-{idx}-ubyte", f"{stem}-{kind}.{idx}-ubyte"]
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DataNotFound(f"IDX file {names[0]}", "the MNIST or Fashion-MNIST IDX files (*-ubyte.gz)",
                       [directory / name for name in names])


def read_split(directory: Path | str, split: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 of the ``train`` or ``test``
    split; the counts must agree and labels lie in ``[0, num_classes)``."""
    directory = Path(directory)
    images_path = find_idx_file(directory, split, "images")
    labels_path = find_idx_file(directory, split, "labels")
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise IdxError(f"{images_path}, {labels_path}: expected uint8 images and labels, got "
                       f"{images.dtype} and {labels.dtype}")
    if len(images) != len(labels):
        raise IdxError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if len(labels) and labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise IdxError(f"{labels_path}: label {labels[bad]} at position {bad} is outside [0, {num_classes})")
    return images, labels.astype(np.int64)


def has_split_files(directory: Path) -> bool:
    """Whether all four IDX files (train and t10k images and labels) are in ``directory``."""
    try:
        for split in SPLIT_STEMS:
            for kind in ("images", "labels"):
                find_idx_file(directory, split, kind)
    except DataNotFound:
        return False
    return True
