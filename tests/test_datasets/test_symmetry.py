"""Every function-preserving transform is checked by evaluating the networks before and
after; every non-symmetry must change the function."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.functional import forward
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import (
    flip_signs,
    permute_hidden,
    permute_rows_only,
    rescale_positive,
    symmetry_classes,
)
from datasets.weights import MixedWeights, WeightSpace

CNN = ArchSpec((Layer("conv", 6, 3, (3, 3), 1, 1, "relu"), Layer("conv", 6, 6, (5, 5), 1, 2, "relu"),
                Layer("conv", 5, 6, (3, 3), 2, 0, "relu"), Layer("linear", 4, 5)), residual=((1, 2),))
TANH_CNN = ArchSpec(tuple(Layer(l.kind, l.out_features, l.in_features, l.kernel, l.stride, l.padding,
                                "tanh" if l.activation == "relu" else l.activation) for l in CNN.layers))


def weights(spec, n=4, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return WeightSpace.from_flat(spec, torch.randn(n, spec.num_params, generator=g, dtype=torch.float64) * scale)


def inputs(spec, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (7, spec.layers[0].in_features, 9, 9) if spec.is_conv else (7, spec.layers[0].in_features)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def change(spec, ws, moved):
    x = inputs(spec)
    return (forward(ws, x) - forward(moved, x)).abs().max().item()


@pytest.mark.parametrize("spec", [siren_spec(), mlp_spec([3, 8, 8, 8, 2], "relu"), CNN, TANH_CNN],
                         ids=["siren", "relu-mlp", "cnn-residual", "tanh-cnn"])
def test_permutation_preserves_the_function(spec, generator):
    ws = weights(spec, scale=0.1 if spec == siren_spec() else 0.5)
    moved = permute_hidden(ws, generator)
    assert change(spec, ws, moved) < 1e-10
    assert (moved.flatten() - ws.flatten()).abs().max() > 0.1  # it did move something


@pytest.mark.parametrize("spec", [siren_spec(), mlp_spec([3, 8, 8, 2], "relu"), CNN])
def test_rows_without_columns_change_the_function(spec, generator):
    ws = weights(spec, scale=0.1 if spec == siren_spec() else 0.5)
    assert change(spec, ws, permute_rows_only(ws, 1, generator)) > 1e-3


def test_sign_flip_preserves_odd_activations(generator):
    for spec in (siren_spec(), mlp_spec([2, 6, 6, 1], "tanh")):
        ws = weights(spec, scale=0.1)
        assert change(spec, ws, flip_signs(ws, generator)) < 1e-10
    relu = mlp_spec([2, 6, 6, 1], "relu")
    ws = weights(relu)
    assert torch.equal(flip_signs(ws, generator).flatten(), ws.flatten())  # relu is not odd: untouched


def test_rescaling_preserves_relu_and_changes_tanh(generator):
    ws = weights(CNN)
    assert change(CNN, ws, rescale_positive(ws, generator)) < 1e-9
    tanh = weights(TANH_CNN)
    assert torch.equal(rescale_positive(tanh, generator).flatten(), tanh.flatten())
    assert change(TANH_CNN, tanh, rescale_positive(tanh, generator, any_activation=True)) > 1e-3


def test_residual_layers_share_one_class():
    assert symmetry_classes(CNN) == [[1, 2], [3]]
    into_input = ArchSpec((Layer("linear", 2, 2, activation="relu"), Layer("linear", 1, 2)), residual=((0, 1),))
    assert symmetry_classes(into_input) == []  # tied to the input: not free


def test_mixed_batches_are_transformed_per_group(generator):
    mixed = MixedWeights.from_groups([weights(CNN, 2), weights(mlp_spec([3, 5, 5, 2], "relu"), 3)])
    moved = permute_hidden(mixed, generator)
    for before, after in zip(mixed.groups, moved.groups):
        assert change(before.spec, before, after) < 1e-10


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
       activation=st.sampled_from(["relu", "tanh", "sine", "sigmoid"]), seed=st.integers(0, 2**16))
def test_permutation_preserves_any_mlp(widths, activation, seed):
    spec = mlp_spec(widths, activation)
    ws = weights(spec, 3, seed)
    assert change(spec, ws, permute_hidden(ws, torch.Generator().manual_seed(seed))) < 1e-10
