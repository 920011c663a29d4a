"""``digits-cnn-zoo`` and ``digits-cnn-park``: embedded CNN zoos for predicting a CNN's
test accuracy from its weights.

Both train small CNNs on scikit-learn's bundled 8x8 digits (``datasets.cnn_training``)
with per-network hyperparameters drawn from the Small CNN Zoo search space (Unterthiner et
al. 2020); 500 digits, stratified and fixed, are held out from every CNN's training and
give its test accuracy, the regression target. Every training run keeps checkpoints after
several epochs (each one a network of the zoo, like the zoo's steps), and a run's
checkpoints stay in one split: runs are split 70 / 10 / 20 with a fixed seed.

``digits-cnn-zoo`` follows the Small CNN Zoo architecture scaled to 8x8 inputs: 3 conv
layers of 8 channels, 3x3, stride 2, padding 1 (8 -> 4 -> 2 -> 1; the zoo used 16 channels
and no padding on 28x28 or 32x32 inputs), the run's activation (ReLU or tanh), global
average pooling and a linear layer to 10 classes: 1,338 parameters. The two activations
make two architectures, so the dataset is a ``MixedWeights`` (``activations=relu`` gives
a single-architecture ``WeightSpace``).

``digits-cnn-park`` follows CNN Wild Park (Kofinas et al. 2024) in spirit: architectures
differ per network. A fixed, seeded pool of ``architectures`` distinct architectures is
drawn: 2-4 conv layers, widths 4 / 8 / 16 per layer, kernel 3 or 5 per layer, ReLU or
tanh; the first layer has stride 2 (8 -> 4), the others stride 1 with 'same' padding; half
of them have residual connections ``(a, a+2)`` (``(1, 2)`` at depth 2). As in the Wild Park,
a residual may join layers of different widths: it adds the first ``min`` channels
(``datasets.spec``). Runs are spread evenly over the pool, and each architecture trains as one
batch. Differences from the Wild Park: far smaller (digits, few epochs), fewer choices (no
GeLU, sigmoid, identity, kernel 7 or 32 channels), skips of two layers only.

Builds resume: every finished chunk of networks is kept (``DatasetSource.checkpoints``) until
the dataset is cached, and each chunk trains from its own random stream, so an interrupted
build continues where it stopped and gives the networks an uninterrupted one would.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from datasets.cache import ChunkStore
from datasets.card import summary
from datasets.cnn_training import (INITS, OPTIMIZERS, Hyperparameters, ImageTask, TrainingRecipe,
                                   sample_hyperparameters, train_cnns)
from datasets.dataset_table import DatasetInfo, register_dataset
from datasets.errors import ConfigError
from datasets.options import Option
from datasets.progress import progress as progress_bar
from datasets.source import Built, DatasetSource
from datasets.spec import ArchSpec, Layer
from datasets.validation import MIN_NETWORKS
from datasets.weight_dataset import Split
from datasets.weights import MixedWeights, WeightSpace

SPLIT_SEED = 0
HELD_OUT_IMAGES = 500
SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2}
ACTIVATIONS = ("relu", "tanh")
SOURCE = ("scikit-learn load_digits (UCI optical digits, 8x8, 1,797 images); "
          f"{HELD_OUT_IMAGES} held out for testing, the rest to train on")
COMMON_OPTIONS = {
    "runs": Option(1000, "training runs (each gives one network per checkpoint)", low=1, high=10**6),
    "epochs": Option(8, "epochs per run", low=1, high=10**4),
    "checkpoints": Option(4, "checkpoints kept per run, spaced geometrically from epoch 1 to the last",
                          low=1, high=10**4),
    "batch_size": Option(32, "training batch size", low=1, high=4096),
    "chunk": Option(2048, "networks trained together (part of the recipe: it sets the random streams)",
                    low=1, high=10**6),
    "seed": Option(0, "seed of the hyperparameters, architectures and training streams", low=0, high=2**31 - 1),
}
SEARCH_SPACE = {
    "learning_rate": "log-uniform [5e-4, 5e-2]", "l2": "log-uniform [1e-8, 1e-2] (kernels)",
    "dropout": "uniform [0, 0.7] after every conv layer", "init": "he_normal | glorot_normal | "
    "truncated_normal(init_std), init_std log-uniform [1e-3, 0.5], biases 0",
    "train_fraction": "0.1 | 0.25 | 0.5 | 1.0 of the training pool",
    "optimizer": "sgd (momentum 0.9) | adam | rmsprop (Keras defaults)", "activation": "relu | tanh",
}


def digits_task(seed: int = SPLIT_SEED) -> ImageTask:
    """The digits scaled to [-1, 1]: a training pool and ``HELD_OUT_IMAGES`` held-out test
    images (stratified, fixed) that no CNN trains on."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    train, test = train_test_split(np.arange(len(labels)), test_size=HELD_OUT_IMAGES,
                                   stratify=digits.target, random_state=seed)
    train, test = np.sort(train), np.sort(test)
    return ImageTask(images[train], labels[train], images[test], labels[test])


def checkpoint_epochs(epochs: int, count: int) -> tuple[int, ...]:
    """``count`` epochs from 1 to ``epochs``, spaced geometrically (1, 2, 4, 8 for 8, 4);
    fewer if rounding makes some coincide."""
    if epochs < 1 or count < 1:
        raise ConfigError(f"need epochs >= 1 and checkpoints >= 1, got {epochs} and {count}")
    if count == 1:
        return (epochs,)
    return tuple(sorted({round(epochs ** (i / (count - 1))) for i in range(count)}))


def zoo_spec(activation: str, width: int = 8) -> ArchSpec:
    """The Small CNN Zoo architecture for 8x8 inputs: 3 x conv(width, 3x3, stride 2,
    padding 1) + activation, global average pool, linear to 10."""
    layers = (Layer("conv", width, 1, (3, 3), 2, 1, activation),
              Layer("conv", width, width, (3, 3), 2, 1, activation),
              Layer("conv", width, width, (3, 3), 2, 1, activation),
              Layer("linear", 10, width))
    return ArchSpec(layers)


def park_spec(widths: list[int], kernels: list[int], activation: str, residual: bool) -> ArchSpec:
    """One park architecture: conv layers of ``widths`` and ``kernels`` (stride 2 first,
    then stride 1, padding ``k // 2``), global average pool, linear to 10; with
    ``residual``, skips ``(a, a+2)`` between the conv layers (of any widths)."""
    layers, channels = [], 1
    for i, (width, kernel) in enumerate(zip(widths, kernels)):
        layers.append(Layer("conv", width, channels, (kernel, kernel), 2 if i == 0 else 1, kernel // 2,
                            activation))
        channels = width
    layers.append(Layer("linear", 10, channels))
    depth = len(widths)
    skips = (((1, 2),) if depth == 2 else tuple((a, a + 2) for a in range(1, depth - 1))) if residual else ()
    name = (f"park {'-'.join(map(str, widths))} k{''.join(map(str, kernels))} {activation}"
            f"{' +res' if residual else ''}")
    return ArchSpec(tuple(layers), residual=skips, name=name)


def park_architectures(count: int, generator: torch.Generator) -> list[ArchSpec]:
    """``count`` distinct architectures drawn from the park's family (see module doc)."""
    def choice(options: tuple, size: int = 1) -> list:
        return [options[i] for i in torch.randint(0, len(options), (size,), generator=generator).tolist()]

    specs: dict[ArchSpec, None] = {}
    for _ in range(100 * count):
        if len(specs) == count:
            break
        depth = choice((2, 3, 4))[0]
        residual = bool(torch.rand(1, generator=generator).item() < 0.5)
        widths = choice((4, 8, 16), depth)
        specs.setdefault(park_spec(widths, choice((3, 5), depth), choice(ACTIVATIONS)[0], residual), None)
    if len(specs) < count:
        raise ConfigError(f"digits-cnn-park option architectures={count}: could not draw that many distinct "
                          f"architectures in {100 * count} tries; valid: fewer")
    return list(specs)


def split_sizes(runs: int) -> dict[str, int]:
    """Runs per split: 70 / 10 / 20, rounded, the test split taking the rest."""
    n_train, n_val = round(SPLITS["train"] * runs), round(SPLITS["val"] * runs)
    return {"train": n_train, "val": n_val, "test": runs - n_train - n_val}


def split_runs(runs: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Run ids per split (:func:`split_sizes`), shuffled with a fixed seed, sorted within a split."""
    order = np.random.default_rng(seed).permutation(runs)
    sizes = split_sizes(runs)
    n_train, n_val = sizes["train"], sizes["val"]
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def accuracy_histogram(values: Tensor, bins: int = 10, width: int = 40) -> dict[str, str]:
    """Text histogram of accuracies in ``bins`` equal bins on [0, 1]: ``{"0.0-0.1": "### 12"}``."""
    counts = torch.histc(values.float(), bins=bins, min=0.0, max=1.0).long().tolist()
    top = max(max(counts), 1)
    return {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": f"{'#' * round(width * c / top):<{width}} {c}"
            for i, c in enumerate(counts)}


def _stack_checkpoints(saved: list[WeightSpace]) -> WeightSpace:
    """Rows run-major: run ``i``'s checkpoint ``c`` becomes row ``i * C + c``."""
    def stack(tensors: list[Tensor]) -> Tensor:
        return torch.stack(tensors, dim=1).flatten(0, 1)

    layers = range(len(saved[0].spec.layers))
    return WeightSpace(saved[0].spec, tuple(stack([s.weights[i] for s in saved]) for i in layers),
                       tuple(stack([s.biases[i] for s in saved]) for i in layers))


def _train_runs(name: str, run_specs: list[ArchSpec], runs: np.ndarray, hp: Hyperparameters,
                recipe: TrainingRecipe, seed: int, progress: bool, store: ChunkStore | None
                ) -> tuple[MixedWeights, Tensor, Tensor, float]:
    """Train ``runs``, one batch per architecture (group ``g`` trains from the streams of
    ``(seed, g)``). Returns every checkpoint (group-major, then run-major), its test
    accuracy, its run id, and the training time in seconds."""
    task = digits_task()
    steps = math.ceil(len(task.train_labels) / recipe.batch_size) * recipe.epochs
    bar = progress_bar(len(runs) * steps, f"{name}: training CNNs", "net-step", progress)
    groups, run_of, accuracy = [], [], []
    start = time.perf_counter()
    for group, spec in enumerate(dict.fromkeys(run_specs[r] for r in runs)):
        members = torch.as_tensor([r for r in runs if run_specs[r] == spec], dtype=torch.long)
        saved, acc = train_cnns(spec, hp[members], task, recipe, (seed, group), bar.update, store)
        groups.append(_stack_checkpoints(saved))
        run_of.append(members.repeat_interleave(len(recipe.checkpoints)))
        accuracy.append(acc.T.flatten())  # run-major, like the rows
    seconds = time.perf_counter() - start
    bar.close()
    return MixedWeights.from_groups(groups), torch.cat(accuracy), torch.cat(run_of), seconds


def build_zoo(name: str, run_specs: list[ArchSpec], config: dict, limit: int | None, progress: bool,
              store: ChunkStore | None = None) -> Built:
    """Train every run of ``run_specs`` (run ``i`` has architecture ``run_specs[i]``) and
    assemble the run-grouped splits (no caching); finished chunks are kept in ``store``.
    Non-finite checkpoints are dropped and counted."""
    epochs = checkpoint_epochs(config["epochs"], config["checkpoints"])
    recipe = TrainingRecipe(epochs, config["batch_size"], config["chunk"])
    hp = sample_hyperparameters(len(run_specs), torch.Generator().manual_seed(config["seed"]))
    split = split_runs(len(run_specs))
    if limit:
        split = {k: v[:math.ceil(limit / len(epochs))] for k, v in split.items()}
    runs = np.sort(np.concatenate(list(split.values())))
    mixed, accuracy, run_of, seconds = _train_runs(name, run_specs, runs, hp, recipe, config["seed"], progress,
                                                   store)
    epoch_of = torch.as_tensor(epochs).repeat(len(runs))
    finite = ~mixed.nonfinite_rows()
    extras = {
        "run": run_of, "epoch": epoch_of, **{k: v[run_of] for k, v in hp.as_dict().items()},
        "activation": torch.as_tensor([ACTIVATIONS.index(mixed.groups[g].spec.activation_of(1))
                                       for g in mixed.group_index.tolist()]),
        "architecture": mixed.group_index,
    }
    splits = {}
    for part, members in split.items():
        rows = torch.nonzero(torch.isin(run_of, torch.as_tensor(members)) & finite).squeeze(1)
        rows = rows[torch.argsort(run_of[rows] * (max(epochs) + 1) + epoch_of[rows])][:limit]
        weights = mixed[rows] if len(mixed.groups) > 1 else mixed.groups[0][rows]
        splits[part] = Split(weights, accuracy[rows], {k: v[rows] for k, v in extras.items()})
    steps_per_epoch = math.ceil(len(digits_task().train_labels) / recipe.batch_size)
    card = {
        "runs": {k: len(v) for k, v in split.items()},
        "checkpoint_epochs": list(epochs),
        "networks_dropped_nonfinite": int((~finite).sum()),
        "target": f"test accuracy on the {HELD_OUT_IMAGES} held-out digits (regression)",
        "search_space": SEARCH_SPACE,
        "training": {"batch_size": recipe.batch_size, "epochs": recipe.epochs, "chunk": recipe.chunk,
                     "steps_per_epoch": steps_per_epoch, "seconds": round(seconds, 1),
                     "networks_per_second": round(len(accuracy) / max(seconds, 1e-9), 1),
                     "runs_per_second": round(len(runs) / max(seconds, 1e-9), 2)},
        "test_accuracy": summary(accuracy[finite]),
        "test_accuracy_histogram": accuracy_histogram(accuracy[finite]),
        "median_accuracy_by_epoch": {str(e): round(accuracy[finite & (epoch_of == e)].median().item(), 3)
                                     for e in epochs},
        "extras": "per network: " + ", ".join(extras) + f"; optimizer ids {list(OPTIMIZERS)}, "
                  f"init ids {list(INITS)}, activation ids {list(ACTIVATIONS)}, "
                  "architecture = index into architectures",
    }
    return Built(splits["train"], splits["val"], splits["test"], card)


class DigitsCnnSource(DatasetSource):
    """What both digits zoos share: options, their cross-checks, and the build; a subclass
    says which architecture each run has."""

    options = COMMON_OPTIONS

    def run_architectures(self) -> list[ArchSpec]:
        """The architecture of every run, in run order."""
        raise NotImplementedError

    def check(self) -> None:
        name, config = self.info.name, self.config
        if config["checkpoints"] > config["epochs"]:
            raise ConfigError(f"{name} option checkpoints={config['checkpoints']} exceeds epochs={config['epochs']}; "
                              f"valid: 1..epochs (one checkpoint at most per epoch)")
        per_run = len(checkpoint_epochs(config["epochs"], config["checkpoints"]))
        for part, runs in split_sizes(config["runs"]).items():
            if runs * per_run < MIN_NETWORKS[part]:
                raise ConfigError(f"{name} option runs={config['runs']}: the {part} split gets {runs} run(s) x "
                                  f"{per_run} checkpoint(s), fewer than the {MIN_NETWORKS[part]} networks a split "
                                  f"needs; valid: more runs or checkpoints")

    def recipe(self) -> dict:
        return {"split_seed": SPLIT_SEED, "held_out": HELD_OUT_IMAGES}

    def process(self) -> Built:
        return build_zoo(self.info.name, self.run_architectures(), self.config, self.load_options.limit,
                         self.progress, self.checkpoints)


class DigitsCnnZoo(DigitsCnnSource):
    """``digits-cnn-zoo``: the Small CNN Zoo architecture, each run's activation drawn from
    ``activations``."""

    options = {**COMMON_OPTIONS,
               "activations": Option(ACTIVATIONS, "comma-separated subset of relu,tanh: the activations runs "
                                                  "draw from")}

    def check(self) -> None:
        activations = self.config["activations"]
        subset = set(activations) <= set(ACTIVATIONS) and len(set(activations)) == len(activations)
        if not activations or not subset:
            raise ConfigError(f"{self.info.name} option activations={','.join(activations)!r} is not valid; valid: "
                              f"a comma-separated subset of {','.join(ACTIVATIONS)}, each at most once")
        super().check()

    def run_architectures(self) -> list[ArchSpec]:
        activations = self.config["activations"]
        draw = torch.randint(0, len(activations), (self.config["runs"],),
                             generator=torch.Generator().manual_seed(self.config["seed"] + 1))
        return [zoo_spec(activations[i]) for i in draw.tolist()]


class DigitsCnnPark(DigitsCnnSource):
    """``digits-cnn-park``: runs spread evenly over a seeded pool of ``architectures``."""

    options = {**COMMON_OPTIONS,
               "runs": Option(800, "training runs (each gives one network per checkpoint)", low=1, high=10**6),
               "architectures": Option(12, "distinct architectures in the pool", low=1, high=1000)}

    def check(self) -> None:
        if self.config["architectures"] > self.config["runs"]:
            raise ConfigError(f"{self.info.name} option architectures={self.config['architectures']} exceeds "
                              f"runs={self.config['runs']}; valid: 1..runs (every architecture needs a run)")
        super().check()

    def run_architectures(self) -> list[ArchSpec]:
        pool = park_architectures(self.config["architectures"],
                                  torch.Generator().manual_seed(self.config["seed"] + 2))
        return [pool[r % len(pool)] for r in range(self.config["runs"])]


register_dataset(DatasetInfo(
    "digits-cnn-zoo", ("zoo",), "regression", 1, version=2, embedded=True,
    description="Small-CNN-Zoo-style CNNs (3 conv + GAP + linear, ReLU or tanh) trained on scikit-learn's 8x8 "
                "digits, several checkpoints per run; target: test accuracy",
    source=SOURCE, licence="CC BY 4.0"), DigitsCnnZoo)

register_dataset(DatasetInfo(
    "digits-cnn-park", ("zoo",), "regression", 1, version=3, embedded=True,
    description="CNN-Wild-Park-style CNNs of mixed architectures (depth, width, kernel, activation, residuals) "
                "trained on scikit-learn's 8x8 digits; target: test accuracy",
    source=SOURCE, licence="CC BY 4.0"), DigitsCnnPark)
