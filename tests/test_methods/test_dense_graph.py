"""The layered (dense block) layout of neural graphs against the edge list: the same
structure, the same encoded features, the same operations (PNA aggregators with degree
scalers, softmax attention, graph LayerNorm, readouts), and NG-GNN / NG-T computing the
same function and gradients on both layouts (SIRENs, ReLU MLPs, CNNs with residual edges,
probe features, mixed batches); hidden-neuron permutation invariance on the layered path;
the layout option; the edit heads (task ``"edit"``) giving the same change on both layouts,
equivariant on the layered path, per network in mixed batches."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn.norm import LayerNorm
from weight_batches import random_weights, task_info

from datasets.errors import ConfigError, UnsupportedArchitecture
from datasets.functional import forward
from datasets.method_table import build_method
from datasets.normalisation import LayerStats
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import permute_hidden, permute_rows_only
from datasets.weight_dataset import TaskInfo
from datasets.weights import MixedWeights, WeightSpace
from methods import layouts
from methods.encodings import GraphEncoder
from methods.graph import EDGE_TYPES, GraphConverter
from methods.layouts import EdgeListGraph, LayeredStructure, SenderStats, layered_groups

torch.set_num_threads(1)

CNN_RES = ArchSpec((Layer("conv", 6, 1, (3, 3), 2, 0, "relu"), Layer("conv", 6, 6, (5, 5), 1, 2, "relu"),
                    Layer("linear", 10, 6)), residual=((1, 2),))
# residuals between unequal widths (the CNN Wild Park's): 5 -> 3 channels, 3 -> 4, and 5 -> 4 into one layer
CNN_UNEQUAL = ArchSpec((Layer("conv", 5, 1, (3, 3), 2, 1, "relu"), Layer("conv", 2, 5, (3, 3), 1, 1, "tanh"),
                        Layer("conv", 3, 2, (5, 5), 1, 2, "relu"), Layer("conv", 4, 3, (3, 3), 1, 1, "gelu"),
                        Layer("linear", 10, 4)), residual=((1, 3), (3, 4), (1, 4)))
SPECS = {"siren": siren_spec(hidden=8, out_features=10), "relu": mlp_spec([3, 7, 5, 10], "relu"),
         "cnn-res": CNN_RES, "cnn-unequal": CNN_UNEQUAL}
TOLERANCE = 1e-10  # float64; the layouts differ only in the order of sums (measured ~1e-15)


def edge_positions(structure: LayeredStructure, graph, batch: int) -> list[torch.Tensor]:
    """Per block, the edge-list index of each of its edges, shaped like the block."""
    src, dst = graph.edge_index
    net = graph.batch[src]
    local_src, local_dst = src - graph.ptr[net], dst - graph.ptr[net]
    index = {key: k for k, key in enumerate(zip(net.tolist(), local_src.tolist(), local_dst.tolist(),
                                                graph.edge_type.tolist(), graph.edge_reversed.tolist()))}
    out = []
    for blk in structure.blocks:
        n_dst, n_src = structure.widths[blk.dst], structure.widths[blk.src]
        o_dst, o_src = structure.offsets[blk.dst], structure.offsets[blk.src]
        if blk.diagonal:
            keys = [[(b, o_src + i, o_dst + i) for i in range(blk.joined)] for b in range(batch)]
        else:
            keys = [[[(b, o_src + j, o_dst + i) for j in range(n_src)] for i in range(n_dst)] for b in range(batch)]
        out.append(torch.tensor(_lookup(keys, index, blk.edge_type, blk.reversed)))
    return out


def _lookup(keys, index: dict, edge_type: int, reversed_: bool):
    if isinstance(keys, tuple):
        return index[(*keys, edge_type, reversed_)]
    return [_lookup(k, index, edge_type, reversed_) for k in keys]


def both_layouts(spec: ArchSpec, batch: int = 3, probes: int = 0):
    """Encoder of ``spec``, a batch, and both layouts' ``(ops, x, e)``."""
    torch.manual_seed(0)
    encoder = GraphEncoder((spec,), task_info(spec).stats, 6, 5, fourier=8, probes=probes).double()
    ws = random_weights(spec, batch)
    graph, x_s, e_s = encoder(ws)
    ops_l, x_l, e_l = encoder.layered(ws)
    return ws, (EdgeListGraph(graph), x_s, e_s), (ops_l, x_l, e_l), edge_positions(ops_l.structure, graph, batch)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_structure_matches_the_edge_list(name):
    spec = SPECS[name]
    structure = LayeredStructure.of(spec)
    template = GraphConverter([spec]).template(spec)
    assert structure.num_nodes == template.num_nodes
    per_block = sum(b.joined if b.diagonal else structure.widths[b.dst] * structure.widths[b.src]
                    for b in structure.blocks)
    assert per_block == structure.num_edges == template.num_edges  # every edge in exactly one block
    in_degree = torch.bincount(template.edge_index[1], minlength=template.num_nodes)
    assert torch.equal(torch.tensor(sum(structure.degree, ())), in_degree)
    for i, blk in enumerate(structure.blocks):
        pair = structure.blocks[blk.pair]
        assert (pair.src, pair.dst, pair.pair, pair.reversed) == (blk.dst, blk.src, i, not blk.reversed)
    if spec.residual:
        assert sum(b.diagonal for b in structure.blocks) == 2 * len(spec.residual)
        assert all(b.edge_type == EDGE_TYPES.index("residual") for b in structure.blocks if b.diagonal)
        joined = [min(spec.widths[b.src], spec.widths[b.dst]) for b in structure.blocks if b.diagonal]
        assert [b.joined for b in structure.blocks if b.diagonal] == joined


@pytest.mark.parametrize("probes", [0, 3])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_encoded_features_are_the_same(name, probes):
    _, (ops_s, x_s, e_s), (ops_l, x_l, e_l), pos = both_layouts(SPECS[name], probes=probes)
    assert torch.allclose(x_l.flatten(0, 1), x_s, atol=TOLERANCE, rtol=0)
    for e_k, p_k in zip(e_l, pos):
        assert torch.allclose(e_k, e_s[p_k], atol=TOLERANCE, rtol=0)
    for rev_k, p_k in zip(ops_l.reverse(e_l), pos):  # the reverse of an edge is its pair
        assert torch.allclose(rev_k, ops_s.reverse([e_s])[0][p_k], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_aggregators_degrees_softmax_norm_and_readouts_are_the_same(name):
    ws, (ops_s, x_s, e_s), (ops_l, x_l, _), pos = both_layouts(SPECS[name])
    g = torch.Generator().manual_seed(1)
    messages = torch.randn(e_s.shape[0], 4, generator=g, dtype=torch.float64)
    aggregators = ("mean", "sum", "min", "max", "var", "std")
    sparse = ops_s.aggregate([messages], aggregators)
    layered = ops_l.aggregate([messages[p] for p in pos], aggregators)
    assert torch.allclose(layered.flatten(0, 1), sparse, atol=TOLERANCE, rtol=0)
    assert torch.allclose(ops_l.log_degree(x_l).expand(len(ws), -1, -1).flatten(0, 1), ops_s.log_degree(x_s),
                          atol=TOLERANCE, rtol=0)

    scores = torch.randn(e_s.shape[0], 2, generator=g, dtype=torch.float64) * 5
    values = torch.randn(e_s.shape[0], 2, 3, generator=g, dtype=torch.float64)
    weights, total = ops_l.softmax([scores[p] for p in pos])
    attended = ops_l.sum_incoming([w.unsqueeze(-1) * values[p] for w, p in zip(weights, pos)]) / total.unsqueeze(-1)
    assert torch.allclose(attended.flatten(0, 1), ops_s.attend([scores], [values]), atol=TOLERANCE, rtol=0)

    norm = LayerNorm(6, mode="graph").double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-1, 1)
    assert torch.allclose(ops_l.layer_norm(norm, x_l).flatten(0, 1), ops_s.layer_norm(norm, x_s), atol=TOLERANCE, rtol=0)
    for mode in ("output", "mean"):
        assert torch.allclose(ops_l.readout(x_l, mode), ops_s.readout(x_s, mode), atol=TOLERANCE, rtol=0)


def test_sender_stats_gradients_and_ties():
    m = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: SenderStats.apply(t, ("sum", "sumsq", "max", "min")), (m,))
    assert torch.autograd.gradcheck(lambda t: SenderStats.apply(t, ("sum", "max")), (m,))
    tied = torch.tensor([1.0, 3.0, 3.0, 2.0], dtype=torch.float64).view(1, 1, 4, 1).requires_grad_()
    (top,) = SenderStats.apply(tied, ("max",))
    top.sum().backward()
    assert torch.equal(tied.grad.flatten(), torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64))  # as amax


def mixed_batch() -> MixedWeights:
    groups = [random_weights(SPECS["relu"], 3, 3), random_weights(SPECS["cnn-res"], 2, 4)]
    return MixedWeights.from_groups(groups)[torch.tensor([3, 0, 4, 1, 2])]


CASES = {"siren": ((SPECS["siren"],), {}), "relu": ((SPECS["relu"],), {}), "cnn-res": ((CNN_RES,), {}),
         "cnn-unequal": ((CNN_UNEQUAL,), {"probes": 3}), "probes-mean": ((CNN_RES,), {"probes": 3, "readout": "mean"}),
         "mixed": ((SPECS["relu"], CNN_RES), {})}


def model(method: str, specs, profile: str = "quick", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method(method, task_info(*specs), profile=profile, **overrides).double().eval()


def batch_for(specs) -> WeightSpace | MixedWeights:
    return random_weights(specs[0], 3) if len(specs) == 1 else mixed_batch()


@pytest.mark.parametrize("profile", ["quick", "paper"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_same_function_and_gradients_on_both_layouts(method, case, profile):
    specs, overrides = CASES[case]
    net, ws = model(method, specs, profile, **overrides), batch_for(specs)
    results = {}
    for layout in ("sparse", "layered"):
        net.layout = layout
        net.zero_grad()
        out = net(ws)
        (out * torch.linspace(-1, 1, out.shape[1], dtype=out.dtype)).sum().backward()
        results[layout] = out.detach(), [p.grad.clone() for p in net.parameters()]
    (out_s, grads_s), (out_l, grads_l) = results["sparse"], results["layered"]
    assert torch.allclose(out_l, out_s, atol=TOLERANCE, rtol=0)
    assert all(torch.allclose(a, b, atol=TOLERANCE, rtol=1e-8) for a, b in zip(grads_l, grads_s))
    assert any(g.abs().sum() > 0 for g in grads_l)


@pytest.mark.parametrize("unequal", [False, True])
@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_layered_path_invariant_to_hidden_permutations(method, unequal, generator):
    specs = (SPECS["relu"], CNN_UNEQUAL if unequal else CNN_RES)
    mixed = MixedWeights.from_groups([random_weights(s, 3 - i, 3 + i) for i, s in enumerate(specs)])
    net = model(method, specs, layout="layered")
    out = net(mixed)
    assert torch.allclose(net(permute_hidden(mixed, generator)), out, atol=TOLERANCE, rtol=0)
    rows = torch.Generator().manual_seed(1)  # draws no identity permutation for these widths
    control = mixed.map_groups(lambda g: permute_rows_only(g, 1, rows))
    assert (net(control) - out).abs().amax(dim=1).min() > 1e-6  # every network changes


@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_layered_training_step_gives_finite_gradients(method):
    net = model(method, (CNN_RES,), "paper", layout="layered").float().train()
    ws = random_weights(CNN_RES, 4).to(torch.float32)
    torch.nn.functional.cross_entropy(net(ws), torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_layout_option():
    spec = SPECS["relu"]
    for method in ("ng-gnn", "ng-t"):
        assert model(method, (spec,)).layout == "auto"
        with pytest.raises(ConfigError, match="layout"):
            model(method, (spec,), layout="blocks")
    with pytest.raises(ConfigError, match="all pairs"):
        model("ng-t", (spec,), layout="layered", dense=True)
    with pytest.raises(ConfigError, match="aggregators"):
        model("ng-gnn", (spec,), layout="layered", aggregators=("mean", "median"))
    mixed = mixed_batch()  # 3 ReLU MLPs of 212 edges, 2 CNNs of 216
    assert layered_groups("layered", mixed) == [True, True] and layered_groups("sparse", mixed) == [False, False]
    assert layered_groups("auto", mixed) == [False, False]  # too few edges: the edge list is faster
    big = MixedWeights.cat([mixed] * (layouts.LAYERED_MIN_EDGES // 400 + 1))  # >= 2 x 216 edges each time
    assert layered_groups("auto", big) == [True, True] and layered_groups("auto", big, supported=False) == [False, False]


@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_auto_runs_large_groups_layered_and_the_rest_as_one_edge_list(method, monkeypatch):
    monkeypatch.setattr(layouts, "LAYERED_MIN_EDGES", 600)
    net, mixed = model(method, (SPECS["relu"], CNN_RES)), mixed_batch()
    assert layered_groups("auto", mixed) == [True, False]
    out = net(mixed)
    net.layout = "sparse"
    assert torch.allclose(out, net(mixed), atol=TOLERANCE, rtol=0)
    for g, group in enumerate(mixed.groups):
        assert torch.allclose(out[mixed.positions(g)], net(group), atol=TOLERANCE, rtol=0)


TANH_AS_SIREN = mlp_spec([2, 8, 8, 10], "tanh", output_offset=0.5)  # the weight shapes of SPECS["siren"]
EDIT_CASES = {"siren": (SPECS["siren"],), "cnn-res": (CNN_RES,), "mixed": (SPECS["siren"], TANH_AS_SIREN)}


def editor(method: str, spec: ArchSpec, profile: str = "quick", **overrides) -> torch.nn.Module:
    task = TaskInfo((spec,), 36, "edit", {spec: LayerStats.of(random_weights(spec, 8, 1))})
    torch.manual_seed(0)
    return build_method(method, task, profile=profile, **overrides).double().eval()


def edit_batch(specs) -> WeightSpace | MixedWeights:
    if len(specs) == 1:
        return random_weights(specs[0], 3)
    return MixedWeights.from_groups([random_weights(s, 2, 5 + i) for i, s in enumerate(specs)])[torch.tensor([2, 0, 3, 1])]


@pytest.mark.parametrize("profile", ["quick", "paper"])
@pytest.mark.parametrize("case", sorted(EDIT_CASES))
@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_same_edit_and_gradients_on_both_layouts(method, case, profile):
    specs = EDIT_CASES[case]
    net, ws = editor(method, specs[0], profile), edit_batch(specs)
    results = {}
    for layout in ("sparse", "layered"):
        net.layout = layout
        net.zero_grad()
        change = net(ws)
        assert isinstance(change, WeightSpace) and change.spec == specs[0] and len(change) == len(ws)
        flat = change.flatten()
        (flat * torch.linspace(-1, 1, flat.shape[1], dtype=flat.dtype)).sum().backward()
        results[layout] = flat.detach(), [p.grad.clone() for p in net.parameters()]
    (out_s, grads_s), (out_l, grads_l) = results["sparse"], results["layered"]
    assert out_l.abs().min(dim=1).values.min() > 0
    assert torch.allclose(out_l, out_s, atol=TOLERANCE, rtol=0)
    assert all(torch.allclose(a, b, atol=TOLERANCE, rtol=1e-8) for a, b in zip(grads_l, grads_s))
    if isinstance(ws, MixedWeights):  # every network gets its own change, in batch order
        for g, group in enumerate(ws.groups):
            assert torch.allclose(out_l[ws.positions(g)], net(group).flatten(), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("method", ["ng-gnn", "ng-t"])
def test_layered_edit_moves_with_hidden_permutations(method, generator):
    spec = SPECS["siren"]
    net, ws = editor(method, spec, layout="layered"), random_weights(spec, 3)
    moved, control = permute_hidden(ws, generator), permute_rows_only(ws, 1, generator)
    points = torch.rand(16, 2, generator=generator, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        edited = forward(ws + net(ws), points)
        assert (edited - forward(ws, points)).abs().max() > 1e-8, "the edit changed nothing"
        assert torch.allclose(forward(moved + net(moved), points), edited, atol=TOLERANCE, rtol=0)
        assert (forward(control + net(control), points) - edited).abs().max() > 1e-4


def test_edit_heads_refuse_other_shapes_and_the_all_pairs_variant():
    spec = SPECS["siren"]
    other = MixedWeights.from_groups([random_weights(spec, 2), random_weights(SPECS["relu"], 2)])
    for method in ("ng-gnn", "ng-t"):
        with pytest.raises(UnsupportedArchitecture, match="edit head"):
            editor(method, spec)(other)
    with pytest.raises(ConfigError, match="dense=True"):
        editor("ng-t", spec, dense=True)
