"""Faults of the CNN zoos: every bad file, row or option gets one line naming it and what is
valid (a ``WsbenchError``), never a traceback, a silent wrong dataset or an unpickled file."""

import os

import numpy as np
import pytest
from zoo_files import PARAMETERS, layout_table, write_metrics, write_zoo

from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError, DataNotFound, InvalidData, InvalidItem, WsbenchError
from datasets.source import LoadOptions
from datasets.sources import digits_cnn_zoo, small_cnn_zoo  # noqa: F401  (registers the zoos)

ZOO = "small-cnn-zoo-cifar10"
TINY = {"runs": "20", "epochs": "1", "checkpoints": "1"}


def load(tmp_path, folder, name=ZOO, **kw):
    return DATASETS[name].open(LoadOptions(tmp_path / "cache", folder, progress=False, **kw)).load()


def refused(error, match, tmp_path, folder, **kw):
    """Loading fails with ``error``, whose one-line message matches ``match``."""
    with pytest.raises(error, match=match) as info:
        load(tmp_path, folder, **kw)
    assert "\n" not in str(info.value)
    return info.value


@pytest.fixture
def zoo(tmp_path):
    folder = tmp_path / "cifar10"
    weights, metrics = write_zoo(folder)
    return folder, weights, metrics


def final_rows(metrics):
    return np.flatnonzero(metrics["step"].to_numpy() == 86)


# ---------------------------------------------------------------- layout.csv


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.drop(columns="shape"), "missing column.* shape; valid: a table with columns"),
    (lambda t: t.assign(shape=t["shape"].where(t.index != 2, "(3, 3, x)")), "has shape .*valid: a tuple"),
    (lambda t: t.assign(start_idx=t["start_idx"].where(t.index != 3, "ten")), "valid: integers"),
    (lambda t: t.drop(index=len(t) - 1), "do not tile the 4970 columns"),
    (lambda t: t.assign(varname=t["varname"].str.replace("dense/bias", "dense/gamma")), "neither a kernel nor a bias"),
    (lambda t: t.iloc[:0], "do not tile"),
])
def test_malformed_layout_is_refused(tmp_path, zoo, edit, match):
    folder, _, _ = zoo
    edit(layout_table()).to_csv(folder / "layout.csv", index=False)
    refused(InvalidData, rf"layout\.csv: .*{match}", tmp_path, folder)


def test_layout_that_is_not_a_table_is_refused(tmp_path, zoo):
    folder, _, _ = zoo
    (folder / "layout.csv").write_bytes(b"")
    refused(InvalidData, r"layout\.csv: not a CSV table", tmp_path, folder)


# ---------------------------------------------------------------- metrics.csv.gz


def test_malformed_metrics_are_refused(tmp_path, zoo):
    folder, _, metrics = zoo
    path = folder / "metrics.csv.gz"
    path.write_text(metrics.to_csv(index=False))  # not gzipped
    refused(InvalidData, r"metrics\.csv\.gz: cannot read the metrics table", tmp_path, folder)
    write_metrics(folder, metrics.drop(columns="test_accuracy"))
    refused(InvalidData, r"metrics\.csv\.gz: missing column\(s\) test_accuracy", tmp_path, folder)
    write_metrics(folder, metrics.iloc[:-1])
    refused(InvalidData, r"metrics\.csv\.gz: 39 rows but weights\.npy has 40", tmp_path, folder)
    write_metrics(folder, metrics.astype({"step": object}).assign(step=["86.5"] + list(metrics["step"][1:])))
    refused(InvalidData, r"metrics\.csv\.gz: row 0 has step .*valid: integer training steps", tmp_path, folder)


@pytest.mark.parametrize("value, reason", [(np.nan, "non-finite target"), (np.inf, "non-finite target"),
                                           ("n/a", "non-finite target"), (1.5, "target out of range"),
                                           (-0.1, "target out of range")])
def test_bad_accuracy_is_an_error_or_a_counted_skip(tmp_path, zoo, value, reason):
    folder, _, metrics = zoo
    row = final_rows(metrics)[2]
    metrics = metrics.astype({"test_accuracy": object})
    metrics.loc[row, "test_accuracy"] = value
    write_metrics(folder, metrics)
    err = refused(InvalidItem, rf"metrics\.csv\.gz: row {row}: test_accuracy", tmp_path, folder)
    assert err.reason == reason
    ds = load(tmp_path, folder, skip_invalid=True)
    assert ds.card["skipped"] == {reason: 1}
    assert row not in np.concatenate([s.extras["row"].numpy() for s in ds.splits().values()])


def test_unknown_activation_is_an_error_or_a_counted_skip(tmp_path, zoo):
    folder, _, metrics = zoo
    rows = final_rows(metrics)[[1, 4]]
    metrics.loc[rows, "config.activation"] = ["swish", "gelu"]
    write_metrics(folder, metrics)
    refused(InvalidItem, r"metrics\.csv\.gz: row \d+: activation '(swish|gelu)' is not one of relu, tanh",
            tmp_path, folder)
    ds = load(tmp_path, folder, skip_invalid=True)
    assert ds.card["skipped"] == {"unsupported activation": 2}
    kept = np.concatenate([s.extras["row"].numpy() for s in ds.splits().values()])
    assert not set(rows) & set(kept) and {s.layers[0].activation for s in ds.specs} == {"relu", "tanh"}


def test_all_rows_skipped_gives_a_clear_refusal_not_a_crash(tmp_path, zoo):
    folder, _, metrics = zoo
    metrics["config.activation"] = "swish"
    write_metrics(folder, metrics)
    refused(InvalidData, r"train split: 0 network\(s\); at least 2", tmp_path, folder, skip_invalid=True)


# ---------------------------------------------------------------- weights.npy


def test_weights_of_the_wrong_kind_are_refused(tmp_path, zoo):
    folder, weights, _ = zoo
    path = folder / "weights.npy"
    np.save(path, weights.astype(np.float64))
    refused(InvalidData, r"weights\.npy: holds a float64 array .*valid: a 2-D float32 array", tmp_path, folder)
    np.save(path, weights.reshape(40, 10, PARAMETERS // 10))
    refused(InvalidData, r"weights\.npy: holds a float32 array of shape \(40, 10, 497\)", tmp_path, folder)
    np.save(path, weights)
    with open(path, "ab") as f:
        f.write(b"\0" * 8)
    refused(InvalidData, r"weights\.npy: .* bytes, but its header declares 40 x 4,970 float32", tmp_path, folder)
    path.write_bytes(b"not a numpy file at all")
    refused(InvalidData, r"weights\.npy: not a \.npy array", tmp_path, folder)


def test_truncated_weights_are_refused(tmp_path, zoo):
    folder, _, _ = zoo
    path = folder / "weights.npy"
    raw = path.read_bytes()
    for cut in (len(raw) - 4, 200, 60, 5):  # in the data (end, start), inside the header, inside the magic
        path.write_bytes(raw[:cut])
        refused(InvalidData, r"weights\.npy: .*truncated or corrupt", tmp_path, folder)


class Trap:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_refused_and_never_unpickled(tmp_path, zoo):
    folder, _, _ = zoo
    marker = tmp_path / "unpickled"
    trap = np.empty((40, 2), dtype=object)
    trap[:] = Trap(marker)
    np.save(folder / "weights.npy", trap, allow_pickle=True)
    refused(InvalidData, r"weights\.npy: holds Python objects .*never unpickles", tmp_path, folder)
    refused(InvalidData, r"weights\.npy: holds Python objects", tmp_path, folder, skip_invalid=True)
    assert not marker.exists()
    np.load(folder / "weights.npy", allow_pickle=True)  # negative control: the trap is real
    assert marker.exists()


def test_replaced_weights_give_a_new_dataset(tmp_path, zoo):
    folder, weights, _ = zoo
    path = folder / "weights.npy"
    first = load(tmp_path, folder)
    status = path.stat()
    replacement = folder / "new.npy"
    np.save(replacement, weights * 2)
    os.replace(replacement, path)  # how a download replaces a file
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))  # same size and mtime: only the content differs
    assert path.stat().st_size == status.st_size
    second = load(tmp_path, folder)
    assert second.fingerprint != first.fingerprint
    assert np.allclose(second.train.weights.groups[0].flatten().numpy(),
                       2 * first.train.weights.groups[0].flatten().numpy())
    np.save(path, weights)
    assert load(tmp_path, folder).fingerprint == first.fingerprint  # the first cache is found again


# ---------------------------------------------------------------- split file


def test_split_file_faults_are_refused(tmp_path, zoo):
    folder, _, _ = zoo
    path = folder / "cifar10_split.csv"
    for text, match in [("0\n5\n40\n", r"row numbers must lie in \[0, 40\) .*first: 40 on line 3"),
                        ("0\n-1\n3\n", r"row numbers must lie in \[0, 40\) .*first: -1 on line 2"),
                        ("0\n3\nseven\n", r"line 3 holds 'seven'; valid: one row number"),
                        ("", r"empty; valid: one row number")]:
        path.write_text(text)
        refused(InvalidData, rf"cifar10_split\.csv: {match}", tmp_path, folder)
    missing = tmp_path / "nowhere.csv"
    refused(DataNotFound, r"split file nowhere\.csv not found", tmp_path, folder, params={"split_file": str(missing)})


# ---------------------------------------------------------------- options and limits


@pytest.mark.parametrize("name, params, match", [
    (ZOO, {"activation": "gelu"}, r"activation='gelu' is not valid; valid: one of all, relu, tanh"),
    (ZOO, {"colour": "red"}, r"unknown option\(s\) colour; valid: activation, split_file"),
    ("digits-cnn-zoo", {"runs": "0"}, r"runs=0 is out of range; valid: 1\.\."),
    ("digits-cnn-zoo", {"runs": "abc"}, r"runs='abc' is not a valid int"),
    ("digits-cnn-zoo", {"runs": "3"}, r"runs=3: the val split gets 0 run\(s\)"),
    ("digits-cnn-zoo", {"runs": "8", "checkpoints": "1"}, r"the val split gets 1 run\(s\) x 1 checkpoint"),
    ("digits-cnn-zoo", {"epochs": "0"}, r"epochs=0 is out of range"),
    ("digits-cnn-zoo", {"epochs": "2", "checkpoints": "3"}, r"checkpoints=3 exceeds epochs=2"),
    ("digits-cnn-zoo", {"checkpoints": "0"}, r"checkpoints=0 is out of range"),
    ("digits-cnn-zoo", {"batch_size": "0"}, r"batch_size=0 is out of range"),
    ("digits-cnn-zoo", {"chunk": "0"}, r"chunk=0 is out of range"),
    ("digits-cnn-zoo", {"activations": "gelu"}, r"activations='gelu' is not valid; valid: a comma-separated subset"),
    ("digits-cnn-zoo", {"activations": ""}, r"activations='' is not valid"),
    ("digits-cnn-zoo", {"activations": "relu,relu"}, r"activations='relu,relu' is not valid"),
    ("digits-cnn-park", {"architectures": "0"}, r"architectures=0 is out of range"),
    ("digits-cnn-park", {"runs": "10", "architectures": "12"}, r"architectures=12 exceeds runs=10"),
    ("digits-cnn-park", {"activations": "relu"}, r"unknown option\(s\) activations"),
])
def test_degenerate_options_are_refused_before_any_work(tmp_path, name, params, match):
    with pytest.raises(ConfigError, match=match) as info:
        DATASETS[name].open(LoadOptions(tmp_path, progress=False, params=params))
    assert "\n" not in str(info.value) and not any(tmp_path.iterdir())


def test_limit_too_small_is_refused_with_the_real_split_sizes(tmp_path, zoo):
    folder, _, _ = zoo
    refused(InvalidData, r"small-cnn-zoo-cifar10, train split: 1 network\(s\); at least 2 .*raise --limit",
            tmp_path, folder, limit=1)
    assert len(load(tmp_path, folder, limit=2).train) == 2
    for name, params in (("digits-cnn-zoo", TINY), ("digits-cnn-park", {**TINY, "architectures": "3"})):
        refused(InvalidData, rf"{name}, train split: 1 network\(s\)", tmp_path, None, name=name, limit=1,
                params=params)


def test_every_fault_is_a_wsbench_error(tmp_path, zoo):
    """The hierarchy the command line relies on to print one line and exit 2."""
    for error in (ConfigError, DataNotFound, InvalidData, InvalidItem):
        assert issubclass(error, WsbenchError)
    folder, _, _ = zoo
    (folder / "layout.csv").unlink()
    refused(DataNotFound, r"layout\.csv not found .*smallcnnzoo-dataset/cifar10\.tar\.xz", tmp_path, folder)
