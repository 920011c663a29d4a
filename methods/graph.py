"""Network -> neural graph conversion (Kofinas et al., ICLR 2024, section 2).

Nodes are neurons: every input neuron, every hidden neuron (a conv channel is one
neuron) and every output neuron; a node's feature is its bias (0 for inputs). Edges are
weights: a linear weight ``W[o, j]`` is an edge from neuron ``j`` of one neuron layer to
neuron ``o`` of the next; a conv kernel ``W[o, j]`` becomes one edge whose feature is the
kernel flattened after central zero-padding to the largest kernel of the task (a linear
weight sits at the kernel centre). A residual connection ``(a, b)`` (``datasets.spec``)
becomes one edge from neuron ``i`` of layer ``a`` to neuron ``i`` of layer ``b`` for each
of the ``min(width_a, width_b)`` neurons it joins (the authors' ``get_residuals_graph``),
with the fixed identity weight (1 at the kernel centre) and its own edge type.
With ``reverse=True`` every edge also appears reversed (flagged ``edge_reversed``), as in
the authors' ``rev_edge_features``.

A batch of one architecture converts without a loop over networks: the per-network index
template is built once per architecture and cached, then offset. A ``MixedWeights`` loops
over its architecture groups only. Every size comes from the templates, never from the
data, so a compiled step converts inside its one graph (no host synchronisation). The result,
a :class:`NeuralGraph`, holds the tensors of a ``torch_geometric`` batch laid out in batch
order (``batch``, ``ptr``; its tensors go to ``to_dense_batch``, ``scatter`` and the like);
:meth:`NeuralGraph.to_batch` gives the ``torch_geometric`` ``Batch`` itself (built outside
a compiled step: dynamo loses the attributes of a ``Batch`` made in a function it inlines).
Edges are sorted by destination: ``dst_ptr`` is their CSR pointer (segment reductions),
``edge_pair`` the index of each edge's reverse, ``edge_ptr`` each network's first edge.

Node metadata: ``layer`` (neuron layer index), ``pos_id`` (positional-embedding id: one
per input neuron, one per output neuron, one shared by all neurons of a hidden layer, so
hidden neurons stay indistinguishable), ``act_id`` (activation producing the neuron's
value; inputs have their own id), ``is_output``. ``out_nodes`` ``(B, n_out)`` lists each
network's output nodes in order when every architecture has the same output width.
:meth:`GraphConverter.to_weights` inverts the conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch

from datasets.spec import ACTIVATIONS, ArchSpec
from datasets.weights import MixedWeights, Weights, WeightSpace, as_mixed

EDGE_TYPES = ("linear", "conv", "residual")
INPUT_ACTIVATION = len(ACTIVATIONS)  # activation id of input neurons
NUM_ACTIVATION_IDS = len(ACTIVATIONS) + 1


@dataclass(frozen=True)
class Template:
    """Index structure of one network of an architecture. Edges are sorted by destination
    (then source), so a batch's edges are in CSR order and ``dst_ptr`` is valid. The
    *canonical* edge order is: weight edges layer by layer (``o``-major), residual edges,
    then (if reversed) all of them again reversed; ``order[k]`` is the canonical index of
    sorted edge ``k`` and ``weight_pos[c]`` the sorted position of canonical weight edge ``c``."""

    num_nodes: int
    edge_index: Tensor  # (2, E)
    edge_type: Tensor  # (E,)
    edge_reversed: Tensor  # (E,) bool
    edge_pair: Tensor  # (E,) the same weight in the other direction (itself if none)
    order: Tensor  # (E,)
    weight_pos: Tensor  # (num weight edges,)
    in_ptr: Tensor  # (N,) first sorted edge into each node
    layer: Tensor  # (N,)
    pos_id: Tensor  # (N,)
    act_id: Tensor  # (N,)
    is_output: Tensor  # (N,) bool
    io_nodes: Tensor  # the input neurons, then the output neurons
    into_io: Tensor  # the sorted edges whose destination is an input or output neuron
    from_io: Tensor  # ... whose source is one
    from_hidden: Tensor  # ... whose source is a hidden neuron

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def to(self, device: torch.device) -> Template:
        return Template(self.num_nodes, *(getattr(self, f.name).to(device) for f in fields(self)[1:]))


@dataclass(frozen=True)
class GraphLayout:
    """Where each network of a converted batch came from, for :meth:`GraphConverter.to_weights`."""

    specs: tuple[ArchSpec, ...]
    group_index: Tensor = field(repr=False)
    row_index: Tensor = field(repr=False)
    positions: tuple[Tensor, ...] = field(repr=False)  # per group: batch positions, row order
    mixed: bool = False


@dataclass(frozen=True)
class NeuralGraph:
    """A batch of neural graphs (module docstring): node features ``x (N, 1)`` (biases),
    ``edge_index (2, E)``, ``edge_attr (E, kernel_size)``, edge and node metadata, the batch
    vectors, and the ``layout`` that :meth:`GraphConverter.to_weights` reads back."""

    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    edge_type: Tensor
    edge_reversed: Tensor
    edge_pair: Tensor
    batch: Tensor
    ptr: Tensor
    edge_ptr: Tensor
    dst_ptr: Tensor
    is_output: Tensor
    out_nodes: Tensor | None
    layer: Tensor
    pos_id: Tensor
    act_id: Tensor
    layout: GraphLayout = field(repr=False)

    @property
    def num_graphs(self) -> int:
        return len(self.ptr) - 1

    @property
    def num_nodes(self) -> int:
        return len(self.x)

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def to_batch(self) -> Batch:
        """The ``torch_geometric`` ``Batch`` of these graphs (every tensor, and ``layout``)."""
        graph = Batch(**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "layout"})
        graph.layout = self.layout
        graph._num_graphs = self.num_graphs
        return graph


def _kernel(spec: ArchSpec) -> tuple[int, int]:
    return (max(layer.kernel[0] for layer in spec.layers), max(layer.kernel[1] for layer in spec.layers))


def _central_padding(kernel: tuple[int, int], full: tuple[int, int]) -> tuple[int, int, int, int]:
    """``F.pad`` amounts (left, right, top, bottom) that centre ``kernel`` in ``full``."""
    top, left = (full[0] - kernel[0]) // 2, (full[1] - kernel[1]) // 2
    return left, full[1] - kernel[1] - left, top, full[0] - kernel[0] - top


class GraphConverter:
    """Converts weights of the given architectures to neural graphs and back.

    ``specs`` fix the positional-embedding ids (inputs ``0..max_in-1``, hidden layer ``k``
    at ``max_in + k - 1``, outputs after ``max_in + max_hidden``) and the edge-feature
    size (the largest kernel, ``kernel_size = kh * kw``)."""

    def __init__(self, specs: tuple[ArchSpec, ...] | list[ArchSpec], reverse: bool = True) -> None:
        specs = tuple(specs)
        self.specs = specs
        self.reverse = reverse
        self.kernel = (max(_kernel(s)[0] for s in specs), max(_kernel(s)[1] for s in specs))
        self.max_inputs = max(s.widths[0] for s in specs)
        self.max_hidden = max(len(s.hidden) for s in specs)
        self.max_outputs = max(s.widths[-1] for s in specs)
        self.num_positions = self.max_inputs + self.max_hidden + self.max_outputs
        self._templates: dict[tuple[ArchSpec, torch.device], Template] = {}

    @property
    def kernel_size(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def template(self, spec: ArchSpec, device: torch.device | str = "cpu") -> Template:
        """The cached index template of ``spec``."""
        device = torch.device(device)
        key = (spec, device)
        if key not in self._templates:
            cpu = (spec, torch.device("cpu"))
            if cpu not in self._templates:
                self._templates[cpu] = self._build_template(spec)
            self._templates[key] = self._templates[cpu].to(device)
        return self._templates[key]

    def _build_template(self, spec: ArchSpec) -> Template:
        k = _kernel(spec)
        if (k[0] > self.kernel[0] or k[1] > self.kernel[1] or spec.widths[0] > self.max_inputs
                or len(spec.hidden) > self.max_hidden or spec.widths[-1] > self.max_outputs):
            raise ValueError(f"architecture {spec.describe()} does not fit this converter's "
                             f"positions or kernel size; build it with that spec")
        widths = spec.widths
        offsets = torch.tensor((0, *widths)).cumsum(0).tolist()
        src, dst, etype = [], [], []
        for i, layer in enumerate(spec.layers):
            out, inp = layer.out_features, layer.in_features
            o, j = torch.meshgrid(torch.arange(out), torch.arange(inp), indexing="ij")
            src.append(offsets[i] + j.flatten())
            dst.append(offsets[i + 1] + o.flatten())
            etype.append(torch.full((out * inp,), EDGE_TYPES.index(layer.kind)))
        num_weight_edges = sum(t.numel() for t in src)
        for (a, b), joined in zip(spec.residual, spec.residual_joined):
            idx = torch.arange(joined)
            src.append(offsets[a] + idx)
            dst.append(offsets[b] + idx)
            etype.append(torch.full((joined,), EDGE_TYPES.index("residual")))
        src_t, dst_t, etype_t = torch.cat(src), torch.cat(dst), torch.cat(etype)
        forward_edges = src_t.numel()
        reversed_ = torch.zeros(forward_edges, dtype=torch.bool)
        pair = torch.arange(forward_edges)
        if self.reverse:
            src_t, dst_t = torch.cat([src_t, dst_t]), torch.cat([dst_t, src_t])
            etype_t = etype_t.repeat(2)
            reversed_ = torch.cat([reversed_, ~reversed_])
            pair = torch.cat([pair + forward_edges, pair])
        num_nodes = offsets[-1]
        order = torch.argsort(dst_t * num_nodes + src_t, stable=True)
        position = torch.argsort(order)
        in_degree = torch.bincount(dst_t, minlength=num_nodes)

        layer_of = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths))
        neuron = torch.cat([torch.arange(w) for w in widths])
        is_output = layer_of == len(widths) - 1
        pos_id = torch.where(layer_of == 0, neuron, self.max_inputs + layer_of - 1)
        pos_id = torch.where(is_output, self.max_inputs + self.max_hidden + neuron, pos_id)
        acts = torch.tensor([INPUT_ACTIVATION] + [ACTIVATIONS.index(spec.activation_of(k))
                                                  for k in range(1, len(widths))])
        io = (layer_of == 0) | is_output
        src_io, dst_io = io[src_t[order]], io[dst_t[order]]
        return Template(num_nodes, torch.stack([src_t, dst_t])[:, order], etype_t[order],
                        reversed_[order], position[pair[order]], order,
                        position[:num_weight_edges], in_degree.cumsum(0) - in_degree,
                        layer_of, pos_id, acts[layer_of], is_output, torch.nonzero(io).squeeze(1),
                        torch.nonzero(dst_io).squeeze(1), torch.nonzero(src_io).squeeze(1),
                        torch.nonzero(~src_io).squeeze(1))

    def padded_kernels(self, ws: WeightSpace) -> list[Tensor]:
        """Per layer ``(B, out, in, kernel_size)``: every weight as a kernel flattened after
        central zero-padding to the converter's kernel (a linear weight at the centre)."""
        parts = []
        for layer, w in zip(ws.spec.layers, ws.weights):
            w = w if layer.kind == "conv" else w[..., None, None]
            w = F.pad(w, _central_padding(tuple(w.shape[-2:]), self.kernel))
            parts.append(w.flatten(-2))
        return parts

    def identity_kernel(self, like: Tensor) -> Tensor:
        """``(kernel_size,)``: the kernel of a residual edge (1 at the centre)."""
        eye = like.new_zeros(self.kernel)
        eye[self.kernel[0] // 2, self.kernel[1] // 2] = 1
        return eye.flatten()

    def _edge_values(self, ws: WeightSpace) -> Tensor:
        """``(B, E_forward, kernel_size)``: padded kernels of every weight edge, then the
        identity kernels of the residual edges."""
        parts = [w.reshape(len(ws), -1, self.kernel_size) for w in self.padded_kernels(ws)]
        eye = self.identity_kernel(ws.weights[0])
        for joined in ws.spec.residual_joined:
            parts.append(eye.expand(len(ws), joined, -1))
        return torch.cat(parts, dim=1)

    def __call__(self, weights: Weights) -> NeuralGraph:
        """Convert a batch of networks to one batch of graphs, in batch order."""
        mixed = as_mixed(weights)
        device, dtype = mixed.device, mixed.groups[0].dtype
        templates = [self.template(g.spec, device) for g in mixed.groups]
        nodes_per = torch.tensor([t.num_nodes for t in templates], device=device)[mixed.group_index]
        edges_per = torch.tensor([t.num_edges for t in templates], device=device)[mixed.group_index]
        ptr = F.pad(nodes_per.cumsum(0), (1, 0))
        edge_ptr = F.pad(edges_per.cumsum(0), (1, 0))
        # the sizes from the groups' shapes, not from ptr: no host synchronisation (a compiled step stays one graph)
        num_nodes = sum(len(ws) * t.num_nodes for ws, t in zip(mixed.groups, templates))
        num_edges = sum(len(ws) * t.num_edges for ws, t in zip(mixed.groups, templates))

        x = torch.zeros(num_nodes, 1, device=device, dtype=dtype)
        edge_attr = torch.empty(num_edges, self.kernel_size, device=device, dtype=dtype)
        edge_index = torch.empty(2, num_edges, device=device, dtype=torch.long)
        edge_pair = torch.empty(num_edges, device=device, dtype=torch.long)
        dst_ptr = torch.full((num_nodes + 1,), num_edges, device=device, dtype=torch.long)
        edge_type = torch.empty(num_edges, device=device, dtype=torch.long)
        edge_reversed = torch.empty(num_edges, device=device, dtype=torch.bool)
        node_meta = {k: torch.empty(num_nodes, device=device, dtype=torch.long)
                     for k in ("layer", "pos_id", "act_id")}
        is_output = torch.empty(num_nodes, device=device, dtype=torch.bool)
        batch = torch.empty(num_nodes, device=device, dtype=torch.long)
        positions = tuple(mixed.positions(g).to(device) for g in range(len(mixed.groups)))
        for ws, t, pos in zip(mixed.groups, templates, positions):
            n = pos.numel()
            node_start, edge_start = ptr[pos], edge_ptr[pos]
            node_ids = (node_start[:, None] + torch.arange(t.num_nodes, device=device)).flatten()
            edge_ids = (edge_start[:, None] + torch.arange(t.num_edges, device=device)).flatten()
            biases = torch.cat(ws.biases, dim=1)  # (n, N - inputs)
            x[node_ids.view(n, -1)[:, ws.spec.widths[0]:].flatten(), 0] = biases.flatten()
            values = self._edge_values(ws)
            if self.reverse:
                values = torch.cat([values, values], dim=1)
            edge_attr[edge_ids] = values[:, t.order].reshape(-1, self.kernel_size)
            dst_ptr[node_ids] = (edge_start[:, None] + t.in_ptr).flatten()
            edge_index[:, edge_ids] = (t.edge_index[:, None, :] + node_start[None, :, None]).reshape(2, -1)
            edge_pair[edge_ids] = (t.edge_pair[None, :] + edge_start[:, None]).flatten()
            edge_type[edge_ids] = t.edge_type.repeat(n)
            edge_reversed[edge_ids] = t.edge_reversed.repeat(n)
            for key, tensor in node_meta.items():
                tensor[node_ids] = getattr(t, key).repeat(n)
            is_output[node_ids] = t.is_output.repeat(n)
            batch[node_ids] = pos.repeat_interleave(t.num_nodes)

        widths_out = {g.spec.widths[-1] for g in mixed.groups}
        out_nodes = None
        if len(widths_out) == 1:
            n_out = widths_out.pop()
            out_nodes = ptr[1:, None] - n_out + torch.arange(n_out, device=device)
        layout = GraphLayout(mixed.specs, mixed.group_index, mixed.row_index, positions,
                             isinstance(weights, MixedWeights))
        return NeuralGraph(x, edge_index, edge_attr, edge_type, edge_reversed, edge_pair, batch, ptr, edge_ptr,
                           dst_ptr, is_output, out_nodes, layout=layout, **node_meta)

    def node_ids(self, graph: NeuralGraph, group: int) -> Tensor:
        """``(n_g, N)``: node indices of the networks of ``graph.layout.specs[group]``, in
        that group's row order (rows of a per-group ``(n_g, N, ...)`` tensor land there)."""
        pos = graph.layout.positions[group]
        t = self.template(graph.layout.specs[group], graph.ptr.device)
        return graph.ptr[pos][:, None] + torch.arange(t.num_nodes, device=graph.ptr.device)

    def gather(self, graph: NeuralGraph, name: str, edges: bool = False) -> Tensor:
        """The batch indices of the template index set ``name`` (``io_nodes``, ``into_io``,
        ...: node indices, or edge indices with ``edges``) of every network of ``graph``,
        group by group, each group's networks in its row order. Its size comes from the
        templates, not from the data: no host synchronisation."""
        parts = []
        for g, spec in enumerate(graph.layout.specs):
            start = (graph.edge_ptr if edges else graph.ptr)[graph.layout.positions[g]]
            parts.append((start[:, None] + getattr(self.template(spec, start.device), name)).flatten())
        return torch.cat(parts)

    def weight_edges(self, graph: NeuralGraph, group: int) -> Tensor:
        """``(n_g, E_w)``: edge indices of the forward weight edges of the networks of
        ``graph.layout.specs[group]``, in that group's row order, layer by layer (``o``-major)."""
        pos = graph.layout.positions[group]
        t = self.template(graph.layout.specs[group], graph.ptr.device)
        return graph.edge_ptr[pos][:, None] + t.weight_pos

    def from_kernels(self, spec: ArchSpec, kernels: list[Tensor], biases: list[Tensor]) -> WeightSpace:
        """Inverse of :meth:`padded_kernels`: per layer ``(B, out, in, kernel_size)`` padded
        kernels and ``(B, out)`` biases -> the weights of ``spec`` (kernels cropped at the centre)."""
        weights = []
        for layer, k in zip(spec.layers, kernels):
            left, _, top, _ = _central_padding(layer.kernel, self.kernel)
            k = k.unflatten(-1, self.kernel)[..., top:top + layer.kernel[0], left:left + layer.kernel[1]]
            weights.append(k.reshape(k.shape[0], *layer.weight_shape).contiguous())
        return WeightSpace(spec, tuple(weights), tuple(b.contiguous() for b in biases))

    def to_weights(self, graph: NeuralGraph) -> Weights:
        """Inverse of :meth:`__call__`: biases from the nodes, weights from the forward
        weight edges (residual and reversed edges are implied by the spec)."""
        layout: GraphLayout = graph.layout
        groups = []
        for g, spec in enumerate(layout.specs):
            nodes = graph.x[self.node_ids(graph, g), 0]
            values = graph.edge_attr[self.weight_edges(graph, g)]
            groups.append(self.split(spec, nodes, values))
        if not layout.mixed:
            return groups[0]
        return MixedWeights(tuple(groups), layout.group_index, layout.row_index)

    def split(self, spec: ArchSpec, nodes: Tensor, values: Tensor) -> WeightSpace:
        """The weights of ``spec`` from per-network node values ``(B, N)`` (the biases; inputs
        ignored) and forward weight-edge values ``(B, E_w, kernel_size)`` in the order of
        :meth:`weight_edges`."""
        kernels, biases, node_at, edge_at = [], [], spec.widths[0], 0
        for layer in spec.layers:
            count = layer.out_features * layer.in_features
            kernels.append(values[:, edge_at:edge_at + count].unflatten(1, (layer.out_features, layer.in_features)))
            biases.append(nodes[:, node_at:node_at + layer.out_features])
            edge_at += count
            node_at += layer.out_features
        return self.from_kernels(spec, kernels, biases)


def degree_histogram(converter: GraphConverter, specs: tuple[ArchSpec, ...] | list[ArchSpec]) -> Tensor:
    """In-degree histogram over one graph of each architecture (PNA's degree scalers)."""
    counts = []
    for spec in specs:
        t = converter.template(spec)
        counts.append(torch.bincount(t.edge_index[1], minlength=t.num_nodes))
    return torch.bincount(torch.cat(counts))
