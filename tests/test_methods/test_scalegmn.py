"""ScaleGMN and ScaleGMN-B: exact invariance (float64, 1e-6 relative) to every symmetry they
claim, on SIRENs, tanh, ReLU and linear MLPs, a ReLU CNN with a residual and a CNN with
residuals between unequal widths (symmetries per neuron of a layer), each transform
first verified on the networks; negative controls; mixed batches; the layers' equivariance
laws; finite gradients reaching every parameter; batch independence."""

from __future__ import annotations

import math

import pytest
import torch
from symmetry_cases import CASES, SPECS, check_mixed_batch, relative_change, verified
from weight_batches import random_weights, task_info

import methods  # noqa: F401
from datasets.method_table import METHODS, build_method
from datasets.spec import mlp_spec
from datasets.symmetry import permute_rows_only, rescale_positive
from datasets.weights import MixedWeights, WeightSpace
from methods.scalegmn import SCALE, SIGN, neuron_kinds, reciprocal

torch.set_num_threads(1)

VARIANTS = ("scalegmn", "scalegmn-b")


def model(name: str, *specs, profile: str = "quick") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method(name, task_info(*specs), profile=profile).double().eval()


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("spec, transform", CASES)
def test_invariant_to_each_claimed_symmetry(name, spec, transform, generator):
    net, ws = model(name, SPECS[spec]), random_weights(SPECS[spec], 6)
    out = net(ws)
    assert relative_change(net(verified(transform, ws, generator)), out) < 1e-6


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_non_symmetries_change_the_output(name, spec, generator):
    net, ws = model(name, SPECS[spec]), random_weights(SPECS[spec], 6)
    out = net(ws)
    assert relative_change(net(permute_rows_only(ws, 1, generator)), out) > 1e-3
    if spec in ("siren", "tanh"):  # positive scaling of an odd, non-homogeneous neuron
        assert relative_change(net(rescale_positive(ws, generator, 0.1, 10.0, any_activation=True)), out) > 1e-3


@pytest.mark.parametrize("name", VARIANTS)
def test_half_a_period_is_not_a_phase_symmetry(name):
    spec = SPECS["siren"]
    net, ws = model(name, spec), random_weights(spec, 6)
    half = math.pi / spec.layers[0].omega
    moved = WeightSpace(spec, ws.weights, (ws.biases[0] + half, *ws.biases[1:]))
    assert relative_change(net(moved), net(ws)) > 1e-3


@pytest.mark.parametrize("name", VARIANTS)
def test_paper_profile_is_invariant_too(name, generator):
    spec = SPECS["relu-cnn"]
    net, ws = model(name, spec, profile="paper"), random_weights(spec, 3)
    out = net(ws)
    assert relative_change(net(verified("rescale", ws, generator)), out) < 1e-6
    assert relative_change(net(verified("permutation", ws, generator)), out) < 1e-6
    assert relative_change(net(permute_rows_only(ws, 1, generator)), out) > 1e-3


@pytest.mark.parametrize("name", VARIANTS)
def test_mixed_batch_of_activations_and_shapes(name, generator):
    """SIRENs, ReLU CNNs and tanh MLPs with 3 outputs and 3 inputs in one batch: every
    transform at once, and each prediction independent of its batch mates."""
    specs = (SPECS["siren"], SPECS["relu-cnn"], mlp_spec([3, 10, 10, 3], "tanh"))
    net = model(name, *specs)
    check_mixed_batch(net, specs, generator)


@pytest.mark.parametrize("name", VARIANTS)
def test_batch_independence_in_eval(name):
    spec = SPECS["siren"]
    net, ws = model(name, spec), random_weights(spec, 5)
    out = net(ws)
    singles = torch.cat([net(ws[i]) for i in range(len(ws))])
    assert torch.allclose(out, singles, rtol=1e-9, atol=1e-12)
    assert relative_change(out[0], out[1]) > 1e-3  # different networks, different outputs


def test_neuron_kinds_follow_the_activations():
    kinds = {name: neuron_kinds(spec) for name, spec in SPECS.items()}
    hidden = slice(2, -10)
    assert (kinds["siren"][hidden] == SIGN).all() and (kinds["relu"][hidden] == SCALE).all()
    assert (kinds["linear"][3:-10] == SIGN | SCALE).all()
    assert (kinds["siren"][:2] == 0).all() and (kinds["siren"][-10:] == 0).all()  # never transformed
    assert (neuron_kinds(mlp_spec([2, 4, 1], "sigmoid")) == 0).all()
    # per neuron of a residual component (layers 1-3 of widths 6, 3, 4 after one input channel)
    assert kinds["unequal-cnn"][1:14].tolist() == [0, 0, 0, SCALE, SIGN | SCALE, SIGN | SCALE, 0, 0, 0, 0, 0, 0, SCALE]


def test_reciprocal_keeps_padding_at_zero():
    t = torch.tensor([[0.0, 2.0, -0.5]])
    assert torch.equal(reciprocal(t), torch.tensor([[0.0, 0.5, -2.0]]))


def test_registered_with_the_claimed_symmetries():
    for name in VARIANTS:
        entry = METHODS[name]
        assert entry.family == "graph" and entry.heterogeneous
        assert entry.symmetries == {"permutation", "sign_flip", "rescale", "phase"}
    quick, paper = METHODS["scalegmn-b"].profiles["quick"], METHODS["scalegmn-b"].profiles["paper"]
    assert (paper["hidden"], paper["layers"], paper["dropout"]) == (128, 4, 0.2) and quick["hidden"] < 128


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_training_step_reaches_every_parameter(name, profile):
    specs = (SPECS["siren"], SPECS["relu-cnn"])
    torch.manual_seed(0)
    net = build_method(name, task_info(*specs), profile=profile).train()
    mixed = MixedWeights.from_groups([random_weights(specs[0], 2).map(lambda t: t.float()),
                                      random_weights(specs[1], 2).map(lambda t: t.float())])
    loss = torch.nn.functional.cross_entropy(net(mixed), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for param_name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), param_name
        assert p.grad.abs().sum() > 0, f"{param_name} gets no gradient"


def test_tiny_relu_weights_keep_the_bidirectional_model_finite(generator):
    """Trained CNNs hold weights down to 1e-42, whose reciprocals overflow float32: they count
    as absent in the backward messages, and everything stays finite."""
    assert reciprocal(torch.tensor([0.0, 1e-42, -1e-7, 1e-6, -0.5])).tolist() == [0.0, 0.0, 0.0, 1e6, -2.0]
    spec = SPECS["relu"]
    ws = random_weights(spec, 4)
    weights = [w.float() for w in ws.weights]
    weights[1][:, 0, 0] = 1e-42
    ws = WeightSpace(spec, tuple(weights), tuple(b.float() for b in ws.biases))
    net = model("scalegmn-b", spec).float()
    out = net(ws)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
