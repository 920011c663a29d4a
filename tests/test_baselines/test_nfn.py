"""NFN baselines (nfn-np, nfn-hnp): symmetry, sensitivity, unsupported inputs, training step."""

from __future__ import annotations

import pytest
import torch

from baselines.nfn import NFN
from baselines.nfn_layers import HNPLinear, NPLinear, features_of
from datasets.normalisation import LayerStats
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import build_method
from datasets.weight_dataset import TaskInfo
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.weights import WeightSpace

CNN = ArchSpec((Layer("conv", 8, 1, (3, 3), 2, 0, "relu"), Layer("conv", 8, 8, (3, 3), 2, 0, "relu"),
                Layer("linear", 10, 8)))
SPECS = [siren_spec(), mlp_spec([3, 8, 8, 8, 2], "relu"), CNN]
METHOD_NAMES = ["nfn-np", "nfn-hnp"]


def _weights(spec: ArchSpec, batch: int = 3, seed: int = 0, dtype=torch.float64) -> WeightSpace:
    g = torch.Generator().manual_seed(seed)
    return WeightSpace(spec, tuple(torch.randn(batch, *l.weight_shape, generator=g, dtype=dtype) for l in spec.layers),
                       tuple(torch.randn(batch, l.out_features, generator=g, dtype=dtype) for l in spec.layers))


def _info(spec: ArchSpec, ws: WeightSpace, out_dim: int = 10) -> TaskInfo:
    return TaskInfo((spec,), out_dim, "classification", {spec: LayerStats.of(ws)})


def _relabel(weights, biases, perms: dict[int, torch.Tensor]):
    """Relabel neuron layer ``k`` by ``perms[k]``: rows of weight k-1, bias k-1, columns of
    weight k. Works on raw weights (B, out, in[, kh, kw]) and on features (B, out, in, C)."""
    weights, biases = list(weights), list(biases)
    for k, p in perms.items():
        if k > 0:
            weights[k - 1] = weights[k - 1].index_select(1, p)
            biases[k - 1] = biases[k - 1].index_select(1, p)
        if k < len(weights):
            weights[k] = weights[k].index_select(2, p)
    return weights, biases


def _perms(spec: ArchSpec, layers, seed: int = 1) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randperm(spec.widths[k], generator=g) for k in layers}


def _relabel_ws(ws: WeightSpace, perms) -> WeightSpace:
    return WeightSpace(ws.spec, *map(tuple, _relabel(ws.weights, ws.biases, perms)))


def _model(name: str, spec: ArchSpec, ws: WeightSpace):
    return build_method(name, _info(spec, ws), profile="quick").double().eval()


@pytest.mark.parametrize("spec", [siren_spec(), CNN], ids=lambda s: s.describe())
def test_np_layer_equivariant_to_every_neuron_layer_hnp_to_hidden_ones(spec):
    torch.manual_seed(0)
    ws = _weights(spec)
    L = len(spec.layers)
    for layer, permuted in ((NPLinear(spec, 1, 4), range(L + 1)), (HNPLinear(spec, 1, 4), range(1, L))):
        layer = layer.double()
        perms = _perms(spec, permuted)
        out = layer(features_of(ws))
        out_of_permuted = layer(features_of(_relabel_ws(ws, perms)))
        expected_w, expected_b = _relabel(out.weights, out.biases, perms)
        for got, want in zip(out_of_permuted.weights + out_of_permuted.biases, expected_w + expected_b):
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_np_model_without_io_encoding_is_invariant_to_input_and_output_permutations():
    spec = mlp_spec([3, 8, 8, 2], "relu")
    ws = _weights(spec)
    io = _perms(spec, [0, 3])
    plain = NFN(_info(spec, ws), "np", (8, 8), fourier=4, head_hidden=16, head_dropout=0.0,
                feature_dropout=0.0, io=None, pool="np").double().eval()
    published = _model("nfn-np", spec, ws)  # sinusoidal I/O encoding + HNP pooling
    with torch.no_grad():
        torch.testing.assert_close(plain(_relabel_ws(ws, io)), plain(ws), atol=1e-5, rtol=0)
        out = published(ws)
        assert (published(_relabel_ws(ws, io)) - out).abs().max() > 1e-6


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_builder_refuses_several_architectures_and_single_layers(name):
    two = TaskInfo((siren_spec(), mlp_spec([2, 16, 1])), 10, "classification")
    one_layer = TaskInfo((mlp_spec([2, 1]),), 10, "classification")
    for info in (two, one_layer):
        with pytest.raises(UnsupportedArchitecture):
            build_method(name, info)


