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

By default attention runs over the graph's edges and their reverses (sparse,
``torch_geometric.utils.softmax``). ``dense=True`` is the authors' all-pairs variant:
every node attends to every node of its network, non-edges carrying a learned "no edge"
feature; padded nodes of smaller networks in a mixed batch are masked out.
Paper profile: d_node 64, d_edge 32, attention 128, 8 heads, 4 layers, dropout 0.2, 128
Fourier features (sigma 1), AdamW lr 1e-3, weight decay 5e-4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter, softmax, to_dense_adj, to_dense_batch

from datasets.method_table import register_method
from datasets.weight_dataset import TaskInfo
from methods.encodings import GraphEncoder, readout, readout_dim

COMMON = {"sigma": 1.0, "probes": 0, "probe_size": 16, "readout": "output", "dense": False}
PROFILES = {
    "quick": {"d_node": 32, "d_edge": 8, "d_attn": 16, "d_node_hidden": 64, "d_edge_hidden": 16,
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


class SparseGraph:
    """Edge-list operations: receiver ``i`` = destination, sender ``j`` = source."""

    def __init__(self, graph: Batch) -> None:
        self.src, self.dst = graph.edge_index
        self.pair, self.ptr, self.num_nodes = graph.edge_pair, graph.dst_ptr, graph.num_nodes

    def receiver(self, t: Tensor) -> Tensor:
        return t.index_select(0, self.dst)

    def sender(self, t: Tensor) -> Tensor:
        return t.index_select(0, self.src)

    def reverse(self, e: Tensor) -> Tensor:
        return e.index_select(0, self.pair)

    def attend(self, score: Tensor, values: Tensor) -> Tensor:
        """``score (E, H)``, ``values (E, H, dh)`` -> ``(N, H, dh)``."""
        alpha = softmax(score, self.dst, self.ptr, self.num_nodes)
        return scatter(alpha.unsqueeze(-1) * values, self.dst, 0, self.num_nodes, reduce="sum")


class DenseGraph:
    """All-pairs operations on ``(B, N, N, ...)`` edge tensors: ``[b, i, j]`` is the pair
    receiver ``i``, sender ``j``; ``mask (B, N)`` marks real nodes."""

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask

    def receiver(self, t: Tensor) -> Tensor:
        return t.unsqueeze(2)

    def sender(self, t: Tensor) -> Tensor:
        return t.unsqueeze(1)

    def reverse(self, e: Tensor) -> Tensor:
        return e.transpose(1, 2)

    def attend(self, score: Tensor, values: Tensor) -> Tensor:
        """``score (B, N, N, H)``, ``values (B, N, N, H, dh)`` -> ``(B, N, H, dh)``."""
        score = score.masked_fill(~self.mask[:, None, :, None], float("-inf"))
        return (score.softmax(dim=2).unsqueeze(-1) * values).sum(dim=2)


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

    def forward(self, x: Tensor, e: Tensor, ops: SparseGraph | DenseGraph) -> Tensor:
        q, k, v = self.node_qkv(x).unflatten(-1, (3, self.heads, -1)).unbind(-3)
        eq, ek, ev, em = self.edge_qkv(e).unflatten(-1, (4, self.heads, -1)).unbind(-3)
        score = ((ops.receiver(q) + eq) * (ops.sender(k) + ek)).sum(-1) * self.scale
        out = ops.attend(score, ops.sender(v) * em + ev)
        return self.out(out.flatten(-2))


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

    def forward(self, x: Tensor, e: Tensor, ops: SparseGraph | DenseGraph) -> Tensor:
        h = (self.lin_e(torch.cat([e, ops.reverse(e)], dim=-1)) + ops.receiver(self.lin_r(x))
             + ops.sender(self.lin_s(x)))
        e = self.norm0(e + self.dropout(self.lin_out(F.gelu(h))))
        return self.norm1(e + self.mlp(e))


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

    def forward(self, x: Tensor, e: Tensor, ops: SparseGraph | DenseGraph) -> tuple[Tensor, Tensor]:
        x = self.norm0(x + self.dropout(self.lin(self.attn(x, e, ops))))
        x = self.norm1(x + self.mlp(x))
        if self.edges is not None:
            e = self.edges(x, e, ops)
        return x, e


class NGT(nn.Module):
    """Neural-graph relational transformer with an invariant readout."""

    def __init__(self, info: TaskInfo, *, d_node: int, d_edge: int, d_attn: int, d_node_hidden: int,
                 d_edge_hidden: int, d_out_hidden: int, heads: int, layers: int, dropout: float,
                 fourier: int, sigma: float, probes: int, probe_size: int, readout: str,
                 dense: bool) -> None:
        super().__init__()
        self.hparams = {"d_node": d_node, "d_edge": d_edge, "d_attn": d_attn,
                        "d_node_hidden": d_node_hidden, "d_edge_hidden": d_edge_hidden,
                        "d_out_hidden": d_out_hidden, "heads": heads, "layers": layers,
                        "dropout": dropout, "fourier": fourier, "sigma": sigma, "probes": probes,
                        "probe_size": probe_size, "readout": readout, "dense": dense,
                        "reverse_edges": True}
        specs = tuple(info.specs)
        self.readout, self.dense = readout, dense
        head_in = readout_dim(readout, specs, d_node)
        self.encode = GraphEncoder(specs, info.stats, d_node, d_edge, fourier=fourier, sigma=sigma,
                                   probes=probes, probe_size=probe_size)
        self.no_edge = nn.Parameter(torch.zeros(d_edge)) if dense else None
        self.layers = nn.ModuleList(
            RTLayer(d_node, d_edge, d_attn, d_node_hidden, d_edge_hidden, heads, dropout,
                    update_edges=i < layers - 1) for i in range(layers))
        self.head = nn.Sequential(nn.Linear(head_in, d_out_hidden), nn.ReLU(),
                                  nn.Linear(d_out_hidden, info.out_dim))

    def forward(self, weights) -> Tensor:
        graph, x, e = self.encode(weights)
        if self.dense:
            x, e, ops = self._densify(graph, x, e)
        else:
            ops = SparseGraph(graph)
        for layer in self.layers:
            x, e = layer(x, e, ops)
        if self.dense:
            x = x[ops.mask]
        return self.head(readout(x, graph, self.readout))

    def _densify(self, graph: Batch, x: Tensor, e: Tensor) -> tuple[Tensor, Tensor, DenseGraph]:
        """``(B, N, d)`` nodes and ``(B, N, N, d)`` edges indexed ``[b, receiver, sender]``."""
        x, mask = to_dense_batch(x, graph.batch, batch_size=graph.num_graphs)
        flipped = graph.edge_index.flip(0)
        dense = to_dense_adj(flipped, graph.batch, e, max_num_nodes=x.shape[1],
                             batch_size=graph.num_graphs)
        present = to_dense_adj(flipped, graph.batch, max_num_nodes=x.shape[1],
                               batch_size=graph.num_graphs) > 0
        dense = torch.where(present.unsqueeze(-1), dense, self.no_edge)
        return x, dense, DenseGraph(mask)


@register_method("ng-t", family="graph", profiles=PROFILES, heterogeneous=True,
                 optim={"lr": 1e-3, "weight_decay": 5e-4},
                 paper="Kofinas et al. 2024 (Neural Graphs, NG-T)")
def build_ng_t(task: TaskInfo, **hparams) -> nn.Module:
    return NGT(task, **hparams)
