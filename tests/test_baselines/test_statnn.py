"""STATNN: the seven statistics, exact invariance (and its documented over-invariance),
negative control, mixed architectures, one-network batches, one training step."""

from __future__ import annotations

import pytest
import torch
from weight_batches import random_weights, task_info

from baselines.statnn import NUM_STATS, StatNN, tensor_stats
from datasets.method_table import build_method
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_hidden
from datasets.weights import MixedWeights

torch.set_num_threads(1)

CONV = ArchSpec((Layer("conv", 4, 3, (3, 3), activation="relu"), Layer("conv", 5, 4, (3, 3), activation="relu"),
                 Layer("linear", 10, 5)))
SPECS = {"siren": siren_spec(), "relu4": mlp_spec([2, 16, 16, 16, 1], "relu"), "conv": CONV}


def model(*specs: ArchSpec, profile: str = "quick") -> StatNN:
    return build_method("statnn", task_info(*specs), profile=profile).double().eval()


def test_tensor_stats_match_torch() -> None:
    t = torch.randn(3, 5, 7, dtype=torch.float64)
    flat = t.flatten(1)
    q = torch.quantile(flat, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64), dim=1).T
    expected = torch.cat([flat.mean(1, keepdim=True), flat.var(1, correction=0, keepdim=True), q], dim=1)
    torch.testing.assert_close(tensor_stats(t), expected)
    assert tensor_stats(torch.ones(2, 1)).tolist() == [[1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]] * 2


def test_mixed_depths_align_first_and_last_layers() -> None:
    deep = mlp_spec([2, 8, 8, 8, 8, 1], "relu")  # 5 layers
    shallow = siren_spec()  # 3 layers
    net = model(deep, shallow)
    a, b = random_weights(deep, 3), random_weights(shallow, 2, 5)
    mixed = MixedWeights.from_groups([a, b])
    feats = net.features(mixed)
    assert feats.shape == (5, 5 * 2 * NUM_STATS + 5)
    per_slot = feats[:, :-5].reshape(5, 5, 2 * NUM_STATS)
    assert per_slot[3:, 2:4].abs().sum() == 0  # the shallow net has no slots 2, 3
    assert feats[3:, -5:].tolist() == [[1.0, 1.0, 0.0, 0.0, 1.0]] * 2
    last = net.normalise(b)  # the shallow net's last layer sits in the last slot
    torch.testing.assert_close(per_slot[3:, 4], torch.cat([tensor_stats(last.weights[2]),
                                                           tensor_stats(last.biases[2])], dim=1))
    with torch.no_grad():
        torch.testing.assert_close(net(permute_hidden(mixed, torch.Generator().manual_seed(1))), net(mixed),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(net(mixed)[3:], net(b), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="at most 3 layers"):
        model(shallow).features(a)


