"""NG-T: the relational transformer on neural graphs (Kofinas et al., ICLR 2024, section
3.2, after Diao & Loynd 2023; configuration from the authors' ``rtransformer.yaml``).

Attention of node ``i`` over its neighbours ``j``, with edge terms in queries, keys and
values (the paper's eq. 6, with the authors' multiplicative value modulation):
``q_ij = W_q x_i + W_eq e_ij``, ``k_ij = W_k x_j + W_ek e_ij``,
``v_ij = (W_v x_j) * (W_em e_ij) + W_ev e_ij``, ``a_ij = softmax_j(q_ij . k_ij / sqrt(d_attn))``
per head. Node update (post-LayerNorm): ``x = LN(x + W_o attn)``, ``x = LN(x + MLP(x))``.
Edge update (all layers but the last): ``e_ij = LN(e_ij + W_1 GELU(W_e [e_ij, e_ji] + W_r x_i
+ W_s x_j))``, ``e = LN(e + MLP(e))``. Readout: the output neurons' features concatenated
(or the mean over all nodes), then a 2-layer MLP. Linear layers start Xavier-uniform with
zero biases, as in the authors' code.

By default attention runs over the graph's edges and their reverses. ``dense=True`` is the
authors' all-pairs variant: every node attends to every node of its network, non-edges
carrying a learned "no edge" feature; padded nodes of smaller networks in a mixed batch are
masked out.
Paper profile: d_node 64, d_edge 32, attention 128, 8 heads, 4 layers, dropout 0.2, 128
Fourier features (sigma 1), AdamW lr 1e-3, weight decay 5e-4. Quick profile: d_node 64,
d_edge 16, attention 16, 2 heads, 3 layers, no dropout, 16 Fourier features (sigma 1).

Editing (task ``"edit"``, ``dense=False``): every layer, the last included, updates the
edges; a linear map of the final edge features gives ``kernel_size`` values per forward
weight edge, the weight change, and one of the final node features one per neuron, the bias
change (the paper's INR editing, Table 2), read back as weights and scaled per tensor from
0.01 of each layer's std (``methods.graph_edit``), so the first edit is near the identity;
the change moves with the input's hidden neurons (permutation equivariance) and is the same
on both layouts.

``layout`` (``methods.layouts``, with ``dense=False``): ``auto`` (default) runs each
architecture group with enough edges as dense per-layer blocks and the rest of the batch as
one edge list; ``layered`` / ``sparse`` force one. Both compute the same function; the
blocks sum over senders before projecting (:meth:`RTAttention._layered`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import to_dense_adj, to_dense_batch

from datasets.errors import ConfigError
from datasets.method_table import register_method
from datasets.weight_dataset import TaskInfo
from datasets.weights import Weights, WeightSpace
from methods.encodings import GraphEncoder, readout_dim
from methods.graph import NeuralGraph
from methods.graph_edit import GraphChange
from methods.layouts import EdgeListGraph, LayeredGraph, check_layout, layered_groups

COMMON = {"sigma": 1.0, "probes": 0, "probe_size": 16, "readout": "output", "dense": False,
          "layout": "auto"}
PROFILES = {
    "quick": {"d_node": 64, "d_edge": 16, "d_attn": 16, "d_node_hidden": 64, "d_edge_hidden": 16,
              "d_out_hidden": 64, "heads": 2, "layers": 3, "dropout": 0.0, "fourier": 16, **COMMON},
    "paper": {"d_node": 64, "d_edge": 32, "d_attn": 128, "d_node_hidden": 128, "d_edge_hidden": 64,
              "d_out_hidden": 128, "heads": 8, "layers": 4, "dropout": 0.2, "fourier": 128, **COMMON},
}


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(d_in, d_out, bias)
    nn.init.xavier_uniform_(lin.weight)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class AllPairsGraph:
    """All-pairs operations on ``(B, N, N, ...)`` edge tensors (one block): ``[b, i, j]`` is
    the pair receiver ``i``, sender ``j``; ``mask (B, N)`` marks real nodes."""

    def __init__(self, graph: NeuralGraph, mask: Tensor) -> None:
        self.graph, self.mask = graph, mask

    def receiver(self, t: Tensor, block: int = 0) -> Tensor:
        return t.unsqueeze(2)

    def sender(self, t: Tensor, block: int = 0) -> Tensor:
        return t.unsqueeze(1)

    def reverse(self, e: list[Tensor]) -> list[Tensor]:
        return [e[0].transpose(1, 2)]

    def attend(self, scores: list[Tensor], values: list[Tensor]) -> Tensor:
        """``score (B, N, N, H)``, ``values (B, N, N, H, dh)`` -> ``(B, N, H, dh)``."""
        score = scores[0].masked_fill(~self.mask[:, None, :, None], float("-inf"))
        return (score.softmax(dim=2).unsqueeze(-1) * values[0]).sum(dim=2)

    def readout(self, x: Tensor, mode: str) -> Tensor:
        return EdgeListGraph(self.graph).readout(x[self.mask], mode)


Layout = EdgeListGraph | LayeredGraph | AllPairsGraph


class RTAttention(nn.Module):
    """Multi-head attention with edge terms in queries, keys and values."""

    def __init__(self, d_node: int, d_edge: int, d_attn: int, heads: int) -> None:
        super().__init__()
        if d_attn % heads:
            raise ValueError(f"d_attn {d_attn} is not divisible by {heads} heads")
        self.heads, self.scale = heads, 1 / math.sqrt(d_attn)
        self.node_qkv = _linear(d_node, 3 * d_attn, bias=False)
        self.edge_qkv = _linear(d_edge, 4 * d_attn, bias=False)
        self.out = _linear(d_attn, d_node)

    def forward(self, x: Tensor, e: list[Tensor], ops: Layout) -> Tensor:
        if isinstance(ops, LayeredGraph):
            return self.out(self._layered(x, e, ops).flatten(-2))
        q, k, v = self.node_qkv(x).unflatten(-1, (3, self.heads, -1)).unbind(-3)
        scores, values = [], []
        for b, e_b in enumerate(e):
            eq, ek, ev, em = self.edge_qkv(e_b).unflatten(-1, (4, self.heads, -1)).unbind(-3)
            scores.append(((ops.receiver(q, b) + eq) * (ops.sender(k, b) + ek)).sum(-1) * self.scale)
            values.append(ops.sender(v, b) * em + ev)
        return self.out(ops.attend(scores, values).flatten(-2))

    def _layered(self, x: Tensor, e: list[Tensor], ops: LayeredGraph) -> Tensor:
        """The same attention with the ``ev`` term summed over senders before its
        projection, ``sum_j a_ij W_ev e_ij = W_ev sum_j a_ij e_ij`` (one batched product per
        block instead of an ``(edges, d_attn)`` tensor), and the softmax normalised per
        receiver rather than per edge."""
        q, k, v = self.node_qkv(x).unflatten(-1, (3, self.heads, -1)).unbind(-3)  # (B, N, H, dh)
        w_eq, w_ek, w_ev, w_em = self.edge_qkv.weight.unflatten(0, (4, self.heads, -1)).unbind(0)
        scores, modulations = [], []
        for b, e_b in enumerate(e):
            eq, ek, em = (F.linear(e_b, w.flatten(0, 1)).unflatten(-1, (self.heads, -1))
                          for w in (w_eq, w_ek, w_em))
            scores.append(((ops.receiver(q, b) + eq) * (ops.sender(k, b) + ek)).sum(-1) * self.scale)
            modulations.append(ops.sender(v, b) * em)
        weights, total = ops.softmax(scores)
        modulated = ops.sum_incoming([w.unsqueeze(-1) * vm for w, vm in zip(weights, modulations)])
        pooled = ops.merge([  # sum_j a_ij e_ij per head, (B, n_dst, H, d_edge) per block
            w.unsqueeze(-1) * e_b.unsqueeze(-2) if ops.structure.blocks[b].diagonal
            else (e_b.transpose(-1, -2) @ w).transpose(-1, -2)  # this order keeps w's gradient contiguous
            for b, (w, e_b) in enumerate(zip(weights, e))])
        return (modulated + torch.einsum("bnhm,hcm->bnhc", pooled, w_ev)) / total.unsqueeze(-1)


class EdgeUpdate(nn.Module):
    """``e = LN(e + W_1 GELU(W_e [e, e_rev] + W_r x_recv + W_s x_send))``, ``e = LN(e + MLP(e))``."""

    def __init__(self, d_node: int, d_edge: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.lin_e = _linear(2 * d_edge, d_hidden)
        self.lin_r = _linear(d_node, d_hidden)
        self.lin_s = _linear(d_node, d_hidden)
        self.lin_out = _linear(d_hidden, d_edge)
        self.mlp = nn.Sequential(_linear(d_edge, d_hidden, bias=False), nn.GELU(),
                                 _linear(d_hidden, d_edge), nn.Dropout(dropout))
        self.norm0, self.norm1 = nn.LayerNorm(d_edge), nn.LayerNorm(d_edge)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, e: list[Tensor], ops: Layout) -> list[Tensor]:
        r, s = self.lin_r(x), self.lin_s(x)
        w_own, w_rev = self.lin_e.weight.chunk(2, dim=1)  # W_e [e, e_rev] = W_own e + W_rev e_rev
        reverse = ops.reverse([F.linear(e_b, w_rev) for e_b in e])
        out = []
        for b, (e_b, rev_b) in enumerate(zip(e, reverse)):
            h = F.linear(e_b, w_own, self.lin_e.bias) + rev_b + (ops.receiver(r, b) + ops.sender(s, b))
            e_b = self.norm0(e_b + self.dropout(self.lin_out(F.gelu(h))))
            out.append(self.norm1(e_b + self.mlp(e_b)))
        return out


class RTLayer(nn.Module):
    """One relational-transformer layer: node update, then (optionally) edge update."""

    def __init__(self, d_node: int, d_edge: int, d_attn: int, d_node_hidden: int, d_edge_hidden: int,
                 heads: int, dropout: float, update_edges: bool) -> None:
        super().__init__()
        self.attn = RTAttention(d_node, d_edge, d_attn, heads)
        self.lin = _linear(d_node, d_node)
        self.mlp = nn.Sequential(_linear(d_node, d_node_hidden, bias=False), nn.GELU(),
                                 _linear(d_node_hidden, d_node), nn.Dropout(dropout))
        self.norm0, self.norm1 = nn.LayerNorm(d_node), nn.LayerNorm(d_node)
        self.dropout = nn.Dropout(dropout)
        self.edges = EdgeUpdate(d_node, d_edge, d_edge_hidden, dropout) if update_edges else None

    def forward(self, x: Tensor, e: list[Tensor], ops: Layout) -> tuple[Tensor, list[Tensor]]:
        x = self.norm0(x + self.dropout(self.lin(self.attn(x, e, ops))))
        x = self.norm1(x + self.mlp(x))
        if self.edges is not None:
            e = self.edges(x, e, ops)
        return x, e


class NGT(nn.Module):
    """Neural-graph relational transformer with an invariant readout, or with ``edit`` the
    equivariant output: a change of every weight and bias."""

    def __init__(self, info: TaskInfo, *, d_node: int, d_edge: int, d_attn: int, d_node_hidden: int,
                 d_edge_hidden: int, d_out_hidden: int, heads: int, layers: int, dropout: float,
                 fourier: int, sigma: float, probes: int, probe_size: int, readout: str,
                 dense: bool, layout: str, edit: bool = False) -> None:
        super().__init__()
        self.hparams = {"d_node": d_node, "d_edge": d_edge, "d_attn": d_attn,
                        "d_node_hidden": d_node_hidden, "d_edge_hidden": d_edge_hidden,
                        "d_out_hidden": d_out_hidden, "heads": heads, "layers": layers,
                        "dropout": dropout, "fourier": fourier, "sigma": sigma, "probes": probes,
                        "probe_size": probe_size, "readout": readout, "dense": dense,
                        "layout": layout, "reverse_edges": True}
        specs = tuple(info.specs)
        check_layout(layout, "ng-t", "dense=True attends over all pairs" if dense else "")
        if edit and dense:
            raise ConfigError("ng-t: the edit head reads the graph's edges; dense=True has no edit head, "
                              "use dense=False")
        self.readout, self.dense, self.layout, self.edit = readout, dense, layout, edit
        self.encode = GraphEncoder(specs, info.stats, d_node, d_edge, fourier=fourier, sigma=sigma,
                                   probes=probes, probe_size=probe_size)
        self.no_edge = nn.Parameter(torch.zeros(d_edge)) if dense else None
        self.layers = nn.ModuleList(
            RTLayer(d_node, d_edge, d_attn, d_node_hidden, d_edge_hidden, heads, dropout,
                    update_edges=edit or i < layers - 1) for i in range(layers))
        if edit:  # the edges after the last layer's update give the weight change
            self.change = GraphChange(info.spec, info.stats.get(info.spec), self.encode.converter, d_node)
            self.edge_out = _linear(d_edge, self.encode.converter.kernel_size)
        else:
            self.head = nn.Sequential(nn.Linear(readout_dim(readout, specs, d_node), d_out_hidden), nn.ReLU(),
                                      nn.Linear(d_out_hidden, info.out_dim))

    def forward(self, weights: Weights) -> Tensor | WeightSpace:
        if self.edit:
            self.change.check(weights)
            return self.change(self.encode.embed(weights, self.flat_change, layered_groups(self.layout, weights)))
        if self.dense:
            graph, x, e = self.encode(weights)
            return self.head(self.features(*self._densify(graph, x, e)))
        return self.head(self.encode.embed(weights, self.features, layered_groups(self.layout, weights)))

    def features(self, ops: Layout, x: Tensor, e: list[Tensor]) -> Tensor:
        """The transformer layers on one layout, then the invariant readout."""
        return ops.readout(self.transform(ops, x, e)[0], self.readout)

    def flat_change(self, ops: EdgeListGraph | LayeredGraph, x: Tensor, e: list[Tensor]) -> Tensor:
        """The transformer layers on one layout, then the unscaled change, flattened."""
        return self.change.flat(ops, *self.transform(ops, x, e), self.edge_out)

    def transform(self, ops: Layout, x: Tensor, e: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The transformer layers: node and edge features."""
        for layer in self.layers:
            x, e = layer(x, e, ops)
        return x, e

    def _densify(self, graph: NeuralGraph, x: Tensor, e: Tensor) -> tuple[AllPairsGraph, Tensor, list[Tensor]]:
        """``(B, N, d)`` nodes and ``(B, N, N, d)`` edges indexed ``[b, receiver, sender]``."""
        x, mask = to_dense_batch(x, graph.batch, batch_size=graph.num_graphs)
        flipped = graph.edge_index.flip(0)
        dense = to_dense_adj(flipped, graph.batch, e, max_num_nodes=x.shape[1],
                             batch_size=graph.num_graphs)
        present = to_dense_adj(flipped, graph.batch, max_num_nodes=x.shape[1],
                               batch_size=graph.num_graphs) > 0
        dense = torch.where(present.unsqueeze(-1), dense, self.no_edge)
        return AllPairsGraph(graph, mask), x, [dense]


@register_method("ng-t", family="graph", profiles=PROFILES, heterogeneous=True, edits=True,
                 optim={"lr": 1e-3, "weight_decay": 5e-4},
                 paper="Kofinas et al. 2024 (Neural Graphs, NG-T)")
def build_ng_t(task: TaskInfo, **hparams) -> nn.Module:
    return NGT(task, **hparams, edit=task.task == "edit")
