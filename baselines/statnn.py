"""STATNN (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights",
section 3 / "DNN on statistics"): seven statistics of every weight tensor and every bias
tensor (mean, variance, and the 0, 25, 50, 75, 100 % quantiles) -> MLP.

The statistics of a tensor do not depend on the order of its entries, so the model is exactly
invariant to hidden-neuron permutations (and, as a documented limitation, also to
permutations that are *not* symmetries, such as ``permute_rows_only``: it cannot see how the
neurons of one layer connect to the next). Conv kernels are treated as one tensor of entries.

Published config (the reimplementation the NFN paper benchmarks, Zhou et al. 2023, whose
CIFAR10-GS Kendall tau 0.915 is the number we compare with): two hidden layers of 1000 units,
ReLU (paper profile); quick: two hidden layers of 128. Deliberate differences: (1) the
weights first pass the per-layer ``Normaliser`` (one scalar mean/std per tensor), which maps
the seven statistics affinely, then the features are standardised by a batch norm without
affine parameters (running statistics from training = a fixed standardisation at test time;
the reference code feeds raw statistics); (2) the variance is the population variance, so a
one-entry tensor (the SIREN output bias) gives 0 instead of NaN; (3) no sigmoid on the output:
the harness picks the loss. Parameter counts for the SIREN 2-32-32-1 input (3 layers, 42
features) with 10 classes: paper 1,054,010; quick 23,306.

Mixed architectures (``heterogeneous=True``): the statistics of layer ``k`` go to slot ``k``,
except the last layer, which always goes to the last slot (so input and output layers line
up across depths); slots are as many as the deepest architecture has layers, missing ones are
zero, and when depths differ a presence flag per slot is appended.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from baselines.heads import BatchStandardise, mlp
from datasets.normalisation import Normaliser
from datasets.method_table import register_method
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace, Weights, as_mixed

PROFILES = {"quick": {"hidden": 128, "layers": 3, "dropout": 0.0},
            "paper": {"hidden": 1000, "layers": 3, "dropout": 0.0}}
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
NUM_STATS = 2 + len(QUANTILES)
SELECT_FROM = 256  # rows at least this long get quantiles by partial selection, shorter ones by a sort


def tensor_stats(t: Tensor) -> Tensor:
    """``(B, 7)``: mean, population variance and the quantiles ``QUANTILES`` (linear
    interpolation, as ``torch.quantile``) of each row's entries."""
    flat = t.flatten(1)
    var, mean = torch.var_mean(flat, dim=1, correction=0, keepdim=True)
    return torch.cat([mean, var, quantiles(flat, QUANTILES)], dim=1)


def quantiles(flat: Tensor, qs: tuple[float, ...]) -> Tensor:
    """``(B, len(qs))`` quantiles of each row, as ``torch.quantile`` (linear interpolation
    between the order statistics at ``floor`` and ``ceil`` of ``q (n - 1)``). Long rows are
    not sorted: from the largest ``q`` down, a partial selection (``topk``) keeps the
    ``ceil + 1`` smallest survivors, whose two largest are the two order statistics needed;
    exact, and on a CPU about 1.5x faster than sorting 1,024 entries."""
    n = flat.shape[1]
    if n < SELECT_FROM:
        ordered = flat.sort(dim=1).values
        pos = torch.tensor(qs, dtype=flat.dtype, device=flat.device) * (n - 1)
        lo, hi = pos.floor().long(), pos.ceil().long()
        return ordered[:, lo] + (ordered[:, hi] - ordered[:, lo]) * (pos - lo)
    out = {}
    pool = flat
    for q in sorted(qs, reverse=True):
        pos = q * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        if hi + 1 < pool.shape[1]:
            pool = pool.topk(hi + 1, dim=1, largest=False, sorted=False).values
        top = pool.topk(1 + (hi > lo), dim=1).values  # order statistics hi (and lo = hi - 1)
        out[q] = top[:, -1] + (top[:, 0] - top[:, -1]) * (pos - lo)
    return torch.stack([out[q] for q in qs], dim=1)


def layer_slot(k: int, num_layers: int, slots: int) -> int:
    """Slot of layer ``k``: its index, except the last layer, which takes the last slot."""
    return k if k < num_layers - 1 else slots - 1


def statistics(ws: WeightSpace, slots: int, flags: bool) -> Tensor:
    """``(B, slots * 14 [+ slots])``: per slot the weight then the bias statistics, then the
    presence flags if ``flags``."""
    num_layers = len(ws.spec.layers)
    if num_layers > slots:
        raise ValueError(f"statnn was built for at most {slots} layers, got {ws.spec.describe()}")
    feats = ws.weights[0].new_zeros(len(ws), slots, 2 * NUM_STATS)
    present = ws.weights[0].new_zeros(len(ws), slots)
    for k, (w, b) in enumerate(ws):
        s = layer_slot(k, num_layers, slots)
        feats[:, s] = torch.cat([tensor_stats(w), tensor_stats(b)], dim=1)
        present[:, s] = 1
    out = feats.flatten(1)
    return torch.cat([out, present], dim=1) if flags else out


class StatNN(nn.Module):
    """Per-layer normalisation -> per-tensor statistics -> standardisation -> MLP."""

    def __init__(self, info: TaskInfo, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        depths = {len(spec.layers) for spec in info.specs}
        self.slots, self.flags = max(depths), len(depths) > 1
        n_features = self.slots * 2 * NUM_STATS + (self.slots if self.flags else 0)
        self.hparams = {"hidden": hidden, "layers": layers, "dropout": dropout, "slots": self.slots}
        self.normalise = Normaliser(info.stats)
        self.standardise = BatchStandardise(n_features, affine=False)
        self.net = mlp(n_features, hidden, info.out_dim, layers, dropout)

    def features(self, weights: Weights) -> Tensor:
        """The unstandardised statistics, ``(B, n_features)``, in batch order."""
        return as_mixed(self.normalise(weights)).apply(lambda ws: statistics(ws, self.slots, self.flags))

    def forward(self, weights: Weights) -> Tensor:
        return self.net(self.standardise(self.features(weights)))


@register_method("statnn", family="stats", profiles=PROFILES, heterogeneous=True, blind_to=("permute_rows_only",),
                 paper="Unterthiner et al. 2020 (STATNN)")
def build_statnn(task: TaskInfo, **hparams) -> nn.Module:
    return StatNN(task, **hparams)
