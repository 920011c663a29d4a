"""NG-GNN: PNA message passing on neural graphs (Kofinas et al., ICLR 2024, section 3.1;
configuration from the authors' ``configs/model/pna.yaml`` and INR scripts).

Layer ``l`` (Corso et al. 2020, PNA, with the paper's FiLM edge modulation, eq. 4):
``m_ij = scale(e_ij) * W [x_i, x_j] + shift(e_ij)``; aggregated with mean, min, max, std,
each under the degree scalers (identity, amplification); ``x_i' = W' (W'' [x_i, agg_i])``.
Between layers: graph LayerNorm, SiLU, dropout, then an edge update
``e_ij' = W_1 SiLU(W_e e_ij + W_s x_i + W_t x_j)``. The graph-level features are the
output neurons' features concatenated (or the mean over all nodes), then a 3-layer MLP.

Deliberate differences from the authors' code: the graph LayerNorm normalises each graph
on its own (theirs normalises over the whole batch, so a prediction depends on its batch
mates); the degree histogram is counted on the actual graphs (reverse edges included).
Paper profile: hidden 32, 4 layers, dropout 0.2, reverse edges, 128 Fourier features
(sigma 3), AdamW lr 1e-3, weight decay 5e-4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import MultiAggregation
from torch_geometric.nn.norm import LayerNorm

from datasets.method_table import register_method
from datasets.weight_dataset import TaskInfo
from methods.encodings import GraphEncoder, readout, readout_dim
from methods.graph import degree_histogram

COMMON = {"aggregators": ("mean", "min", "max", "std"), "scalers": ("identity", "amplification"),
          "sigma": 3.0, "readout": "output", "probes": 0, "probe_size": 16}
PROFILES = {
    "quick": {"hidden": 16, "layers": 3, "dropout": 0.0, "fourier": 16, **COMMON},
    "paper": {"hidden": 32, "layers": 4, "dropout": 0.2, "fourier": 128, **COMMON},
}


class DegreeScalers(nn.Module):
    """PNA degree scalers (Corso et al. 2020, eq. 5) normalised by the mean log-degree of
    the degree histogram ``deg`` (as ``torch_geometric``'s ``DegreeScalerAggregation``)."""

    def __init__(self, scalers: tuple[str, ...], deg: Tensor) -> None:
        super().__init__()
        unknown = set(scalers) - {"identity", "amplification", "attenuation"}
        if unknown:
            raise ValueError(f"unknown degree scalers {sorted(unknown)}")
        self.scalers = tuple(scalers)
        bins = torch.arange(deg.numel(), dtype=torch.float64)
        self.avg_log = float(((bins + 1).log() * deg).sum() / deg.sum())

    def forward(self, out: Tensor, ptr: Tensor) -> Tensor:
        log_deg = torch.log(ptr.diff().to(out.dtype) + 1).unsqueeze(-1)
        scaled = {"identity": lambda: out,
                  "amplification": lambda: out * (log_deg / self.avg_log),
                  "attenuation": lambda: out * (self.avg_log / log_deg.clamp_min(math.log(2)))}
        return torch.cat([scaled[s]() for s in self.scalers], dim=-1)


class FiLMPNAConv(MessagePassing):
    """PNA convolution whose messages are FiLM-modulated by the edge features.

    ``W [x_i, x_j]`` is computed as ``W_i x_i + W_j x_j`` on the nodes before gathering
    (the same function and parameter count as one linear layer on the concatenation,
    without an ``(E, 2d)`` tensor). Edges must be sorted by destination with ``dst_ptr``
    their CSR pointer: the aggregators then run as segment reductions by pointer (their
    min/max backward is several times faster on CPU than the fused scatter's)."""

    def __init__(self, dim: int, edge_dim: int, aggregators: tuple[str, ...],
                 scalers: tuple[str, ...], deg: Tensor) -> None:
        super().__init__(aggr=MultiAggregation(list(aggregators)), node_dim=0)
        self.scalers = DegreeScalers(scalers, deg)
        self.film = nn.Linear(edge_dim, 2 * dim)
        self.pre_i = nn.Linear(dim, dim)
        self.pre_j = nn.Linear(dim, dim, bias=False)
        self.post = nn.Linear((len(aggregators) * len(scalers) + 1) * dim, dim)
        self.lin = nn.Linear(dim, dim)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, dst_ptr: Tensor) -> Tensor:
        out = self.propagate(edge_index, a=self.pre_i(x), b=self.pre_j(x), edge_attr=edge_attr,
                             dst_ptr=dst_ptr)
        return self.lin(self.post(torch.cat([x, out], dim=-1)))

    def message(self, a_i: Tensor, b_j: Tensor, edge_attr: Tensor) -> Tensor:
        scale, shift = self.film(edge_attr).chunk(2, dim=-1)
        return scale * (a_i + b_j) + shift

    def aggregate(self, inputs: Tensor, dst_ptr: Tensor, dim_size: int) -> Tensor:
        return self.scalers(self.aggr_module(inputs, ptr=dst_ptr, dim_size=dim_size, dim=0), dst_ptr)


class EdgeUpdate(nn.Module):
    """``e_ij' = W_1 act(W_e e_ij + W_s x_src + W_t x_dst)``."""

    def __init__(self, dim: int, edge_dim: int) -> None:
        super().__init__()
        self.lin_e = nn.Linear(edge_dim, edge_dim)
        self.lin_s = nn.Linear(dim, edge_dim)
        self.lin_t = nn.Linear(dim, edge_dim)
        self.out = nn.Linear(edge_dim, edge_dim)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h = (self.lin_e(edge_attr) + self.lin_s(x).index_select(0, edge_index[0])
             + self.lin_t(x).index_select(0, edge_index[1]))
        return self.out(F.silu(h))


class NGGNN(nn.Module):
    """Neural-graph PNA with an invariant readout."""

    def __init__(self, info: TaskInfo, *, hidden: int, layers: int, dropout: float, fourier: int,
                 probes: int, aggregators: tuple[str, ...], scalers: tuple[str, ...], sigma: float,
                 readout: str, probe_size: int) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "layers": layers, "dropout": dropout, "fourier": fourier,
                        "probes": probes, "aggregators": list(aggregators), "scalers": list(scalers),
                        "sigma": sigma, "readout": readout, "probe_size": probe_size,
                        "reverse_edges": True}
        specs = tuple(info.specs)
        self.readout = readout
        head_in = readout_dim(readout, specs, hidden)
        self.encode = GraphEncoder(specs, info.stats, hidden, hidden, fourier=fourier, sigma=sigma,
                                   probes=probes, probe_size=probe_size)
        deg = degree_histogram(self.encode.converter, specs)
        self.convs = nn.ModuleList(FiLMPNAConv(hidden, hidden, aggregators, scalers, deg)
                                   for _ in range(layers))
        self.norms = nn.ModuleList(LayerNorm(hidden, mode="graph") for _ in range(layers - 1))
        self.edge_updates = nn.ModuleList(EdgeUpdate(hidden, hidden) for _ in range(layers - 1))
        self.dropout = dropout
        self.head = nn.Sequential(nn.Linear(head_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                  nn.ReLU(), nn.Linear(hidden, info.out_dim))

    def forward(self, weights) -> Tensor:
        graph, x, e = self.encode(weights)
        for i, conv in enumerate(self.convs):
            x = conv(x, graph.edge_index, e, graph.dst_ptr)
            if i < len(self.norms):
                x = self.norms[i](x, graph.batch, graph.num_graphs)
                x = F.dropout(F.silu(x), self.dropout, self.training)
                e = self.edge_updates[i](x, graph.edge_index, e)
        return self.head(readout(x, graph, self.readout))


@register_method("ng-gnn", family="graph", profiles=PROFILES, heterogeneous=True,
                 optim={"lr": 1e-3, "weight_decay": 5e-4},
                 paper="Kofinas et al. 2024 (Neural Graphs, NG-GNN)")
def build_ng_gnn(task: TaskInfo, **hparams) -> nn.Module:
    return NGGNN(task, **hparams)
