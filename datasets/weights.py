"""Batched weights: ``WeightSpace`` (one architecture) and ``MixedWeights`` (several).

A ``WeightSpace`` is a small immutable container of per-layer stacked tensors: weights
``(B, out, in[, kh, kw])`` and biases ``(B, out)``. It indexes, concatenates, moves
between devices, maps a function over its tensors and flattens to ``(B, P)``.
A ``MixedWeights`` holds one ``WeightSpace`` per architecture and remembers where each
row sits in the batch, so a zoo of different architectures batches without a loop over
networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from datasets.spec import ArchSpec

Index = int | slice | Tensor | Sequence[int]


@dataclass(frozen=True)
class WeightSpace:
    """Weights and biases of ``B`` networks that share ``spec``."""

    spec: ArchSpec
    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "biases", tuple(self.biases))
        if len(self.weights) != len(self.spec.layers) or len(self.biases) != len(self.spec.layers):
            raise ValueError(
                f"expected {len(self.spec.layers)} weight and bias tensors, got "
                f"{len(self.weights)} and {len(self.biases)}"
            )
        batch = self.weights[0].shape[0]
        for i, (layer, (w, b)) in enumerate(zip(self.spec.layers, self)):
            if tuple(w.shape) != (batch, *layer.weight_shape):
                raise ValueError(f"layer {i}: weight shape {tuple(w.shape)}, expected "
                                 f"{(batch, *layer.weight_shape)}")
            if tuple(b.shape) != (batch, layer.out_features):
                raise ValueError(f"layer {i}: bias shape {tuple(b.shape)}, expected "
                                 f"{(batch, layer.out_features)}")

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """``(weight, bias)`` of every layer, in order."""
        return zip(self.weights, self.biases)

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def __getitem__(self, index: Index) -> "WeightSpace":
        if isinstance(index, int):
            index = slice(index, index + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return self.map(lambda t: t[index])

    def map(self, fn: Callable[[Tensor], Tensor]) -> "WeightSpace":
        """Apply ``fn`` to every weight and bias tensor."""
        return WeightSpace(self.spec, tuple(map(fn, self.weights)), tuple(map(fn, self.biases)))

    def to(self, *args, **kwargs) -> "WeightSpace":
        return self.map(lambda t: t.to(*args, **kwargs))

    def double(self) -> "WeightSpace":
        return self.map(lambda t: t.double())

    def __add__(self, other: "WeightSpace") -> "WeightSpace":
        return WeightSpace(self.spec, tuple(a + b for a, b in zip(self.weights, other.weights)),
                           tuple(a + b for a, b in zip(self.biases, other.biases)))

    @staticmethod
    def cat(items: Sequence["WeightSpace"]) -> "WeightSpace":
        """Concatenate batches of the same architecture."""
        spec = items[0].spec
        if any(item.spec != spec for item in items):
            raise ValueError("cannot concatenate weight spaces of different architectures")
        n = len(spec.layers)
        return WeightSpace(spec, tuple(torch.cat([it.weights[i] for it in items]) for i in range(n)),
                           tuple(torch.cat([it.biases[i] for it in items]) for i in range(n)))

    def flatten(self) -> Tensor:
        """``(B, P)``: per layer the flattened weight, then the bias."""
        parts = []
        for w, b in self:
            parts += [w.flatten(1), b]
        return torch.cat(parts, dim=1)

    @classmethod
    def from_flat(cls, spec: ArchSpec, flat: Tensor) -> "WeightSpace":
        """Inverse of :meth:`flatten`."""
        if flat.ndim != 2 or flat.shape[1] != spec.num_params:
            raise ValueError(f"expected (B, {spec.num_params}) flat weights, got {tuple(flat.shape)}")
        weights, biases, at = [], [], 0
        for layer in spec.layers:
            size = layer.num_params - layer.out_features
            weights.append(flat[:, at:at + size].reshape(-1, *layer.weight_shape))
            at += size
            biases.append(flat[:, at:at + layer.out_features])
            at += layer.out_features
        return cls(spec, tuple(weights), tuple(biases))

    def nonfinite_rows(self) -> Tensor:
        """Boolean ``(B,)``: which networks hold a NaN or an infinity."""
        bad = torch.zeros(len(self), dtype=torch.bool, device=self.device)
        for t in (*self.weights, *self.biases):
            bad |= ~torch.isfinite(t.flatten(1)).all(dim=1)
        return bad


@dataclass(frozen=True)
class MixedWeights:
    """Networks of several architectures. Row ``i`` of the batch is row ``row_index[i]`` of
    ``groups[group_index[i]]``."""

    groups: tuple[WeightSpace, ...]
    group_index: Tensor
    row_index: Tensor

    def __len__(self) -> int:
        return self.group_index.shape[0]

    @property
    def specs(self) -> tuple[ArchSpec, ...]:
        return tuple(g.spec for g in self.groups)

    @property
    def device(self) -> torch.device:
        return self.groups[0].device

    @classmethod
    def from_groups(cls, groups: Sequence[WeightSpace]) -> "MixedWeights":
        """Rows in group order: all of group 0, then group 1, ..."""
        gi = torch.cat([torch.full((len(g),), i, dtype=torch.long) for i, g in enumerate(groups)])
        ri = torch.cat([torch.arange(len(g)) for g in groups])
        return cls(tuple(groups), gi, ri)

    def positions(self, group: int) -> Tensor:
        """Batch positions of the rows of ``groups[group]``, in that group's row order. The
        batch sorted by (group, row) holds each group's rows together, in row order, so the
        group's slice of that order is its positions: sizes come from the groups' shapes,
        never from the data (no host synchronisation; it compiles without a graph break)."""
        return torch.argsort(self._keys())[self._span(group)]

    def _keys(self) -> Tensor:
        """Each row's (group, row) as one sortable key."""
        return self.group_index * len(self) + self.row_index

    def _span(self, group: int) -> slice:
        """Where ``groups[group]``'s rows lie in the batch sorted by :meth:`_keys`."""
        start = sum(len(g) for g in self.groups[:group])
        return slice(start, start + len(self.groups[group]))

    def only(self, groups: Sequence[int]) -> tuple[Tensor, "MixedWeights"]:
        """The rows of ``groups`` (indices into :attr:`groups`, ascending): their batch
        positions, ascending, and those rows as a batch in the same order. Sizes come from
        the groups' shapes (no host synchronisation, unlike indexing the batch)."""
        order = torch.argsort(self._keys())  # sorted once for all the groups
        positions = torch.cat([order[self._span(g)] for g in groups]).sort().values
        renumber = torch.full((len(self.groups),), -1, dtype=torch.long)
        renumber[list(groups)] = torch.arange(len(groups))
        group_index = renumber.to(self.group_index.device)[self.group_index[positions]]
        return positions, MixedWeights(tuple(self.groups[g] for g in groups), group_index, self.row_index[positions])

    def check_rows(self) -> None:
        """``ValueError`` unless every row of every group is in the batch exactly once (what
        :meth:`positions` relies on; for batches read from files)."""
        expected = torch.cat([g * len(self) + torch.arange(len(ws)) for g, ws in enumerate(self.groups)])
        if len(self) != len(expected) or not torch.equal(torch.sort(self._keys()).values,
                                                         expected.to(self.group_index.device)):
            raise ValueError(f"the batch's group_index / row_index do not hold every row of its "
                             f"{len(self.groups)} group(s) ({[len(g) for g in self.groups]} rows) exactly once")

    def __getitem__(self, index: Index) -> "MixedWeights":
        if isinstance(index, int):
            index = slice(index, index + 1)
        index = torch.arange(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index)
        gi, ri = self.group_index[index], self.row_index[index]
        groups, new_gi, new_ri = [], torch.empty_like(gi), torch.empty_like(ri)
        for g in torch.unique(gi).tolist():
            mask = gi == g
            rows = ri[mask]
            groups.append(self.groups[g][rows.to(self.groups[g].device)])
            new_gi[mask] = len(groups) - 1
            new_ri[mask] = torch.arange(len(rows))
        return MixedWeights(tuple(groups), new_gi, new_ri)

    def map_groups(self, fn: Callable[[WeightSpace], WeightSpace]) -> "MixedWeights":
        return MixedWeights(tuple(fn(g) for g in self.groups), self.group_index, self.row_index)

    def to(self, *args, **kwargs) -> "MixedWeights":
        return self.map_groups(lambda g: g.to(*args, **kwargs))

    def apply(self, fn: Callable[[WeightSpace], Tensor]) -> Tensor:
        """Run ``fn`` on every group and return its outputs in batch order."""
        outs = [fn(g) for g in self.groups]
        result = outs[0].new_empty((len(self), *outs[0].shape[1:]))
        for i, out in enumerate(outs):
            result[self.positions(i).to(out.device)] = out
        return result

    def nonfinite_rows(self) -> Tensor:
        return self.apply(WeightSpace.nonfinite_rows)

    @staticmethod
    def cat(items: Sequence["MixedWeights"]) -> "MixedWeights":
        """Concatenate, merging groups of the same architecture."""
        by_spec: dict[ArchSpec, list[WeightSpace]] = {}
        for item in items:
            for g in item.groups:
                by_spec.setdefault(g.spec, []).append(g)
        merged = {spec: WeightSpace.cat(gs) for spec, gs in by_spec.items()}
        order = {spec: i for i, spec in enumerate(merged)}
        offsets = {spec: 0 for spec in merged}
        gis, ris = [], []
        for item in items:
            local = []
            for g in item.groups:
                local.append((order[g.spec], offsets[g.spec]))
                offsets[g.spec] += len(g)
            table = torch.tensor(local, dtype=torch.long).reshape(-1, 2)
            gis.append(table[item.group_index, 0])
            ris.append(table[item.group_index, 1] + item.row_index)
        return MixedWeights(tuple(merged.values()), torch.cat(gis), torch.cat(ris))


Weights = WeightSpace | MixedWeights


def as_shape(weights: Weights, spec: ArchSpec) -> WeightSpace:
    """The batch as one ``WeightSpace`` of ``spec``, in batch order; every network must
    have ``spec``'s weight shapes (``datasets.spec.shared_shape``)."""
    mixed = as_mixed(weights)
    positions = [mixed.positions(g).to(mixed.device) for g in range(len(mixed.groups))]

    def gather(tensors: Sequence[Tensor]) -> Tensor:
        out = tensors[0].new_empty((len(mixed), *tensors[0].shape[1:]))
        for pos, t in zip(positions, tensors):
            out[pos] = t
        return out

    layers = range(len(spec.layers))
    return WeightSpace(spec, tuple(gather([g.weights[i] for g in mixed.groups]) for i in layers),
                       tuple(gather([g.biases[i] for g in mixed.groups]) for i in layers))


def as_mixed(weights: Weights) -> MixedWeights:
    """View any batch as a ``MixedWeights`` (one group for a ``WeightSpace``)."""
    return weights if isinstance(weights, MixedWeights) else MixedWeights.from_groups([weights])
