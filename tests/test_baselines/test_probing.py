"""Vanilla probing: invariance (float64, 1e-6 relative) to every function-preserving
transform, on SIRENs, tanh, ReLU and linear MLPs and a ReLU CNN, each transform first
verified on the networks; negative controls; mixed batches; refusals; gradients reaching the
probes and the head; batch independence."""

from __future__ import annotations

import math

import pytest
import torch
from symmetry_cases import CASES, SPECS, check_mixed_batch, relative_change, verified
from weight_batches import random_weights, task_info

import baselines  # noqa: F401
from datasets.errors import UnsupportedArchitecture
from datasets.functional import forward
from datasets.method_table import METHODS, build_method
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_rows_only, rescale_positive
from datasets.weights import MixedWeights, WeightSpace

torch.set_num_threads(1)


def model(*specs, profile: str = "quick", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method("probing", task_info(*specs), profile=profile, **overrides).double().eval()


@pytest.mark.parametrize("spec, transform", CASES)
def test_invariant_to_each_function_preserving_transform(spec, transform, generator):
    net, ws = model(SPECS[spec]), random_weights(SPECS[spec], 6)
    out = net(ws)
    assert relative_change(net(verified(transform, ws, generator)), out) < 1e-6


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_non_symmetries_change_the_output(spec, generator):
    net, ws = model(SPECS[spec]), random_weights(SPECS[spec], 6)
    out = net(ws)
    assert relative_change(net(permute_rows_only(ws, 1, generator)), out) > 1e-3
    if spec in ("siren", "tanh"):
        assert relative_change(net(rescale_positive(ws, generator, 0.1, 10.0, any_activation=True)), out) > 1e-3


def test_half_a_period_is_not_a_phase_symmetry():
    spec = SPECS["siren"]
    net, ws = model(spec), random_weights(spec, 6)
    moved = WeightSpace(spec, ws.weights, (ws.biases[0] + math.pi / spec.layers[0].omega, *ws.biases[1:]))
    assert relative_change(net(moved), net(ws)) > 1e-3


def test_reads_the_outputs_at_the_probes_offset_included():
    spec = siren_spec(out_features=3, output_offset=0.5)
    net, ws = model(spec), random_weights(spec, 4)
    points = net.probe_inputs(spec)
    assert points.shape == (64, 2) and points.abs().max() < 1
    expected = forward(ws, points).flatten(1)
    assert torch.allclose(net.responses(ws), expected, rtol=0, atol=1e-12)
    shifted = ArchSpec(spec.layers, output_offset=1.5)
    assert torch.allclose(net.responses(WeightSpace(shifted, ws.weights, ws.biases)), expected + 1, atol=1e-12)


def test_cnn_probes_are_images_of_the_input_channels():
    cnn = SPECS["relu-cnn"]
    assert model(cnn).probe_inputs(cnn).shape == (64, 1, 16, 16)
    assert model(cnn, profile="paper").probe_inputs(cnn).shape == (64, 1, 32, 32)


def test_mixed_batch_shares_probes_and_ignores_batch_mates(generator):
    specs = (SPECS["siren"], mlp_spec([2, 16, 16, 16, 10], "tanh"), SPECS["relu-cnn"])
    net = model(*specs)
    assert sorted(net.points) == ["conv1", "mlp2"]  # one probe set per input shape
    check_mixed_batch(net, specs, generator)


def test_batch_independence_in_eval():
    spec = SPECS["relu"]
    net, ws = model(spec), random_weights(spec, 5)
    out = net(ws)
    assert torch.allclose(out, torch.cat([net(ws[i]) for i in range(len(ws))]), rtol=1e-9, atol=1e-12)


def test_refuses_what_it_cannot_read():
    with pytest.raises(UnsupportedArchitecture, match="outputs"):
        model(siren_spec(out_features=10), siren_spec(out_features=3))
    with pytest.raises(UnsupportedArchitecture, match="probe_size"):
        model(SPECS["relu-cnn"], probe_size=2)
    tiny = ArchSpec((Layer("conv", 4, 1, (3, 3), 1, 1, "relu"), Layer("linear", 10, 4)))
    model(tiny, probe_size=2)  # padding keeps a small image alive


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_training_step_reaches_the_probes_and_the_head(profile):
    specs = (SPECS["siren"], SPECS["relu-cnn"])
    torch.manual_seed(0)
    net = build_method("probing", task_info(*specs), profile=profile).train()
    assert net.hparams["probes"] == 64
    mixed = MixedWeights.from_groups([random_weights(s, 2).map(lambda t: t.float()) for s in specs])
    torch.nn.functional.cross_entropy(net(mixed), torch.tensor([0, 1, 2, 3])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_registered_with_every_symmetry():
    entry = METHODS["probing"]
    assert entry.symmetries == {"permutation", "sign_flip", "rescale", "phase"}
    assert entry.heterogeneous and entry.optim == {"lr": 3e-4, "weight_decay": 0.0}
    assert entry.profiles["paper"] == {"probes": 64, "hidden": 256, "layers": 6, "probe_size": 32}
