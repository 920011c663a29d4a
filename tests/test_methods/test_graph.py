"""Neural-graph conversion: structure, round trip to the same function, batch layout of
mixed architectures, positional ids, and probe features equal to functional evaluation."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch
from torch_geometric.index import index2ptr
from torch_geometric.utils import to_dense_batch
from weight_batches import random_weights

from datasets.functional import forward
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.weights import MixedWeights
from methods.encodings import ProbeFeatures, probe_values
from methods.graph import EDGE_TYPES, GraphConverter, degree_histogram

torch.set_num_threads(1)

CNN = ArchSpec((Layer("conv", 8, 1, (3, 3), 2, 0, "relu"), Layer("conv", 8, 8, (5, 5), 1, 2, "relu"),
                Layer("linear", 10, 8)))
CNN_RES = ArchSpec(CNN.layers, residual=((1, 2),))
MLP10 = mlp_spec([2, 16, 16, 10], "tanh")
# the CNN Wild Park's residuals between unequal widths: 6 -> 3 channels, 3 -> 5
CNN_UNEQUAL = ArchSpec((Layer("conv", 6, 1, (3, 3), 1, 1, "relu"), Layer("conv", 4, 6, (3, 3), 1, 1, "relu"),
                        Layer("conv", 3, 4, (5, 5), 1, 2, "relu"), Layer("conv", 5, 3, (3, 3), 1, 1, "relu"),
                        Layer("linear", 10, 5)), residual=((1, 3), (3, 4)))


def mixed_batch() -> MixedWeights:
    mixed = MixedWeights.from_groups([random_weights(CNN_RES, 3, 1), random_weights(MLP10, 2, 2)])
    return mixed[torch.tensor([3, 0, 4, 1, 2])]  # interleave the architectures


def test_siren_graph_has_one_node_per_neuron_and_one_edge_per_weight():
    spec = siren_spec()
    converter = GraphConverter([spec])
    graph = converter(random_weights(spec, 4))
    assert graph.num_graphs == 4
    assert graph.num_nodes == 4 * 67
    assert graph.num_edges == 4 * 2 * (2 * 32 + 32 * 32 + 32 * 1)
    assert graph.x.shape == (4 * 67, 1) and graph.edge_attr.shape == (graph.num_edges, 1)
    assert (graph.x[graph.layer == 0] == 0).all()  # inputs have no bias
    assert graph.is_output.sum() == 4 and torch.equal(graph.out_nodes.flatten(), torch.nonzero(graph.is_output).flatten())
    assert converter.template(spec) is converter.template(spec)  # built once, cached


def test_the_graphs_are_a_torch_geometric_batch_in_batch_order():
    graph = GraphConverter([CNN_RES, MLP10])(mixed_batch())
    batch = graph.to_batch()
    assert isinstance(batch, Batch) and batch.num_graphs == 5 and batch.layout is graph.layout
    assert batch.num_nodes == graph.num_nodes and batch.edge_attr is graph.edge_attr  # shared, not copied:
    # a graph of weights that carry gradients (a model's input) converts too
    dense, mask = to_dense_batch(batch.x, batch.batch)
    nodes = [GraphConverter([CNN_RES, MLP10]).template(s).num_nodes for s in (MLP10, CNN_RES, MLP10, CNN_RES, CNN_RES)]
    assert mask.sum(1).tolist() == nodes  # networks 3, 0, 4, 1, 2 of mixed_batch, in batch order
    assert torch.equal(dense[mask], batch.x)


def test_edges_sorted_by_destination_pair_reversed_and_share_their_weight():
    graph = GraphConverter([CNN_RES, MLP10])(mixed_batch())
    src, dst = graph.edge_index
    assert (dst[1:] >= dst[:-1]).all()
    assert torch.equal(index2ptr(dst, graph.num_nodes), graph.dst_ptr)
    assert torch.equal(graph.edge_index[:, graph.edge_pair], graph.edge_index.flip(0))
    assert torch.equal(graph.edge_attr[graph.edge_pair], graph.edge_attr)
    assert (graph.edge_reversed[graph.edge_pair] != graph.edge_reversed).all()
    assert (graph.batch[src] == graph.batch[dst]).all()  # no edge joins two networks


def test_conv_kernels_are_padded_centrally_and_residuals_are_identity_edges():
    ws = random_weights(CNN_RES, 2)
    graph = GraphConverter([CNN_RES])(ws)
    kernels = graph.edge_attr.view(-1, 5, 5)
    first = (graph.edge_type == EDGE_TYPES.index("conv")) & ~graph.edge_reversed & (graph.layer[graph.edge_index[0]] == 0)
    k3 = kernels[first]
    assert k3.shape[0] == 2 * 8 * 1
    assert (k3[:, [0, 4]] == 0).all() and (k3[:, :, [0, 4]] == 0).all()
    assert torch.equal(k3[:, 1:4, 1:4].reshape(2, 8, 3, 3), ws.weights[0][:, :, 0])
    linear = kernels[graph.edge_type == EDGE_TYPES.index("linear")]
    assert (linear.flatten(1)[:, [i for i in range(25) if i != 12]] == 0).all()
    residual = kernels[graph.edge_type == EDGE_TYPES.index("residual")]
    assert residual.shape[0] == 2 * 2 * 8  # both directions, 8 channels, 2 networks
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[2, 2] = 1
    assert all(torch.equal(k, expected) for k in residual)


def test_unequal_residuals_join_the_first_min_width_neurons():
    ws = random_weights(CNN_UNEQUAL, 2)
    graph = GraphConverter([CNN_UNEQUAL])(ws)
    is_residual = (graph.edge_type == EDGE_TYPES.index("residual")) & ~graph.edge_reversed
    src, dst = graph.edge_index[:, is_residual]
    offsets = [0, 1, 7, 11, 14]  # first node of each neuron layer (widths 1, 6, 4, 3, 5, 10)
    expected = {(offsets[a] + i, offsets[b] + i) for a, b, m in ((1, 3, 3), (3, 4, 3)) for i in range(m)}
    per_network = sum(CNN_UNEQUAL.widths)
    pairs = [(s % per_network, d % per_network) for s, d in zip(src.tolist(), dst.tolist())]
    assert len(pairs) == 2 * len(expected) and set(pairs) == expected
    round_trip_check(ws, GraphConverter([CNN_UNEQUAL]))


def test_positional_ids_single_per_hidden_layer_distinct_for_inputs_and_outputs():
    spec = mlp_spec([3, 5, 4, 2], "relu")
    graph = GraphConverter([spec])(random_weights(spec, 1))
    ids = graph.pos_id
    assert ids[:3].tolist() == [0, 1, 2]
    assert set(ids[3:8].tolist()) == {3} and set(ids[8:12].tolist()) == {4}
    assert ids[12:].tolist() == [5, 6]
    assert graph.act_id[3:12].unique().numel() == 1


def round_trip_check(weights, converter: GraphConverter) -> None:
    back = converter.to_weights(converter(weights))
    original = weights.groups if isinstance(weights, MixedWeights) else (weights,)
    restored = back.groups if isinstance(back, MixedWeights) else (back,)
    assert type(back) is type(weights)
    for a, b in zip(original, restored):
        assert a.spec == b.spec
        x = torch.rand(6, 1, 9, 9, dtype=torch.float64) if a.spec.is_conv else torch.rand(6, a.spec.widths[0], dtype=torch.float64)
        assert torch.allclose(forward(a, x), forward(b, x), rtol=0, atol=1e-12)  # layout may change rounding
        assert all(torch.equal(u, v) for u, v in zip(a.weights + a.biases, b.weights + b.biases))


def test_round_trip_restores_the_same_functions():
    round_trip_check(random_weights(siren_spec(), 3), GraphConverter([siren_spec()]))
    round_trip_check(random_weights(CNN_RES, 3), GraphConverter([CNN_RES]))
    mixed = mixed_batch()
    converter = GraphConverter([CNN_RES, MLP10])
    round_trip_check(mixed, converter)
    back = converter.to_weights(converter(mixed))
    assert torch.equal(back.group_index, mixed.group_index) and torch.equal(back.row_index, mixed.row_index)


def test_mixed_batch_graphs_are_in_batch_order():
    mixed = mixed_batch()
    converter = GraphConverter([CNN_RES, MLP10])
    graph = converter(mixed)
    sizes = torch.bincount(graph.batch).tolist()
    expected = [sum(mixed.groups[g].spec.widths) for g in mixed.group_index.tolist()]
    assert sizes == expected
    for g, group in enumerate(mixed.groups):  # each network's own graph sits at its position
        alone = converter(group)
        ids = converter.node_ids(graph, g)
        assert torch.equal(graph.x[ids.flatten()], alone.x)
        assert torch.equal(graph.pos_id[ids.flatten()], alone.pos_id)


def test_degree_histogram_counts_every_node_once():
    converter = GraphConverter([siren_spec(), CNN_RES])
    hist = degree_histogram(converter, [siren_spec(), CNN_RES])
    assert hist.sum() == 67 + sum(CNN_RES.widths)
    # SIREN hidden neurons: 2 in + 32 out (reversed) = 34, 32 in + 1 out = 33
    assert hist[34] == 32 and hist[33] == 32
    # CNN: conv-1 channels 1 in + 8 out + 1 residual = 10, conv-2 8 + 1 residual + 10 = 19
    assert hist[10] == 8 and hist[19] == 8


def test_probe_values_are_the_functional_activations():
    ws = random_weights(siren_spec(), 2)
    points = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
    values = probe_values(ws, points)
    _, hidden = forward(ws, points, return_hidden=True)
    assert values.shape == (2, 67, 5)
    assert torch.equal(values[:, :2], points.T.expand(2, 2, 5))
    assert torch.equal(values[:, 2:34], hidden[1].transpose(1, 2))
    assert torch.equal(values[:, -1], hidden[-1][..., 0])
    conv = random_weights(CNN_RES, 2)
    images = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    values = probe_values(conv, images)
    _, hidden = forward(conv, images, return_hidden=True)
    assert torch.allclose(values[:, 1:9], hidden[1].mean(dim=(-2, -1)).transpose(1, 2))


def test_probe_features_land_on_their_neurons_in_a_mixed_batch():
    mixed = mixed_batch()
    converter = GraphConverter([CNN_RES, MLP10])
    graph = converter(mixed)
    probes = ProbeFeatures((CNN_RES, MLP10), 4, 8, 16).double()
    probes.proj = torch.nn.Identity()  # look at the raw values
    features = probes(mixed, graph, converter)
    for g, group in enumerate(mixed.groups):
        key = ("conv" if group.spec.is_conv else "mlp") + str(group.spec.widths[0])
        expected = probe_values(group, probes.points[key])
        assert torch.equal(features[converter.node_ids(graph, g)], expected)


def test_gathered_index_sets_are_the_ones_the_data_gives():
    converter = GraphConverter([CNN_RES, MLP10])
    graph = converter(mixed_batch())
    io = (graph.layer == 0) | graph.is_output
    src, dst = graph.edge_index

    def same(found, mask):
        assert torch.equal(found.sort().values, torch.nonzero(mask).squeeze(1)) and len(found.unique()) == len(found)

    same(converter.gather(graph, "io_nodes"), io)
    same(converter.gather(graph, "into_io", edges=True), io[dst])
    same(converter.gather(graph, "from_io", edges=True), io[src])
    same(converter.gather(graph, "from_hidden", edges=True), ~io[src])
    # group by group (CNN_RES first), rows in order: the first is network 1 of the batch, its input, then its outputs
    assert graph.layout.specs[0] == CNN_RES and graph.layout.positions[0][0] == 1
    first = converter.gather(graph, "io_nodes")[:CNN_RES.widths[0] + CNN_RES.widths[-1]]
    assert torch.equal(first, torch.cat([graph.ptr[1:2], graph.ptr[2] - 10 + torch.arange(10)]))
