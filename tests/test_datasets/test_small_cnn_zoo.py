"""The Small CNN Zoo loader: NFN's protocol, TF -> torch conversion, activation groups."""

import random

import numpy as np
import pandas as pd
import pytest
import torch
from zoo_files import LAYOUT, layout_table, write_metrics, write_zoo

from datasets.dataset_table import DATASETS
from datasets.errors import DataNotFound, InvalidData, InvalidItem
from datasets.functional import forward
from datasets.source import LoadOptions
from datasets.sources.small_cnn_zoo import split_positions
from datasets.weights import MixedWeights, WeightSpace


def nfn_reference(folder, split_file):
    """NFN's ZooDataset row selection, written the way their code does it."""
    data = np.load(folder / "weights.npy")
    shuffled = pd.read_csv(split_file, header=None).values.flatten()
    metrics = pd.read_csv(folder / "metrics.csv.gz", compression="gzip").iloc[shuffled]
    rows = shuffled[(metrics["step"] == 86).to_numpy()]
    assert np.isfinite(data[rows]).all()
    n = len(rows)
    idcs = list(range(int(0.5 * n)))
    random.Random(0).shuffle(idcs)
    cut = int(0.8 * len(idcs))
    return {"train": rows[idcs[:cut]], "val": rows[idcs[cut:]], "test": rows[int(0.5 * n):]}


def opts(tmp_path, source, **kw):
    return LoadOptions(tmp_path / "cache", source, progress=False, **kw)


def load(name, options):
    return DATASETS[name].open(options).load()


def test_protocol_matches_nfn_including_the_stray_header(tmp_path):
    weights, metrics = write_zoo(tmp_path / "cifar10")
    ds = load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10"))
    expected = nfn_reference(tmp_path / "cifar10", tmp_path / "cifar10" / "cifar10_split.csv")
    got = {"train": ds.train, "val": ds.val, "test": ds.test_split()}
    for name, split in got.items():
        assert split.extras["row"].tolist() == expected[name].tolist()
        assert np.allclose(split.targets.numpy(), metrics["test_accuracy"].to_numpy()[expected[name]])
    all_rows = np.concatenate([s.extras["row"].numpy() for s in got.values()])
    assert (all_rows == 0).sum() == 2  # row 0 twice: the header line and its own place
    assert ds.task == "regression" and ds.card["targets"]["test"]["max"] <= 0.6
    assert split_positions(10) == {"train": [2, 1, 0, 4], "val": [3], "test": [5, 6, 7, 8, 9]}


def tf_forward(flat: np.ndarray, images_nhwc: np.ndarray, activation: str) -> np.ndarray:
    """The zoo CNN in TF semantics, straight from the flat vector: NHWC, 'valid', stride 2."""
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation]
    at, params = 0, []
    for _, shape in LAYOUT:
        bias = flat[at:at + shape[-1]]
        at += shape[-1]
        kernel = flat[at:at + int(np.prod(shape))].reshape(shape)
        at += int(np.prod(shape))
        params.append((kernel, bias))
    h = images_nhwc
    for kernel, bias in params[:3]:
        ho, wo = (h.shape[1] - 3) // 2 + 1, (h.shape[2] - 3) // 2 + 1
        out = np.zeros((h.shape[0], ho, wo, kernel.shape[-1]))
        for dh in range(3):
            for dw in range(3):
                patch = h[:, dh:dh + 2 * ho - 1:2, dw:dw + 2 * wo - 1:2, :]
                out += np.einsum("nhwc,co->nhwo", patch, kernel[dh, dw])
        h = act(out + bias)
    kernel, bias = params[3]
    return h.mean(axis=(1, 2)) @ kernel + bias


def test_tf_to_torch_conversion_preserves_the_function(tmp_path):
    weights, metrics = write_zoo(tmp_path / "z", split_name="mnist_split.csv")
    ds = load("small-cnn-zoo-mnist", opts(tmp_path, tmp_path / "z"))
    images = np.random.default_rng(1).uniform(-1, 1, (5, 28, 28, 1))
    for split in (ds.train, ds.test_split()):
        mixed = split.weights
        assert isinstance(mixed, MixedWeights)
        outputs = mixed.map_groups(lambda g: g.to(torch.float64)).apply(
            lambda g: forward(g, torch.from_numpy(images).permute(0, 3, 1, 2)))
        for i, row in enumerate(split.extras["row"].tolist()[:6]):
            act = metrics["config.activation"][row]
            expected = tf_forward(weights[row].astype(np.float64), images, act)
            assert np.allclose(outputs[i].numpy(), expected, atol=1e-8)


def test_activations_become_architecture_groups(tmp_path):
    _, metrics = write_zoo(tmp_path / "cifar10")
    ds = load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path))
    mixed = ds.train.weights
    acts = {g: mixed.groups[g].spec.layers[0].activation for g in range(len(mixed.groups))}
    for i, row in enumerate(ds.train.extras["row"].tolist()):
        assert acts[int(mixed.group_index[i])] == metrics["config.activation"][row]
    assert {s.layers[0].activation for s in ds.specs} == {"relu", "tanh"}
    assert all(s.layers[0].stride == 2 and s.layers[0].kernel == (3, 3) for s in ds.specs)
    assert ds.specs[0].num_params == 4970 and set(ds.card["activations"]) == {"relu", "tanh"}
    relu = load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path, params={"activation": "relu"}))
    assert isinstance(relu.train.weights, WeightSpace) and not relu.heterogeneous
    assert sum(relu.card["networks"].values()) == ds.card["activations"]["relu"]


def test_nonfinite_weights_are_dropped_and_counted(tmp_path):
    weights, metrics = write_zoo(tmp_path / "cifar10")
    final = np.flatnonzero(metrics["step"].to_numpy() == 86)
    weights[final[3], 100] = np.nan
    np.save(tmp_path / "cifar10" / "weights.npy", weights)
    ds = load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10"))
    rows = np.concatenate([s.extras["row"].numpy() for s in (ds.train, ds.val, ds.test_split())])
    assert final[3] not in rows and sum(ds.card["skipped"].values()) == 1


def test_bad_target_or_activation_fails_or_is_skipped(tmp_path):
    _, metrics = write_zoo(tmp_path / "cifar10")
    final = np.flatnonzero(metrics["step"].to_numpy() == 86)
    metrics.loc[final[1], "test_accuracy"] = np.nan
    metrics.loc[final[2], "config.activation"] = "swish"
    write_metrics(tmp_path / "cifar10", metrics)
    with pytest.raises(InvalidItem, match="metrics.csv.gz: row .* (not finite|'swish')"):
        load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10"))
    ds = load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10", skip_invalid=True))
    assert ds.card["skipped"] == {"non-finite target": 1, "unsupported activation": 1}


def test_corrupt_files_name_the_file(tmp_path):
    write_zoo(tmp_path / "cifar10")
    path = tmp_path / "cifar10" / "weights.npy"
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(InvalidData, match="weights.npy: .* truncated or corrupt"):
        load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10"))
    path.write_bytes(raw)
    metrics = tmp_path / "cifar10" / "metrics.csv.gz"
    metrics.write_bytes(metrics.read_bytes()[:60])
    with pytest.raises(InvalidData, match="metrics.csv.gz: cannot read"):
        load("small-cnn-zoo-cifar10", opts(tmp_path / "b", tmp_path / "cifar10"))


def test_layout_and_split_file_are_checked(tmp_path):
    write_zoo(tmp_path / "cifar10")
    table = layout_table()
    table.loc[1, "shape"] = "(3, 3, 2, 16)"
    table.to_csv(tmp_path / "cifar10" / "layout.csv", index=False)
    with pytest.raises(InvalidData, match="layout.csv: sequential/conv2d/kernel:0 spans"):
        load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10"))
    layout_table().to_csv(tmp_path / "cifar10" / "layout.csv", index=False)
    (tmp_path / "cifar10" / "cifar10_split.csv").write_text("0\n5\n99\n")
    with pytest.raises(InvalidData, match="cifar10_split.csv: row numbers must lie in \\[0, 40\\)"):
        load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "cifar10"))


def test_missing_files_say_what_to_download(tmp_path):
    with pytest.raises(DataNotFound, match="smallcnnzoo-dataset/cifar10.tar.xz") as err:
        load("small-cnn-zoo-cifar10", LoadOptions(tmp_path, progress=False))
    assert str(tmp_path / "raw" / "small-cnn-zoo" / "cifar10") in str(err.value)
    write_zoo(tmp_path / "z")
    (tmp_path / "z" / "cifar10_split.csv").unlink()
    with pytest.raises(DataNotFound, match="predict_gen_data_splits"):
        load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "z"))
    (tmp_path / "elsewhere.csv").write_text("\n".join(map(str, range(40))))
    ds = load("small-cnn-zoo-cifar10", opts(tmp_path, tmp_path / "z", limit=2,
                               params={"split_file": str(tmp_path / "elsewhere.csv")}))
    assert len(ds.train) == 2 and ds.card["split_file"] == str(tmp_path / "elsewhere.csv")
