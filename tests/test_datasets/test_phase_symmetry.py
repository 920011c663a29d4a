"""The phase symmetry of sine neurons: shifting a hidden sine neuron's bias by a whole number
of periods ``2 pi / omega`` preserves the function (checked by evaluating the networks in
float64); half a period, or a shift of a tanh network's biases, changes it."""

import math

import pytest
import torch

from datasets.functional import forward
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import flip_signs, shift_phase
from datasets.weights import MixedWeights, WeightSpace

# sine widths differ per layer and one hidden layer is not sine: only sine neurons move
MIXED_ACTS = ArchSpec((Layer("linear", 8, 2, activation="sine", omega=30.0),
                       Layer("linear", 6, 8, activation="tanh"),
                       Layer("linear", 5, 6, activation="sine", omega=3.0),
                       Layer("linear", 2, 5)), output_offset=0.5)


def weights(spec: ArchSpec, n: int = 5, seed: int = 0) -> WeightSpace:
    g = torch.Generator().manual_seed(seed)
    return WeightSpace.from_flat(spec, torch.randn(n, spec.num_params, generator=g, dtype=torch.float64) * 0.3)


def change(ws: WeightSpace, moved: WeightSpace) -> float:
    x = 2 * torch.rand(64, ws.spec.widths[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1
    return (forward(ws, x) - forward(moved, x)).abs().max().item()


@pytest.mark.parametrize("spec", [siren_spec(), MIXED_ACTS], ids=["siren", "sine-tanh-sine"])
def test_whole_periods_preserve_the_function(spec, generator):
    ws = weights(spec)
    moved = shift_phase(ws, generator)
    assert change(ws, moved) < 1e-10
    for k, (layer, before, after) in enumerate(zip(spec.layers, ws.biases, moved.biases)):
        periods = (after - before) / (2 * math.pi / layer.omega)
        if layer.activation == "sine":
            assert torch.allclose(periods, periods.round(), atol=1e-9)
            assert (periods.round() != 0).float().mean() > 0.5  # most neurons did move
            assert len(periods.round().unique()) > 3  # by different multiples
        else:
            assert torch.equal(after, before), f"layer {k} is not sine and must not move"
    assert all(torch.equal(a, b) for a, b in zip(ws.weights, moved.weights))


def test_each_network_gets_its_own_shifts(generator):
    ws = weights(siren_spec(), 2)
    twice = WeightSpace.cat([ws[0], ws[0]])
    moved = shift_phase(twice, generator)
    assert not torch.equal(moved.biases[0][0], moved.biases[0][1])


def test_half_a_period_changes_the_function():
    ws = weights(siren_spec())
    layer = siren_spec().layers[0]
    biases = (ws.biases[0] + math.pi / layer.omega, *ws.biases[1:])
    assert change(ws, WeightSpace(ws.spec, ws.weights, biases)) > 1e-3


def test_networks_without_sine_are_untouched(generator):
    ws = weights(mlp_spec([2, 6, 6, 1], "tanh"))
    assert torch.equal(shift_phase(ws, generator).flatten(), ws.flatten())


def test_composes_with_sign_flips_and_mixed_batches(generator):
    mixed = MixedWeights.from_groups([weights(siren_spec(), 3), weights(MIXED_ACTS, 2, 4)])
    moved = flip_signs(shift_phase(mixed, generator), generator)
    for before, after in zip(mixed.groups, moved.groups):
        assert change(before, after) < 1e-10
