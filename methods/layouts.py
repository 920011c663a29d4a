"""Two layouts of a batch of neural graphs behind one set of message-passing operations.

A neural graph (``methods.graph``) of a network is layered: its edges from neuron layer
``l`` to ``l + 1`` are exactly the entries of the weight ``W_l``. So for ``B`` networks of
one architecture the edges are a few dense *blocks*: block ``(l -> l + 1)`` holds edge
features ``(B, n_{l+1}, n_l, d)`` indexed ``[network, receiver, sender]``; its reverse
``(l + 1 -> l)`` is ``(B, n_l, n_{l+1}, d)``; a residual connection is a *diagonal* block
``(B, m, d)`` (neuron ``i`` to neuron ``i`` for the ``m = min(n_a, n_b)`` neurons it joins,
the first of both layers). Node features are ``(B, N, d)`` in the node order of
``methods.graph``. Messages and edge updates are broadcasts over a block, aggregations are
reductions over its sender axis, merged across the blocks entering a layer (a diagonal
block into its first ``m`` receivers): no index tensor, gather or scatter
(:class:`LayeredGraph`).

:class:`EdgeListGraph` offers the same operations on a batch of neural graphs
(``methods.graph.NeuralGraph``, torch_geometric's tensors) of any mix of architectures, as one block: the edge list ``(E, d)`` sorted by receiver, nodes
``(N, d)``. Models written against these operations compute the same function on either
layout (up to the order of floating-point sums).

Shared interface: edge features are a list with one tensor per block;
``receiver(t, b)`` / ``sender(t, b)`` view node tensor ``t`` so that it broadcasts against
block ``b``; ``reverse(e)`` gives every block the features of the same weights in the other
direction; ``aggregate`` (PNA aggregators), ``log_degree``, ``layer_norm`` (per-graph
LayerNorm) and ``readout``. For attention, :meth:`EdgeListGraph.attend` weighs per-edge
values; :class:`LayeredGraph` offers the pieces (``softmax``, ``sum_incoming``, ``merge``)
so that a model can sum over senders before projecting, without per-edge value tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, reduce
from itertools import accumulate

import torch
from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool
from torch_geometric.nn.aggr import MultiAggregation
from torch_geometric.utils import scatter, softmax

from datasets.errors import ConfigError
from datasets.spec import ArchSpec
from datasets.weights import Weights, as_mixed
from methods.graph import EDGE_TYPES, NeuralGraph

LAYOUTS = ("auto", "layered", "sparse")
LAYERED_AGGREGATORS = ("mean", "sum", "min", "max", "var", "std")
STD_EPS = 1e-5  # torch_geometric's StdAggregation clamps the variance here
# "auto" runs an architecture group layered from this many edges (networks x edges each):
# below it the blocks' per-operation overhead outweighs their speed (break-even of the
# quick profiles on a 2-core CPU, scripts/bench_graph.py --archs small-mlps)
LAYERED_MIN_EDGES = 8192


def check_layout(layout: str, method: str, unsupported: str = "") -> None:
    """Refuse an unknown ``layout``, or ``layered`` where the model cannot use it
    (``unsupported`` says why)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"{method}: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "layered" and unsupported:
        raise ConfigError(f"{method}: layout 'layered' is unavailable: {unsupported}; use 'sparse' or 'auto'")


def layered_groups(layout: str, weights: Weights, supported: bool = True) -> list[bool]:
    """Per architecture group of the batch, whether it runs layered: all for ``layered``,
    none for ``sparse``; for ``auto`` (when ``supported``) the groups with at least
    ``LAYERED_MIN_EDGES`` edges. The other groups run together as one edge list."""
    groups = as_mixed(weights).groups
    if layout != "auto":
        return [layout == "layered"] * len(groups)
    return [supported and len(ws) * LayeredStructure.of(ws.spec).num_edges >= LAYERED_MIN_EDGES
            for ws in groups]


@dataclass(frozen=True)
class Block:
    """Edges from neuron layer ``src`` to neuron layer ``dst``: every pair (features
    ``(B, n_dst, n_src, d)``) or, if ``diagonal``, neuron ``i`` to neuron ``i`` for ``i <
    joined`` (``(B, joined, d)``). ``reversed``: the reverse edges of a weight or residual;
    ``edge_type``: index into ``methods.graph.EDGE_TYPES``; ``pair``: the block of the same
    weights in the other direction."""

    src: int
    dst: int
    diagonal: bool
    reversed: bool
    edge_type: int
    pair: int
    joined: int = 0


@dataclass(frozen=True)
class LayeredStructure:
    """The blocks of one architecture's neural graph: weight blocks layer by layer, residual
    blocks, then (with reverse edges) all of them reversed, the order of ``methods.graph``.
    ``incoming[l]``: the blocks entering neuron layer ``l``; ``degree[l]``: the in-degree of
    each of its neurons."""

    widths: tuple[int, ...]
    offsets: tuple[int, ...]
    blocks: tuple[Block, ...]
    incoming: tuple[tuple[int, ...], ...]
    degree: tuple[tuple[int, ...], ...]

    @staticmethod
    @cache
    def of(spec: ArchSpec, reverse: bool = True) -> LayeredStructure:
        """The (cached) structure of ``spec``."""
        forward = [(l, l + 1, False, EDGE_TYPES.index(layer.kind), 0) for l, layer in enumerate(spec.layers)]
        forward += [(a, b, True, EDGE_TYPES.index("residual"), m)
                    for (a, b), m in zip(spec.residual, spec.residual_joined)]
        n = len(forward)
        blocks = [Block(s, d, diag, False, t, n + i if reverse else i, m)
                  for i, (s, d, diag, t, m) in enumerate(forward)]
        if reverse:
            blocks += [Block(d, s, diag, True, t, i, m) for i, (s, d, diag, t, m) in enumerate(forward)]
        widths = spec.widths
        incoming = tuple(tuple(i for i, b in enumerate(blocks) if b.dst == l) for l in range(len(widths)))
        degree = tuple(tuple(sum(int(j < blocks[i].joined) if blocks[i].diagonal else widths[blocks[i].src]
                                 for i in into) for j in range(widths[l])) for l, into in enumerate(incoming))
        offsets = tuple(accumulate(widths, initial=0))
        return LayeredStructure(widths, offsets, tuple(blocks), incoming, degree)

    @property
    def num_nodes(self) -> int:
        return self.offsets[-1]

    @property
    def num_edges(self) -> int:
        return sum(b.joined if b.diagonal else self.widths[b.dst] * self.widths[b.src] for b in self.blocks)


_COMBINE = {"sum": torch.add, "sumsq": torch.add, "max": torch.maximum, "min": torch.minimum}


def _diagonal_stats(m: Tensor, order: tuple[str, ...]) -> tuple[Tensor, ...]:
    """The statistics of a diagonal block: one message per receiver."""
    return tuple(m * m if k == "sumsq" else m for k in order)


class SenderStats(torch.autograd.Function):
    """Sum, sum of squares, max and min (those named in ``order``) of ``m (B, n_dst, n_src,
    d)`` over the sender axis, with one fused backward (autograd's max/min backward builds
    float masks and tie counts in several passes). Like ``amax``/``amin`` and
    ``torch_geometric``'s segment reductions, a max or min shared by several senders splits
    its gradient evenly among them."""

    @staticmethod
    def forward(ctx, m: Tensor, order: tuple[str, ...]) -> tuple[Tensor, ...]:
        reducers = {"sum": lambda: m.sum(2), "sumsq": lambda: torch.linalg.vecdot(m, m, dim=2),
                    "max": lambda: m.amax(2), "min": lambda: m.amin(2)}
        outs = tuple(reducers[k]() for k in order)
        ctx.order = order
        ctx.save_for_backward(m, *outs)
        ctx.set_materialize_grads(False)
        return outs

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, None]:
        m, *outs = ctx.saved_tensors
        stats, grads = dict(zip(ctx.order, outs)), dict(zip(ctx.order, grads))
        g_sum, g_sq = grads.get("sum"), grads.get("sumsq")
        gm = None
        if g_sq is not None:
            gm = (m * (2 * g_sq.unsqueeze(2)) if g_sum is None
                  else torch.addcmul(g_sum.unsqueeze(2), m, g_sq.unsqueeze(2), value=2))
        extremes = [k for k in ("max", "min") if grads.get(k) is not None]
        if gm is None and g_sum is not None:
            gm = g_sum.unsqueeze(2).expand_as(m)
            gm = gm.contiguous() if extremes else gm
        for k in extremes:
            # the mask in m's dtype (a bool mask would be converted in the product below)
            hit = torch.eq(m, stats[k].unsqueeze(2), out=torch.empty_like(m))
            # ties split evenly; always dividing keeps the step free of a host sync (and of a
            # graph break under torch.compile)
            share = grads[k].unsqueeze(2) / hit.sum(2, keepdim=True)
            gm = hit.mul_(share) if gm is None else gm.addcmul_(hit, share)
        return gm, None


def _into_rows(combine: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """``combine`` (commutative) of two per-receiver tensors ``(B, n, ...)``, where the
    shorter one covers only the first receivers (a residual joining fewer neurons)."""
    def combined(a: Tensor, b: Tensor) -> Tensor:
        if a.shape[1] < b.shape[1]:
            a, b = b, a
        n = b.shape[1]
        return combine(a, b) if n == a.shape[1] else torch.cat([combine(a[:, :n], b), a[:, n:]], dim=1)
    return combined


def _merge(parts: list[tuple[Tensor, bool]], reduce_block, combine) -> Tensor:
    """Reduce every block's messages over its sender axis (a diagonal block has one
    message per receiver) and combine the blocks."""
    return reduce(_into_rows(combine), (m if diagonal else reduce_block(m) for m, diagonal in parts))


class LayeredGraph:
    """Operations on ``B`` networks of one architecture in the layered layout."""

    def __init__(self, structure: LayeredStructure, num_graphs: int) -> None:
        self.structure = structure
        self.num_graphs = num_graphs

    def layer(self, t: Tensor, layer: int) -> Tensor:
        """The nodes of neuron layer ``layer`` of node tensor ``t (B, N, ...)``."""
        start = self.structure.offsets[layer]
        return t[:, start:start + self.structure.widths[layer]]

    def receiver(self, t: Tensor, block: int) -> Tensor:
        """Node tensor ``(B, N, ...)`` -> the block's receivers, broadcastable against it."""
        b = self.structure.blocks[block]
        part = self.layer(t, b.dst)
        return part[:, :b.joined] if b.diagonal else part.unsqueeze(2)

    def sender(self, t: Tensor, block: int) -> Tensor:
        """Node tensor ``(B, N, ...)`` -> the block's senders, broadcastable against it."""
        b = self.structure.blocks[block]
        part = self.layer(t, b.src)
        return part[:, :b.joined] if b.diagonal else part.unsqueeze(1)

    def reverse(self, e: list[Tensor]) -> list[Tensor]:
        """Per block, the features of the same weights in the other direction (a view)."""
        return [e[b.pair] if b.diagonal else e[b.pair].transpose(1, 2) for b in self.structure.blocks]

    def _per_layer(self, messages: list[Tensor], fn) -> Tensor:
        s, like = self.structure, messages[0]
        outs = []
        for l, into in enumerate(s.incoming):
            degree = s.degree[l]  # one number, or one per receiver where a residual joins some
            divisor = degree[0] if len(set(degree)) == 1 else like.new_tensor(degree)[:, None]
            outs.append(fn([(messages[i], s.blocks[i].diagonal) for i in into], divisor))
        return torch.cat(outs, dim=1)

    def aggregate(self, messages: list[Tensor], aggregators: tuple[str, ...]) -> Tensor:
        """``(B, N, len(aggregators) * d)``: each receiver's incoming messages under every
        aggregator, concatenated (the functions of ``torch_geometric``'s aggregators: ``var``
        is ``mean(m^2) - mean(m)^2``, ``std`` its clamped square root, 0 where that is at
        the clamp)."""
        unknown = set(aggregators) - set(LAYERED_AGGREGATORS)
        if unknown:
            raise ValueError(f"the layered layout has no aggregator {sorted(unknown)}")

        wanted = {"sum"} | ({"sumsq"} if {"var", "std"} & set(aggregators) else set())
        wanted |= {"min", "max"} & set(aggregators)
        order = tuple(k for k in ("sum", "sumsq", "max", "min") if k in wanted)

        def one_layer(parts: list[tuple[Tensor, bool]], degree: int | Tensor) -> Tensor:
            per_block = [dict(zip(order, _diagonal_stats(m, order) if diagonal
                                  else SenderStats.apply(m, order))) for m, diagonal in parts]
            stats = {k: reduce(_into_rows(_COMBINE[k]), (b[k] for b in per_block)) for k in order}
            stats["mean"] = stats["sum"] / degree
            if "sumsq" in stats:
                stats["var"] = stats["sumsq"] / degree - stats["mean"] * stats["mean"]
            outs = []
            for name in aggregators:
                if name == "std":
                    std = stats["var"].clamp(min=STD_EPS).sqrt()
                    outs.append(std.masked_fill(std <= STD_EPS ** 0.5, 0.0))
                else:
                    outs.append(stats[name])
            return torch.cat(outs, dim=-1)

        return self._per_layer(messages, one_layer)

    def merge(self, per_block: list[Tensor]) -> Tensor:
        """``(B, N, ...)``: per receiver, the sum over the blocks entering its layer of a
        per-receiver tensor ``(B, n_dst, ...)`` of each block (diagonal: ``(B, joined, ...)``)."""
        s = self.structure
        add = _into_rows(torch.add)
        return torch.cat([reduce(add, (per_block[i] for i in into)) for into in s.incoming], dim=1)

    def sum_incoming(self, per_block: list[Tensor]) -> Tensor:
        """``(B, N, ...)``: per receiver, the sum over its incoming edges of a per-edge tensor
        (``(B, n_dst, n_src, ...)`` per block, diagonal ``(B, joined, ...)``)."""
        return self.merge([t if b.diagonal else t.sum(2) for t, b in zip(per_block, self.structure.blocks)])

    def softmax(self, scores: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Softmax over each receiver's incoming edges, unnormalised: per block
        ``exp(score - peak)`` (``peak`` the receiver's largest score over all its blocks,
        per trailing channel) and ``(B, N, ...)`` their sums (plus the epsilon of
        ``torch_geometric``'s softmax) to divide by."""
        s = self.structure
        peaks = []
        for into in s.incoming:
            parts = [(scores[i], s.blocks[i].diagonal) for i in into]
            peaks.append(_merge(parts, lambda m: m.amax(2), torch.maximum).detach())
        peak = torch.cat(peaks, dim=1)
        weights = [(sc - self.receiver(peak, i)).exp() for i, sc in enumerate(scores)]
        return weights, self.sum_incoming(weights) + 1e-16

    def log_degree(self, like: Tensor) -> Tensor:
        """``(1, N, 1)``: ``log(in-degree + 1)`` of every node."""
        per_node = torch.tensor(sum(self.structure.degree, ()), dtype=like.dtype, device=like.device)
        return per_node.add(1).log()[None, :, None]

    def layer_norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        """``torch_geometric``'s graph-mode ``LayerNorm``: one mean and variance per graph
        over all its nodes and channels, then the affine map."""
        x = x - x.mean(dim=(1, 2), keepdim=True)
        out = x / (x.pow(2).mean(dim=(1, 2), keepdim=True) + norm.eps).sqrt()
        if norm.weight is not None and norm.bias is not None:
            out = out * norm.weight + norm.bias
        return out

    def readout(self, x: Tensor, mode: str) -> Tensor:
        """``output``: the output neurons' features concatenated in order; ``mean``: the
        mean over all nodes (as :meth:`EdgeListGraph.readout`)."""
        if mode == "output":
            return self.layer(x, len(self.structure.widths) - 1).flatten(1)
        return x.mean(dim=1)


_AGGREGATIONS: dict[tuple[str, ...], MultiAggregation] = {}


def edge_list_aggregation(aggregators: tuple[str, ...]) -> MultiAggregation:
    """``torch_geometric``'s aggregation of ``aggregators`` (no parameters), built once.
    A model calls it when it is built, so that a compiled forward finds the module in place
    (dynamo would trace its construction, which breaks the graph)."""
    if aggregators not in _AGGREGATIONS:
        _AGGREGATIONS[aggregators] = MultiAggregation(list(aggregators))
    return _AGGREGATIONS[aggregators]


class EdgeListGraph:
    """The same operations on a batch of neural graphs from ``methods.graph`` (edges
    sorted by receiver, ``dst_ptr`` their CSR pointer): one block, the edge list."""

    def __init__(self, graph: NeuralGraph) -> None:
        self.graph = graph
        self.src, self.dst = graph.edge_index
        self.num_graphs = graph.num_graphs

    def receiver(self, t: Tensor, block: int = 0) -> Tensor:
        return t.index_select(0, self.dst)

    def sender(self, t: Tensor, block: int = 0) -> Tensor:
        return t.index_select(0, self.src)

    def reverse(self, e: list[Tensor]) -> list[Tensor]:
        return [e[0].index_select(0, self.graph.edge_pair)]

    def aggregate(self, messages: list[Tensor], aggregators: tuple[str, ...]) -> Tensor:
        """``(N, len(aggregators) * d)`` by segment reductions over ``dst_ptr``."""
        return edge_list_aggregation(tuple(aggregators))(messages[0], ptr=self.graph.dst_ptr,
                                                      dim_size=self.graph.num_nodes, dim=0)

    def attend(self, scores: list[Tensor], values: list[Tensor]) -> Tensor:
        """``scores (E, H)``, ``values (E, H, dh)`` -> ``(N, H, dh)``."""
        alpha = softmax(scores[0], self.dst, self.graph.dst_ptr, self.graph.num_nodes)
        return scatter(alpha.unsqueeze(-1) * values[0], self.dst, 0, self.graph.num_nodes, reduce="sum")

    def log_degree(self, like: Tensor) -> Tensor:
        """``(N, 1)``: ``log(in-degree + 1)`` of every node."""
        return torch.log(self.graph.dst_ptr.diff().to(like.dtype) + 1).unsqueeze(-1)

    def layer_norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        return norm(x, self.graph.batch, self.num_graphs)

    def readout(self, x: Tensor, mode: str) -> Tensor:
        """``output``: each network's output-neuron features concatenated in order,
        ``(B, n_out * d)`` (output neurons are never permuted); ``mean``: the mean over all
        nodes, ``(B, d)``."""
        if mode == "output":
            return x[self.graph.out_nodes].flatten(1)
        return global_mean_pool(x, self.graph.batch, size=self.num_graphs)
