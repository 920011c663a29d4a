"""The CIFAR-10 batch reader and its restricted unpickler."""

import os
import pickle
import struct

import numpy as np
import pytest
from inr_files import write_cifar_batch

from datasets.errors import DataNotFound
from datasets.io.cifar import (
    TEST_BATCHES,
    TRAIN_BATCHES,
    CifarError,
    RestrictedUnpickler,
    batch_directory,
    load_batch,
    read_split,
)


def write_cifar(directory, n=4):
    directory.mkdir(parents=True, exist_ok=True)
    return {name: write_cifar_batch(directory / name, n, seed=i)
            for i, name in enumerate(TRAIN_BATCHES + TEST_BATCHES)}


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_reads_a_batch_into_nchw_images(tmp_path, bytes_keys):
    data, labels = write_cifar_batch(tmp_path / "b", bytes_keys=bytes_keys)
    images, got = load_batch(tmp_path / "b")
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    # channel-major rows: the first 1024 values are the red plane, row by row
    assert np.array_equal(images[2, 0].ravel(), data[2, :1024])
    assert np.array_equal(images[2, 2, 31], data[2, 3072 - 32:])
    assert np.array_equal(got, labels)


def python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """The opcodes Python 2's cPickle (protocol 2) wrote for the CIFAR batches: 8-bit
    strings (BINSTRING) for keys and for the array payload, ``numpy.core.multiarray``."""
    def string(b: bytes) -> bytes:
        return pickle.SHORT_BINSTRING + bytes([len(b)]) + b if len(b) < 256 else \
            pickle.BINSTRING + struct.pack("<i", len(b)) + b
    dtype = (pickle.GLOBAL + b"numpy\ndtype\n" + string(b"u1") + pickle.NEWFALSE + pickle.NEWTRUE
             + pickle.TUPLE3 + pickle.REDUCE + pickle.MARK + pickle.BININT1 + b"\x03" + string(b"|")
             + pickle.NONE * 3 + (pickle.BININT + struct.pack("<i", -1)) * 2 + pickle.BININT1 + b"\x00"
             + pickle.TUPLE + pickle.BUILD)
    array = (pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + pickle.GLOBAL + b"numpy\nndarray\n"
             + pickle.BININT1 + b"\x00" + pickle.TUPLE1 + string(b"b") + pickle.TUPLE3 + pickle.REDUCE
             + pickle.MARK + pickle.BININT1 + b"\x01" + pickle.BININT2 + struct.pack("<H", data.shape[0])
             + pickle.BININT2 + struct.pack("<H", data.shape[1]) + pickle.TUPLE2 + dtype + pickle.NEWFALSE
             + string(data.tobytes()) + pickle.TUPLE + pickle.BUILD)
    items = string(b"data") + array + string(b"labels") + pickle.EMPTY_LIST + pickle.MARK
    items += b"".join(pickle.BININT1 + bytes([v]) for v in labels) + pickle.APPENDS
    return pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + pickle.STOP


def test_python2_pickle_with_latin1_strings(tmp_path):
    rng = np.random.default_rng(1)
    data, labels = rng.integers(0, 256, (3, 3072), dtype=np.uint8), [3, 0, 9]
    (tmp_path / "b").write_bytes(python2_pickle(data, labels))
    images, got = load_batch(tmp_path / "b")
    assert np.array_equal(images.reshape(3, -1), data) and got.tolist() == labels


def test_splits_concatenate_the_batches(tmp_path):
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    directory = batch_directory(tmp_path)
    images, labels = read_split(directory, "train")
    assert images.shape == (20, 3, 32, 32)
    assert np.array_equal(labels, np.concatenate([written[n][1] for n in TRAIN_BATCHES]))
    assert read_split(directory, "test")[0].shape == (4, 3, 32, 32)


class Boom:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_arbitrary_globals_are_refused(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": Boom(), "labels": []}))
    with pytest.raises(CifarError, match="refusing to load global (posix|nt).system") as err:
        load_batch(path)
    assert str(path) in str(err.value)


def test_restricted_unpickler_allows_only_numpy_array_globals():
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler.find_class(None, "builtins", "eval")
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler.find_class(None, "numpy", "load")
    assert RestrictedUnpickler.find_class(None, "numpy", "ndarray") is np.ndarray


@pytest.mark.parametrize("payload, message", [
    ({b"labels": [1]}, "missing key 'data'"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, "uint8 array of shape"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels of shape"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, "label 10 at position 1"),
    ([1, 2], "expected a dict"),
])
def test_malformed_batches(tmp_path, payload, message):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CifarError, match=message):
        load_batch(path)


def test_truncated_batch(tmp_path):
    write_cifar_batch(tmp_path / "b")
    (tmp_path / "b").write_bytes((tmp_path / "b").read_bytes()[:500])
    with pytest.raises(CifarError, match="not a readable CIFAR-10 batch"):
        load_batch(tmp_path / "b")


def test_missing_batches_say_where_to_get_them(tmp_path):
    with pytest.raises(DataNotFound, match="cifar-10-python.tar.gz") as err:
        batch_directory(tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
