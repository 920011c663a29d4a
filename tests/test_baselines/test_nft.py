"""NFT baseline: symmetry of the weight-space attention and of the model, sensitivity,
unsupported inputs, training step."""

from __future__ import annotations

import pytest
import torch

from baselines.nfn_layers import Features, layer_taps
from baselines.nft import WeightSpaceSelfAttention
from datasets.normalisation import LayerStats
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import build_method
from datasets.weight_dataset import TaskInfo
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
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


