"""DWSNet (Navon et al. 2023, "Equivariant Architectures for Learning in Deep Weight Spaces",
ICML; public code github.com/AvivNavon/DWSNets).

The weight space of an MLP with L layers is V = (+)_k W_k (+) b_k. Hidden neurons (neuron
layers 1..L-1) are permuted independently; the input and output neurons are fixed. The paper
(its characterisation of affine equivariant layers and the per-block tables of its appendix;
the code README's "blocks" figure) writes every affine equivariant map V -> V as a
block matrix whose blocks (W->W, W->b, b->W, b->b, between *any* two layers) are built from
three operations: pooling over an index of the input, broadcasting over an index of the output,
and a fully connected map on the features. An index shared by input and output tensor gives
two basis elements (keep it, i.e. identity, or pool it and broadcast it); a fixed (input or
output) index is not permuted and is folded into the feature axis, which gives the extra free
parameters at the first and last layer.

This module implements that characterisation in a grouped form that is exactly equivalent:
every tensor is held as ``(B, r, c, f)``: ``r`` the hidden neuron layer of its rows (or 1),
``c`` the hidden neuron layer of its columns (or 1), ``f`` the channels times every fixed index.
One DWS layer computes
  g    = concat over all tensors of the tensor pooled over its permuted axes      (B, G)
  N_a  = concat over tensors indexed by hidden layer a, pooled over their other axis (B, n_a, F_a)
  Y_t  = FC_g(g) + FC_a(N_row(t)) + FC_a(N_col(t)) + FC_self(X_t) [hidden W_k only]
broadcast to the shape of ``Y_t``. Each basis element of the paper is one slice of one of these
FC maps (the FC on a concatenation is the sum of the FCs on its parts), so with sum pooling
this is the paper's affine layer (the tests check that its weights give linearly independent
equivariant maps, exactly as many as the Burnside count of orbits on V x V, i.e. the dimension
of the space of equivariant linear maps). Pooling is "max" by default, as in the paper's experiments
and code (``--reduction max``), which keeps equivariance but makes the layer non-linear.
The invariant head is the paper's invariant layer: the same vector ``g`` (every tensor pooled
over its hidden indices, fixed indices kept) fed to a fully connected layer.

Published config (code defaults for INR classification): 4 hidden DWS layers after the input
DWS layer (5 in total) of 32 channels, max reduction, batch norm between layers, AdamW lr 5e-3,
weight decay 5e-4 (amsgrad), batch 512. Deliberate differences: (1) the code's set layers
default to set attention ("sab"); we use the plain pooling basis of the paper (the code's
"ds" option); (2) no amsgrad (the harness's AdamW); (3) the input is normalised per layer
(``datasets.normalisation``), not per entry, so invariance is exact; (4) the paper's
``1/(number of tensors)`` scaling of the summed blocks is left to the batch norm.
Quick profile: 3 DWS layers of 32 channels.

Editing (task ``"edit"``): the DWS layers are equivariant maps V -> V, so the last one maps to
one channel and its slot tensors are unfolded back to weights and biases (the inverse of
``fold``): the predicted change, scaled per tensor by ``datasets.normalisation.ChangeScale``
(a learned scalar from 0.01 times the layer's standard deviation), so the first edit is near
the identity. This is the DWSNet of Neural Graphs' editing experiments (Kofinas et al. 2024,
code ``experiments/style_editing``, ``model/dwsnet.yaml``: 5 DWS layers of 32, the last to one
channel); they start near the identity by a small weight init of the layers instead.

Parameter counts for the SIREN 2-32-32-1 input with 10 classes (counted from the built
modules, batch-norm affine parameters included): paper 314,762; quick 159,818 (3 layers of
32: on the default digits data the learning-threshold study's validation accuracy was 38.1%
at width 8, 42.6% at 16 and 46.7% at 32, and width 32 trains a quick run in about 25 s;
docs/notes/threshold-study.md).
We found no parameter count for this model in the paper or its code's README.
MLPs only: conv networks and heterogeneous datasets raise ``UnsupportedArchitecture``.
Residual connections are ignored (tied permutations are a subgroup, so invariance holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.heads import BatchStandardise, mlp
from datasets.normalisation import ChangeScale, Normaliser
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import register_method
from datasets.spec import ArchSpec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace

PROFILES = {"quick": {"width": 32, "layers": 3, "reduction": "max", "bn": True, "head_layers": 1},
            "paper": {"width": 32, "layers": 5, "reduction": "max", "bn": True, "head_layers": 1}}
REDUCTIONS = ("max", "mean", "sum")


@dataclass(frozen=True)
class Slot:
    """Where one weight or bias tensor sits: the hidden neuron layer indexing its row axis
    and its column axis (``None``: axis of size 1), and how many fixed entries per position
    are folded into the feature axis."""

    row: int | None
    col: int | None
    fixed: int


def slot_layout(spec: ArchSpec) -> list[Slot]:
    """Slots of ``W_0, b_0, W_1, b_1, ...`` for an MLP."""
    last = len(spec.layers)
    hidden = lambda k: k if 0 < k < last else None  # noqa: E731
    slots = []
    for k, layer in enumerate(spec.layers):
        row, col = hidden(k + 1), hidden(k)
        fixed = (layer.out_features if row is None else 1) * (layer.in_features if col is None else 1)
        slots.append(Slot(row, col, fixed))
        slots.append(Slot(row, None, layer.out_features if row is None else 1))
    return slots


def fold(ws: WeightSpace) -> list[Tensor]:
    """The weights as ``(B, r, c, f)`` tensors in slot order (one input channel)."""
    last = len(ws.spec.layers)
    out: list[Tensor] = []
    for k, (w, b) in enumerate(ws):
        batch = w.shape[0]
        if k + 1 == last:  # output neurons are fixed: move them into the features
            w = w.transpose(1, 2).reshape(batch, 1, w.shape[2], -1)
            b = b.reshape(batch, 1, 1, -1)
        else:
            w = w.unsqueeze(-1)
            b = b.reshape(batch, -1, 1, 1)
        if k == 0:  # input neurons are fixed: move them into the features
            w = w.reshape(batch, w.shape[1], 1, -1)
        out += [w, b]
    return out


def unfold(spec: ArchSpec, xs: list[Tensor]) -> WeightSpace:
    """Inverse of :func:`fold` for one channel: the ``(B, r, c, f)`` slot tensors as weights."""
    last = len(spec.layers)
    weights, biases = [], []
    for k, (layer, w, b) in enumerate(zip(spec.layers, xs[0::2], xs[1::2])):
        batch, out, inp = w.shape[0], layer.out_features, layer.in_features
        weights.append(w.reshape(batch, inp, out).transpose(1, 2) if k + 1 == last else w.reshape(batch, out, inp))
        biases.append(b.reshape(batch, out))
    return WeightSpace(spec, tuple(weights), tuple(biases))


def reduce(x: Tensor, dims: tuple[int, ...], how: str) -> Tensor:
    """Pool ``x`` over ``dims`` (kept as size 1). Max pools one dim at a time: the backward
    of ``max(dim)`` scatters to the arg-max, cheaper on CPU than the mask-and-count backward
    of ``amax`` (a training step of the quick profile took ~40 % less time)."""
    if how == "max":
        for d in dims:
            x = x.max(dim=d, keepdim=True).values
        return x
    if how == "mean":
        return x.mean(dim=dims, keepdim=True)
    return x.sum(dim=dims, keepdim=True)


class DWSLayer(nn.Module):
    """One equivariant layer ``V^(c_in) -> V^(c_out)`` over the slots of one architecture."""

    def __init__(self, slots: list[Slot], c_in: int, c_out: int, reduction: str) -> None:
        super().__init__()
        self.slots, self.reduction = slots, reduction
        hidden = sorted({a for s in slots for a in (s.row, s.col) if a is not None})
        self.out_dims = [s.fixed * c_out for s in slots]
        self.glob = nn.Linear(sum(s.fixed * c_in for s in slots), sum(self.out_dims))
        self.touching = {a: [i for i, s in enumerate(slots) if a in (s.row, s.col)] for a in hidden}
        self.neuron = nn.ModuleDict({
            str(a): nn.Linear(sum(slots[i].fixed * c_in for i in idx),
                              sum(self.out_dims[i] for i in idx), bias=False)
            for a, idx in self.touching.items()})
        self.own = nn.ModuleDict({str(i): nn.Linear(c_in, c_out, bias=False)
                                  for i, s in enumerate(slots) if s.row is not None and s.col is not None})

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        by_row = [reduce(x, (2,), self.reduction) for x in xs]  # pooled over the column axis
        g = torch.cat([reduce(p, (1,), self.reduction).flatten(1) for p in by_row], dim=1)
        # per slot, the terms constant along its columns ((B, r, 1, F)) and along its rows ((B, 1, c, F))
        along_rows = [t[:, None, None, :] for t in self.glob(g).split(self.out_dims, dim=1)]
        along_cols: list[Tensor | None] = [None] * len(xs)
        for a, idx in self.touching.items():
            # per neuron of hidden layer a: every tensor indexed by a, pooled over its other axis
            parts = [by_row[i].squeeze(2) if self.slots[i].row == a
                     else reduce(xs[i], (1,), self.reduction).squeeze(1) for i in idx]
            outs = self.neuron[str(a)](torch.cat(parts, dim=-1)).split([self.out_dims[i] for i in idx], dim=-1)
            for i, o in zip(idx, outs):
                if self.slots[i].row == a:
                    along_rows[i] = along_rows[i] + o.unsqueeze(2)
                else:
                    along_cols[i] = o.unsqueeze(1) if along_cols[i] is None else along_cols[i] + o.unsqueeze(1)
        ys = []
        for i, (x, rows, cols) in enumerate(zip(xs, along_rows, along_cols)):
            if str(i) in self.own:  # a full tensor: one matmul, then the broadcasts added in place
                y = F.linear(x, self.own[str(i)].weight).add_(rows)
                ys.append(y if cols is None else y.add_(cols))
            else:
                ys.append(rows if cols is None else rows + cols)
        return ys


class SlotNorm(nn.Module):
    """Batch norm per tensor: channel statistics over the batch and every entry of that
    tensor (equivariant; the paper's code adds it between DWS layers)."""

    def __init__(self, slots: list[Slot], channels: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(BatchStandardise(s.fixed * channels, affine=True) for s in slots)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [norm(x.reshape(-1, x.shape[-1])).reshape(x.shape) for norm, x in zip(self.norms, xs)]


class DWSNet(nn.Module):
    """Per-layer normalisation -> DWS layers (ReLU, batch norm between) -> invariant head.
    ``edit``: the last DWS layer maps to one channel, unfolded to a weight change (no ReLU
    after it, no head), scaled by ``ChangeScale``."""

    def __init__(self, info: TaskInfo, width: int, layers: int, reduction: str, bn: bool,
                 head_layers: int, edit: bool = False) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.spec = info.spec
        self.hparams = {"width": width, "layers": layers, "reduction": reduction, "bn": bn,
                        "head_layers": head_layers}
        self.normalise = Normaliser(info.stats)
        self.slots = slot_layout(self.spec)
        self.reduction = reduction
        self.edit = edit
        channels = [1] + [width] * (layers - 1) + [1 if edit else width]
        self.layers = nn.ModuleList(DWSLayer(self.slots, channels[i], channels[i + 1], reduction)
                                    for i in range(layers))
        self.norms = nn.ModuleList(SlotNorm(self.slots, width) if bn else nn.Identity() for _ in range(layers - 1))
        if edit:
            self.scale = ChangeScale(self.spec, info.stats.get(self.spec))
        else:
            self.head = mlp(sum(s.fixed * width for s in self.slots), width, info.out_dim, head_layers)

    def forward(self, weights: WeightSpace) -> Tensor | WeightSpace:
        if weights.spec != self.spec:
            raise ValueError(f"dwsnet was built for {self.spec.describe()}, got {weights.spec.describe()}")
        xs = fold(self.normalise(weights))
        for i, layer in enumerate(self.layers):
            xs = layer(xs)
            if self.edit and i == len(self.layers) - 1:
                return self.scale(unfold(self.spec, xs))
            if i < len(self.norms):
                xs = self.norms[i](xs)
            xs = [F.relu(x) for x in xs]
        g = torch.cat([reduce(x, (1, 2), self.reduction).flatten(1) for x in xs], dim=1)
        return self.head(g)


@register_method("dwsnet", family="equivariant", profiles=PROFILES, optim={"lr": 5e-3, "weight_decay": 5e-4},
                 edits=True, paper="Navon et al. 2023 (DWSNets)")
def build_dwsnet(task: TaskInfo, **hparams) -> nn.Module:
    if len(task.specs) != 1:
        raise UnsupportedArchitecture(
            f"dwsnet takes one MLP architecture; the dataset has {len(task.specs)}")
    if task.spec.is_conv:
        raise UnsupportedArchitecture("dwsnet takes MLPs only; the dataset holds conv networks")
    return DWSNet(task, **hparams, edit=task.task == "edit")
