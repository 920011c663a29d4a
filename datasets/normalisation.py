"""Per-layer normalisation: one scalar mean and std per weight tensor and per bias tensor.

Per-entry statistics (what the reference repos use) differ between neurons and so break
the permutation symmetry; scalars per tensor keep every symmetry of the weight space.
:class:`ChangeScale` goes the other way for a predicted weight change (INR editing)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datasets.spec import ArchSpec
from datasets.weights import MixedWeights, WeightSpace, Weights


@dataclass(frozen=True)
class LayerStats:
    """Per layer: weight mean, weight std, bias mean, bias std (each a ``(L,)`` tensor)."""

    weight_mean: Tensor
    weight_std: Tensor
    bias_mean: Tensor
    bias_std: Tensor

    @classmethod
    def of(cls, ws: WeightSpace, eps: float = 1e-8) -> "LayerStats":
        """Statistics over every network and entry of each layer of ``ws``."""
        def mean_std(ts: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
            means = torch.stack([t.double().mean() for t in ts]).float()
            stds = torch.stack([t.double().std() if t.numel() > 1 else t.new_ones(()).double()
                                for t in ts]).float().clamp_min(eps)
            return means, stds
        wm, wsd = mean_std(ws.weights)
        bm, bsd = mean_std(ws.biases)
        return cls(wm, wsd, bm, bsd)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("weight_mean", "weight_std", "bias_mean", "bias_std")}


def normalise(ws: WeightSpace, stats: LayerStats) -> WeightSpace:
    """``(w - mean) / std`` per layer."""
    s = {k: v.to(ws.device, ws.dtype) for k, v in vars(stats).items()}
    weights = tuple((w - s["weight_mean"][i]) / s["weight_std"][i] for i, w in enumerate(ws.weights))
    biases = tuple((b - s["bias_mean"][i]) / s["bias_std"][i] for i, b in enumerate(ws.biases))
    return WeightSpace(ws.spec, weights, biases)


class Normaliser(nn.Module):
    """Module form for methods: normalises each architecture group with its own stats;
    an architecture without stats passes through unchanged."""

    def __init__(self, stats: dict) -> None:
        super().__init__()
        self.stats = dict(stats)

    def forward(self, weights: Weights) -> Weights:
        if isinstance(weights, MixedWeights):
            return weights.map_groups(self._one)
        return self._one(weights)

    def _one(self, ws: WeightSpace) -> WeightSpace:
        stats = self.stats.get(ws.spec)
        return normalise(ws, stats) if stats is not None else ws


CONSTANT_STD = 1e-7  # a training-split std at most this is a constant tensor (LayerStats floors at 1e-8)


class ChangeScale(nn.Module):
    """Output scale of a predicted weight change (INR editing): per weight tensor and per
    bias tensor, a learned scalar (starting at ``init``) times that tensor's training-split
    standard deviation. The learned per-tensor scale starting at 0.01 is the editing heads'
    of NFN (``LearnedScale``, ``out_scale=0.01``), Neural Graphs and ScaleGMN (``out_scale``);
    the standard deviation makes the start relative to each layer's spread, so the first
    edit is near the identity whatever the layer's scale. A bias that is constant in the
    training split (e.g. SIREN biases initialised to zero and never trained) takes its
    layer's weight std instead, so its change can still grow. Scalars per tensor keep every
    symmetry of the weight space."""

    def __init__(self, spec: ArchSpec, stats: LayerStats | None, init: float = 0.01) -> None:
        super().__init__()
        layers = len(spec.layers)
        self.weight_scale = nn.Parameter(torch.full((layers,), init))
        self.bias_scale = nn.Parameter(torch.full((layers,), init))
        weight_std = torch.ones(layers) if stats is None else stats.weight_std.float()
        bias_std = torch.ones(layers) if stats is None else stats.bias_std.float()
        self.register_buffer("weight_std", weight_std.clone())
        self.register_buffer("bias_std", torch.where(bias_std > CONSTANT_STD, bias_std, weight_std))

    def forward(self, change: WeightSpace) -> WeightSpace:
        w = (self.weight_scale * self.weight_std).to(change.dtype)
        b = (self.bias_scale * self.bias_std).to(change.dtype)
        return WeightSpace(change.spec, tuple(t * w[i] for i, t in enumerate(change.weights)),
                           tuple(t * b[i] for i, t in enumerate(change.biases)))
