"""Small files in the published formats the INR sources read (IDX images, CIFAR-10 python
batches, DWSNets and NFN state dicts with their layouts), and a one-call loader, shared by
the dataset tests (importable because ``pyproject.toml`` puts ``tests/`` on pytest's
``pythonpath``)."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

import datasets.sources  # noqa: F401  (registers every dataset)
from datasets.dataset_table import DATASETS
from datasets.io.cifar import TEST_BATCHES, TRAIN_BATCHES
from datasets.source import LoadOptions
from datasets.spec import siren_spec
from datasets.weight_dataset import WeightDataset
from datasets.weights import as_mixed

SPEC = siren_spec()
FOREIGN = "/home/author/DWSNets/experiments/mnist/dataset/mnist-inrs"


def load(name: str, root: Path, source: Path | None = None, *, limit: int | None = None,
         skip_invalid: bool = False, **params) -> WeightDataset:
    """``name`` loaded through its registered source, options given as keywords."""
    options = LoadOptions(root, source, limit, skip_invalid, progress=False,
                          params={k: str(v) for k, v in params.items()})
    return DATASETS[name].open(options).load()


def fingerprint(name: str, root: Path, source: Path | None = None, **params) -> str:
    """The fingerprint ``name`` would have, computed without building anything."""
    options = LoadOptions(root, source, progress=False, params={k: str(v) for k, v in params.items()})
    return DATASETS[name].open(options).fingerprint()


def same_data(a: WeightDataset, b: WeightDataset) -> bool:
    """Whether two datasets hold the same networks (architecture and weights, in the same
    order) with the same targets and extras."""
    for x, y in zip(a.splits().values(), b.splits().values()):
        wx, wy = as_mixed(x.weights), as_mixed(y.weights)
        if not (torch.equal(wx.group_index, wy.group_index) and torch.equal(wx.row_index, wy.row_index)
                and all(g.spec == h.spec and torch.equal(g.flatten(), h.flatten()) for g, h in zip(wx.groups, wy.groups))
                and torch.equal(x.targets, y.targets) and x.extras.keys() == y.extras.keys()
                and all(torch.equal(x.extras[k], y.extras[k]) for k in x.extras)):
            return False
    return True


# ---------------------------------------------------------------- IDX


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, compress: bool = True) -> None:
    """``array`` as an IDX file (big-endian; gzip-compressed by default)."""
    raw = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def blob_images(n: int, seed: int) -> np.ndarray:
    """Smooth 28x28 'digits': one Gaussian blob each, so a few steps fit them well."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(9, 19, (n, 2))
    images = [np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 30) for cx, cy in centres]
    return (np.stack(images) * 255).astype(np.uint8)


def write_mnist_idx(directory: Path, n_train: int = 24, n_test: int = 4) -> None:
    """The four MNIST IDX files: blob images, labels ``i % 10``."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        write_idx(directory / f"{stem}-images-idx3-ubyte.gz", blob_images(n, seed))
        write_idx(directory / f"{stem}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


# ---------------------------------------------------------------- CIFAR-10


def write_cifar_batch(path: Path, n: int = 4, seed: int = 0, bytes_keys: bool = True,
                      protocol: int = pickle.DEFAULT_PROTOCOL) -> tuple[np.ndarray, np.ndarray]:
    """One python batch of random images; returns its data and labels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    with open(path, "wb") as f:
        pickle.dump({key("batch_label"): key("batch"), key("labels"): labels, key("data"): data,
                     key("filenames"): [key(f"img{i}.png") for i in range(n)]}, f, protocol=protocol)
    return data, np.array(labels)


def write_smooth_cifar(directory: Path, n: int = 3) -> None:
    """All six batches of smooth RGB ramps (quick to fit), labels ``(batch + i) % 10``."""
    directory.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:32, 0:32] / 31
    for b, name in enumerate(TRAIN_BATCHES + TEST_BATCHES):
        images = np.stack([np.stack([xx * (i + 1) / n, yy, (xx + yy) / 2]) for i in range(n)])
        data = (images * 255).astype(np.uint8).reshape(n, 3072)
        with open(directory / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [(b + i) % 10 for i in range(n)]}, f)


# ---------------------------------------------------------------- DWSNets


def dwsnets_state(seed: int) -> dict:
    """A DWSNets SIREN state dict (``seq.{i}.*``) with small seeded values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, layer in enumerate(SPEC.layers):
        out[f"seq.{i}.weight"] = torch.randn(*layer.weight_shape, generator=g) * 0.05
        out[f"seq.{i}.bias"] = torch.randn(layer.out_features, generator=g) * 0.05
    return out


def write_mnist_inrs(root: Path, counts=(5, 2, 3), absolute: bool = True):
    """``mnist-inrs/mnist_png_{training|testing}_{label}_{idx}/checkpoints/model_final.pth`` plus
    ``mnist_splits.json`` with string labels and (``absolute``) the authors' absolute paths.
    Returns the listing and ``{file: (split, label, seed)}``."""
    splits, truth, seed = {}, {}, 0
    for split, n in zip(("train", "val", "test"), counts):
        paths, labels = [], []
        for _ in range(n):
            label, idx = seed % 10, 1000 + seed
            folder = f"mnist_png_{'testing' if split == 'test' else 'training'}_{label}_{idx}"
            file = root / "mnist-inrs" / folder / "checkpoints" / "model_final.pth"
            file.parent.mkdir(parents=True)
            torch.save(dwsnets_state(seed), file)
            paths.append(f"{FOREIGN}/{folder}/checkpoints/model_final.pth" if absolute
                         else f"mnist-inrs/{folder}/checkpoints/model_final.pth")
            labels.append(str(label))
            truth[file] = (split, label, seed)
            seed += 1
        splits[split] = {"path": paths, "label": labels}
    (root / "mnist_splits.json").write_text(json.dumps(splits))
    return splits, truth


def write_fmnist_inrs(root: Path, counts=(4, 2, 3)) -> dict:
    """``fmnist_inrs/{train,test}/model_{idx}.pth`` with an int ``label`` and a splits.json of
    plain (foreign, absolute) path lists."""
    splits, seed = {}, 0
    for split, n in zip(("train", "val", "test"), counts):
        folder = "test" if split == "test" else "train"
        paths = []
        for _ in range(n):
            file = root / "fmnist_inrs" / folder / f"model_{seed}.pth"
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save({**dwsnets_state(seed), "label": seed % 10}, file)
            paths.append(f"/scratch/other/fmnist_inrs/{folder}/model_{seed}.pth")
            seed += 1
        splits[split] = paths
    (root / "fmnist_inrs" / "splits.json").write_text(json.dumps(splits))
    return splits


# ---------------------------------------------------------------- NFN


def nfn_state(idx: int, view: int = 0, out: int = 1) -> OrderedDict:
    """NFN's ``Siren`` state dict, biases tagged by (idx, view) so rows can be identified."""
    spec = siren_spec(out_features=out, output_offset=0.0)
    g = torch.Generator().manual_seed(idx * 100 + view)
    state = OrderedDict()
    for key, layer in zip(["net.0.linear", "net.1.linear", "net.2"], spec.layers):
        state[f"{key}.weight"] = torch.randn(*layer.weight_shape, generator=g)
        state[f"{key}.bias"] = torch.full((layer.out_features,), float(idx) + view / 10)
    return state


def write_nfn_sirens(root: Path, n: int = 9, views: int = 0, out: int = 1) -> dict[int, int]:
    """``randinit_smaller[_aug{v}]_{c}s/net{idx}.pth`` for ``n`` images, class ``3 idx % 10``;
    returns ``{idx: class}``."""
    labels = {}
    for view in range(views + 1):
        prefix = "randinit_smaller" if view == 0 else f"randinit_smaller_aug{view - 1}"
        for idx in range(n):
            label = (idx * 3) % 10
            folder = root / f"{prefix}_{label}s"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(nfn_state(idx, view, out), folder / f"net{idx}.pth")
            labels[idx] = label
    return labels


class Payload:
    """Pickles as a call of ``os.system`` (what a malicious checkpoint does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os
        return (os.system, (self.command,))
