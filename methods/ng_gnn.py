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
(sigma 3), AdamW lr 1e-3, weight decay 5e-4. Quick profile: hidden 32, 3 layers, no dropout,
and the 128 Fourier features drawn at sigma 1, chosen on validation on the default digits
data (3 seeds, 6 epochs; mean validation accuracy, the epoch it left chance): 16 features at
sigma 3 14.3%, epochs 4-5; 128 at sigma 3 18.2%, epochs 1-5 (one seed 12.8%); 16 at sigma
0.3 22.8%, epochs 1-2; 128 at sigma 1 26.9%, epochs 1-2 (docs/notes/digits-inr-default.md).
Few features drawn at a large sigma leave almost no frequency low enough to resolve a
weight's value.

Editing (task ``"edit"``): every layer, the last included, is followed by the LayerNorm,
SiLU and an edge update; the last update's output map gives ``kernel_size`` features per
forward weight edge, the weight change, and a linear map of the final node features one per
neuron, the bias change (the paper's INR editing, Table 2), read back as weights and scaled
per tensor from 0.01 of each layer's std (``methods.graph_edit``), so the first edit is
near the identity; the change moves with the input's hidden neurons (permutation
equivariance) and is the same on both layouts.

``layout`` (``methods.layouts``): ``auto`` (default) runs each architecture group with
enough edges as dense per-layer blocks and the rest of the batch as one ``torch_geometric``
edge list (``layouts.layered_groups``); ``layered`` / ``sparse`` force one. Both compute
the same function; the blocks are faster on large groups.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.norm import LayerNorm

from datasets.method_table import register_method
from datasets.weight_dataset import TaskInfo
from datasets.weights import Weights, WeightSpace
from methods.encodings import GraphEncoder, readout_dim
from methods.graph_edit import GraphChange
from methods.graph import degree_histogram
from methods.layouts import (LAYERED_AGGREGATORS, EdgeListGraph, LayeredGraph, check_layout, edge_list_aggregation,
                             layered_groups)

COMMON = {"aggregators": ("mean", "min", "max", "std"), "scalers": ("identity", "amplification"),
          "sigma": 3.0, "readout": "output", "probes": 0, "probe_size": 16, "layout": "auto"}
PROFILES = {
    "quick": {**COMMON, "hidden": 32, "layers": 3, "dropout": 0.0, "fourier": 128, "sigma": 1.0},
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

    def forward(self, out: Tensor, log_deg: Tensor) -> Tensor:
        """``log_deg``: ``log(in-degree + 1)`` per node, broadcastable against ``out``."""
        scaled = {"identity": lambda: out,
                  "amplification": lambda: out * (log_deg / self.avg_log),
                  "attenuation": lambda: out * (self.avg_log / log_deg.clamp_min(math.log(2)))}
        return torch.cat([scaled[s]() for s in self.scalers], dim=-1)


class FiLMPNAConv(nn.Module):
    """PNA convolution whose messages are FiLM-modulated by the edge features, on either
    layout of ``methods.layouts``.

    ``W [x_i, x_j]`` is computed as ``W_i x_i + W_j x_j`` on the nodes before broadcasting
    to the edges (the same function and parameter count as one linear layer on the
    concatenation, without an ``(E, 2d)`` tensor)."""

    def __init__(self, dim: int, edge_dim: int, aggregators: tuple[str, ...],
                 scalers: tuple[str, ...], deg: Tensor) -> None:
        super().__init__()
        self.aggregators = tuple(aggregators)
        edge_list_aggregation(self.aggregators)  # built before any compiled forward
        self.scalers = DegreeScalers(scalers, deg)
        self.film = nn.Linear(edge_dim, 2 * dim)
        self.pre_i = nn.Linear(dim, dim)
        self.pre_j = nn.Linear(dim, dim, bias=False)
        self.post = nn.Linear((len(aggregators) * len(scalers) + 1) * dim, dim)
        self.lin = nn.Linear(dim, dim)

    def forward(self, x: Tensor, film: list[tuple[Tensor, Tensor]],
                ops: EdgeListGraph | LayeredGraph) -> Tensor:
        """``film``: per block, ``self.film`` of the edge features as ``(scale, shift)``."""
        a, b = self.pre_i(x), self.pre_j(x)
        # shift + scale * (...) rather than addcmul, whose backward takes two more passes
        messages = [shift + scale * (ops.receiver(a, k) + ops.sender(b, k))
                    for k, (scale, shift) in enumerate(film)]
        out = self.scalers(ops.aggregate(messages, self.aggregators), ops.log_degree(x))
        return self.lin(self.post(torch.cat([x, out], dim=-1)))


class EdgeUpdate(nn.Module):
    """``e_ij' = W_1 act(W_e e_ij + W_s x_src + W_t x_dst)``, ``W_1`` to ``d_out`` features
    (default ``edge_dim``)."""

    def __init__(self, dim: int, edge_dim: int, d_out: int | None = None) -> None:
        super().__init__()
        self.lin_e = nn.Linear(edge_dim, edge_dim)
        self.lin_s = nn.Linear(dim, edge_dim)
        self.lin_t = nn.Linear(dim, edge_dim)
        self.out = nn.Linear(edge_dim, edge_dim if d_out is None else d_out)

    def forward(self, x: Tensor, mixed: list[Tensor], ops: EdgeListGraph | LayeredGraph) -> list[Tensor]:
        """``mixed``: per block ``W_e e`` (without bias). Returns ``act(h)`` per block: the
        output map ``W_1`` is left to the caller, to compose with what reads the new edges."""
        s, t = self.lin_s(x), self.lin_t(x) + self.lin_e.bias
        return [F.silu(m_k + (ops.receiver(t, k) + ops.sender(s, k))) for k, m_k in enumerate(mixed)]


def composed(weight: Tensor, bias: Tensor | None, then: nn.Linear | None) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of ``x -> then(x) @ weight.T + bias`` (just ``weight``, ``bias``
    without ``then``)."""
    if then is None:
        return weight, bias
    shifted = weight @ then.bias
    return weight @ then.weight, shifted if bias is None else shifted + bias


class NGGNN(nn.Module):
    """Neural-graph PNA with an invariant readout, or with ``edit`` the equivariant output:
    a change of every weight and bias."""

    def __init__(self, info: TaskInfo, *, hidden: int, layers: int, dropout: float, fourier: int,
                 probes: int, aggregators: tuple[str, ...], scalers: tuple[str, ...], sigma: float,
                 readout: str, probe_size: int, layout: str, edit: bool = False) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "layers": layers, "dropout": dropout, "fourier": fourier,
                        "probes": probes, "aggregators": list(aggregators), "scalers": list(scalers),
                        "sigma": sigma, "readout": readout, "probe_size": probe_size,
                        "layout": layout, "reverse_edges": True}
        specs = tuple(info.specs)
        unknown = sorted(set(aggregators) - set(LAYERED_AGGREGATORS))
        self.layered_ok = not unknown
        check_layout(layout, "ng-gnn", f"no layered form of aggregators {unknown}" if unknown else "")
        self.readout, self.layout = readout, layout
        self.encode = GraphEncoder(specs, info.stats, hidden, hidden, fourier=fourier, sigma=sigma,
                                   probes=probes, probe_size=probe_size)
        deg = degree_histogram(self.encode.converter, specs)
        self.convs = nn.ModuleList(FiLMPNAConv(hidden, hidden, aggregators, scalers, deg)
                                   for _ in range(layers))
        updates = layers if edit else layers - 1  # the edit's last update gives the weight change
        self.norms = nn.ModuleList(LayerNorm(hidden, mode="graph") for _ in range(updates))
        k = self.encode.converter.kernel_size
        self.edge_updates = nn.ModuleList(EdgeUpdate(hidden, hidden, k if edit and i == layers - 1 else None)
                                          for i in range(updates))
        self.dropout = dropout
        if edit:
            self.change = GraphChange(info.spec, info.stats.get(info.spec), self.encode.converter, hidden)
        else:
            self.head = nn.Sequential(nn.Linear(readout_dim(readout, specs, hidden), hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, info.out_dim))
        self.edit = edit

    def forward(self, weights: Weights) -> Tensor | WeightSpace:
        layered = layered_groups(self.layout, weights, self.layered_ok)
        if self.edit:
            self.change.check(weights)
            return self.change(self.encode.embed(weights, self.flat_change, layered))
        return self.head(self.encode.embed(weights, self.features, layered))

    def features(self, ops: EdgeListGraph | LayeredGraph, x: Tensor, e: list[Tensor]) -> Tensor:
        """Message passing on one layout, then the invariant readout."""
        x, _, _ = self.message_passing(ops, x, e)
        return ops.readout(x, self.readout)

    def flat_change(self, ops: EdgeListGraph | LayeredGraph, x: Tensor, e: list[Tensor]) -> Tensor:
        """Message passing on one layout, then the unscaled change, flattened: the last
        update's ``W_1`` maps the edges to the weight change."""
        x, e, last = self.message_passing(ops, x, e)
        return self.change.flat(ops, x, e, last)

    def message_passing(self, ops: EdgeListGraph | LayeredGraph, x: Tensor,
                        e: list[Tensor]) -> tuple[Tensor, list[Tensor], nn.Linear | None]:
        """The layers: node features, and the last edge update's ``act(h)`` with its output
        map ``W_1`` not yet applied (none without an update). Edge features are only read
        through linear maps (a conv's ``film``, the next update's ``W_e``), so an update's
        ``W_1`` is composed into both and the new edge features are never formed: ``3 d``
        products per edge and layer instead of ``4 d``."""
        pending = None  # the output map of the last edge update, not yet applied to `e`
        for i, conv in enumerate(self.convs):
            update = self.edge_updates[i] if i < len(self.edge_updates) else None
            maps = list(zip(conv.film.weight.chunk(2), conv.film.bias.chunk(2)))  # scale, shift
            if update is not None:
                maps.append((update.lin_e.weight, None))  # its bias is added on the nodes
            maps = [composed(w, b, pending) for w, b in maps]  # separate products: backward cheaper than split
            per_block = [[F.linear(e_k, w, b) for w, b in maps] for e_k in e]
            x = conv(x, [(scale, shift) for scale, shift, *_ in per_block], ops)
            if update is not None:
                x = ops.layer_norm(self.norms[i], x)
                x = F.dropout(F.silu(x), self.dropout, self.training)
                e, pending = update(x, [mixed for *_, mixed in per_block], ops), update.out
        return x, e, pending


@register_method("ng-gnn", family="graph", profiles=PROFILES, heterogeneous=True, edits=True,
                 optim={"lr": 1e-3, "weight_decay": 5e-4},
                 paper="Kofinas et al. 2024 (Neural Graphs, NG-GNN)")
def build_ng_gnn(task: TaskInfo, **hparams) -> nn.Module:
    return NGGNN(task, **hparams, edit=task.task == "edit")
