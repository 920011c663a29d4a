"""Every function-preserving transform is checked by evaluating the networks before and
after; every non-symmetry must change the function."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.functional import forward
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import (
    ComponentGroup,
    component_groups,
    flip_signs,
    permute_hidden,
    permute_rows_only,
    rescale_positive,
    shift_phase,
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


# Residuals between unequal widths (the CNN Wild Park's): a chain 1 -> 3 -> 4 and two
# residuals (2 -> 4, 3 -> 4) into layer 4; hidden widths 6, 4, 5, 7.
UNEQUAL_RESIDUALS = ((1, 3), (2, 4), (3, 4))


def unequal_mlp(activation: str) -> ArchSpec:
    return ArchSpec(mlp_spec([2, 6, 4, 5, 7, 3], activation, omega=3.0).layers, residual=UNEQUAL_RESIDUALS)


def unequal_cnn(activations: tuple[str, ...]) -> ArchSpec:
    channels, kernels = (3, 6, 4, 5, 7), (3, 5, 3, 3)
    layers = [Layer("conv", channels[i + 1], channels[i], (k, k), 1, k // 2, act)
              for i, (k, act) in enumerate(zip(kernels, activations))]
    return ArchSpec((*layers, Layer("linear", 4, channels[-1])), residual=UNEQUAL_RESIDUALS)


MIXED_CNN = unequal_cnn(("relu", "tanh", "relu", "relu"))  # the component through layer 2 is not homogeneous
UNEQUAL = {"relu-mlp": (unequal_mlp("relu"), (permute_hidden, rescale_positive)),
           "tanh-mlp": (unequal_mlp("tanh"), (permute_hidden, flip_signs)),
           "sine-mlp": (unequal_mlp("sine"), (permute_hidden, flip_signs, shift_phase)),
           "relu-cnn": (unequal_cnn(("relu",) * 4), (permute_hidden, rescale_positive)),
           "tanh-cnn": (unequal_cnn(("tanh",) * 4), (permute_hidden, flip_signs)),
           "mixed-cnn": (MIXED_CNN, (permute_hidden, rescale_positive))}


def test_components_of_unequal_residuals():
    spec = unequal_mlp("relu")
    # neurons 0-3 tie layers 1-4 (layer 2 has 4); 4 ties 1, 3, 4 (layer 3 has 5); 5 of layer 1 and 5, 6
    # of layer 4 are alone; output and input neurons are fixed
    assert component_groups(spec) == (ComponentGroup((1,), (5,)), ComponentGroup((1, 2, 3, 4), (0, 1, 2, 3)),
                                      ComponentGroup((1, 3, 4), (4,)), ComponentGroup((4,), (5, 6)))
    assert symmetry_classes(spec) == [[1], [1, 2, 3, 4], [1, 3, 4], [4]]
    into_output = ArchSpec(mlp_spec([2, 3, 4, 2], "relu").layers, residual=((1, 3),))  # joins 2 to the output
    assert component_groups(into_output) == (ComponentGroup((1,), (2,)), ComponentGroup((2,), (0, 1, 2, 3)))


@pytest.mark.parametrize("name, transform", [(n, t) for n, (_, ts) in UNEQUAL.items() for t in ts],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_transforms_preserve_networks_with_unequal_residuals(name, transform, generator):
    spec = UNEQUAL[name][0]
    ws = weights(spec, scale=0.3)
    moved = transform(ws, generator)
    assert change(spec, ws, moved) < 1e-10
    assert (moved.flatten() - ws.flatten()).abs().max() > 0.01


def test_a_component_with_a_non_homogeneous_layer_is_not_rescaled(generator):
    ws = weights(MIXED_CNN)
    moved = rescale_positive(ws, generator)
    rows = (moved.weights[0] / ws.weights[0]).flatten(2)  # per output channel of layer 1
    assert torch.allclose(rows[:, :4], torch.ones_like(rows[:, :4]))  # the component through tanh layer 2
    assert (rows[:, 4:] - 1).abs().amin() > 1e-3  # neurons 4 and 5 are rescaled
    assert change(MIXED_CNN, ws, rescale_positive(ws, generator, any_activation=True)) > 1e-3


def permute_layer(ws: WeightSpace, k: int, perm: list[int]) -> WeightSpace:
    """Neuron layer ``k`` alone permuted by ``perm``: rows and bias of its producer,
    columns of its consumer (a symmetry only if no residual ties it)."""
    p = torch.tensor(perm)
    w, b = list(ws.weights), list(ws.biases)
    w[k - 1], b[k - 1], w[k] = w[k - 1][:, p], b[k - 1][:, p], w[k][:, :, p]
    return WeightSpace(ws.spec, tuple(w), tuple(b))


@pytest.mark.parametrize("spec", [unequal_mlp("relu"), unequal_cnn(("relu",) * 4)], ids=["mlp", "cnn"])
def test_moving_tied_neurons_apart_changes_the_function(spec, generator):
    ws = weights(spec)
    untied = ArchSpec(spec.layers)  # the same layers without residuals: each layer permuted alone
    alone = permute_hidden(WeightSpace(untied, ws.weights, ws.biases), generator)
    assert change(spec, ws, WeightSpace(spec, alone.weights, alone.biases)) > 1e-3
    assert change(untied, WeightSpace(untied, ws.weights, ws.biases), alone) < 1e-10
    assert change(spec, ws, permute_layer(ws, 1, [5, 1, 2, 3, 4, 0])) > 1e-3  # a tied neuron with a free one
    assert change(spec, ws, permute_layer(ws, 4, [0, 1, 2, 3, 4, 6, 5])) < 1e-10  # two free ones


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 5), min_size=3, max_size=6), data=st.data(), seed=st.integers(0, 2**16))
def test_permutation_and_rescaling_preserve_any_residual_relu_mlp(widths, data, seed):
    pairs = [(a, b) for b in range(len(widths)) for a in range(b)]
    residual = data.draw(st.lists(st.sampled_from(pairs), max_size=4, unique=True))
    spec = ArchSpec(mlp_spec(widths, "relu").layers, residual=tuple(residual))
    ws = weights(spec, 3, seed)
    g = torch.Generator().manual_seed(seed)
    assert change(spec, ws, permute_hidden(ws, g)) < 1e-10
    assert change(spec, ws, rescale_positive(ws, g)) < 1e-10
