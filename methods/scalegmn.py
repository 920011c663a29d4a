"""ScaleGMN and ScaleGMN-B: scale-equivariant graph metanetworks (Kalogeropoulos, Bouritsas &
Panagakis, NeurIPS 2024, "Scale Equivariant Graph Metanetworks"; configuration from the
authors' ``configs/mnist_cls/scalegmn.yml`` and ``scalegmn_bidir.yml``).

A message-passing network on the neural graph of ``methods.graph`` (neurons are nodes with
their bias, weights are edges) whose hidden-neuron features are *equivariant* to the
scalings that preserve the input network's function, so that its output is invariant to
them: a hidden neuron ``i`` of an odd activation (sine, tanh) may have its incoming weights
and bias multiplied by ``q_i = +-1`` and its outgoing weights divided by it; one of a ReLU by
any ``q_i > 0``; one of the identity by any ``q_i != 0``. Edge ``j -> i`` then carries
``q_i w_ij / q_j`` and node ``i`` carries ``q_i b_i``. Every block keeps that law:

- Embedding: ``x_i = W_b b_i`` and ``e_ij = W_w w_ij`` (linear, no bias); hidden nodes are
  multiplied by a learned per-layer embedding, input/output nodes get a learned per-neuron
  embedding added (they are never scaled); edges are multiplied by a learned embedding of
  their (kind, source position, target position).
- Invariant map ``inv`` (per neuron, by its symmetry): sign -> ``rho(x) + rho(-x)``
  (symmetrisation), positive scale -> ``x / |x|`` (canonicalisation), both ->
  symmetrisation of the canonical form, none -> ``x``.
- Equivariant map ``f(x) = W x * phi(inv(x))`` (``W`` linear without bias; the authors'
  ScaleEq layer); on input/output neurons ``W x * phi_io(x)``.
- Message ``j -> i``: ``f(W_e e_ij * W_x x_j)`` (scales as ``q_i``), summed over ``j``;
  update ``x_i' = f([x_i, m_i])``; edge update ``e_ij' = W e_ij * phi(inv(x_i), inv(x_j))``
  (every layer but the last); skip ``x = W_s x + x'`` where the profile says so; dropout
  between layers. In the last layer only the messages to, and the updates of, input/output
  neurons are computed: nothing reads the hidden neurons after it.
- ScaleGMN-B adds backward messages ``i -> j`` with their own parameters. They must scale as
  ``q_j``: the edge feature is ``1 / w_ij`` (elementwise) when either end has a positive
  scaling, else ``w_ij`` (``1 / q = q`` for signs), as in the authors' code. A reciprocal
  cannot be exact and finite on every network (trained CNNs hold weights down to 1e-42), so
  ScaleGMN-B first maps each network to its canonical positive scale
  (``datasets.symmetry.canonical_scale``: every positively homogeneous neuron's incoming
  weights and bias of norm 1, computed without any constant or cutoff), which makes it
  invariant to positive rescaling by construction; the reciprocal of a canonical weight
  below :data:`TINY` in magnitude is 0 (zero-padding of smaller kernels included), a choice
  no rescaling can change. Its update reads ``[x_i, m_fw_i, m_bw_i]``.
- Readout: the output neurons' features concatenated (ScaleGMN-B: projected, and with the
  projected input neurons' features), then an MLP. Output and input neurons are never
  transformed, so this is invariant. Every MLP is ``Linear, LayerNorm, SiLU, Linear``.

Editing (task ``"edit"``; the authors' ``ScaleGMN_equiv`` and ``configs/mnist_editing``): the
last layer computes every message and node, its node update maps to one feature (which
scales as ``q_i``, like the bias ``b_i``) and its forward edge update to one feature per
kernel entry (which scales as ``q_i / q_j``, like ``w_ij``), without a skip; read back as
weights and biases these are the predicted change, so the change of a flipped or scaled
neuron's incoming weights and bias flips or scales with it and that of its outgoing weights
by the inverse: the edited network moves with the input and renders the same (ScaleGMN-B
predicts the change of its canonical network and maps it back with the same factors). Each tensor's
change is scaled by ``datasets.normalisation.ChangeScale`` (learned, from 0.01: the authors'
``out_scale``; here times the layer's standard deviation, which undoes the division below),
so the first edit is near the identity. A whole-period phase shift changes only the wrapped
copy the model reads, so the change is the same and the edited network moves by the same
shift. The authors' editing runs use 10 layers of 128 with dropout 0.1 and sign symmetry;
ours keeps the profile.

Before conversion, the bias of every hidden sine neuron is wrapped into ``[-pi/omega,
pi/omega]`` (the authors canonicalise the phase of their INR datasets beforehand), which makes
the model invariant to whole-period phase shifts as well. The weights and biases of each
layer are divided by their training-split standard deviation (no mean is subtracted: a shift
would break the sign and scale laws). ``inv``'s canonical form ``x / |x|`` is computed on
``x / max|x|`` (no square underflows) and is 0 for ``x = 0``: exact for every feature vector
the dtype represents with full precision (:func:`direction`).

Deliberate differences from the authors' code: the division by the standard deviation (they
feed raw weights); heterogeneous batches (mixed activations per
neuron, the authors' "hetero" mode generalised; mixed widths and depths; CNNs with residuals
through ``methods.graph``); the edge embedding is indexed by position pairs, which also
covers residual edges; ScaleGMN-B updates the backward edge features whatever the symmetry
(the authors update them for positive scaling only); the edge update reads input/output
neurons' features as they are (the authors pass them through ``inv`` too).

Initialisation (not fixed by the paper; with PyTorch's defaults the features shrink about
tenfold per layer through the products): the bias-free linear maps are variance-preserving
(normal, std ``1 / sqrt(fan_in)``, the message map's also divided by the square root of the
mean in-degree, since messages are summed) and every gate MLP starts near 1 (last bias 1).

Paper profiles: hidden 128, 4 layers, dropout 0.2, AdamW lr 1e-3 with weight decay 0.01
(ScaleGMN: skip connections and edge embeddings) or 0.001 (ScaleGMN-B: positional embeddings
in the message and update MLPs, no skips, no edge embeddings). Quick profiles: hidden 32, 3
layers (ScaleGMN-B: 2), no dropout (``scripts/threshold_study.py``, docs/notes/threshold-study.md:
on the default data hidden 32 reached 85.6% / 51.7% validation accuracy where 16 reached
73.8% / 47.2%, measured before versions 2 and 3 of these methods).
Parameter counts for the SIREN 2-32-32-1 input with 10 classes: ScaleGMN paper 1,598,730 / quick 75,050; ScaleGMN-B paper 3,039,754 / quick 82,698.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datasets.method_table import register_method
from datasets.normalisation import ChangeScale, LayerStats
from datasets.spec import ODD_ACTIVATIONS, POSITIVE_HOMOGENEOUS, ArchSpec
from datasets.symmetry import canonical_scale, component_groups, scale_neurons
from datasets.weight_dataset import TaskInfo
from datasets.weights import Weights, WeightSpace, as_mixed, as_shape
from methods.graph import EDGE_TYPES, GraphConverter, NeuralGraph

SIGN, SCALE = 1, 2  # bits of a neuron's symmetry kind

PROFILES = {
    "scalegmn": {
        "quick": {"hidden": 32, "layers": 3, "dropout": 0.0, "skip": True, "edge_positions": True,
                  "positions_in_mlps": False},
        "paper": {"hidden": 128, "layers": 4, "dropout": 0.2, "skip": True, "edge_positions": True,
                  "positions_in_mlps": False},
    },
    "scalegmn-b": {
        "quick": {"hidden": 32, "layers": 2, "dropout": 0.0, "skip": False, "edge_positions": False,
                  "positions_in_mlps": True},
        "paper": {"hidden": 128, "layers": 4, "dropout": 0.2, "skip": False, "edge_positions": False,
                  "positions_in_mlps": True},
    },
}


def neuron_kinds(spec: ArchSpec) -> Tensor:
    """``(N,)`` per neuron in graph order: bit ``SIGN`` if its sign may flip, bit ``SCALE`` if
    it may be scaled by a positive factor (its whole residual component, as
    ``datasets.symmetry``); 0 for input, output and neurons tied to them."""
    offsets = [0, *itertools.accumulate(spec.widths)]
    kinds = torch.zeros(offsets[-1], dtype=torch.long)
    for group in component_groups(spec):
        acts = {spec.activation_of(k) for k in group.layers}
        kind = SIGN * (acts <= ODD_ACTIVATIONS) + SCALE * (acts <= POSITIVE_HOMOGENEOUS)
        for k in group.layers:
            kinds[offsets[k] + torch.tensor(group.neurons)] = kind
    return kinds


def wrap_phase(ws: WeightSpace) -> WeightSpace:
    """Bias of every hidden sine neuron moved by whole periods ``2 pi / omega`` into
    ``[-pi/omega, pi/omega]``; odd in the bias, so it commutes with sign flips."""
    biases = list(ws.biases)
    for k in ws.spec.hidden:
        layer = ws.spec.layers[k - 1]
        if layer.activation == "sine":
            period = 2 * math.pi / layer.omega
            biases[k - 1] = biases[k - 1] - period * torch.round(biases[k - 1] / period)
    return WeightSpace(ws.spec, ws.weights, tuple(biases))


def divide_by_std(ws: WeightSpace, stats: LayerStats | None) -> WeightSpace:
    """Each layer's weights and biases divided by their standard deviation in ``stats``."""
    if stats is None:
        return ws
    w_std, b_std = stats.weight_std.to(ws.device, ws.dtype), stats.bias_std.to(ws.device, ws.dtype)
    return WeightSpace(ws.spec, tuple(w / w_std[i] for i, w in enumerate(ws.weights)),
                       tuple(b / b_std[i] for i, b in enumerate(ws.biases)))


TINY = 1e-6  # canonical weights below this magnitude count as absent in reciprocal (backward) messages


def reciprocal(t: Tensor) -> Tensor:
    """Elementwise ``1 / t``, with zeros (padding of smaller kernels) and weights smaller than
    :data:`TINY` in magnitude kept at zero, so that it stays finite in float32. Applied to
    canonical weights (``datasets.symmetry.canonical_scale``), which a rescaling does not
    move, so it keeps the scale invariance exact."""
    kept = t.abs() >= TINY
    return torch.where(kept, 1 / torch.where(kept, t, torch.ones_like(t)), torch.zeros_like(t))


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """The authors' MLP: ``Linear, LayerNorm, SiLU, Linear``."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, d_out))


def gate_mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """:func:`mlp` whose output starts near 1 (its last bias is 1), for multiplicative gates."""
    net = mlp(d_in, hidden, d_out)
    nn.init.ones_(net[-1].bias)
    return net


def scaling_linear(d_in: int, d_out: int, fan_in: float = 1.0) -> nn.Linear:
    """A linear map without bias (it commutes with per-neuron scalars), variance-preserving
    at initialisation (normal, std ``1 / sqrt(d_in * fan_in)``; ``fan_in``: how many such
    terms are summed after it)."""
    lin = nn.Linear(d_in, d_out, bias=False)
    nn.init.normal_(lin.weight, std=(d_in * fan_in) ** -0.5)
    return lin


def mean_degree(converter: GraphConverter, specs: tuple[ArchSpec, ...], end: int) -> float:
    """Mean number of edges per node that has any, at edge end ``end`` (1: in-degree, 0:
    out-degree), over one network of each architecture."""
    degrees = []
    for spec in specs:
        t = converter.template(spec)
        deg = torch.bincount(t.edge_index[end], minlength=t.num_nodes)
        degrees.append(deg[deg > 0].double())
    return torch.cat(degrees).mean().item()


Mask = Tensor | bool  # per-row (n, 1) mask, or the same answer for every row


@dataclass(frozen=True)
class Rows:
    """Which symmetry each row of a feature tensor obeys: ``sign`` / ``scale`` are ``(n, 1)``
    masks, or ``True`` / ``False`` when the answer is the same for every hidden row (input and
    output rows are never transformed, so either answer is right for them); ``io`` holds the
    indices of the input/output rows, ``hidden`` those of the hidden rows where they are
    needed. Every index set comes from the graph templates, so its size never depends on the
    data (a compiled step stays one graph)."""

    sign: Mask
    scale: Mask
    io: Tensor
    hidden: Tensor | None = None

    def take(self, index: Tensor, io: Tensor, hidden: Tensor | None = None) -> "Rows":
        """The rows of ``index`` (e.g. each edge's receiving node), whose input/output rows are
        ``io`` and hidden rows ``hidden`` (indices into ``index``)."""
        pick = lambda m: m[index] if isinstance(m, Tensor) else m  # noqa: E731
        return Rows(pick(self.sign), pick(self.scale), io, hidden)


def kind_mask(kinds: Tensor, bit: int, hidden: list[tuple[int, ...]]) -> Mask:
    """Per row whether its symmetry ``kind`` has ``bit``: ``True`` / ``False`` where every
    hidden neuron of the batch agrees (decided from ``hidden``, the hidden neurons' kinds of
    each architecture in the batch, so no host synchronisation), else an ``(n, 1)`` mask."""
    every = all(kind & bit for kinds_of in hidden for kind in kinds_of)
    if every or not any(kind & bit for kinds_of in hidden for kind in kinds_of):
        return every and any(hidden)
    return (kinds & bit).bool()[:, None]


def select(mask: Mask, a: Tensor, b: Tensor) -> Tensor:
    """``a`` where ``mask``, else ``b``."""
    return torch.where(mask, a, b) if isinstance(mask, Tensor) else (a if mask else b)


def direction(x: Tensor) -> Tensor:
    """``x / |x|`` per row, computed on ``x / max|x|`` so that no square underflows. A row
    whose largest entry is below the dtype's smallest normal number (a zero row, or
    subnormals, whose direction the dtype cannot carry) gives 0: in float64 no network's
    features come near that, so the result is exact; in float32 the gradient stays finite."""
    top = x.detach().abs().amax(dim=-1, keepdim=True)
    normal = top >= torch.finfo(x.dtype).tiny
    unit = torch.where(normal, x / torch.where(normal, top, torch.ones_like(top)), torch.ones_like(x))
    return torch.where(normal, unit / unit.norm(dim=-1, keepdim=True), torch.zeros_like(x))


class Invariant(nn.Module):
    """``inv``: per row, the symmetrisation ``rho(x) + rho(-x)`` for signs, ``x / |x|`` for
    positive scales, both for both, ``x`` for neither. ``rho`` exists only if ``signs``
    (some neurons of the task have a sign symmetry)."""

    def __init__(self, dim: int, hidden: int, signs: bool) -> None:
        super().__init__()
        self.rho = mlp(dim, hidden, dim) if signs else None

    def symmetrised(self, x: Tensor) -> Tensor:
        """``rho(x) + rho(-x)``, sharing the first matmul and merging the last."""
        first, norm, act, last = self.rho
        a, b = F.linear(x, first.weight), first.bias
        return last(act(norm(b + a)) + act(norm(b - a))) + last.bias

    def forward(self, x: Tensor, rows: Rows) -> Tensor:
        if rows.scale is not False:
            x = select(rows.scale, direction(x), x)
        if rows.sign is not False:
            x = select(rows.sign, self.symmetrised(x), x)
        return x


def with_extra(x: Tensor, extra: Tensor | None) -> Tensor:
    """``[x, extra]``, or ``x`` without extra features."""
    return x if extra is None else torch.cat([x, extra], dim=-1)


class Equivariant(nn.Module):
    """``f(x) = W x * phi([inv(x), extra])``; on input/output rows ``W x * phi_io([x, extra])``.
    ``extra`` (positional embeddings) is invariant. ``io_only``: every row it will see is an
    input/output row (the last layer, whose hidden neurons nothing reads); ``hidden_only``:
    none is (the edit's last backward messages, whose only input/output receivers are input
    neurons, which have no bias to change)."""

    def __init__(self, d_in: int, d_out: int, hidden: int, signs: bool, d_extra: int = 0,
                 fan_in: float = 1.0, io_only: bool = False, hidden_only: bool = False) -> None:
        super().__init__()
        self.lin = scaling_linear(d_in, d_out, fan_in)
        self.phi_io = None if hidden_only else gate_mlp(d_in + d_extra, hidden, d_out)
        self.inv = None if io_only else Invariant(d_in, hidden, signs)
        self.phi = None if io_only else gate_mlp(d_in + d_extra, hidden, d_out)

    def forward(self, x: Tensor, rows: Rows | None, extra: Tensor | None = None) -> Tensor:
        """``rows``: the rows' symmetries; ``None`` when all are input/output rows."""
        if rows is None:
            return self.lin(x) * self.phi_io(with_extra(x, extra))
        gate = self.phi(with_extra(self.inv(x, rows), extra))
        if self.phi_io is not None:
            io = rows.io
            gate_io = self.phi_io(with_extra(x[io], None if extra is None else extra[io]))
            # selected by a mask, not written over ``gate`` with index_put: inductor (torch 2.13,
            # CPU) miscompiled rows gathered downstream of the latter in a training graph
            on_io = torch.zeros(len(x), 1, dtype=torch.bool, device=x.device).index_fill(0, io, True)
            gate = torch.where(on_io, gate.new_zeros(gate.shape).index_put((io,), gate_io), gate)
        return self.lin(x) * gate


class EdgeUpdate(nn.Module):
    """``e_ij' = W e_ij * phi([inv(x_i), inv(x_j)])`` (``inv`` of an input/output neuron is its
    feature itself); the first layer of ``phi`` runs on the nodes (its two halves), before
    gathering. ``d_out``: the output size (default ``dim``)."""

    def __init__(self, dim: int, hidden: int, signs: bool, d_out: int | None = None) -> None:
        super().__init__()
        d_out = dim if d_out is None else d_out
        self.lin = scaling_linear(dim, d_out)
        self.inv = Invariant(dim, hidden, signs)
        self.first_send = nn.Linear(dim, hidden)
        self.first_receive = nn.Linear(dim, hidden, bias=False)
        self.rest = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, d_out))
        nn.init.ones_(self.rest[-1].bias)

    def forward(self, x: Tensor, rows: Rows, e: Tensor, send: Tensor, receive: Tensor) -> Tensor:
        inv = self.inv(x, rows)
        inv = inv.index_put((rows.io,), x[rows.io].to(inv.dtype))  # input/output neurons: as they are
        h = self.first_send(inv).index_select(0, send) + self.first_receive(inv).index_select(0, receive)
        return self.lin(e) * self.rest(h)


@dataclass(frozen=True)
class Direction:
    """One direction of message passing: who sends and who receives along each edge, the
    receivers' symmetry rows, and the edge features' raw values."""

    send: Tensor
    receive: Tensor
    rows: Rows
    values: Tensor


RECEIVERS = ("all", "io", "hidden")


class Messages(nn.Module):
    """Messages of one direction, ``f(W_e e * W_x x_send)``, summed at the receivers; and
    that direction's edge update to ``edge_out`` features (none if ``None``). ``receivers``:
    which neurons get messages: ``"all"``, only input/output neurons (``"io"``: the last
    layer of the invariant model, whose readout reads nothing else) or only hidden neurons
    (``"hidden"``: the edit's last backward direction, see :class:`Equivariant`)."""

    def __init__(self, dim: int, signs: bool, d_extra: int, fan_in: float, edge_out: int | None,
                 receivers: str = "all") -> None:
        super().__init__()
        if receivers not in RECEIVERS:
            raise ValueError(f"receivers must be one of {RECEIVERS}, got {receivers!r}")
        self.lin_x = scaling_linear(dim, dim)
        self.lin_e = scaling_linear(dim, dim)
        self.fn = Equivariant(dim, dim, dim, signs, d_extra, fan_in, io_only=receivers == "io",
                              hidden_only=receivers == "hidden")
        self.receivers = receivers
        self.edge_update = None if edge_out is None else EdgeUpdate(dim, dim, signs, edge_out)

    def forward(self, x: Tensor, e: Tensor, d: Direction, extra: Tensor | None) -> Tensor:
        send, receive, rows = d.send, d.receive, d.rows
        if self.receivers == "io":
            keep = rows.io  # the edges into input/output neurons
            send, receive, e, rows = send[keep], receive[keep], e[keep], None
        elif self.receivers == "hidden":
            keep = rows.hidden  # the edges into hidden neurons
            send, receive, e, rows = send[keep], receive[keep], e[keep], rows.take(keep, keep[:0])
        v = self.lin_e(e) * self.lin_x(x).index_select(0, send)
        msg = self.fn(v, rows, None if extra is None else extra.index_select(0, send))
        return torch.zeros_like(x).index_add_(0, receive, msg.to(x.dtype))  # autocast may give bf16 messages


class ScaleGMN(nn.Module):
    """ScaleGMN (``bidirectional=False``) or ScaleGMN-B, with an invariant readout, or with
    ``edit`` the equivariant output: a change of every weight and bias."""

    def __init__(self, info: TaskInfo, *, hidden: int, layers: int, dropout: float, skip: bool,
                 edge_positions: bool, positions_in_mlps: bool, bidirectional: bool,
                 edit: bool = False) -> None:
        super().__init__()
        self.specs = tuple(info.specs)
        self.stats = dict(info.stats)
        self.converter = GraphConverter(self.specs, reverse=False)
        self._kinds = {spec: neuron_kinds(spec) for spec in self.specs}
        self._hidden_kinds = {spec: tuple(kinds[spec.widths[0]:len(kinds) - spec.widths[-1]].tolist())
                              for spec, kinds in self._kinds.items()}
        signs = any(bool((kinds & SIGN).any()) for kinds in self._kinds.values())
        self.bidirectional, self.dropout, self.positions_in_mlps = bidirectional, dropout, positions_in_mlps
        self.edit = edit
        dirs = 2 if bidirectional else 1
        positions = self.converter.num_positions
        self.embed_bias = scaling_linear(1, hidden)
        self.embed_weight = scaling_linear(self.converter.kernel_size, hidden)
        self.node_positions = nn.Embedding(positions, hidden)
        self.edge_positions = (nn.Embedding(len(EDGE_TYPES) * positions ** 2, hidden)
                               if edge_positions else None)
        d_extra = hidden if positions_in_mlps else 0
        fan_in = [mean_degree(self.converter, self.specs, end) for end in (1, 0)[:dirs]]

        def edge_out(i: int, d: int) -> int | None:  # the edit's last forward edge update is the weight change
            if i < layers - 1:
                return hidden
            return self.converter.kernel_size if edit and d == 0 else None

        def receivers(i: int, d: int) -> str:  # in the last layer only what is read afterwards
            if i < layers - 1:
                return "all"
            return ("all" if d == 0 else "hidden") if edit else "io"

        self.messages = nn.ModuleList(
            nn.ModuleList(Messages(hidden, signs, d_extra, fan_in[d], edge_out(i, d), receivers(i, d))
                          for d in range(dirs))
            for i in range(layers))
        self.updates = nn.ModuleList(
            Equivariant((1 + dirs) * hidden, 1 if edit and i == layers - 1 else hidden, hidden, signs, d_extra,
                        io_only=i == layers - 1 and not edit)
            for i in range(layers))
        skips = layers - 1 if edit else layers  # the edit's last layer outputs the change itself
        self.skips = nn.ModuleList(scaling_linear(hidden, hidden) for _ in range(skips)) if skip else None
        n_in, n_out = self.converter.max_inputs, self.converter.max_outputs
        if edit:
            self.spec = info.spec
            self.scale = ChangeScale(self.spec, self.stats.get(self.spec))
        elif bidirectional:
            self.project_in = nn.Linear(n_in * hidden, hidden)
            self.project_out = nn.Linear(n_out * hidden, hidden)
            self.head = mlp(2 * hidden, hidden, info.out_dim)
        else:
            self.head = mlp(n_out * hidden, hidden, info.out_dim)

    def normalise(self, ws: WeightSpace) -> tuple[WeightSpace, dict[int, Tensor]]:
        """Phase wrap, per-layer division by the standard deviation and, for ScaleGMN-B, the
        canonical positive scale; with the factors that scaled each neuron (none for ScaleGMN)."""
        ws = divide_by_std(wrap_phase(ws), self.stats.get(ws.spec))
        return canonical_scale(ws) if self.bidirectional else (ws, {})

    def prepare(self, weights: Weights) -> Weights:
        """Every architecture's networks through :meth:`normalise`."""
        return as_mixed(weights).map_groups(lambda g: self.normalise(g)[0])

    def node_kinds(self, graph: NeuralGraph) -> Tensor:
        """``(num_nodes,)``: every neuron's symmetry kind (:func:`neuron_kinds`)."""
        kinds = torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.ptr.device)
        for g, spec in enumerate(graph.layout.specs):
            ids = self.converter.node_ids(graph, g)
            kinds[ids] = self._kinds[spec].to(ids.device).expand_as(ids)
        return kinds

    def indices(self, graph: NeuralGraph, name: str, edges: bool = False) -> Tensor:
        """The template index set ``name`` over the batch (``GraphConverter.gather``), in
        ascending order, as for one architecture: the last layer's dropout draws and the
        order of sums then do not depend on how a mixed batch is grouped."""
        found = self.converter.gather(graph, name, edges)
        return found.sort().values if len(graph.layout.specs) > 1 else found

    def encode(self, graph: NeuralGraph) -> tuple[Tensor, list[Tensor], list[Direction], Rows, Tensor]:
        """Node features, per-direction edge features, the directions, the nodes' symmetry
        rows and their positional embeddings."""
        io = (graph.layer == 0) | graph.is_output
        kinds = self.node_kinds(graph)
        hidden = [self._hidden_kinds[spec] for spec in graph.layout.specs]
        rows = Rows(kind_mask(kinds, SIGN, hidden), kind_mask(kinds, SCALE, hidden), self.indices(graph, "io_nodes"))
        pos = self.node_positions(graph.pos_id)
        x = self.embed_bias(graph.x)
        x = torch.where(io[:, None], x + pos, x * pos)
        src, dst = graph.edge_index
        edges = lambda name: self.indices(graph, name, edges=True)  # noqa: E731
        directions = [Direction(src, dst, rows.take(dst, edges("into_io")), graph.edge_attr)]
        if self.bidirectional:
            scaled = ((kinds[src] | kinds[dst]) & SCALE).bool()[:, None]
            values = torch.where(scaled, reciprocal(graph.edge_attr), graph.edge_attr)
            directions.append(Direction(dst, src, rows.take(src, edges("from_io"), edges("from_hidden")), values))
        edges = []
        for d in directions:
            e = self.embed_weight(d.values)
            if self.edge_positions is not None:
                p = self.converter.num_positions
                e = e * self.edge_positions((graph.edge_type * p + graph.pos_id[src]) * p + graph.pos_id[dst])
            edges.append(e)
        return x, edges, directions, rows, pos

    def forward(self, weights: Weights) -> Tensor | WeightSpace:
        factors: dict[int, Tensor] = {}
        if self.edit:
            prepared, factors = self.normalise(as_shape(weights, self.spec))
        else:
            prepared = self.prepare(weights)
        graph = self.converter(prepared)
        x, edges, directions, rows, pos = self.encode(graph)
        extra = pos if self.positions_in_mlps else None
        last = len(self.updates) - 1
        for i, (messages, update) in enumerate(zip(self.messages, self.updates)):
            aggregated = [m(x, e, d, extra) for m, e, d in zip(messages, edges, directions)]
            edges = [e if m.edge_update is None else m.edge_update(x, rows, e, d.send, d.receive)
                     for m, e, d in zip(messages, edges, directions)]
            if i == last and not self.edit:  # only the input/output neurons are read from here on
                x, aggregated = x[rows.io], [a[rows.io] for a in aggregated]
            h = torch.cat([x, *aggregated], dim=-1)  # (gathered before the cat: inductor miscompiled h[rows.io])
            if self.edit and i == last:
                return self.change(graph, update(h, rows, extra), edges[0], factors)
            new = update(h, rows, extra) if i < last else update(h, None, None if extra is None else extra[rows.io])
            x = new + self.skips[i](x) if self.skips is not None else new
            x = F.dropout(x, self.dropout, self.training)
        return self.head(self.readout(x, rows.io, graph))

    def change(self, graph: NeuralGraph, nodes: Tensor, edges: Tensor, factors: dict[int, Tensor]) -> WeightSpace:
        """The weight change read from one feature per node (the bias change: it scales as
        the bias) and ``kernel_size`` per forward edge (the weight change: it scales as the
        weight), as the converter reads weights back, and mapped back from the canonical
        scale (``factors``); the graph's features are replaced."""
        graph = replace(graph, x=nodes, edge_attr=edges)
        change = self.scale(as_shape(self.converter.to_weights(graph), self.spec))
        return scale_neurons(change, {k: 1 / f for k, f in factors.items()})

    def readout(self, x: Tensor, nodes: Tensor, graph: NeuralGraph) -> Tensor:
        """From the features ``x`` of the input/output neurons ``nodes``: the output neurons'
        by output index (zeros where a network has fewer), flattened; ScaleGMN-B also the
        input neurons', each projected."""
        full = x.new_zeros(graph.num_nodes, x.shape[-1]).index_put((nodes,), x)
        out = self._slots(full, graph, inputs=False, size=self.converter.max_outputs)
        if not self.bidirectional:
            return out
        inp = self._slots(full, graph, inputs=True, size=self.converter.max_inputs)
        return torch.cat([self.project_out(out), self.project_in(inp)], dim=-1)

    @staticmethod
    def _slots(full: Tensor, graph: NeuralGraph, inputs: bool, size: int) -> Tensor:
        """``(B, size * dim)``: each network's input (or output) neurons' rows of the node
        features ``full``, in neuron order, zero-padded to ``size``; indexed by architecture
        (sizes from the specs, not from the data)."""
        dense = full.new_zeros(graph.num_graphs, size, full.shape[-1])
        for spec, pos in zip(graph.layout.specs, graph.layout.positions):
            count = spec.widths[0] if inputs else spec.widths[-1]
            first = graph.ptr[pos] + (0 if inputs else sum(spec.widths) - count)
            slots = torch.arange(count, device=full.device)
            dense = dense.index_put((pos[:, None], slots), full[first[:, None] + slots])
        return dense.flatten(1)


def _register(name: str, bidirectional: bool, weight_decay: float, version: int) -> None:
    def build(task: TaskInfo, **hparams) -> nn.Module:
        return ScaleGMN(task, bidirectional=bidirectional, edit=task.task == "edit", **hparams)

    register_method(name, family="graph", profiles=PROFILES[name], heterogeneous=True, edits=True, version=version,
                    symmetries=("permutation", "sign_flip", "rescale", "phase"),
                    optim={"lr": 1e-3, "weight_decay": weight_decay},
                    paper=f"Kalogeropoulos et al. 2024 ({'ScaleGMN-B' if bidirectional else 'ScaleGMN'})")(build)


_register("scalegmn", bidirectional=False, weight_decay=0.01, version=2)  # 2: inv's x / |x| without a clamp
_register("scalegmn-b", bidirectional=True, weight_decay=0.001, version=3)  # 3: canonical positive scale
