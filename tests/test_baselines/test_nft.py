"""NFT baseline: symmetry of the weight-space attention and of the model, sensitivity,
unsupported inputs, training step."""

from __future__ import annotations

import pytest
import torch

from baselines.nfn_layers import Features, layer_taps
from baselines.nft import WeightSpaceSelfAttention
from datasets.normalisation import LayerStats
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import METHODS, build_method
from datasets.weight_dataset import TaskInfo
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_hidden, permute_rows_only
from datasets.weights import WeightSpace

CNN = ArchSpec((Layer("conv", 8, 1, (3, 3), 2, 0, "relu"), Layer("conv", 8, 8, (3, 3), 2, 0, "relu"),
                Layer("linear", 10, 8)))
SPECS = [siren_spec(), mlp_spec([3, 8, 8, 8, 2], "relu"), CNN]


def _weights(spec: ArchSpec, batch: int = 3, seed: int = 0, dtype=torch.float64) -> WeightSpace:
    g = torch.Generator().manual_seed(seed)
    return WeightSpace(spec, tuple(torch.randn(batch, *l.weight_shape, generator=g, dtype=dtype) for l in spec.layers),
                       tuple(torch.randn(batch, l.out_features, generator=g, dtype=dtype) for l in spec.layers))


def _info(spec: ArchSpec, ws: WeightSpace, out_dim: int = 10) -> TaskInfo:
    return TaskInfo((spec,), out_dim, "classification", {spec: LayerStats.of(ws)})


def _relabel(feats: Features, perms: dict[int, torch.Tensor]) -> Features:
    """Relabel neuron layer ``k`` by ``perms[k]`` (rows of weight k-1, bias k-1, columns of weight k)."""
    weights, biases = list(feats.weights), list(feats.biases)
    for k, p in perms.items():
        if k > 0:
            weights[k - 1], biases[k - 1] = weights[k - 1].index_select(1, p), biases[k - 1].index_select(1, p)
        if k < len(weights):
            weights[k] = weights[k].index_select(2, p)
    return Features(tuple(weights), tuple(biases))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_invariant_to_hidden_permutations_and_sensitive_to_row_shuffles(spec):
    torch.manual_seed(0)
    ws = _weights(spec)
    model = build_method("nft", _info(spec, ws), profile="quick").double().eval()
    with torch.no_grad():
        out = model(ws)
        permuted = model(permute_hidden(ws, torch.Generator().manual_seed(3)))
        broken = model(permute_rows_only(ws, 1, torch.Generator().manual_seed(3)))
    assert out.shape == (3, 10)
    torch.testing.assert_close(permuted, out, atol=1e-5, rtol=0)
    assert (broken - out).abs().max() > 1e-6  # float64: ~1e9 x the error of the permuted copy


@pytest.mark.parametrize("spec", [siren_spec(), CNN], ids=lambda s: s.describe())
def test_self_attention_is_equivariant_to_every_neuron_layer(spec):
    torch.manual_seed(0)
    c, B = 8, 2
    attn = WeightSpaceSelfAttention(spec, c, heads=2, dropout=0.0).double()
    feats = Features(tuple(torch.randn(B, l.out_features, l.in_features, t * c, dtype=torch.float64)
                           for l, t in zip(spec.layers, layer_taps(spec))),
                     tuple(torch.randn(B, l.out_features, c, dtype=torch.float64) for l in spec.layers))
    g = torch.Generator().manual_seed(1)
    perms = {k: torch.randperm(n, generator=g) for k, n in enumerate(spec.widths)}  # inputs/outputs too
    got, want = attn(_relabel(feats, perms)), _relabel(attn(feats), perms)
    for a, b in zip(got.weights + got.biases, want.weights + want.biases):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    rows_only = Features((feats.weights[0][:, torch.randperm(spec.widths[1], generator=g)],
                          *feats.weights[1:]), feats.biases)  # not a relabelling: bias and W^(1) stay
    assert (attn(rows_only).weights[1] - attn(feats).weights[1]).abs().max() > 1e-6


def test_builder_refuses_several_architectures_and_single_layers():
    for specs in ((siren_spec(), mlp_spec([2, 16, 1])), (mlp_spec([2, 1]),)):
        with pytest.raises(UnsupportedArchitecture):
            build_method("nft", TaskInfo(specs, 10, "classification"))


@pytest.mark.parametrize("spec", [siren_spec(), CNN], ids=lambda s: s.describe())
def test_training_step_gives_finite_gradients(spec):
    torch.manual_seed(0)
    ws = _weights(spec, batch=4, dtype=torch.float32)
    model = build_method("nft", _info(spec, ws, out_dim=1), profile="quick").train()
    model(ws).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_parameter_counts_match_the_documented_ones():
    info = TaskInfo((siren_spec(),), 10, "classification")
    with torch.device("meta"):
        counts = [sum(p.numel() for p in build_method("nft", info, profile=prof).parameters())
                  for prof in ("quick", "paper")]
    assert counts == [138_842, 8_038_922]
