"""Function-preserving transforms of weights, and non-symmetries for negative controls.

Residuals tie neurons together: a residual ``(a, b)`` joins neuron ``i`` of neuron layer
``a`` to neuron ``i`` of layer ``b`` for ``i < min(width_a, width_b)`` (``datasets.spec``).
The tied neurons form *components*, each a set of neuron layers with one neuron index, and
one transform acts on every neuron of a component. A component that touches the input or
output layer is fixed. Components that span the same layers form a group; a permutation
permutes the components of each group (moving all their neurons together), and sign flips
and scales draw one value per component (``component_groups``). Without residuals,
or with residuals between equal widths, every group is all neurons of a class of tied
layers (``symmetry_classes``). All transforms are batched: every network in the batch gets
its own random permutation, sign or scale. Each one is verified by functional evaluation in
``tests/test_datasets/test_symmetry.py`` (phase shifts in
``tests/test_datasets/test_phase_symmetry.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from datasets.spec import ODD_ACTIVATIONS, POSITIVE_HOMOGENEOUS, ArchSpec
from datasets.weights import MixedWeights, WeightSpace, Weights


@dataclass(frozen=True)
class ComponentGroup:
    """Free components that span the same hidden neuron ``layers``; ``neurons``: each
    component's neuron index (the same in all those layers)."""

    layers: tuple[int, ...]
    neurons: tuple[int, ...]


def _connected(nodes: list[int], edges: list[tuple[int, int]]) -> list[list[int]]:
    """The connected components of a graph (union-find), each in node order."""
    parent = {k: k for k in nodes}

    def find(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for a, b in edges:
        parent[find(a)] = find(b)
    components: dict[int, list[int]] = {}
    for k in nodes:
        components.setdefault(find(k), []).append(k)
    return list(components.values())


@cache
def component_groups(spec: ArchSpec) -> tuple[ComponentGroup, ...]:
    """The groups of free components of ``spec``, ordered by their layers: union-find over
    the neurons ``(layer, i)``, a residual ``(a, b)`` tying ``(a, i)`` to ``(b, i)`` for ``i
    < min(width_a, width_b)``; components touching the input or output layer left out.
    Layers that both have a neuron ``i`` are joined at ``i`` by every residual between them,
    so components that span the same layers are joined alike and may be swapped."""
    widths, last = spec.widths, len(spec.widths) - 1
    signatures: dict[tuple[int, ...], list[int]] = {}
    for i in range(max(widths[1:last], default=0)):
        layers = [k for k in range(len(widths)) if widths[k] > i]
        ties = [r for r, m in zip(spec.residual, spec.residual_joined) if i < m]
        for component in _connected(layers, ties):
            if 0 not in component and last not in component:
                signatures.setdefault(tuple(component), []).append(i)
    return tuple(ComponentGroup(layers, tuple(neurons)) for layers, neurons in sorted(signatures.items()))


def symmetry_classes(spec: ArchSpec) -> list[list[int]]:
    """The sets of hidden neuron layers that free components span, each once: with
    residuals between equal widths only, the groups of layers joined by residuals, which
    share one transform. A set that touches the input or output layer is not free."""
    return [list(layers) for layers in dict.fromkeys(g.layers for g in component_groups(spec))]


def _expand(t: Tensor, like: Tensor, dim: int) -> Tensor:
    """Shape a per-neuron ``(B, n)`` tensor to broadcast along ``dim`` of ``like``."""
    shape = [t.shape[0]] + [1] * (like.ndim - 1)
    shape[dim] = t.shape[1]
    return t.reshape(shape)


def _act_on_neurons(ws: WeightSpace, layer_values: dict[int, Tensor], op: str) -> WeightSpace:
    """Apply a per-neuron permutation (``op='perm'``) or scale (``op='scale'``) to neuron
    layers: the producing layer's rows and bias, and the consuming layer's columns.
    Residuals need no change: tied neurons share one transform (and a permutation keeps the
    neurons a residual joins among themselves)."""
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


def _per_neuron(ws: WeightSpace, groups: list[ComponentGroup], draw: Callable[[int, int], Tensor],
                op: str) -> dict[int, Tensor]:
    """Per neuron layer that ``groups`` touch, a ``(B, width)`` permutation (``op='perm'``)
    or scale: ``draw(B, n)`` gives each group's ``n`` components their permutation or
    values; every other neuron keeps its place or scale 1."""
    widths, values = ws.spec.widths, {}
    for group in groups:
        drawn = draw(len(ws), len(group.neurons))
        idx = torch.tensor(group.neurons, device=ws.device)
        for k in group.layers:
            if k not in values:
                base = torch.arange(widths[k], device=ws.device) if op == "perm" else \
                    torch.ones(widths[k], dtype=ws.dtype, device=ws.device)
                values[k] = base.expand(len(ws), -1).clone()
            values[k][:, idx] = idx[drawn] if op == "perm" else drawn
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
    groups = list(component_groups(weights.spec))
    return _act_on_neurons(weights, _per_neuron(weights, groups, draw, "perm"), "perm")


def _groups_with(spec: ArchSpec, allowed: frozenset[str]) -> list[ComponentGroup]:
    """The component groups whose every layer has an activation in ``allowed``."""
    return [g for g in component_groups(spec) if all(spec.activation_of(k) in allowed for k in g.layers)]


def flip_signs(weights: Weights, generator: torch.Generator | None = None) -> Weights:
    """Flip the sign of random hidden neurons whose activation is odd (sin, tanh).
    Preserves the function."""
    if isinstance(weights, MixedWeights):
        return weights.map_groups(lambda g: flip_signs(g, generator))

    def draw(b: int, n: int) -> Tensor:
        signs = torch.randint(0, 2, (b, n), generator=generator).to(weights.dtype) * 2 - 1
        return signs.to(weights.device)

    groups = _groups_with(weights.spec, ODD_ACTIVATIONS)
    return _act_on_neurons(weights, _per_neuron(weights, groups, draw, "scale"), "scale")


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

    groups = (list(component_groups(weights.spec)) if any_activation
              else _groups_with(weights.spec, POSITIVE_HOMOGENEOUS))
    return _act_on_neurons(weights, _per_neuron(weights, groups, draw, "scale"), "scale")


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


def scale_neurons(ws: WeightSpace, factors: dict[int, Tensor]) -> WeightSpace:
    """Multiply the incoming weights and bias of the neurons of each neuron layer ``k`` by
    ``factors[k]`` (``(B, width_k)``) and divide their outgoing weights by it. Tied neurons
    (residuals) must be given one factor."""
    return _act_on_neurons(ws, factors, "scale")


def _norm(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Euclidean norm over ``dims``, computed on ``t / max|t|``: no square underflows, so a
    vector of 1e-42s has a norm, and zero only for a zero vector."""
    top = t.abs().amax(dim=dims, keepdim=True)
    unit = t / torch.where(top > 0, top, torch.ones_like(top))
    return (top * unit.pow(2).sum(dim=dims, keepdim=True).sqrt()).squeeze(dims)


def _rows(ws: WeightSpace, k: int, senders: Tensor | None) -> Tensor:
    """``(B, width_k)``: the norm of each neuron's incoming weights and bias, leaving out
    the senders (neurons of layer ``k - 1``) where ``senders`` is ``False``."""
    w, b = ws.weights[k - 1], ws.biases[k - 1]
    if senders is not None:
        w = w * _expand(senders.to(w.dtype), w, 2)
    return _norm(torch.cat([w.flatten(2), b[..., None]], dim=2), (2,))


def _columns(ws: WeightSpace, k: int, receivers: Tensor | None) -> Tensor:
    """``(B, width_k)``: the norm of each neuron's outgoing weights, leaving out the
    receivers (neurons of layer ``k + 1``) where ``receivers`` is ``False``."""
    w = ws.weights[k]
    if receivers is not None:
        w = w * _expand(receivers.to(w.dtype), w, 1)
    return _norm(w.transpose(1, 2).flatten(2), (2,))


def canonical_scale(ws: WeightSpace) -> tuple[WeightSpace, dict[int, Tensor]]:
    """The representative of ``ws`` under positive rescaling of its positively homogeneous
    hidden neurons (ReLU, identity), and the factors ``g`` that map ``ws`` onto it
    (``scale_neurons(ws, g)``). Any positive rescaling of ``ws`` has the same representative,
    up to rounding, whatever its weights: no constant or cutoff is involved.

    Each free component (``component_groups``) is scaled so that its incoming weights and
    biases, over all its layers, have norm 1. Components are taken in the order of their
    first layer, and a norm counts only the weights from neurons that are never scaled or
    whose component starts in an earlier layer and is already canonical, so that it never
    depends on a factor still to be chosen. A component with none of these weights non-zero
    is made canonical afterwards, from the output backwards: its outgoing weights to
    canonical neurons get norm 1, or else its incoming weights from them. A component with
    no weight at all keeps factor 1. Computed in float64 (a dead neuron's weights of 1e-42
    have factors of 1e42) and returned in ``ws``'s dtype."""
    dtype, ws = ws.dtype, ws.to(torch.float64)
    groups = sorted(_groups_with(ws.spec, POSITIVE_HOMOGENEOUS), key=lambda g: g.layers[0])
    count, widths, device = len(ws), ws.spec.widths, ws.device
    factors = {k: torch.ones(count, widths[k], dtype=ws.dtype, device=device) for g in groups for k in g.layers}
    first = [torch.full((w,), -1, device=device) for w in widths]  # first layer of each neuron's component
    for group in groups:
        for k in group.layers:
            first[k][list(group.neurons)] = group.layers[0]
    settled = [(f < 0).expand(count, -1).clone() for f in first]  # neurons that are never scaled, so far

    def settle(group: ComponentGroup, value: Tensor, where: Tensor) -> None:
        idx = list(group.neurons)
        for k in group.layers:
            factors[k][:, idx] = torch.where(where, value, factors[k][:, idx])
            settled[k][:, idx] |= where

    for group in groups:
        current, idx = scale_neurons(ws, factors), list(group.neurons)
        norm = _norm(torch.stack([_rows(current, k, settled[k - 1] & (first[k - 1] < group.layers[0]))[:, idx]
                                  for k in group.layers], dim=2), (2,))
        settle(group, torch.where(norm > 0, 1 / norm, 1.0), norm > 0)
    for group in sorted(groups, key=lambda g: g.layers[-1], reverse=True):
        pending = ~settled[group.layers[0]][:, list(group.neurons)]
        if pending.any():
            current, idx = scale_neurons(ws, factors), list(group.neurons)
            out = _norm(torch.stack([_columns(current, k, settled[k + 1])[:, idx] for k in group.layers], 2), (2,))
            into = _norm(torch.stack([_rows(current, k, settled[k - 1])[:, idx] for k in group.layers], 2), (2,))
            settle(group, torch.where(out > 0, out, torch.where(into > 0, 1 / into, 1.0)), pending)
    return scale_neurons(ws, factors).to(dtype), {k: v.to(dtype) for k, v in factors.items()}
