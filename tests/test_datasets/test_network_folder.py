"""``network-folder``: a folder of the user's own state dicts and a targets.csv.

The tests write small torch modules (MLPs and CNNs, as ``.pt``, ``.pth`` and
``.safetensors``) and a ``targets.csv``, then check the inferred architectures, that a loaded
network computes what the saved module computes, the split rules, classification through
:func:`register_network_folder`, the cache, every refusal (one line naming the file) and
``--skip-invalid``; one test trains on a folder of CNNs through the command line.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import benchmarks.run as run
from benchmarks.suites import SUITES
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError, DataNotFound, InvalidData, InvalidItem
from datasets.functional import forward
from datasets.source import LoadOptions
from datasets.sources.network_folder import NetworkFolder, register_network_folder
from datasets.spec import ArchSpec, Layer, mlp_spec
from datasets.weights import as_mixed

NAME = "network-folder"
CONV_OPTIONS = {"padding": "1", "activation": "tanh"}


def mlp(widths: list[int]) -> nn.Sequential:
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def cnn(channels: list[int], kernel: int, classes: int = 3) -> nn.Sequential:
    """Convs with ``kernel`` and padding 1, tanh, global average pooling, a linear head."""
    layers = []
    for i in range(len(channels) - 1):
        layers += [nn.Conv2d(channels[i], channels[i + 1], kernel, padding=1), nn.Tanh()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], classes))


class Named(nn.Module):
    """A CNN whose names sort out of module order (``classifier`` < ``features``)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh())
        self.classifier = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(-2, -1)))


def save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


def write_csv(folder: Path, rows: list[tuple], columns: str = "file,target") -> None:
    lines = [columns] + [",".join(map(str, row)) for row in rows]
    (folder / "targets.csv").write_text("\n".join(lines) + "\n")


def write_mlps(folder: Path, n: int = 20, seed: int = 0) -> dict[str, nn.Module]:
    """``n`` MLPs 4-8-2 ``net{i}.pt`` with targets ``i / n``."""
    torch.manual_seed(seed)
    modules = {f"net{i}.pt": mlp([4, 8, 2]) for i in range(n)}
    for name, module in modules.items():
        save(module.state_dict(), folder / name)
    write_csv(folder, [(name, i / n) for i, name in enumerate(modules)])
    return modules


def load(tmp_path: Path, folder: Path, name: str = NAME, **kw):
    return DATASETS[name].open(LoadOptions(tmp_path / "cache", folder, progress=False, **kw)).load()


def refused(error, match: str, tmp_path: Path, folder: Path, **kw):
    """Loading fails with ``error``, whose one-line message matches ``match``."""
    with pytest.raises(error, match=match) as info:
        load(tmp_path, folder, **kw)
    assert "\n" not in str(info.value)
    return info.value


def files_by_split(dataset, folder: Path) -> dict[str, list[str]]:
    """Per split, the files of its networks (through the ``line`` extra)."""
    lines = (folder / "targets.csv").read_text().splitlines()
    return {name: [lines[line - 1].split(",")[0] for line in split.extras["line"].tolist()]
            for name, split in dataset.splits().items()}


# ---------------------------------------------------------------- inference and evaluation


def test_architectures_are_inferred_and_networks_compute_what_was_saved(tmp_path):
    folder = tmp_path / "zoo"
    torch.manual_seed(0)
    makers = [("mlp/a{}.pt", lambda: mlp([4, 16, 16, 3])),  # a deep one: names 0 .. 10, sorted as numbers
              ("mlp/b{}.safetensors", lambda: mlp([4, 8, 8, 8, 8, 8, 3])),
              ("cnn/c{}.safetensors", lambda: cnn([1, 4, 6], 3)), ("cnn/d{}.pth", lambda: cnn([1, 8], 5)),
              ("cnn/e{}.safetensors", Named)]
    modules = {pattern.format(i): make() for pattern, make in makers for i in range(5)}
    for name, module in modules.items():
        save(module.state_dict(), folder / name)
    write_csv(folder, [(name, i / 10) for i, name in enumerate(modules)])
    dataset = load(tmp_path, folder, params=CONV_OPTIONS)

    def conv(out, inp, k):
        return Layer("conv", out, inp, (k, k), 1, 1, "tanh")

    expected = {mlp_spec([4, 16, 16, 3], "tanh"), mlp_spec([4, 8, 8, 8, 8, 8, 3], "tanh"),
                ArchSpec((conv(4, 1, 3), conv(6, 4, 3), Layer("linear", 3, 6))),
                ArchSpec((conv(8, 1, 5), Layer("linear", 3, 8))), ArchSpec((conv(4, 1, 3), Layer("linear", 3, 4)))}
    assert set(dataset.specs) == expected
    assert sum(a["networks"] for a in dataset.card["inferred_architectures"].values()) == 25
    assert "conv3x3 1-4 | conv3x3 4-6 | gap | linear 6-3 (tanh; stride 1, padding 1)" in \
        dataset.card["inferred_architectures"]
    assert dataset.card["files"] == {"rows": 25, "read": 25, "types": {".pt": 5, ".pth": 5, ".safetensors": 15}}
    images, vectors = torch.randn(3, 1, 7, 7), torch.randn(3, 4)
    for split, files in files_by_split(dataset, folder).items():
        weights = as_mixed(dataset.splits()[split].weights)
        for row, name in enumerate(files):
            network = weights[row].groups[0]
            x = images if network.spec.is_conv else vectors
            with torch.no_grad():
                assert torch.allclose(forward(network, x)[0], modules[name](x), atol=1e-5), name


def test_default_options_and_a_homogeneous_folder(tmp_path):
    """relu, stride 1, padding 0 by default; one architecture gives one ``WeightSpace``."""
    folder = tmp_path / "zoo"
    write_mlps(folder)
    dataset = load(tmp_path, folder)
    assert dataset.specs == (mlp_spec([4, 8, 2], "relu"),) and not dataset.heterogeneous
    assert dataset.train.targets.dtype == torch.float32
    assert dataset.card["skipped"] == {} and "seeded" in dataset.card["split"]


# ---------------------------------------------------------------- splits


def test_seeded_split_is_deterministic_and_ignores_the_row_order(tmp_path):
    folder = tmp_path / "zoo"
    write_mlps(folder)
    first = files_by_split(load(tmp_path, folder), folder)
    assert {k: len(v) for k, v in first.items()} == {"train": 14, "val": 2, "test": 4}
    assert files_by_split(load(tmp_path / "again", folder), folder) == first
    rows = (folder / "targets.csv").read_text().splitlines()
    (folder / "targets.csv").write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")
    reordered = files_by_split(load(tmp_path, folder), folder)
    assert {k: sorted(v) for k, v in reordered.items()} == {k: sorted(v) for k, v in first.items()}
    other = files_by_split(load(tmp_path, folder, params={"split_seed": "7"}), folder)
    assert {k: sorted(v) for k, v in other.items()} != {k: sorted(v) for k, v in first.items()}
    sizes = files_by_split(load(tmp_path, folder, params={"val_fraction": "0.25", "test_fraction": "0.25"}), folder)
    assert {k: len(v) for k, v in sizes.items()} == {"train": 10, "val": 5, "test": 5}


def test_the_split_column_is_honoured(tmp_path):
    folder = tmp_path / "zoo"
    write_mlps(folder, n=9)
    chosen = ["train"] * 3 + ["val"] * 3 + ["test"] * 3
    write_csv(folder, [(f"net{i}.pt", i, split) for i, split in enumerate(chosen)], "file,target,split")
    dataset = load(tmp_path, folder)
    assert files_by_split(dataset, folder) == {s: [f"net{i}.pt" for i in range(9) if chosen[i] == s]
                                               for s in ("train", "val", "test")}
    assert dataset.card["split"] == "the split column of targets.csv"
    refused(ConfigError, r"option\(s\) split_seed: .*has a split column", tmp_path, folder,
            params={"split_seed": "3"})


# ---------------------------------------------------------------- registration


def test_network_folder_is_a_zoo_regression_run_only_when_named():
    info = DATASETS[NAME].info
    assert (info.suites, info.task, info.out_dim, info.embedded) == (("zoo",), "regression", 1, False)
    assert "--dataset-source DIR" in info.source
    assert NAME in SUITES["zoo"].datasets() and NAME not in SUITES["zoo"].default_datasets()


def test_classification_through_register_network_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))  # the registration ends with the test
    entry = register_network_folder("my-classes", task="classification", classes=3)
    assert (entry.info.suites, entry.info.out_dim, entry.source) == (("inr",), 3, NetworkFolder)
    assert register_network_folder("my-scores", suites=("zoo", "inr")).info.suites == ("zoo", "inr")
    folder = tmp_path / "zoo"
    write_mlps(folder, n=30)
    write_csv(folder, [(f"net{i}.pt", i % 3) for i in range(30)])
    dataset = load(tmp_path, folder, name="my-classes")
    assert dataset.train.targets.dtype == torch.long
    assert sum(map(sum, dataset.card["class_balance"].values())) == 30
    write_csv(folder, [(f"net{i}.pt", 3 if i == 4 else i % 3) for i in range(30)])
    refused(InvalidItem, r"targets\.csv: line 6 \(net4\.pt\): target '3' is not a class; valid: an integer 0\.\.2",
            tmp_path, folder, name="my-classes")
    write_csv(folder, [(f"net{i}.pt", 1.5 if i == 0 else i % 3) for i in range(30)])
    refused(InvalidItem, r"line 2 \(net0\.pt\): target '1\.5' is not a class", tmp_path, folder, name="my-classes")
    for kwargs, match in [({"task": "classification"}, "classes=None; valid: an integer >= 2"),
                          ({"classes": 3}, "classes=3 with task='regression'"),
                          ({"task": "edit"}, "task='edit'; valid: classification, regression")]:
        with pytest.raises(ConfigError, match=match):
            register_network_folder("my-bad", **kwargs)


# ---------------------------------------------------------------- the cache


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    write_mlps(folder)
    first = load(tmp_path, folder)

    def no_build(self):
        raise AssertionError("rebuilt although nothing changed")

    with monkeypatch.context() as patch:
        patch.setattr(NetworkFolder, "process", no_build)
        assert load(tmp_path, folder).fingerprint == first.fingerprint
    line = first.train.extras["line"][0].item()
    victim = folder / f"net{line - 2}.pt"
    state = torch.load(victim, weights_only=True)
    save({k: v * 2 for k, v in state.items()}, victim)
    second = load(tmp_path, folder)
    assert second.fingerprint != first.fingerprint
    assert torch.equal(second.train.weights.weights[0][0], 2 * first.train.weights.weights[0][0])
    assert load(tmp_path, folder, params={"activation": "gelu"}).fingerprint != second.fingerprint


# ---------------------------------------------------------------- refusals


class Opaque:
    """Any object that is not a state dict."""

    def __init__(self) -> None:
        self.weights = torch.zeros(3)


class Trap:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def linear_state(*shapes: tuple[int, ...], bias: bool = True) -> dict:
    state = {}
    for i, shape in enumerate(shapes):
        state[f"{i}.weight"] = torch.randn(shape)
        if bias:
            state[f"{i}.bias"] = torch.randn(shape[0])
    return state


def rewrite_row(folder: Path, line: int, text: str, state: dict | None = None) -> None:
    """Replace ``line`` of targets.csv; with ``state``, save it as the row's new file."""
    if state is not None:
        save(state, folder / text.split(",")[0])
    lines = (folder / "targets.csv").read_text().splitlines()
    lines[line - 1] = text
    (folder / "targets.csv").write_text("\n".join(lines) + "\n")


FAULTS = {
    "pickled object": (lambda f: torch.save(Opaque(), f / "net3.pt"), InvalidItem,
                       r"net3\.pt: refused to unpickle global [\w.]*Opaque: the file holds objects other than "
                       r"tensors, and wsbench never unpickles arbitrary objects"),
    "pickled trap": (lambda f: torch.save(Trap(f.parent / "unpickled"), f / "net3.pt"), InvalidItem,
                     r"net3\.pt: refused to unpickle global _?io\.open"),
    "checkpoint": (lambda f: torch.save({"model": mlp([4, 8, 2]).state_dict(), "epoch": 3}, f / "net3.pt"),
                   InvalidItem, r"net3\.pt: entry 'model' holds a \w*Dict, not a named tensor; valid: a flat state dict"),
    "truncated": (lambda f: (f / "net3.pt").write_bytes((f / "net3.pt").read_bytes()[:100]), InvalidItem,
                  r"net3\.pt: cannot be read as a PyTorch state dict \(truncated or corrupt\?\)"),
    "missing target": (lambda f: rewrite_row(f, 5, "net3.pt,"), InvalidItem,
                       r"targets\.csv: line 5 \(net3\.pt\): no target; valid: a number"),
    "text target": (lambda f: rewrite_row(f, 5, "net3.pt,high"), InvalidItem,
                    r"targets\.csv: line 5 \(net3\.pt\): target 'high' is not a number"),
    "infinite target": (lambda f: rewrite_row(f, 5, "net3.pt,inf"), InvalidItem, r"target 'inf' is not finite"),
    "not chaining": (lambda f: save(linear_state((16, 4), (3, 5)), f / "net3.pt"), InvalidItem,
                     r"net3\.pt: 1\.weight takes 5 inputs but 0\.weight gives 16; valid: layers that chain"),
    "3-D weight": (lambda f: save(nn.Conv1d(1, 4, 3).state_dict(), f / "net3.pt"), InvalidItem,
                   r"net3\.pt: weight is a 3-D weight of shape \(4, 1, 3\); valid: a 2-D linear or 4-D conv weight"),
    "missing bias": (lambda f: save(linear_state((8, 4), (2, 8), bias=False), f / "net3.pt"), InvalidItem,
                     r"net3\.pt: 0\.weight is followed by 1\.weight, not its bias 0\.bias"),
    "batch norm": (lambda f: save(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).state_dict(), f / "net3.pt"),
                   InvalidItem, r"net3\.pt: 1\.weight is a 1-D weight .*no normalisation layers"),
    "batch-norm buffers": (lambda f: save({**nn.Conv2d(1, 4, 3).state_dict(),
                                           **nn.BatchNorm2d(4, affine=False).state_dict()}, f / "net3.pt"),
                           InvalidItem, r"net3\.pt: running_mean is not a layer's weight; valid: \(weight, bias\)"),
    "flatten head": (lambda f: save(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 2)).state_dict(),
                                    f / "net3.pt"), InvalidItem,
                     r"net3\.pt: 2\.weight takes 144 inputs but the last conv layer 0\.weight gives 4 channels; "
                     r"valid: global average pooling .*not a flatten head"),
    "conv after linear": (lambda f: save({**linear_state((4, 4)), "1.weight": torch.randn(2, 4, 3, 3),
                                          "1.bias": torch.randn(2)}, f / "net3.pt"), InvalidItem,
                          r"net3\.pt: 1\.weight is a conv layer after the linear layer 0\.weight"),
    "integer weights": (lambda f: save({k: v.long() for k, v in linear_state((8, 4), (2, 8)).items()}, f / "net3.pt"),
                        InvalidItem, r"net3\.pt: 0\.weight is torch\.int64, expected a float tensor"),
    "NaN weights": (lambda f: save({**linear_state((8, 4)), "1.weight": torch.full((2, 8), float("nan")),
                                    "1.bias": torch.zeros(2)}, f / "net3.pt"), InvalidItem,
                    r"net3\.pt: 1\.weight holds NaN or infinite values"),
    "wrong bias": (lambda f: save({**linear_state((8, 4)), "0.bias": torch.zeros(7)}, f / "net3.pt"), InvalidItem,
                   r"net3\.pt: 0\.bias has shape \(7,\), expected \(8,\)"),
    "file type": (lambda f: rewrite_row(f, 5, "net3.ckpt,0.5", linear_state((2, 4))), InvalidItem,
                  r"net3\.ckpt: unsupported file type '\.ckpt'; valid: \.pt or \.pth"),
    "outside": (lambda f: rewrite_row(f, 5, "../net3.pt,0.5"), InvalidItem,
                r"targets\.csv: line 5 \(\.\./net3\.pt\): file must be a path inside the folder"),
    "listed twice": (lambda f: rewrite_row(f, 5, "net2.pt,0.5"), InvalidItem,
                     r"targets\.csv: line 5 \(net2\.pt\): the file is listed already on line 4"),
    "missing file": (lambda f: (f / "net3.pt").unlink(), DataNotFound,
                     r"1 of the 20 network files listed in .*targets\.csv \(first: net3\.pt, line 5\) not found "
                     r"\(searched: .*net3\.pt\)"),
    "missing table": (lambda f: (f / "targets.csv").unlink(), DataNotFound,
                      r"targets\.csv of network-folder not found \(searched: .*zoo/targets\.csv\)"),
    "missing column": (lambda f: (f / "targets.csv").write_text("path,target\nnet0.pt,1\n"), InvalidData,
                       r"targets\.csv: missing column\(s\) file \(found: path, target\); valid: a CSV table"),
    "bad split": (lambda f: write_csv(f, [(f"net{i}.pt", 0, "tran" if i == 3 else "train") for i in range(20)],
                                      "file,target,split"), InvalidItem,
                  r"targets\.csv: line 5 \(net3\.pt\): split 'tran' is not valid; valid: train, val, test"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_malformed_input_is_refused_naming_the_file(tmp_path, fault):
    folder = tmp_path / "zoo"
    write_mlps(folder)
    make, error, match = FAULTS[fault]
    make(folder)
    refused(error, match, tmp_path, folder)
    assert not (tmp_path / "unpickled").exists()


def test_the_pickle_trap_is_real(tmp_path):
    """Negative control for the refused pickle: loading it without weights_only runs it."""
    marker = tmp_path / "unpickled"
    torch.save(Trap(marker), tmp_path / "trap.pt")
    torch.load(tmp_path / "trap.pt", weights_only=False)
    assert marker.exists()


def test_skip_invalid_skips_and_counts(tmp_path):
    folder = tmp_path / "zoo"
    write_mlps(folder, n=24)
    FAULTS["not chaining"][0](folder)  # net3.pt
    torch.save(Trap(tmp_path / "unpickled"), folder / "net5.pt")
    (folder / "net6.pt").unlink()
    (folder / "net7.pt").write_bytes(b"not a state dict")
    rewrite_row(folder, 10, "net8.pt,")
    dataset = load(tmp_path, folder, skip_invalid=True)
    assert dataset.card["skipped"] == {"architecture": 1, "missing": 1, "target": 1, "unreadable": 1, "unsafe": 1}
    kept = {name for files in files_by_split(dataset, folder).values() for name in files}
    assert len(kept) == 19 and not kept & {f"net{i}.pt" for i in range(3, 9) if i != 4}
    assert dataset.card["files"]["read"] == 19 and not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("params, match", [
    ({"activation": "swish"}, r"activation='swish' is not valid; valid: one of identity, relu"),
    ({"stride": "0"}, r"stride=0 is out of range; valid: 1\.\.64"),
    ({"val_fraction": "0.9"}, r"val_fraction=0\.9 is out of range; valid: 0\.01\.\.0\.45"),
    ({"depth": "3"}, r"unknown option\(s\) depth; valid: activation, omega, padding"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, params, match):
    with pytest.raises(ConfigError, match=match):
        DATASETS[NAME].open(LoadOptions(tmp_path, tmp_path / "zoo", progress=False, params=params))
    assert not any(tmp_path.iterdir())


def test_too_few_networks_in_a_split_is_one_line(tmp_path):
    folder = tmp_path / "zoo"
    write_mlps(folder, n=9)
    write_csv(folder, [(f"net{i}.pt", i, "val" if i == 0 else "train") for i in range(9)], "file,target,split")
    refused(InvalidData, r"network-folder, val split: 1 usable network\(s\) of the 1 row\(s\) .*at least 2 are needed",
            tmp_path, folder)


# ---------------------------------------------------------------- end to end


def test_a_folder_of_cnns_trains_in_the_zoo_suite(tmp_path):
    folder = tmp_path / "my-zoo"
    torch.manual_seed(0)
    rows = []
    for i in range(40):
        name = f"cnn{i}.safetensors" if i % 2 else f"cnn{i}.pt"
        save(cnn([1, 4, 4] if i % 3 else [1, 6], 3).state_dict(), folder / name)
        rows.append((name, round(torch.rand(1).item(), 4)))
    write_csv(folder, rows)
    code = run.main(["--suite", "zoo", "--datasets", NAME, "--dataset-source", str(folder), "--methods", "statnn",
                     "--seeds", "0", "--epochs", "1", "--jobs", "1", "--out", str(tmp_path / "out"),
                     "--data-root", str(tmp_path / "data"), "--dataset-option", "padding=1"])
    assert code == 0
    records = [json.loads(path.read_text()) for path in (tmp_path / "out" / "records").rglob("*.json")]
    assert len(records) == 1 and records[0]["status"] == "ok", records
    assert records[0]["config"]["dataset"] == NAME
    assert all(r["function_error"] < 1e-4 for r in records[0]["robustness"].values())  # the specs compute as saved
