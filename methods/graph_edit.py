"""The equivariant edit output of the neural-graph models (INR editing; Kofinas et al., ICLR
2024, Table 2): the final node features map to one value per neuron, the bias change, and
the final edge features to ``kernel_size`` values per forward weight edge, the weight
change; read back as the converter reads weights (``methods.graph``), on either layout of
``methods.layouts``, and scaled per tensor by ``datasets.normalisation.ChangeScale``
(learned, from 0.01 of each layer's standard deviation, so the first edit is near the
identity). Node and edge features move with the hidden neurons they belong to, so a
permutation of the input's hidden neurons permutes the change alike."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from datasets.errors import UnsupportedArchitecture
from datasets.normalisation import ChangeScale, LayerStats
from datasets.spec import ArchSpec, shared_shape
from datasets.weights import Weights, WeightSpace, as_mixed
from methods.graph import GraphConverter
from methods.layouts import EdgeListGraph, LayeredGraph


class GraphChange(nn.Module):
    """Node features ``d_node`` -> bias change (``node_out``); :meth:`flat` reads the change
    on one layout, :meth:`forward` shapes and scales it. Every network must have the weight
    shapes of ``spec`` (the edit task's one architecture)."""

    def __init__(self, spec: ArchSpec, stats: LayerStats | None, converter: GraphConverter, d_node: int) -> None:
        super().__init__()
        self.spec, self.converter = spec, converter
        self.node_out = nn.Linear(d_node, 1)
        self.scale = ChangeScale(spec, stats)

    def check(self, weights: Weights) -> None:
        """Refuse a batch whose networks do not have the weight shapes of ``spec``."""
        specs = as_mixed(weights).specs
        if shared_shape((self.spec, *specs)) is None:
            raise UnsupportedArchitecture(
                f"the edit head predicts changes of {self.spec.describe()}; the batch holds "
                f"{', '.join(s.describe() for s in specs)}")

    def flat(self, ops: EdgeListGraph | LayeredGraph, x: Tensor, e: list[Tensor],
             edge_out: Callable[[Tensor], Tensor]) -> Tensor:
        """``(n, P)``: the unscaled change of each network of the layout, flattened as
        ``WeightSpace.flatten``; ``edge_out`` maps edge features to ``kernel_size`` values
        (applied to the forward weight edges only)."""
        nodes = self.node_out(x).squeeze(-1)
        if isinstance(ops, LayeredGraph):  # blocks 0..L-1: the forward weight blocks (B, out, in, d)
            s, layers = ops.structure, range(len(self.spec.layers))
            biases = [nodes[:, s.offsets[l + 1]:s.offsets[l + 2]] for l in layers]
            return self.converter.from_kernels(self.spec, [edge_out(e[l]) for l in layers], biases).flatten()
        graph = ops.graph
        out = nodes.new_empty(graph.num_graphs, self.spec.num_params)
        for g, positions in enumerate(graph.layout.positions):
            ids = self.converter.weight_edges(graph, g)
            change = self.converter.split(self.spec, nodes[self.converter.node_ids(graph, g)],
                                          edge_out(e[0][ids.flatten()]).unflatten(0, ids.shape))
            out[positions] = change.flatten()
        return out

    def forward(self, flat: Tensor) -> WeightSpace:
        return self.scale(WeightSpace.from_flat(self.spec, flat))
