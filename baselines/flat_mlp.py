"""Flat-weights MLP baselines (Navon et al. 2023, "Equivariant Architectures for Learning in
Deep Weight Spaces", section 6 baselines "MLP" and "MLP + Perm. aug").

Weights are normalised per layer (one scalar mean/std per tensor), flattened and fed to an
MLP. It is *not* invariant: the leaderboard's permuted-test columns show how much it relies
on the arbitrary neuron order. ``mlp-aug`` re-permutes the hidden neurons of every training
batch at random (a function-preserving augmentation) and is still not invariant.

For the edit task (``FlatEditMLP``, NFN's ``MLPTransferNet`` for INR editing) the MLP outputs a
change of every parameter (``WeightSpace.from_flat``), scaled per tensor by ``ChangeScale``
(learned, from 0.01 of the layer's standard deviation). It is not equivariant: the published
baseline. ``mlp-aug`` then draws one hidden permutation per network, feeds the permuted network
and moves the predicted change back by the inverse permutation, so the change still applies
to the network it was given.

Published config (DWSNets baselines): 4 hidden layers of width 512 (paper profile); the quick
profile uses 2 of width 256. Parameter count for the SIREN 2-32-32-1 input with 10 classes:
paper 1,400,330; quick 371,978 (counted from the built modules). ``mlp-aug``'s quick profile is
one hidden layer of 128 (153,098 parameters) at lr 3e-3, the threshold study's choice on
validation (on the earlier 4-view build of ``digits-inr``, at lr 1e-3 it stayed at chance on
two seeds of three, at 3e-3 on none). The plain ``mlp`` is the non-invariant control: on that
4-view build (4 fits per digit) it left chance at no size, learning rate, dropout or weight
decay tried (with every hidden neuron in an arbitrary order, 5,000 flat weight vectors carry
no signal it can read); on the default data, 20 fits per training digit, it leaves chance and
stays below every invariant method (docs/notes/threshold-study.md, results/leaderboard.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.heads import mlp
from datasets.normalisation import ChangeScale, Normaliser
from datasets.method_table import register_method
from datasets.spec import ArchSpec
from datasets.symmetry import permute_hidden
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace

PROFILES = {"quick": {"hidden": 256, "layers": 3, "dropout": 0.0},
            "paper": {"hidden": 512, "layers": 5, "dropout": 0.0}}
# The threshold study's choice for mlp-aug (smallest size within 2 points of the best on
# validation, at its best learning rate): one hidden layer of 128 at lr 3e-3.
AUGMENTED_PROFILES = {"quick": {"hidden": 128, "layers": 2, "dropout": 0.0}, "paper": PROFILES["paper"]}
AUGMENTED_QUICK_OPTIM = {"lr": 3e-3}


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


def permutation_index(spec: ArchSpec, batch: int, device: torch.device) -> Tensor:
    """``(B, P)``: one random hidden permutation per network, as the flat index that each
    entry of the permuted network is taken from (``flat.gather(1, index)`` permutes)."""
    index = torch.arange(spec.num_params, dtype=torch.float64, device=device).expand(batch, -1)
    return permute_hidden(WeightSpace.from_flat(spec, index)).flatten().long()


class FlatEditMLP(nn.Module):
    """Normalise per layer, flatten, MLP to a change of every parameter, ``ChangeScale``.
    ``augment``: while training, the MLP sees a randomly permuted network and its output is
    moved back by the inverse permutation."""

    def __init__(self, info: TaskInfo, hidden: int, layers: int, dropout: float, augment: bool) -> None:
        super().__init__()
        self.spec = info.spec
        self.hparams = {"hidden": hidden, "layers": layers, "dropout": dropout, "augment": augment}
        self.normalise = Normaliser(info.stats)
        self.augment = augment
        self.net = mlp(self.spec.num_params, hidden, self.spec.num_params, layers, dropout)
        self.scale = ChangeScale(self.spec, info.stats.get(self.spec))

    def forward(self, weights: WeightSpace) -> WeightSpace:
        flat = self.normalise(weights).flatten()
        if self.augment and self.training:
            index = permutation_index(self.spec, len(weights), flat.device)
            moved = self.net(flat.gather(1, index))  # bf16 under autocast
            change = torch.empty_like(moved).scatter_(1, index, moved)
        else:
            change = self.net(flat)
        return self.scale(WeightSpace.from_flat(self.spec, change))


def _build(task: TaskInfo, augment: bool, hparams: dict) -> nn.Module:
    model = FlatEditMLP if task.task == "edit" else FlatMLP
    return model(task, **hparams, augment=augment)


@register_method("mlp", family="flat", profiles=PROFILES, symmetries=(), edits=True,
                 paper="Navon et al. 2023 (MLP baseline)")
def build_mlp(task: TaskInfo, **hparams) -> nn.Module:
    return _build(task, False, hparams)


@register_method("mlp-aug", family="flat", profiles=AUGMENTED_PROFILES, symmetries=(), edits=True,
                 profile_optim={"quick": AUGMENTED_QUICK_OPTIM},
                 paper="Navon et al. 2023 (MLP + permutation augmentation)")
def build_mlp_aug(task: TaskInfo, **hparams) -> nn.Module:
    return _build(task, True, hparams)
