"""Function-preserving transforms of weights, and non-symmetries for negative controls.

Hidden neuron layers joined by a residual connection must move together, so transforms act
on *classes* of neuron layers (``symmetry_classes``). All transforms are batched: every
network in the batch gets its own random permutation, sign or scale. Each one is verified
by functional evaluation in ``tests/test_datasets/test_symmetry.py`` (phase shifts in
``tests/test_datasets/test_phase_symmetry.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from datasets.spec import ODD_ACTIVATIONS, POSITIVE_HOMOGENEOUS, ArchSpec
from datasets.weights import MixedWeights, WeightSpace, Weights


def symmetry_classes(spec: ArchSpec) -> list[list[int]]:
    """Groups of hidden neuron layers that share one transform (joined by residuals).
    A group that touches the input or output layer is not free and is left out."""
    parent = list(range(len(spec.widths)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in spec.residual:
        parent[find(a)] = find(b)
    classes: dict[int, list[int]] = {}
    for k in range(len(spec.widths)):
        classes.setdefault(find(k), []).append(k)
    last = len(spec.widths) - 1
    return [c for c in classes.values() if 0 not in c and last not in c]


def _expand(t: Tensor, like: Tensor, dim: int) -> Tensor:
    """Shape a per-neuron ``(B, n)`` tensor to broadcast along ``dim`` of ``like``."""
    shape = [t.shape[0]] + [1] * (like.ndim - 1)
    shape[dim] = t.shape[1]
    return t.reshape(shape)


def _act_on_neurons(ws: WeightSpace, layer_values: dict[int, Tensor], op: str) -> WeightSpace:
    """Apply a per-neuron permutation (``op='perm'``) or scale (``op='scale'``) to neuron
    layers: the producing layer's rows and bias, and the consuming layer's columns.
    Residuals need no change: source and target share the same transform."""
    weights, biases = list(ws.weights), list(ws.biases)
    for k, value in layer_values.items():
        produce, consume = k - 1, k
        if op == "perm":
            weights[produce] = torch.take_along_dim(weights[produce], _expand(value, weights[produce], 1), 1)
            biases[produce] = torch.take_along_dim(biases[produce], value, 1)
            weights[consume] = torch.take_along_dim(weights[consume], _expand(value, weights[consume], 2), 2)
        else:
            weights[produce] = weights[produce] * _expand(value, weights[produce], 1)
            biases[produce] = biases[produce] * value
            weights[consume] = weights[consume] / _expand(value, weights[consume], 2)
    return WeightSpace(ws.spec, tuple(weights), tuple(biases))


def _per_class(ws: WeightSpace, draw, classes: list[list[int]]) -> dict[int, Tensor]:
    values = {}
    for cls in classes:
        value = draw(len(ws), ws.spec.widths[cls[0]])
        values.update({k: value for k in cls})
    return values


def random_permutations(batch: int, width: int, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> Tensor:
    """``(batch, width)``: one uniform random permutation per row, without a Python loop."""
    keys = torch.rand(batch, width, generator=generator)
    return torch.argsort(keys, dim=1).to(device)


def permute_hidden(weights: Weights, generator: torch.Generator | None = None) -> Weights:
    """Permute the hidden neurons of every network at random. Preserves the function."""
    if isinstance(weights, MixedWeights):
        return weights.map_groups(lambda g: permute_hidden(g, generator))
    draw = lambda b, n: random_permutations(b, n, generator, weights.device)  # noqa: E731
    return _act_on_neurons(weights, _per_class(weights, draw, symmetry_classes(weights.spec)), "perm")


def _classes_with(spec: ArchSpec, allowed: frozenset[str]) -> list[list[int]]:
    return [c for c in symmetry_classes(spec) if all(spec.activation_of(k) in allowed for k in c)]


def flip_signs(weights: Weights, generator: torch.Generator | None = None) -> Weights:
    """Flip the sign of random hidden neurons whose activation is odd (sin, tanh).
    Preserves the function."""
    if isinstance(weights, MixedWeights):
        return weights.map_groups(lambda g: flip_signs(g, generator))

    def draw(b: int, n: int) -> Tensor:
        signs = torch.randint(0, 2, (b, n), generator=generator).to(weights.dtype) * 2 - 1
        return signs.to(weights.device)

    classes = _classes_with(weights.spec, ODD_ACTIVATIONS)
    return _act_on_neurons(weights, _per_class(weights, draw, classes), "scale")


def rescale_positive(weights: Weights, generator: torch.Generator | None = None,
                     low: float = 0.5, high: float = 2.0, *, any_activation: bool = False) -> Weights:
    """Scale the incoming weights and bias of random hidden ReLU neurons by ``c`` in
    ``[low, high]`` (log-uniform) and their outgoing weights by ``1/c``. Preserves the
    function of ReLU networks. ``any_activation=True`` applies it to every hidden neuron,
    which is *not* a symmetry for other activations (a negative control)."""
    if isinstance(weights, MixedWeights):
        return weights.map_groups(
            lambda g: rescale_positive(g, generator, low, high, any_activation=any_activation))

    def draw(b: int, n: int) -> Tensor:
        u = torch.rand(b, n, generator=generator, dtype=torch.float64)
        c = torch.exp(torch.log(torch.tensor(low)) + u * (torch.log(torch.tensor(high / low))))
        return c.to(weights.dtype).to(weights.device)

    classes = (symmetry_classes(weights.spec) if any_activation
               else _classes_with(weights.spec, POSITIVE_HOMOGENEOUS))
    return _act_on_neurons(weights, _per_class(weights, draw, classes), "scale")


def shift_phase(weights: Weights, generator: torch.Generator | None = None, max_periods: int = 3) -> Weights:
    """Add ``m * 2 pi / omega`` (``m`` a random integer in ``[-max_periods, max_periods]``,
    drawn per network and neuron) to the bias of every hidden sine neuron: its value
    ``sin(omega * (w x + b))`` is unchanged, so the function is preserved."""
    if isinstance(weights, MixedWeights):
        return weights.map_groups(lambda g: shift_phase(g, generator, max_periods))
    biases = list(weights.biases)
    for k in weights.spec.hidden:
        layer = weights.spec.layers[k - 1]
        if layer.activation == "sine":
            m = torch.randint(-max_periods, max_periods + 1, biases[k - 1].shape, generator=generator)
            biases[k - 1] = biases[k - 1] + m.to(weights.device, weights.dtype) * (2 * math.pi / layer.omega)
    return WeightSpace(weights.spec, weights.weights, tuple(biases))


def permute_rows_only(weights: WeightSpace, neuron_layer: int = 1,
                      generator: torch.Generator | None = None) -> WeightSpace:
    """Negative control: permute the neurons of one hidden layer in the producing layer
    only, leaving the consuming layer's columns alone. Changes the function."""
    perm = random_permutations(len(weights), weights.spec.widths[neuron_layer], generator, weights.device)
    w, b = list(weights.weights), list(weights.biases)
    p = neuron_layer - 1
    w[p] = torch.take_along_dim(w[p], _expand(perm, w[p], 1), 1)
    b[p] = torch.take_along_dim(b[p], perm, 1)
    return WeightSpace(weights.spec, tuple(w), tuple(b))
