"""Reader of the CNN Wild Park checkpoints (Kofinas et al., "Graph Neural Networks for
Learning Equivariant Representations of Neural Networks", ICLR 2024), without unpickling
anything but tensors, plain containers and inert stand-ins for the config's classes.

Facts, from the authors' code (github.com/mkofinas/neural-graphs at commit
1f2b671ab4988ef212469363005a5b99eec16580, paths under ``experiments/``) unless noted:

- **Networks** (``cnn_generalization/dataset/cnn_sampler.py``, ``CNN``): ``n_layers``
  convolutions ``Conv2d(channels[i], channels[i+1], kernel_size[i], stride[i],
  padding[i])``, all with biases, then ``AdaptiveAvgPool2d(1)``, ``Flatten`` and
  ``Linear(channels[-1], n_classes)``. No normalisation, dropout or other pooling. Layer
  ``i`` computes its convolution; if ``residual[i] = r >= 0`` it adds, to its first
  ``min(channels[r+1], channels[i+1])`` channels, the output of layer ``r`` *after* that
  layer's activation; then applies ``activation[i]``. The config asserts ``residual[0] ==
  -1`` and ``residual[i] < i - 1`` (never from the preceding layer) and that the last
  conv layer is never a source. Activations (``ACTIVATION_FN``): ``relu``, ``gelu``
  (``F.gelu``, exact), ``tanh``, ``sigmoid``, ``leaky_relu`` (``F.leaky_relu``, slope
  0.01) and ``none``. The sampler sets ``padding = kernel_size // 2``.
- **Search space.** The generation config (``.../generate_cnn_park_config/base.yaml``,
  ``name: cifar10_zooV3``) draws 2-8 conv layers, channels from 4/8/16/32/64, kernels
  3/5/7, stride 1, the six activations; AdamW (lr 1e-3, no weight decay), batch 512,
  200 epochs, a checkpoint every 10 epochs; CIFAR-10 (3 x 32 x 32, 10 classes),
  normalised with mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616)
  (``.../data/cifar10.yaml``). The *published* folder is ``cifar10_zooV2``; its loader
  config (``cnn_generalization/configs/data/cnn_park.yaml``) says at most 5 hidden
  layers and 7 x 7 kernels, and its in-degree histogram ``deg`` stops at 33 inputs per
  neuron, which fits ``cnn_sampler.DEFAULT_CONFIG_OPTIONS`` (2-5 layers, channels
  4/8/16/32). This reader takes any depth, width, kernel and all six activations.
- **Checkpoint** (``cnn_generalization/dataset/cnn_trainer.py``,
  ``NN_tune_trainable.save_checkpoint``): Ray Tune writes
  ``cifar10_zooV2/<trial>/<checkpoint_dir>/checkpoint.pt`` with ``torch.save`` of
  ``{"model": state_dict, "optimizer": AdamW state, "config": self.cfg.model,
  **Trainable.get_state()}``; the state dict keys are ``layers.{i}.weight/bias`` and
  ``fc.weight/bias``; ``config`` is an OmegaConf ``DictConfig`` made from the sampler's
  ``CNNConfig`` dataclass (fields ``n_layers, n_classes, channels, kernel_size, stride,
  padding, residual, activation``); Ray's state adds ``iteration`` (epochs trained) and
  ``last_result``, whose ``"test/acc"`` is the accuracy on the full CIFAR-10 test set
  (``evaluate``: correct / 10,000) after that epoch. ``generate_cnn_park_splits.py``
  reads exactly ``["last_result"]["test/acc"]`` and ``["iteration"]``.
- **Published pickles** need ``omegaconf`` and stubs for classes of a module named
  ``create_random_cnns`` (the earlier home of ``CNNConfig``) to unpickle, as a
  third-party loader found (github.com/yonatansverdlov/HiddenProbe, ``data.py`` at
  1a56d61b2df0ef97d0cfc778d54c3f3e2fabd624, and
  ``scripts/setup_data/regression_cifar10_wp.sh`` at 2d7cb3bb49983cfbbeddb9fd7e605fae2c6a3507,
  which also gives the archive ``cnn_wild_park.zip`` on Zenodo record 12797219 with
  ``cifar10_zooV2/`` at its root).
- **The authors' loader** (``data_generalization.py``, ``CNNParkCIFAR10``) unpickles
  everything (plain ``torch.load``), takes ``checkpoint["model"]``, ``config["residual"]``
  and ``config["activation"]``, and regresses the split file's ``score`` (the test
  accuracy); residual edges join the first ``min`` widths
  (``cnn_generalization/utils.py``, ``get_residuals_graph``).

What our :class:`~datasets.spec.ArchSpec` covers: every conv layer (kernel, stride,
padding, activation, bias), the global average pool and the linear layer, the six
activations (``none`` is ``identity``), and a residual ``residual[i] = r`` as the pair of
neuron layers ``(r + 1, i + 1)``, which joins their first ``min(channels[r+1],
channels[i+1])`` channels whatever the two widths (as the authors' forward pass and
residual edges do). Refused, as an :class:`~datasets.errors.InvalidItem`: a residual
between feature maps of different sizes (``residual-shapes``; the sampler's stride 1 and
``kernel // 2`` padding never make one), an unknown activation (``activation``), a config
that breaks the authors' constraints (``config``), weights that do not fit the config
(``keys``, ``shape``, ``dtype``, ``nonfinite``), a missing or out-of-range accuracy
(``target``).

Safety: :data:`RESTRICTED_PICKLE` is handed to ``torch.load`` as its pickle module (for
both the zip and the legacy format). Its unpickler resolves only tensor rebuilding, a few
builtin and ``collections`` containers, and *inert stand-ins* (:class:`PickledObject`,
which store their arguments and state and run no code) for OmegaConf's classes,
``typing`` markers, ``pathlib`` paths and the ``CNNConfig`` class; every other global
(``os.system``, say) is refused before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import re
import types
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import torch
from torch import Tensor

from datasets.io.state_dicts import LOAD_ERRORS, StateDictError, read_ordered
from datasets.spec import ArchSpec, Layer

INPUT_SIZE = 32  # CIFAR-10 images are 3 x 32 x 32
IN_CHANNELS = 3
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "tanh": "tanh", "sigmoid": "sigmoid",
               "leaky_relu": "leaky_relu", "none": "identity"}
CONFIG_FIELDS = ("n_layers", "n_classes", "channels", "kernel_size", "stride", "padding", "residual", "activation")
CONFIG_CLASS_MODULES = ("create_random_cnns", "cnn_sampler")  # where ``CNNConfig`` was defined
REAL_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    **{("builtins", t.__name__): t for t in (dict, list, tuple, set, frozenset, int, float, str, bytes, bool)},
}
MAX_DEPTH = 32  # of the config's nesting


class PickledObject:
    """Inert stand-in for a pickled object of an allowed class: keeps the arguments it was
    built with and the state it was given, and runs no code of the original class."""

    module: str = ""
    qualname: str = ""
    args: tuple = ()  # set when built by a call (REDUCE), not by NEWOBJ
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


_STAND_INS: dict[tuple[str, str], type[PickledObject]] = {}


def _is_inert(module: str, name: str) -> bool:
    """Globals the config may name, which are read as :class:`PickledObject` stand-ins."""
    top, last = module.split(".")[0], module.rsplit(".", 1)[-1]
    return (top in ("omegaconf", "typing", "pathlib")
            or (last in CONFIG_CLASS_MODULES and name == "CNNConfig"))


def stand_in(module: str, name: str) -> type[PickledObject]:
    """The (cached) stand-in class for the global ``module.name``."""
    key = (module, name)
    if key not in _STAND_INS:
        _STAND_INS[key] = type(name, (PickledObject,), {"module": module, "qualname": name})
    return _STAND_INS[key]


class CheckpointUnpickler(pickle.Unpickler):
    """Resolves :data:`REAL_GLOBALS` and the stand-ins of :func:`_is_inert`; refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names of protocol 2
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in REAL_GLOBALS:
            return REAL_GLOBALS[(module, name)]
        if _is_inert(module, name):
            return stand_in(module, name)
        raise pickle.UnpicklingError(f"refused to unpickle global {module}.{name}")


def _restricted_load(file, **kwargs) -> Any:
    return CheckpointUnpickler(file, **kwargs).load()


RESTRICTED_PICKLE = types.ModuleType("wsbench_restricted_pickle")
RESTRICTED_PICKLE.Unpickler = CheckpointUnpickler
RESTRICTED_PICKLE.load = _restricted_load


def load_checkpoint(path: Path | str) -> Mapping:
    """The dict stored in one ``checkpoint.pt``, through :data:`RESTRICTED_PICKLE`."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE)
    except LOAD_ERRORS as err:
        text = str(err).strip()
        refused = re.match(r"refused to unpickle global [\w.]+", text)
        if refused:
            raise StateDictError(path, f"{refused.group(0)}: the file holds objects other than tensors, "
                                       "containers and the CNN config, and wsbench never unpickles "
                                       "arbitrary objects", "unsafe") from err
        first_line = text.splitlines()[0] if text else type(err).__name__
        raise StateDictError(path, f"cannot be read as a PyTorch checkpoint (truncated or corrupt?): "
                                   f"{first_line}", "unreadable") from err
    if not isinstance(obj, Mapping):
        raise StateDictError(path, f"holds a {type(obj).__name__}, not a checkpoint dict", "unreadable")
    return obj


def plain(value: Any, depth: int = 0) -> Any:
    """Stand-ins and containers as plain Python: an OmegaConf container as its content, an
    OmegaConf value node as its value, a dataclass as a dict of its fields, a path as text,
    a class (``typing.Any``, say) as its name."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    deeper = depth + 1
    if isinstance(value, PickledObject):
        state = value.state if isinstance(value.state, Mapping) else {}
        if "_content" in state:
            return plain(state["_content"], deeper)
        if "_val" in state:
            return plain(state["_val"], deeper)
        if value.module.split(".")[0] == "pathlib":
            return str(PurePath(*map(str, value.args)))
        return {str(k): plain(v, deeper) for k, v in state.items()}
    if isinstance(value, type):
        return getattr(value, "qualname", "") or value.__name__
    if isinstance(value, Mapping):
        return {k: plain(v, deeper) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, deeper) for v in value]
    return value


@dataclass(frozen=True)
class CnnConfig:
    """The fields of the authors' ``CNNConfig`` that define a network."""

    n_layers: int
    n_classes: int
    channels: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    residual: tuple[int, ...]
    activation: tuple[str, ...]


def read_config(checkpoint: Mapping, path: Path | str) -> CnnConfig:
    """The checkpoint's ``config``, checked against the authors' constraints."""
    try:
        config = plain(checkpoint.get("config"))
    except ValueError as err:
        raise StateDictError(path, f"config: {err}", "config") from None
    if not isinstance(config, Mapping) or not set(CONFIG_FIELDS) <= set(config):
        found = sorted(config) if isinstance(config, Mapping) else type(config).__name__
        raise StateDictError(path, f"config must hold {list(CONFIG_FIELDS)}, found {found}", "config")

    def ints(key: str) -> tuple[int, ...]:
        value = config[key]
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise StateDictError(path, f"config {key} must be a list of integers, got {value!r}", "config")
        return tuple(value)

    n = config["n_layers"]
    if not isinstance(n, int) or n < 1 or not isinstance(config["n_classes"], int) or config["n_classes"] < 1:
        raise StateDictError(path, f"config n_layers {n!r} and n_classes {config['n_classes']!r} must be "
                                   "positive integers", "config")
    acts = config["activation"]
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        raise StateDictError(path, f"config activation must be a list of names, got {acts!r}", "config")
    cfg = CnnConfig(n, config["n_classes"], ints("channels"), ints("kernel_size"), ints("stride"), ints("padding"),
                    ints("residual"), tuple(acts))
    lengths = {"kernel_size": len(cfg.kernel_size), "stride": len(cfg.stride), "padding": len(cfg.padding),
               "residual": len(cfg.residual), "activation": len(cfg.activation), "channels - 1": len(cfg.channels) - 1}
    if set(lengths.values()) != {n}:
        raise StateDictError(path, f"config lists must have n_layers = {n} entries, got {lengths}", "config")
    if any(c < 1 for c in cfg.channels) or any(k < 1 for k in cfg.kernel_size) or any(s < 1 for s in cfg.stride) \
            or any(p < 0 for p in cfg.padding):
        raise StateDictError(path, "config channels, kernels and strides must be >= 1 and paddings >= 0", "config")
    for i, r in enumerate(cfg.residual):
        if r >= 0 and r >= i - 1:
            raise StateDictError(path, f"config residual[{i}] = {r}: a residual must come from a layer before "
                                       "the preceding one", "config")
    return cfg


def architecture(cfg: CnnConfig, path: Path | str) -> ArchSpec:
    """The :class:`ArchSpec` of one Wild Park network (see the module docstring)."""
    unknown = sorted(set(cfg.activation) - set(ACTIVATIONS))
    if unknown:
        raise StateDictError(path, f"unknown activation(s) {unknown}; known: {sorted(ACTIVATIONS)}", "activation")
    if cfg.channels[0] != IN_CHANNELS:
        raise StateDictError(path, f"config channels[0] = {cfg.channels[0]}, but CIFAR-10 images have "
                                   f"{IN_CHANNELS} channels", "config")
    sizes = [INPUT_SIZE]
    for k, s, p in zip(cfg.kernel_size, cfg.stride, cfg.padding):
        sizes.append((sizes[-1] + 2 * p - k) // s + 1)
    if min(sizes) < 1:
        raise StateDictError(path, f"feature maps shrink to nothing on {INPUT_SIZE} x {INPUT_SIZE} inputs: "
                                   f"sizes {sizes}", "config")
    residual = []
    for i, r in enumerate(cfg.residual):
        if r < 0:
            continue
        a, b = r + 1, i + 1  # neuron layers: the source's output, this layer's output
        if sizes[a] != sizes[b]:
            raise StateDictError(path, f"residual from conv layer {r} ({sizes[a]} x {sizes[a]}) into conv layer {i} "
                                       f"({sizes[b]} x {sizes[b]}) joins feature maps of different sizes",
                                 "residual-shapes")
        residual.append((a, b))
    layers = [Layer("conv", cfg.channels[i + 1], cfg.channels[i], (k, k), s, p, ACTIVATIONS[act])
              for i, (k, s, p, act) in enumerate(zip(cfg.kernel_size, cfg.stride, cfg.padding, cfg.activation))]
    layers.append(Layer("linear", cfg.n_classes, cfg.channels[-1]))
    acts = "/".join(dict.fromkeys(ACTIVATIONS[a] for a in cfg.activation))
    res = " +res " + ",".join(f"{a}>{b}" for a, b in residual) if residual else ""
    name = (f"wild park conv {'-'.join(map(str, cfg.channels))} k{'/'.join(map(str, cfg.kernel_size))} "
            f"| {cfg.channels[-1]}-{cfg.n_classes} {acts}{res}")
    return ArchSpec(tuple(layers), tuple(residual), name=name)


def state_dict_keys(n_layers: int) -> list[str]:
    """The keys of the authors' ``CNN`` state dict, in order."""
    return [f"layers.{i}.{p}" for i in range(n_layers) for p in ("weight", "bias")] + ["fc.weight", "fc.bias"]


@dataclass(frozen=True)
class WildParkNetwork:
    """One checkpoint: its architecture, its layers' weights and biases (float32), the
    recorded test accuracy and the epochs it had trained (Ray's ``iteration``)."""

    spec: ArchSpec
    weights: list[Tensor]
    biases: list[Tensor]
    test_accuracy: float
    iteration: int


def read_network(path: Path | str) -> WildParkNetwork:
    """Read and check one ``checkpoint.pt``; every problem is a one-line
    :class:`~datasets.io.state_dicts.StateDictError` naming the file."""
    checkpoint = load_checkpoint(path)
    spec = architecture(read_config(checkpoint, path), path)
    state = checkpoint.get("model")
    if not isinstance(state, Mapping):
        raise StateDictError(path, f"'model' is {type(state).__name__}, expected the network's state dict", "keys")
    keys = state_dict_keys(len(spec.layers) - 1)
    if set(state) != set(keys):
        missing, unexpected = sorted(set(keys) - set(state)), sorted(set(state) - set(keys))
        raise StateDictError(path, f"state dict keys do not match the config: missing {missing}, unexpected "
                                   f"{unexpected}", "keys")
    weights, biases = read_ordered({k: state[k] for k in keys}, spec, path, ignore=())
    result = checkpoint.get("last_result")
    accuracy = result.get("test/acc") if isinstance(result, Mapping) else None
    iteration = checkpoint.get("iteration")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
        raise StateDictError(path, f"last_result['test/acc'] is {accuracy!r}, expected an accuracy in [0, 1]",
                             "target")
    if isinstance(iteration, bool) or not isinstance(iteration, int):
        raise StateDictError(path, f"iteration is {iteration!r}, expected an integer", "target")
    return WildParkNetwork(spec, weights, biases, float(accuracy), iteration)
