"""Vectorised training of many small CNNs at once, each with its own hyperparameters.

Follows the Small CNN Zoo recipe (Unterthiner et al. 2020, "Predicting Neural Network
Accuracy from Weights", and its public ``dnn_predict_accuracy/train_network.py``): inputs
scaled to [-1, 1]; dropout after every hidden (conv) layer's activation; softmax
cross-entropy; an L2 penalty ``l2 * sum(w**2)`` on the kernels only (not the biases), added
to the loss as Keras does (so it goes through the adaptive optimisers); Keras optimiser
defaults for Adam (0.9, 0.999, eps 1e-7 on the uncorrected second moment) and RMSprop (rho
0.9, eps 1e-7); biases start at zero; a checkpoint's accuracy is measured in eval mode.
Hyperparameters per network from the zoo's search space: learning rate log-uniform in
[5e-4, 5e-2], L2 log-uniform in [1e-8, 1e-2], dropout uniform in [0, 0.7], init std
log-uniform in [1e-3, 0.5], train fraction in {0.1, 0.25, 0.5, 1.0}, optimiser uniform over
SGD / Adam / RMSprop (ranges as read from the paper's appendix; the train fractions, Keras
defaults and zero biases from the public code).

All ``B`` networks of one architecture train together: weights and biases are stacked leaf
tensors, the forward pass is ``datasets.functional.forward``'s grouped convolution (one
layer at a time, so that dropout fits between layers), the loss is the sum of per-network
mean losses (so networks do not interact), and one hand-written update applies SGD, Adam
or RMSprop per network, chosen by per-network coefficients (masks), with per-network
learning rate and L2. The networks train ``chunk`` at a time; each chunk draws its random
numbers from its own generator (seeded from the caller's seed and the chunk's index), so a
long build can keep finished chunks (a :class:`~datasets.cache.ChunkStore`) and resume with
exactly the networks an uninterrupted build gives.

Deliberate differences, because our runs make ~330 steps where the zoo's made ~10,000:
SGD uses heavy-ball momentum 0.9 (Keras' default SGD has none; without it most SGD runs
stayed at chance); the weight init is drawn from three schemes, He normal, Glorot normal
(both truncated, Keras-style) or a truncated normal with the run's ``init_std`` (the zoo
drew from more schemes); every network makes the same number of steps per epoch (one
pass over the full training pool, drawn without replacement from its own subset), so a
smaller train fraction means more passes over fewer images rather than fewer steps; the
batch is 32 (digits have 1,797 images, not 60,000).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.cache import ChunkStore, chunk_generator
from datasets.errors import ConfigError
from datasets.functional import activate, add_residuals, forward
from datasets.spec import ArchSpec
from datasets.weights import WeightSpace

OPTIMIZERS = ("sgd", "adam", "rmsprop")
INITS = ("he_normal", "glorot_normal", "truncated_normal")
TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
EPSILON = 1e-7
# Keras variance-scaling initialisers draw from a normal truncated at +-2 std, whose std is
# this fraction of the untruncated one; they divide by it to keep the intended variance.
TRUNCATED_STD = 0.87962566103423978


@dataclass(frozen=True)
class ImageTask:
    """Images in [-1, 1] ``(N, C, H, W)`` with integer labels: a training pool and a
    held-out test set that no CNN ever trains on."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


@dataclass(frozen=True)
class Hyperparameters:
    """Per-network training hyperparameters, each a ``(B,)`` tensor."""

    learning_rate: Tensor
    l2: Tensor
    dropout: Tensor
    init_std: Tensor
    train_fraction: Tensor
    optimizer: Tensor  # index into OPTIMIZERS
    init: Tensor  # index into INITS

    def __len__(self) -> int:
        return self.learning_rate.shape[0]

    def __getitem__(self, index) -> Hyperparameters:
        return Hyperparameters(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _per_network(values: Tensor, like: Tensor) -> Tensor:
    """A ``(B,)`` tensor shaped to broadcast over ``like`` ``(B, ...)``."""
    return values.reshape(-1, *[1] * (like.ndim - 1)).to(like)


def _log_uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(low) + u * math.log(high / low)).float()


def sample_hyperparameters(count: int, generator: torch.Generator) -> Hyperparameters:
    """Draw ``count`` configurations from the Small CNN Zoo search space."""
    fractions = torch.tensor(TRAIN_FRACTIONS)
    return Hyperparameters(
        learning_rate=_log_uniform(count, 5e-4, 5e-2, generator),
        l2=_log_uniform(count, 1e-8, 1e-2, generator),
        dropout=torch.rand(count, generator=generator) * 0.7,
        init_std=_log_uniform(count, 1e-3, 0.5, generator),
        train_fraction=fractions[torch.randint(0, len(fractions), (count,), generator=generator)],
        optimizer=torch.randint(0, len(OPTIMIZERS), (count,), generator=generator),
        init=torch.randint(0, len(INITS), (count,), generator=generator),
    )


def init_std_per_layer(spec: ArchSpec, hp: Hyperparameters) -> Tensor:
    """``(B, L)`` std of each network's weight init per layer: He normal
    ``sqrt(2 / fan_in)``, Glorot normal ``sqrt(2 / (fan_in + fan_out))`` (both corrected for
    the truncation, as in Keras) or the network's ``init_std``."""
    stds = []
    for layer in spec.layers:
        receptive = layer.kernel[0] * layer.kernel[1]
        fan_in, fan_out = layer.in_features * receptive, layer.out_features * receptive
        he = math.sqrt(2 / fan_in) / TRUNCATED_STD
        glorot = math.sqrt(2 / (fan_in + fan_out)) / TRUNCATED_STD
        stds.append(torch.where(hp.init == INITS.index("he_normal"), he,
                                torch.where(hp.init == INITS.index("glorot_normal"), glorot, hp.init_std)))
    return torch.stack(stds, dim=1).float()


def init_cnns(spec: ArchSpec, hp: Hyperparameters, generator: torch.Generator) -> WeightSpace:
    """Weights from a normal truncated at +-2 std with the std of
    :func:`init_std_per_layer`, biases zero (the zoo's ``b_init='zero'``)."""
    std = init_std_per_layer(spec, hp)
    weights, biases = [], []
    for k, layer in enumerate(spec.layers):
        w = torch.empty(len(hp), *layer.weight_shape)
        torch.nn.init.trunc_normal_(w, 0.0, 1.0, -2.0, 2.0, generator=generator)
        weights.append(w * _per_network(std[:, k], w))
        biases.append(torch.zeros(len(hp), layer.out_features))
    return WeightSpace(spec, tuple(weights), tuple(biases))


class BatchedOptimizer:
    """SGD with momentum, Adam or RMSprop per network over stacked ``(B, ...)`` parameters.

    One update rule covers all three: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``w -= lr * c * m / d`` with, per network, SGD: ``b1 = 0.9, c = 1 / (1-b1), d = 1``
    (heavy-ball momentum 0.9, written as an average); Adam: ``b1 = 0.9, b2 = 0.999,
    c = sqrt(1-b2^t) / (1-b1^t), d = sqrt(v) + eps``; RMSprop: ``b1 = 0, b2 = 0.9, c = 1,
    d = sqrt(v) + eps``. The L2 penalty ``l2 * sum(w^2)`` of the tensors flagged in
    ``decay`` enters the gradient as ``2 * l2 * w``.
    """

    def __init__(self, params: list[Tensor], decay: list[bool], optimizer: Tensor,
                 learning_rate: Tensor, l2: Tensor) -> None:
        self.params, self.decay = params, decay
        sgd = optimizer == OPTIMIZERS.index("sgd")
        adam = optimizer == OPTIMIZERS.index("adam")
        self.adam, self.adaptive = adam.double(), (~sgd).double()
        self.beta1 = torch.where(sgd | adam, 0.9, 0.0).double()
        self.beta2 = torch.where(adam, 0.999, 0.9).double()
        self.base = learning_rate.double() * torch.where(sgd, 1 / (1 - self.beta1), 1.0)
        self.l2 = l2.double()
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        correction = torch.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        scale = self.base * (self.adam * correction + (1 - self.adam))
        for p, decay, m, v in zip(self.params, self.decay, self.m, self.v):
            g = p.grad
            if decay:
                g = g + 2 * _per_network(self.l2, p) * p
            b1, b2 = _per_network(self.beta1, p), _per_network(self.beta2, p)
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            adaptive = _per_network(self.adaptive, p)
            denominator = adaptive * (v.sqrt() + EPSILON) + (1 - adaptive)
            p.sub_(_per_network(scale, p) * m / denominator)
            p.grad = None


def _single_layer_specs(spec: ArchSpec) -> list[ArchSpec]:
    """Each layer alone, without its activation: ``forward`` on these computes one layer's
    pre-activation, so residuals and dropout can be applied between layers."""
    return [ArchSpec((replace(layer, activation="identity"),)) for layer in spec.layers]


def train_forward(ws: WeightSpace, x: Tensor, dropout: Tensor, generator: torch.Generator,
                  layer_specs: list[ArchSpec] | None = None) -> Tensor:
    """Training-mode forward of every network on its own inputs ``x`` ``(B, N, C, H, W)``:
    the function of ``datasets.functional.forward`` with inverted dropout (per-network rate)
    on every hidden neuron layer. Returns logits ``(B, N, out)``."""
    spec = ws.spec
    layer_specs = layer_specs or _single_layer_specs(spec)
    keep = 1 - dropout.to(x)
    values, h = [x], x
    for k, (layer, (w, b)) in enumerate(zip(spec.layers, ws)):
        if layer.kind == "linear" and h.ndim == 5:
            h = h.mean(dim=(-2, -1))
        z = forward(WeightSpace(layer_specs[k], (w,), (b,)), h)
        h = activate(add_residuals(spec, k + 1, z, values), layer)
        if k < len(spec.layers) - 1:
            mask = torch.rand(h.shape, generator=generator) < _per_network(keep, h)
            h = h * mask / _per_network(keep, h)
        values.append(h)
    return h + spec.output_offset if spec.output_offset else h


@torch.no_grad()
def heldout_accuracy(ws: WeightSpace, images: Tensor, labels: Tensor, chunk: int = 256) -> Tensor:
    """``(B,)`` accuracy of every network on ``images`` (eval mode: no dropout), evaluated
    with ``datasets.functional.forward`` in chunks of ``chunk`` networks."""
    parts = []
    for start in range(0, len(ws), chunk):
        logits = forward(ws[start:start + chunk], images)
        parts.append((logits.argmax(dim=-1) == labels).float().mean(dim=1))
    return torch.cat(parts)


@dataclass(frozen=True)
class TrainingRecipe:
    """How the CNNs train (the hyperparameters are drawn per network)."""

    checkpoints: tuple[int, ...] = (1, 2, 4, 8)  # epochs after which a checkpoint is kept
    batch_size: int = 32
    chunk: int = 2048  # networks trained at once (and sharing one random stream)

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", tuple(sorted(set(map(int, self.checkpoints)))))
        if not self.checkpoints or self.checkpoints[0] < 1:
            raise ConfigError(f"checkpoints must be epochs >= 1, got {self.checkpoints}")

    @property
    def epochs(self) -> int:
        return self.checkpoints[-1]


def _subsets(count: int, pool: int, fraction: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each network's training subset: the first ``sizes[b]`` entries of ``order[b]``."""
    order = torch.argsort(torch.rand(count, pool, generator=generator), dim=1)
    sizes = (fraction * pool).round().long().clamp(1, pool)
    return order, sizes


def _epoch_order(order: Tensor, sizes: Tensor, generator: torch.Generator) -> Tensor:
    """Per network, a fresh random order of its subset in the first ``sizes[b]`` columns."""
    keys = torch.rand(order.shape, generator=generator)
    keys = keys + (torch.arange(order.shape[1]) >= sizes[:, None]).float()
    return order.gather(1, torch.argsort(keys, dim=1))


def _train_chunk(spec: ArchSpec, hp: Hyperparameters, task: ImageTask, recipe: TrainingRecipe,
                 generator: torch.Generator, on_step: Callable[[int], None]) -> tuple[list[WeightSpace], Tensor]:
    count, pool = len(hp), len(task.train_labels)
    ws = init_cnns(spec, hp, generator)
    params = [t.requires_grad_() for t in (*ws.weights, *ws.biases)]
    decay = [True] * len(ws.weights) + [False] * len(ws.biases)
    optimiser = BatchedOptimizer(params, decay, hp.optimizer, hp.learning_rate, hp.l2)
    layer_specs = _single_layer_specs(spec)
    order, sizes = _subsets(count, pool, hp.train_fraction, generator)
    steps = math.ceil(pool / recipe.batch_size)
    offsets = torch.arange(recipe.batch_size)
    saved, accuracy = [], []
    for epoch in range(1, recipe.epochs + 1):
        epoch_order = _epoch_order(order, sizes, generator)
        for step in range(steps):
            position = (step * recipe.batch_size + offsets)[None, :] % sizes[:, None]
            index = epoch_order.gather(1, position)  # (B, batch) image ids
            logits = train_forward(ws, task.train_images[index], hp.dropout, generator, layer_specs)
            loss = F.cross_entropy(logits.flatten(0, 1), task.train_labels[index].flatten(),
                                   reduction="none").reshape(count, -1).mean(dim=1)
            loss.sum().backward()
            optimiser.step()
            on_step(count)
        if epoch in recipe.checkpoints:
            snapshot = ws.map(lambda t: t.detach().clone())
            saved.append(snapshot)
            accuracy.append(heldout_accuracy(snapshot, task.test_images, task.test_labels))
    return saved, torch.stack(accuracy)



def _restored(done: dict[str, Tensor] | None, spec: ArchSpec, hp: Hyperparameters,
              recipe: TrainingRecipe) -> tuple[list[WeightSpace], Tensor] | None:
    """A finished chunk read back from a store, or ``None`` if it is absent or does not
    match these networks."""
    if done is None or set(done) != {"weights", "accuracy", "learning_rate"}:
        return None
    checkpoints = len(recipe.checkpoints)
    if (done["weights"].shape != (checkpoints, len(hp), spec.num_params)
            or done["accuracy"].shape != (checkpoints, len(hp))
            or not torch.equal(done["learning_rate"], hp.learning_rate)):
        return None
    return [WeightSpace.from_flat(spec, flat) for flat in done["weights"]], done["accuracy"]


def train_cnns(spec: ArchSpec, hp: Hyperparameters, task: ImageTask, recipe: TrainingRecipe,
               seed: Sequence[int], on_step: Callable[[int], None] = lambda n: None,
               store: ChunkStore | None = None) -> tuple[list[WeightSpace], Tensor]:
    """Train one network of architecture ``spec`` per row of ``hp``, ``recipe.chunk`` at a
    time; chunk ``c`` draws its initialisation, subsets, batch orders and dropout masks from
    ``chunk_generator(seed, c)`` (``seed``: integers naming this batch of networks, e.g.
    ``(dataset seed, architecture group)``). With a ``store``, every finished chunk is kept
    there under ``cnns-<seed>-<c>`` and a chunk already in it is not trained again.
    Returns one ``WeightSpace`` per checkpoint epoch (rows in ``hp`` order) and the
    held-out test accuracy ``(checkpoints, B)``. ``on_step(n)`` is called after every
    optimiser step with the number of networks it updated (for progress bars); a restored
    chunk reports all its steps at once."""
    steps = math.ceil(len(task.train_labels) / recipe.batch_size) * recipe.epochs
    parts, accuracies = [], []
    for index, start in enumerate(range(0, len(hp), recipe.chunk)):
        chunk = hp[start:start + recipe.chunk]
        key = "cnns-" + "-".join(str(int(s)) for s in (*seed, index))
        restored = _restored(store.get(key) if store is not None else None, spec, chunk, recipe)
        if restored is not None:
            saved, accuracy = restored
            on_step(len(chunk) * steps)
        else:
            saved, accuracy = _train_chunk(spec, chunk, task, recipe, chunk_generator(*seed, index), on_step)
            if store is not None:
                store.put(key, {"weights": torch.stack([ws.flatten() for ws in saved]), "accuracy": accuracy,
                                "learning_rate": chunk.learning_rate})
        parts.append(saved)
        accuracies.append(accuracy)
    checkpoints = [WeightSpace.cat([p[c] for p in parts]) for c in range(len(recipe.checkpoints))]
    return checkpoints, torch.cat(accuracies, dim=1)
