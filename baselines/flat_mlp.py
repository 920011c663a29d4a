"""Flat-weights MLP baselines (Navon et al. 2023, "Equivariant Architectures for Learning in
Deep Weight Spaces", section 6 baselines "MLP" and "MLP + Perm. aug").

Weights are normalised per layer (one scalar mean/std per tensor), flattened and fed to an
MLP. It is *not* invariant: the leaderboard's permuted-test columns show how much it relies
on the arbitrary neuron order. ``mlp-aug`` re-permutes the hidden neurons of every training
batch at random (a function-preserving augmentation) and is still not invariant.
Published config (DWSNets baselines): 4 hidden layers of width 512 (paper profile); the quick
profile uses 3 of width 256. Parameter count for the SIREN 2-32-32-1 input with 10 classes:
paper 1,400,330; quick 371,978 (counted from the built modules).
"""

from __future__ import annotations

from torch import Tensor, nn

from baselines.heads import mlp
from datasets.normalisation import Normaliser
from datasets.method_table import register_method
from datasets.symmetry import permute_hidden
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace

PROFILES = {"quick": {"hidden": 256, "layers": 3, "dropout": 0.0},
            "paper": {"hidden": 512, "layers": 5, "dropout": 0.0}}


class FlatMLP(nn.Module):
    """Normalise per layer, flatten, MLP. ``augment``: random hidden permutation of every
    batch while training."""

    def __init__(self, info: TaskInfo, hidden: int, layers: int, dropout: float, augment: bool) -> None:
        super().__init__()
        spec = info.spec
        self.hparams = {"hidden": hidden, "layers": layers, "dropout": dropout, "augment": augment}
        self.normalise = Normaliser(info.stats)
        self.augment = augment
        self.net = mlp(spec.num_params, hidden, info.out_dim, layers, dropout)

    def forward(self, weights: WeightSpace) -> Tensor:
        if self.augment and self.training:
            weights = permute_hidden(weights)
        return self.net(self.normalise(weights).flatten())


@register_method("mlp", family="flat", profiles=PROFILES, symmetries=(), paper="Navon et al. 2023 (MLP baseline)")
def build_mlp(task: TaskInfo, **hparams) -> nn.Module:
    return FlatMLP(task, **hparams, augment=False)


@register_method("mlp-aug", family="flat", profiles=PROFILES, symmetries=(),
                 paper="Navon et al. 2023 (MLP + permutation augmentation)")
def build_mlp_aug(task: TaskInfo, **hparams) -> nn.Module:
    return FlatMLP(task, **hparams, augment=True)
