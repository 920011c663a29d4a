"""The IDX reader on small files written in the published format."""

import gzip

import numpy as np
import pytest
from inr_files import write_idx

from datasets.errors import DataNotFound
from datasets.io.idx import IdxError, has_split_files, read_idx, read_split


def write_mnist_like(directory, n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(directory / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{stem}-labels-idx1-ubyte.gz", labels)
        data[stem] = (images, labels)
    return data


def test_reads_images_and_labels_exactly(tmp_path):
    data = write_mnist_like(tmp_path)
    images, labels = read_split(tmp_path, "train")
    assert images.dtype == np.uint8 and images.shape == (6, 28, 28)
    assert np.array_equal(images, data["train"][0]) and np.array_equal(labels, data["train"][1])
    assert labels.dtype == np.int64 and has_split_files(tmp_path)


def test_magic_numbers_are_the_published_ones(tmp_path):
    write_mnist_like(tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz") as f:
        assert f.read(4) == b"\x00\x00\x08\x03"
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz") as f:
        assert f.read(4) == b"\x00\x00\x08\x01"


def test_uncompressed_and_big_endian_types(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    write_idx(tmp_path / "x.idx", values, code=0x0C, compress=False)
    assert np.array_equal(read_idx(tmp_path / "x.idx", ndim=2), values)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], "truncated"),
    (lambda raw: raw + b"\x00", "truncated or corrupt"),
    (lambda raw: b"\x01\x02" + raw[2:], "magic"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "magic"),
    (lambda raw: raw[:3], "too short"),
])
def test_damaged_files_are_refused_with_their_name(tmp_path, damage, message):
    write_mnist_like(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    with pytest.raises(IdxError, match=message) as err:
        read_split(tmp_path, "train")
    assert str(path) in str(err.value)


def test_truncated_gzip_stream(tmp_path):
    write_mnist_like(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(IdxError, match="truncated or corrupt") as err:
        read_split(tmp_path, "train")
    assert str(path) in str(err.value)


def test_wrong_rank_count_mismatch_and_label_range(tmp_path):
    data = write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", data["train"][1][:, None])
    with pytest.raises(IdxError, match="2 dimensions, expected 1"):
        read_split(tmp_path, "train")
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", data["train"][1][:5])
    with pytest.raises(IdxError, match="6 images but .* 5 labels"):
        read_split(tmp_path, "train")
    bad = data["train"][1].copy()
    bad[3] = 12
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", bad)
    with pytest.raises(IdxError, match="label 12 at position 3"):
        read_split(tmp_path, "train")


def test_missing_files_are_reported(tmp_path):
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert not has_split_files(tmp_path)
    with pytest.raises(DataNotFound, match="t10k-labels-idx1-ubyte.gz not found") as err:
        read_split(tmp_path, "test")
    assert isinstance(err.value, FileNotFoundError) and str(tmp_path / "t10k-labels.idx1-ubyte") in str(err.value)
