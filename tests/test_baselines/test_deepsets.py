"""DeepSets over neuron rows: set elements, exact invariance (and its documented
over-invariance), negative controls, mixed architectures, one training step."""

from __future__ import annotations

import pytest
import torch
from weight_batches import random_weights, task_info

from baselines.deepsets import DeepSets, row_elements
from datasets.method_table import build_method
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_hidden, permute_rows_only
from datasets.weights import MixedWeights, WeightSpace

torch.set_num_threads(1)

CONV = ArchSpec((Layer("conv", 4, 3, (3, 3), activation="relu"), Layer("conv", 5, 4, (3, 3), activation="relu"),
                 Layer("linear", 10, 5)))
SPECS = {"siren": siren_spec(), "relu4": mlp_spec([2, 16, 16, 16, 1], "relu"), "conv": CONV}


def model(*specs: ArchSpec, profile: str = "quick") -> DeepSets:
    return build_method("deepsets", task_info(*specs), profile=profile).double().eval()


def test_row_elements() -> None:
    spec = mlp_spec([2, 3, 4, 1], "relu")
    ws = random_weights(spec, 2)
    elements, ids = row_elements(ws, 6, 5)
    assert elements.shape == (2, 3 + 4 + 1, 6)
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 1, 4]  # the last layer takes the last slot
    torch.testing.assert_close(elements[:, :3, 0], ws.biases[0])
    torch.testing.assert_close(elements[:, :3, 1:3], ws.weights[0])  # input order kept
    torch.testing.assert_close(elements[:, 3:7, 1:4], ws.weights[1].sort(dim=2).values)  # sorted
    assert elements[:, :3, 3:].abs().sum() == 0 and elements[:, 3:7, 4:].abs().sum() == 0  # padding
    conv = random_weights(CONV, 2)
    elements, _ = row_elements(conv, 37, 3)
    taps = conv.weights[1].sort(dim=2).values.flatten(3).transpose(2, 3).flatten(2)  # per tap over channels
    torch.testing.assert_close(elements[:, 4:9, 1:], taps)


@pytest.mark.parametrize("name", ["siren", "relu4"])
def test_rows_only_is_invisible_but_detached_biases_are_not(name: str) -> None:
    """Documented limitation: elements do not say which neuron feeds which, so the
    non-symmetry ``permute_rows_only`` leaves the output unchanged. Negative controls: moving
    biases away from their rows, or perturbing one weight, changes the output."""
    spec = SPECS[name]
    net, ws = model(spec), random_weights(spec)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref = net(ws)
        torch.testing.assert_close(net(permute_rows_only(ws, 1, g)), ref, atol=1e-5, rtol=0)
        biases = list(ws.biases)
        biases[0] = biases[0].roll(1, dims=1)
        assert (net(WeightSpace(spec, ws.weights, tuple(biases))) - ref).abs().max() > 1e-6  # noise: 1e-16
        weights = list(ws.weights)
        weights[1] = weights[1].clone()
        weights[1][:, 0] += 1.0
        assert (net(WeightSpace(spec, tuple(weights), ws.biases)) - ref).abs().max() > 1e-6


def test_mixed_architectures() -> None:
    shallow, deep = siren_spec(), mlp_spec([3, 8, 8, 8, 8, 2], "tanh")
    net = model(shallow, deep)
    assert net.length == 33 and net.slots == 5
    a, b = random_weights(shallow, 3), random_weights(deep, 2, 7)
    mixed = MixedWeights.from_groups([a, b])[torch.tensor([3, 0, 4, 1, 2])]
    with torch.no_grad():
        out = net(mixed)
        assert out.shape == (5, 10)
        torch.testing.assert_close(out[[1, 3, 4]], net(a), atol=1e-12, rtol=0)
        torch.testing.assert_close(out[[0, 2]], net(b), atol=1e-12, rtol=0)
        torch.testing.assert_close(net(permute_hidden(mixed, torch.Generator().manual_seed(2))), out,
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="built for"):
        model(shallow).encode(random_weights(mlp_spec([2, 40, 1], "relu")))


