"""Input encodings of neural graphs (Kofinas et al., ICLR 2024, sections 2.2-2.3 and
appendix; defaults read from the authors' ``GraphConstructor``).

- Weights and biases are normalised per layer first (``datasets.normalisation``: one
  scalar mean/std per tensor, which keeps every symmetry; the authors' statistics are per
  layer as well).
- Scalars go through random Fourier features ``v -> [cos(2 pi B v), sin(2 pi B v)]``,
  ``B ~ N(0, sigma^2)`` fixed (Tancik et al. 2020; the authors' ``GaussianEncoding``,
  128 frequencies, sigma 3 for the GNN and 1 for the transformer), then a linear map.
- Edges carry ``[w, 0, w]`` forward and ``[0, w, w]`` reversed (the authors' reverse edge
  features ``[e_ij, e_ji, e_ij + e_ji]``), per kernel entry. Deliberate addition: a learned
  edge-type embedding (linear / conv / residual), standing in for the authors' separate
  projection of linear-layer edges in CNNs and marking residual edges.
- Nodes get a learned positional embedding (``pos_id``: one per input and output neuron,
  one shared per hidden layer) and, for zoos whose architectures differ in activations, an
  activation-type embedding.
- Probe features (optional): ``K`` learned input points; every neuron's values at those
  points (conv: spatially averaged) are projected (linear + LayerNorm) and added to its
  node feature. Deliberate difference: one projection shared by all layers (the authors
  keep one per layer, which does not extend to zoos of varying depth; the positional
  embedding still tells layers apart).
- Readout (``methods.layouts``): the output neurons' features concatenated (the authors'
  default) or the mean over all nodes.

Both layouts of ``methods.layouts`` get the same features: :meth:`GraphEncoder.forward`
on the edge list, :meth:`GraphEncoder.layered` per block of one architecture.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datasets.errors import UnsupportedArchitecture
from datasets.functional import forward
from datasets.normalisation import Normaliser
from datasets.spec import ArchSpec
from datasets.weights import Weights, WeightSpace, as_mixed
from methods.graph import EDGE_TYPES, NUM_ACTIVATION_IDS, GraphConverter, NeuralGraph
from methods.layouts import EdgeListGraph, LayeredGraph, LayeredStructure


class FourierFeatures(nn.Module):
    """Random Fourier features with fixed Gaussian frequencies ``(size, in_dim)``."""

    def __init__(self, in_dim: int, size: int, sigma: float) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(size, in_dim) * sigma)

    @property
    def out_dim(self) -> int:
        return 2 * self.freqs.shape[0]

    def forward(self, v: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """The features ``[cos(2 pi v B^T), sin(2 pi v B^T)]``; given ``weight (out, 2 * size)``
        and ``bias`` (broadcastable to ``(..., out)``), their linear map ``features @ weight.T +
        bias``, computed without concatenating the cosines and sines."""
        proj = 2 * math.pi * v @ self.freqs.T
        if weight is None:
            return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)
        w_cos, w_sin = weight.chunk(2, dim=1)
        flat, shape = proj.flatten(0, -2), (*proj.shape[:-1], weight.shape[0])
        out = torch.cos(flat) @ w_cos.T if bias is None else torch.addmm(
            bias.expand(shape).flatten(0, -2), torch.cos(flat), w_cos.T)
        return torch.addmm(out, torch.sin(flat), w_sin.T).view(shape)


def probe_values(ws: WeightSpace, points: Tensor) -> Tensor:
    """``(B, N, K)``: the value of every neuron of every network at the ``K`` probe
    ``points`` (inputs first, then each layer after its activation; conv channels averaged
    over space), in the node order of ``methods.graph``."""
    _, values = forward(ws, points, return_hidden=True)
    per_layer = [v.mean(dim=(-2, -1)) if v.ndim == 5 else v for v in values]
    return torch.cat([v.transpose(1, 2) for v in per_layer], dim=1)


def _probe_key(spec: ArchSpec) -> str:
    return f"{'conv' if spec.is_conv else 'mlp'}{spec.widths[0]}"


def _check_probe_size(spec: ArchSpec, probe_size: int) -> None:
    size = probe_size
    for i, layer in enumerate(spec.layers):
        if layer.kind != "conv":
            break
        size = (size + 2 * layer.padding - max(layer.kernel)) // layer.stride + 1
        if size < 1:
            raise UnsupportedArchitecture(
                f"probe images of side {probe_size} vanish at conv layer {i} of "
                f"{spec.describe()}; raise probe_size")


class ProbeFeatures(nn.Module):
    """Learned probe inputs (one set per input shape) and the projection of the neurons'
    values at them to node features."""

    def __init__(self, specs: tuple[ArchSpec, ...], num_probes: int, dim: int, probe_size: int) -> None:
        super().__init__()
        self.points = nn.ParameterDict()
        for spec in specs:
            if spec.is_conv:
                _check_probe_size(spec, probe_size)
            key = _probe_key(spec)
            if key not in self.points:
                shape = ((num_probes, spec.widths[0], probe_size, probe_size) if spec.is_conv
                         else (num_probes, spec.widths[0]))
                self.points[key] = nn.Parameter(2 * torch.rand(shape) - 1)
        self.proj = nn.Sequential(nn.Linear(num_probes, dim), nn.LayerNorm(dim))

    def forward(self, weights: Weights, graph: NeuralGraph, converter: GraphConverter) -> Tensor:
        """``(num_nodes, dim)`` probe features of the (unnormalised) ``weights``."""
        mixed = as_mixed(weights)
        first = self.points[_probe_key(mixed.groups[0].spec)]
        values = first.new_zeros(graph.num_nodes, first.shape[0])
        for g, ws in enumerate(mixed.groups):
            vals = probe_values(ws, self.points[_probe_key(ws.spec)])
            values[converter.node_ids(graph, g).flatten()] = vals.reshape(-1, vals.shape[-1])
        return self.proj(values)

    def layered(self, ws: WeightSpace) -> Tensor:
        """``(B, N, dim)`` probe features of one architecture's (unnormalised) networks."""
        return self.proj(probe_values(ws, self.points[_probe_key(ws.spec)]))


def edge_inputs(kernels: Tensor, reversed_: Tensor) -> Tensor:
    """``[w, 0, w]`` for forward edges and ``[0, w, w]`` for reversed ones (``reversed_``
    broadcasts against the edges), per kernel entry."""
    return torch.cat([kernels.masked_fill(reversed_, 0), kernels.masked_fill(~reversed_, 0), kernels], dim=-1)


class GraphEncoder(nn.Module):
    """Weights -> node features ``d_node`` and edge features ``d_edge`` of their neural
    graphs, in either layout of ``methods.layouts``: :meth:`forward` builds the edge list,
    :meth:`layered` the blocks of one architecture; both compute the same features."""

    def __init__(self, specs: tuple[ArchSpec, ...], stats: dict, d_node: int, d_edge: int, *,
                 fourier: int = 128, sigma: float = 3.0, probes: int = 0, probe_size: int = 16,
                 activation_embedding: bool | None = None) -> None:
        super().__init__()
        self.converter = GraphConverter(specs, reverse=True)
        self.normalise = Normaliser(stats)
        k = self.converter.kernel_size
        self.node_fourier = FourierFeatures(1, fourier, sigma)
        self.node_proj = nn.Linear(self.node_fourier.out_dim, d_node)
        self.node_in = nn.Linear(d_node, d_node)
        self.pos_embed = nn.Embedding(self.converter.num_positions, d_node)
        if activation_embedding is None:
            activation_embedding = len({tuple(l.activation for l in s.layers) for s in specs}) > 1
        self.act_embed = nn.Embedding(NUM_ACTIVATION_IDS, d_node) if activation_embedding else None
        self.edge_fourier = FourierFeatures(3 * k, fourier, sigma)
        self.edge_proj = nn.Linear(self.edge_fourier.out_dim, d_edge)
        self.type_embed = nn.Embedding(len(EDGE_TYPES), d_edge)
        self.edge_in = nn.Linear(d_edge, d_edge)
        self.probes = ProbeFeatures(specs, probes, d_node, probe_size) if probes else None

    def _nodes(self, bias: Tensor, pos_id: Tensor, act_id: Tensor, probe: Tensor | None) -> Tensor:
        x = self.node_proj(self.node_fourier(bias))
        if probe is not None:
            x = x + probe
        x = self.node_in(x) + self.pos_embed(pos_id)
        if self.act_embed is not None:
            x = x + self.act_embed(act_id)
        return x

    def _edges(self, kernels: Tensor, reversed_: Tensor, edge_type: Tensor) -> Tensor:
        """``edge_in(edge_proj(fourier(inputs)) + type_embed(edge_type))``, the two linear maps
        composed into one."""
        weight = self.edge_in.weight @ self.edge_proj.weight
        per_type = (self.edge_proj.bias + self.type_embed.weight) @ self.edge_in.weight.T + self.edge_in.bias
        return self.edge_fourier(edge_inputs(kernels, reversed_), weight, F.embedding(edge_type, per_type))

    def forward(self, weights: Weights) -> tuple[NeuralGraph, Tensor, Tensor]:
        """The edge-list layout: ``(graph, x (N, d_node), e (E, d_edge))``."""
        graph = self.converter(self.normalise(weights))
        probe = self.probes(weights, graph, self.converter) if self.probes is not None else None
        x = self._nodes(graph.x, graph.pos_id, graph.act_id, probe)
        return graph, x, self._edges(graph.edge_attr, graph.edge_reversed[:, None], graph.edge_type)

    def layered(self, ws: WeightSpace) -> tuple[LayeredGraph, Tensor, list[Tensor]]:
        """The layered layout of one architecture's networks: ``(ops, x (B, N, d_node),
        e)``, ``e`` one tensor per block of ``LayeredStructure.of(ws.spec)``."""
        structure = LayeredStructure.of(ws.spec)
        template = self.converter.template(ws.spec, ws.device)
        norm = self.normalise(ws)
        bias = torch.cat([norm.weights[0].new_zeros(len(ws), ws.spec.widths[0]), *norm.biases], dim=1)
        probe = self.probes.layered(ws) if self.probes is not None else None
        x = self._nodes(bias.unsqueeze(-1), template.pos_id, template.act_id, probe)
        kernels = self.converter.padded_kernels(norm)
        eye = self.converter.identity_kernel(kernels[0])
        e = []
        for block in structure.blocks:
            if block.diagonal:
                w = eye.expand(len(ws), block.joined, -1)
            else:
                forward_layer = min(block.src, block.dst)
                w = kernels[forward_layer].transpose(1, 2) if block.reversed else kernels[forward_layer]
            reversed_ = torch.tensor(block.reversed, device=ws.device)
            e.append(self._edges(w, reversed_, torch.tensor(block.edge_type, device=ws.device)))
        return LayeredGraph(structure, len(ws)), x, e

    def embed(self, weights: Weights, body: Callable[..., Tensor], layered: list[bool]) -> Tensor:
        """``body(ops, x, e) -> (n, F)`` on the batch, as ``(B, F)`` in batch order: each
        architecture group flagged in ``layered`` in the layered layout, the others together
        as one edge list (every network's features depend on it alone)."""
        if not any(layered):
            graph, x, e = self(weights)
            return body(EdgeListGraph(graph), x, [e])
        if isinstance(weights, WeightSpace):
            return body(*self.layered(weights))
        parts = [(weights.positions(g), body(*self.layered(ws)))
                 for g, ws in enumerate(weights.groups) if layered[g]]
        if not all(layered):
            rest, others = weights.only([g for g, flag in enumerate(layered) if not flag])
            graph, x, e = self(others)
            parts.append((rest, body(EdgeListGraph(graph), x, [e])))
        out = parts[0][1].new_empty((len(weights), *parts[0][1].shape[1:]))
        for positions, features in parts:
            out[positions.to(out.device)] = features
        return out


READOUTS = ("output", "mean")


def readout_dim(readout: str, specs: tuple[ArchSpec, ...], dim: int) -> int:
    """Size of a graph readout's output (``methods.layouts``: ``output`` concatenates the
    output neurons' features, ``mean`` averages all nodes); ``output`` needs one output
    width for all specs."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if readout == "mean":
        return dim
    widths = {s.widths[-1] for s in specs}
    if len(widths) > 1:
        raise UnsupportedArchitecture(
            f"readout 'output' concatenates the output neurons, but the architectures have "
            f"{sorted(widths)} outputs; use readout='mean'")
    return widths.pop() * dim
