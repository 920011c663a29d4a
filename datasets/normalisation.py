"""Per-layer normalisation: one scalar mean and std per weight tensor and per bias tensor.

Per-entry statistics (what the reference repos use) differ between neurons and so break
the permutation symmetry; scalars per tensor keep every symmetry of the weight space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

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
