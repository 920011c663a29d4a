"""DWSNet: exact invariance, layer equivariance, the layer spans exactly the paper's basis of
equivariant maps, negative control, builder refusals, one training step."""

from __future__ import annotations

import itertools

import pytest
import torch
from weight_batches import random_weights, task_info

from baselines.dwsnet import PROFILES, DWSLayer, DWSNet, fold, slot_layout
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import build_method
from datasets.weight_dataset import TaskInfo
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_hidden
from datasets.weights import WeightSpace

torch.set_num_threads(1)

SPECS = {"siren": siren_spec(), "relu4": mlp_spec([2, 16, 16, 16, 1], "relu"),
         "tanh5": mlp_spec([3, 8, 8, 8, 8, 2], "tanh")}


def permute(ws: WeightSpace, perms: dict[int, torch.Tensor]) -> WeightSpace:
    """Permute hidden neuron layer ``a`` by ``perms[a]`` (the same for every network)."""
    w, b = list(ws.weights), list(ws.biases)
    for a, p in perms.items():
        w[a - 1], b[a - 1], w[a] = w[a - 1][:, p], b[a - 1][:, p], w[a][:, :, p]
    return WeightSpace(ws.spec, tuple(w), tuple(b))


def permute_slots(xs: list[torch.Tensor], spec: ArchSpec, perms: dict[int, torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for x, slot in zip(xs, slot_layout(spec)):
        if slot.row is not None:
            x = x[:, perms[slot.row]]
        if slot.col is not None:
            x = x[:, :, perms[slot.col]]
        out.append(x)
    return out


def model(spec: ArchSpec, **overrides) -> DWSNet:
    net = DWSNet(task_info(spec), **{**PROFILES["quick"], **overrides}).double()
    for p in net.parameters():  # random, not near-zero, batch-norm affine parameters too
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_invariant_under_hidden_permutations(name: str, reduction: str) -> None:
    spec = SPECS[name]
    net, ws = model(spec, reduction=reduction), random_weights(spec)
    with torch.no_grad():
        ref = net(ws)
        for seed in range(3):
            out = net(permute_hidden(ws, torch.Generator().manual_seed(seed)))
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_paper_profile_invariant() -> None:
    spec = SPECS["siren"]
    net = build_method("dwsnet", task_info(spec), profile="paper").double().eval()
    ws = random_weights(spec, 3)
    with torch.no_grad():
        torch.testing.assert_close(net(permute_hidden(ws, torch.Generator().manual_seed(0))), net(ws),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["siren", "tanh5"])
def test_layer_equivariant_and_fold_matches_symmetry(name: str) -> None:
    spec = SPECS[name]
    ws = random_weights(spec)
    g = torch.Generator().manual_seed(3)
    perms = {a: torch.randperm(spec.widths[a], generator=g) for a in spec.hidden}
    xs = fold(ws)
    # folding commutes with the weight-space symmetry
    for a, b in zip(fold(permute(ws, perms)), permute_slots(xs, spec, perms)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    layer = DWSLayer(slot_layout(spec), 1, 5, "max").double()
    with torch.no_grad():
        for a, b in zip(layer(permute_slots(xs, spec, perms)), permute_slots(layer(xs), spec, perms)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def orbit_count(spec: ArchSpec) -> tuple[int, int]:
    """Burnside: orbits of the hidden-permutation group on coordinates of V and on V x V."""
    base = WeightSpace.from_flat(spec, torch.arange(spec.num_params, dtype=torch.float64)[None])
    groups = [itertools.permutations(range(spec.widths[a])) for a in spec.hidden]
    fixed_points = []
    for choice in itertools.product(*groups):
        moved = permute(base, {a: torch.tensor(p) for a, p in zip(spec.hidden, choice)}).flatten()
        fixed_points.append(int((moved == base.flatten()).sum()))
    n = len(fixed_points)
    return sum(fixed_points) // n, sum(f * f for f in fixed_points) // n


def test_layer_spans_exactly_the_equivariant_maps() -> None:
    """With sum pooling and one channel the layer is the paper's affine layer: its weights
    give linearly independent equivariant maps, as many as the group has orbits on V x V
    (the dimension of the space of equivariant linear maps), and its biases one per orbit on V."""
    spec = mlp_spec([2, 3, 3, 1], "relu")
    layer = DWSLayer(slot_layout(spec), 1, 1, "sum").double()
    basis = torch.eye(spec.num_params, dtype=torch.float64)
    params = [p for n, p in layer.named_parameters() if not n.endswith("bias")]
    maps = []
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        for p in params:
            for j in range(p.numel()):
                p.view(-1)[j] = 1.0
                ys = layer(fold(WeightSpace.from_flat(spec, basis)))
                maps.append(torch.cat([y.flatten(1) for y in ys], dim=1).flatten())
                p.view(-1)[j] = 0.0
    orbits_v, orbits_vv = orbit_count(spec)
    n_weights = sum(p.numel() for p in params)
    assert n_weights == orbits_vv
    assert int(torch.linalg.matrix_rank(torch.stack(maps))) == n_weights
    assert layer.glob.bias.numel() == orbits_v


def test_builder_refuses_conv_and_mixed() -> None:
    conv = ArchSpec((Layer("conv", 4, 1, (3, 3), activation="relu"), Layer("linear", 10, 4)))
    with pytest.raises(UnsupportedArchitecture, match="MLPs only"):
        build_method("dwsnet", TaskInfo((conv,), 10, "classification"))
    mixed = TaskInfo((SPECS["siren"], SPECS["relu4"]), 10, "classification")
    with pytest.raises(UnsupportedArchitecture, match="one MLP architecture"):
        build_method("dwsnet", mixed)
    net = build_method("dwsnet", task_info(SPECS["siren"]))
    with pytest.raises(ValueError, match="built for"):
        net(random_weights(SPECS["relu4"]).to(torch.float32))


