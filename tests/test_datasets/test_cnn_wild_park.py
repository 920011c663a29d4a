"""CNN Wild Park: the reader of the published checkpoints and the ``cnn-wild-park`` source.

The test writes a small park in the published layout: CNNs defined like the authors'
``cnn_sampler.CNN`` (plain torch modules), trained for a few AdamW steps on images the test
makes, saved as Ray Tune checkpoints ``cifar10_zooV2/<trial>/checkpoint_<k>/checkpoint.pt``
holding the state dict, the optimizer state, the OmegaConf config of a ``CNNConfig``
dataclass (pickled byte for byte as OmegaConf 2.4 pickles it, which a test checks where
OmegaConf is installed), Ray's trainable state with ``iteration``
and ``last_result["test/acc"]``, and the split file ``cnn_park_splits.json``.
"""

import importlib.util
import io
import json
import os
import pickle
import shutil
import sys
import types
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, List  # OmegaConf pickles typing.Any and typing.List

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import datasets
from datasets.dataset_table import DATASETS
from datasets.errors import DataNotFound, InvalidData, InvalidItem
from datasets.functional import forward
from datasets.io.state_dicts import stack
from datasets.io.wild_park import CheckpointUnpickler, plain, read_network
from datasets.source import LoadOptions
from datasets.symmetry import flip_signs, permute_hidden, rescale_positive
from datasets.weights import MixedWeights, as_mixed


def _import_source() -> types.ModuleType:
    """The source module by its file: ``datasets.sources`` imports every source, and the
    others are being ported."""
    name = "datasets.sources.cnn_wild_park"
    if name not in sys.modules:
        file = Path(datasets.__file__).parent / "sources" / "cnn_wild_park.py"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


CnnWildPark = _import_source().CnnWildPark

IMAGES = 32
SIZE = 16  # CIFAR-10 is 32 x 32; stride 1 and "same" padding keep any size
ACTIVATION_FN = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                 "leaky_relu": F.leaky_relu, "none": lambda x: x}


@dataclass(frozen=True)
class CNNConfig:
    n_layers: int
    n_classes: int
    channels: list[int]
    kernel_size: list[int]
    stride: list[int]
    padding: list[int]
    residual: list[int]
    activation: list[str]


CNNConfig.__module__ = "create_random_cnns"  # where the published configs' class lives


def config(channels, kernels, residual, activation) -> CNNConfig:
    n = len(kernels)
    return CNNConfig(n, 10, list(channels), list(kernels), [1] * n, [k // 2 for k in kernels], list(residual),
                     list(activation))


class AuthorsCNN(nn.Module):
    """The authors' ``CNN``: convolutions, residuals adding the first min(width) channels
    of an earlier layer's activated output before this layer's activation, global average
    pool, linear."""

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(
            nn.Conv2d(cfg.channels[i], cfg.channels[i + 1], kernel_size=cfg.kernel_size[i], padding=cfg.padding[i],
                      stride=cfg.stride[i]) for i in range(cfg.n_layers))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cfg.channels[-1], cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residuals = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.cfg.residual[i] > -1:
                ch = min(self.cfg.channels[self.cfg.residual[i] + 1], self.cfg.channels[i + 1])
                x = x.clone()
                x[:, :ch] += residuals[self.cfg.residual[i]][:, :ch]
            x = ACTIVATION_FN[self.cfg.activation[i]](x)
            if i in self.cfg.residual:
                residuals[i] = x
        return self.fc(self.flatten(self.global_pool(x)))


# ---------------------------------------------------------------- the published pickle format

def _class(module: str, name: str) -> type:
    return type(name, (), {"__module__": module, "__qualname__": name})


MIRROR = {name: _class(module, name) for module, name in (
    ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"), ("omegaconf.nodes", "AnyNode"),
    ("omegaconf.nodes", "IntegerNode"), ("omegaconf.nodes", "StringNode"), ("omegaconf.base", "Metadata"),
    ("omegaconf.base", "ContainerMetadata"))}


def _obj(name: str, **state):
    obj = MIRROR[name].__new__(MIRROR[name])
    obj.__dict__.update(state)
    return obj


def _meta(key, ref_type=Any, object_type=None, optional=True, flags=None, container=False, element_type=Any):
    state = dict(ref_type=ref_type, object_type=object_type, optional=optional, key=key, flags=flags or {},
                 flags_root=False, resolver_cache=defaultdict(dict))
    if container:
        return _obj("ContainerMetadata", **state, key_type=int if ref_type is List else Any, element_type=element_type)
    return _obj("Metadata", **state)


def _untyped(value, parent, key):
    if isinstance(value, dict):
        node = _obj("DictConfig", _metadata=_meta(key, object_type=dict, container=True), _parent=parent, _content={})
        node._content.update({k: _untyped(v, node, k) for k, v in value.items()})
        return node
    return _obj("AnyNode", _metadata=_meta(key), _parent=parent, _val=value)


def _typed(value, parent, key):
    kind = type(value[0] if isinstance(value, list) else value)
    node_class = {int: "IntegerNode", str: "StringNode"}[kind]
    if not isinstance(value, list):
        return _obj(node_class, _metadata=_meta(key, kind, kind, False), _parent=parent, _val=value)
    node = _obj("ListConfig", _metadata=_meta(key, List, list, False, container=True, element_type=kind),
                _parent=parent, _content=[])
    node._content.extend(_typed(v, node, i) for i, v in enumerate(value))
    return node


def omegaconf_model(tune_config: dict, cfg: CNNConfig):
    """What ``OmegaConf.create({**tune_config, "model": cfg}).model`` pickles as."""
    root = _untyped(tune_config, None, None)
    metadata = _meta("model", object_type=CNNConfig, flags={"readonly": True}, container=True)
    model = _obj("DictConfig", _metadata=metadata, _parent=root, _content={})
    model._content.update({f.name: _typed(getattr(cfg, f.name), model, f.name) for f in fields(cfg)})
    root._content["model"] = model
    return model


@contextmanager
def published_modules(omegaconf: bool = True):
    """Make the module names of the published pickles resolvable while writing."""
    modules = {"create_random_cnns": types.ModuleType("create_random_cnns")}
    modules["create_random_cnns"].CNNConfig = CNNConfig
    if omegaconf:
        for cls in MIRROR.values():
            for name in (cls.__module__.split(".")[0], cls.__module__):
                modules.setdefault(name, types.ModuleType(name))
            setattr(modules[cls.__module__], cls.__qualname__, cls)
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


TUNE_CONFIG = {"name": "cifar10_zooV2", "seed": 1, "batch_size": 512, "num_epochs": 200,
               "data": {"efficient_dataset_path": Path("/data/cifar10/dataset.pt"), "n_classes": 10},
               "optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.001, "weight_decay": 0.0}}


def save_checkpoint(path: Path, net: AuthorsCNN, optimizer, iteration: int, accuracy: float, loss: float,
                    config_of=None) -> None:
    """``NN_tune_trainable.save_checkpoint``: state dict, optimizer, config, Ray's state."""
    cfg = config_of or net.cfg
    result = {"test/acc": accuracy, "test/loss": loss, "done": False, "training_iteration": iteration,
              "trial_id": path.parent.parent.name[-11:], "timestamp": 1700000000, "time_this_iter_s": 0.5,
              "config": {**TUNE_CONFIG, "model": cfg}}
    checkpoint = {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                  "config": omegaconf_model(TUNE_CONFIG, cfg), "experiment_id": "5e2b3c1f0d7a4e8f",
                  "iteration": iteration, "timesteps_total": None, "time_total": 0.5 * iteration,
                  "episodes_total": None, "last_result": result, "ray_version": "2.6.3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with published_modules():
        torch.save(checkpoint, path)


# ---------------------------------------------------------------- a small park

def images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(IMAGES, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (IMAGES,), generator=g)


TRAIN, TEST = images(0), images(1)
RUNS = {  # trial -> (split, config)
    "NN_tune_trainable_a1b2c_00000": ("train", config([3, 4, 8], [3, 5], [-1, -1], ["relu", "gelu"])),
    "NN_tune_trainable_a1b2c_00001": ("train", config([3, 8, 4, 8], [7, 3, 5], [-1, -1, 0],
                                                      ["leaky_relu", "tanh", "sigmoid"])),
    "NN_tune_trainable_a1b2c_00002": ("val", config([3, 4, 4, 4, 4], [3, 3, 5, 7], [-1, -1, 0, 1],
                                                    ["none", "relu", "gelu", "leaky_relu"])),
    "NN_tune_trainable_a1b2c_00003": ("test", config([3, 8, 8], [5, 3], [-1, -1], ["tanh", "none"])),
    # residuals between unequal widths: 4 -> 8 channels (adds 4); a chain 8 -> 16 -> 8 (adds 8, then 8)
    # beside 4 -> 4
    "NN_tune_trainable_a1b2c_00004": ("train", config([3, 4, 8, 8], [3, 3, 3], [-1, -1, 0], ["relu", "relu", "relu"])),
    "NN_tune_trainable_a1b2c_00005": ("test", config([3, 8, 4, 16, 4, 8], [3, 5, 3, 7, 3], [-1, -1, 0, 1, 2],
                                                     ["leaky_relu", "tanh", "relu", "none", "gelu"])),
}


def accuracy_and_loss(net: nn.Module) -> tuple[float, float]:
    """The authors' ``evaluate`` on the test images."""
    with torch.no_grad():
        out = net(TEST[0])
    return (out.argmax(1) == TEST[1]).sum().item() / IMAGES, F.cross_entropy(out, TEST[1]).item()


def train_run(folder: Path, trial: str, cfg: CNNConfig, seed: int, checkpoints: int = 2) -> tuple[dict, dict]:
    """A few AdamW steps, a checkpoint after each. Returns the split file's columns and,
    per checkpoint path, the trained module's parameters."""
    torch.manual_seed(seed)
    net = AuthorsCNN(cfg)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    rows, states = {"path": [], "score": [], "step": []}, {}
    for iteration in range(1, checkpoints + 1):
        optimizer.zero_grad()
        F.cross_entropy(net(TRAIN[0]), TRAIN[1]).backward()
        optimizer.step()
        accuracy, loss = accuracy_and_loss(net)
        relative = f"cifar10_zooV2/{trial}/checkpoint_{iteration - 1:06d}/checkpoint.pt"
        save_checkpoint(folder / relative, net, optimizer, iteration, accuracy, loss)
        rows["path"].append(relative), rows["score"].append(accuracy), rows["step"].append(iteration)
        states[relative] = (cfg, {k: v.clone() for k, v in net.state_dict().items()})
    return rows, states


def write_splits(folder: Path, table: dict) -> None:
    (folder / "cnn_park_splits.json").write_text(json.dumps(table))


@dataclass
class Park:
    folder: Path
    modules: dict  # checkpoint path -> (config, the trained module's state dict)


@pytest.fixture(scope="module")
def park(tmp_path_factory) -> Park:
    folder = tmp_path_factory.mktemp("wild_park")
    table = {s: {"path": [], "score": [], "step": []} for s in ("train", "val", "test")}
    modules = {}
    for seed, (trial, (split, cfg)) in enumerate(RUNS.items()):
        rows, states = train_run(folder, trial, cfg, seed)
        modules.update(states)
        for key, values in rows.items():
            table[split][key] += values
    write_splits(folder, table)
    return Park(folder, modules)


@pytest.fixture
def copy(park, tmp_path) -> Path:
    """A copy of the park's folder, to add bad files to."""
    return Path(shutil.copytree(park.folder, tmp_path / "park"))


def add_to_split(folder: Path, split: str, rows: dict) -> None:
    table = json.loads((folder / "cnn_park_splits.json").read_text())
    for key, values in rows.items():
        table[split][key] += values
    write_splits(folder, table)


def load(folder: Path, tmp_path: Path, **options):
    info = DATASETS["cnn-wild-park"].info
    return CnnWildPark(info, LoadOptions(tmp_path / "cache", source=folder, progress=False, **options)).load()


# ---------------------------------------------------------------- tests

def test_source_reads_the_published_layout(park, tmp_path):
    ds = load(park.folder, tmp_path)
    table = json.loads((park.folder / "cnn_park_splits.json").read_text())
    assert ds.info.task == "regression" and ds.out_dim == 1 and ds.info.suites == ("zoo",)
    for name, split in ds.splits().items():
        assert split.targets.tolist() == pytest.approx(table[name]["score"], abs=1e-7)
        assert split.extras["step"].tolist() == table[name]["step"]
    assert [len(s) for s in ds.splits().values()] == [6, 2, 4]
    assert len(as_mixed(ds.train.weights).groups) == 3  # three architectures, one group each
    assert ds.train.extras["run"].tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.card["runs"] == 6 and ds.card["distinct_architectures"] == 6 and ds.card["skipped"] == {}
    assert load(park.folder, tmp_path).fingerprint == ds.fingerprint


def test_converted_networks_compute_what_the_trained_modules_compute(park):
    x = TEST[0].double()
    for relative, (cfg, state) in park.modules.items():
        net = read_network(park.folder / relative)
        module = AuthorsCNN(cfg)
        module.load_state_dict(state)
        with torch.no_grad():
            theirs = module.double()(x)
            recorded, _ = accuracy_and_loss(module.float())
        ours = forward(stack(net.spec, [(net.weights, net.biases)]).double(), x)[0]
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-10), relative
        assert (ours.argmax(1) == TEST[1]).double().mean().item() == net.test_accuracy == recorded
    spec = read_network(park.folder / next(p for p in park.modules if "00002" in p)).spec
    assert spec.residual == ((1, 3), (2, 4))
    assert [layer.activation for layer in spec.layers] == ["identity", "relu", "gelu", "leaky_relu", "identity"]
    assert [layer.kernel for layer in spec.layers[:-1]] == [(3, 3), (3, 3), (5, 5), (7, 7)]
    unequal = read_network(park.folder / next(p for p in park.modules if "00005" in p)).spec
    assert unequal.residual == ((1, 3), (2, 4), (3, 5)) and unequal.residual_joined == (8, 4, 8)
    assert unequal.widths == (3, 8, 4, 16, 4, 8, 10)


def test_symmetries_of_the_converted_networks_preserve_their_function(park, tmp_path, generator):
    ds = load(park.folder, tmp_path)
    nets = MixedWeights.cat([as_mixed(s.weights) for s in ds.splits().values()]).map_groups(lambda g: g.double())
    x = TEST[0][:8].double()
    outputs = nets.apply(lambda g: forward(g, x))
    for transform in (permute_hidden, flip_signs, rescale_positive):  # rescale: relu and leaky_relu neurons
        moved = transform(nets, generator)
        assert not all(torch.equal(a.flatten(), b.flatten()) for a, b in zip(moved.groups, nets.groups))
        assert torch.allclose(moved.apply(lambda g: forward(g, x)), outputs, rtol=0, atol=1e-10), transform
    control = rescale_positive(nets, generator, any_activation=True)  # gelu, tanh, sigmoid are not homogeneous
    assert (control.apply(lambda g: forward(g, x)) - outputs).abs().max() > 1e-4


def bad_checkpoints(folder: Path, marker: Path) -> dict:
    """One checkpoint of each kind of trouble, in the published layout; their rows."""
    bad = {}
    torch.manual_seed(8)
    net = AuthorsCNN(config([3, 4, 4, 4], [3, 3, 3], [-1, -1, 0], ["relu", "relu", "relu"]))
    optimizer = torch.optim.AdamW(net.parameters())
    strided = CNNConfig(3, 10, [3, 4, 4, 4], [3, 3, 3], [1, 2, 1], [1, 1, 1], [-1, -1, 0], ["relu"] * 3)
    swish = config([3, 4, 4, 4], [3, 3, 3], [-1, -1, 0], ["relu", "swish", "relu"])
    for reason, write in {
        "residual-shapes": lambda p: save_checkpoint(p, net, optimizer, 1, 0.1, 2.3, config_of=strided),
        "activation": lambda p: save_checkpoint(p, net, optimizer, 1, 0.1, 2.3, config_of=swish),
        "unsafe": lambda p: torch.save({"model": Payload(marker)}, p),
        "unreadable": lambda p: p.write_bytes((folder / bad["activation"]["path"][0]).read_bytes()[:3000]),
    }.items():
        relative = f"cifar10_zooV2/NN_tune_trainable_bad_{reason}/checkpoint_000000/checkpoint.pt"
        (folder / relative).parent.mkdir(parents=True)
        write(folder / relative)
        bad[reason] = {"path": [relative], "score": [0.1], "step": [1]}
    return bad


class Payload:
    """Pickles as a call of ``os.system``: what a malicious checkpoint holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_bad_checkpoints_fail_with_one_line_or_are_counted(copy, tmp_path):
    marker = tmp_path / "pwned"
    bad = bad_checkpoints(copy, marker)
    messages = {"residual-shapes": "residual from conv layer 0 (32 x 32) into conv layer 2 (16 x 16) joins feature "
                                   "maps of different sizes",
                "activation": "unknown activation(s) ['swish']",
                "unsafe": "refused to unpickle global posix.system",
                "unreadable": "cannot be read as a PyTorch checkpoint"}
    for reason, rows in bad.items():
        with pytest.raises(InvalidItem) as err:
            read_network(copy / rows["path"][0])
        assert err.value.reason == reason and messages[reason] in str(err.value) and "\n" not in str(err.value)
        assert str(err.value).startswith(str(copy / rows["path"][0]))
        add_to_split(copy, "test", rows)
    assert not marker.exists()
    with pytest.raises(InvalidItem, match="residual from conv layer 0"):
        load(copy, tmp_path)
    ds = load(copy, tmp_path, skip_invalid=True)
    assert ds.card["skipped"] == {reason: 1 for reason in bad}
    assert len(ds.test_split()) == 4 and [len(ds.train), len(ds.val)] == [6, 2]
    assert not marker.exists()


@pytest.mark.parametrize("write", ["legacy", "pickle"])
def test_malicious_files_in_other_formats_are_refused_too(tmp_path, write):
    marker, path = tmp_path / "pwned", tmp_path / "checkpoint.pt"
    if write == "legacy":
        torch.save({"model": Payload(marker)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(InvalidItem, match=r"refused to unpickle global posix\.system") as err:
        read_network(path)
    assert err.value.reason == "unsafe" and not marker.exists()


def test_split_file_and_checkpoints_must_be_there(copy, tmp_path):
    (copy / "cnn_park_splits.json").unlink()
    with pytest.raises(DataNotFound) as err:
        load(copy, tmp_path)
    message = str(err.value)
    assert "cnn_park_splits.json" in message and "zenodo.org/records/12797219" in message and "\n" not in message
    shutil.rmtree(copy / "cifar10_zooV2")
    write_splits(copy, {s: {"path": ["cifar10_zooV2/run/checkpoint_000000/checkpoint.pt"], "score": [0.5],
                            "step": [1]} for s in ("train", "val", "test")})
    with pytest.raises(DataNotFound, match="checkpoints .*cnn_wild_park.zip"):
        load(copy, tmp_path)


@pytest.mark.parametrize("table, problem", [
    ({"train": {"path": [], "score": [], "step": []}}, "'val' must hold lists"),
    ({s: {"path": ["../elsewhere/checkpoint.pt"], "score": [0.5], "step": [1]} for s in ("train", "val", "test")},
     "relative paths inside the folder"),
])
def test_malformed_split_file_is_refused(copy, tmp_path, table, problem):
    write_splits(copy, table)
    with pytest.raises(InvalidData, match=problem) as err:
        load(copy, tmp_path)
    assert str(err.value).startswith(str(copy / "cnn_park_splits.json")) and "\n" not in str(err.value)


def test_checkpoint_disagreeing_with_the_split_file_is_refused(copy, tmp_path):
    table = json.loads((copy / "cnn_park_splits.json").read_text())
    table["val"]["score"][0] += 0.01
    write_splits(copy, table)
    with pytest.raises(InvalidItem, match="says") as err:
        load(copy, tmp_path)
    assert err.value.reason == "split-mismatch"


def test_the_format_is_what_omegaconf_pickles():
    omegaconf = pytest.importorskip("omegaconf")
    for _, cfg in RUNS.values():
        with published_modules(omegaconf=False):
            real = pickle.dumps(omegaconf.OmegaConf.create({**TUNE_CONFIG, "model": cfg}).model, protocol=2)
        with published_modules():
            ours = pickle.dumps(omegaconf_model(TUNE_CONFIG, cfg), protocol=2)
        assert ours == real  # byte for byte
        read = plain(CheckpointUnpickler(io.BytesIO(real)).load())
        assert read == {f.name: getattr(cfg, f.name) for f in fields(cfg)}
