"""NG-GNN and NG-T (sparse and dense attention): exact invariance to hidden-neuron
permutations (MLPs, CNNs with and without residuals, mixed batches, probe features),
negative control, batch-order consistency of mixed batches, builder refusals, training
steps for both profiles."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from weight_batches import random_weights, task_info

from datasets.errors import UnsupportedArchitecture
from datasets.method_table import build_method
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_hidden, permute_rows_only
from datasets.weights import MixedWeights

torch.set_num_threads(1)

CNN = ArchSpec((Layer("conv", 8, 1, (3, 3), 2, 0, "relu"), Layer("conv", 8, 8, (5, 5), 1, 2, "relu"),
                Layer("linear", 10, 8)))
SPECS = {"siren": siren_spec(out_features=10), "relu4": mlp_spec([2, 16, 16, 16, 10], "relu"),
         "cnn": CNN, "cnn-res": ArchSpec(CNN.layers, residual=((1, 2),))}
# (method, options): NG-T's attention runs over the graph's edges or over all pairs
VARIANTS = {"ng-gnn": ("ng-gnn", {}), "ng-t": ("ng-t", {}), "ng-t-dense": ("ng-t", {"dense": True})}


def changed(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Invariance holds to ~1e-16 in float64; a real change at initialisation is >= 1e-5."""
    return (a - b).abs().max().item() > 1e-6


def model(variant: str, specs: tuple[ArchSpec, ...], **overrides) -> torch.nn.Module:
    method, options = VARIANTS[variant]
    torch.manual_seed(0)
    return build_method(method, task_info(*specs), profile="quick", **options, **overrides).double().eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_invariant_with_probe_features_and_mean_readout(variant, generator):
    spec = SPECS["cnn-res"]
    net, ws = model(variant, (spec,), probes=4, readout="mean"), random_weights(spec)
    out = net(ws)
    assert torch.allclose(net(permute_hidden(ws, generator)), out, atol=1e-10, rtol=0)
    assert changed(net(permute_rows_only(ws, 2, generator)), out)


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixed_batch_invariant_and_in_batch_order(variant, generator):
    specs = (SPECS["relu4"], SPECS["cnn-res"])
    net = model(variant, specs)
    groups = [random_weights(specs[0], 2, 3), random_weights(specs[1], 3, 4)]
    mixed = MixedWeights.from_groups(groups)[torch.tensor([2, 0, 3, 4, 1])]
    out = net(mixed)
    assert out.shape == (5, 10)
    assert torch.allclose(net(permute_hidden(mixed, generator)), out, atol=1e-10, rtol=0)
    for g, group in enumerate(mixed.groups):  # each network's prediction ignores its batch mates
        assert torch.allclose(out[mixed.positions(g)], net(group), atol=1e-10, rtol=0)


def test_dense_attention_shares_the_parameters_but_attends_over_all_pairs():
    spec = SPECS["relu4"]
    sparse, dense, ws = model("ng-t", (spec,)), model("ng-t-dense", (spec,)), random_weights(spec)
    assert dense.load_state_dict(sparse.state_dict(), strict=False).missing_keys == ["no_edge"]
    assert dense.hparams["dense"] and not sparse.hparams["dense"]
    assert changed(dense(ws), sparse(ws))  # non-edges (and the node itself) join the attention


@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_builder_refuses_what_it_cannot_read(method):
    build = partial(build_method, method)
    with pytest.raises(UnsupportedArchitecture, match="outputs"):
        build(task_info(SPECS["siren"], siren_spec(out_features=3)))
    build(task_info(SPECS["siren"], siren_spec(out_features=3)), readout="mean")
    with pytest.raises(UnsupportedArchitecture, match="probe"):
        build(task_info(CNN), probes=4, probe_size=2)


