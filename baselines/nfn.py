"""Invariant neural functionals ``nfn-np`` and ``nfn-hnp`` (Zhou et al. 2023, "Permutation
Equivariant Neural Functionals", NeurIPS 2023), built from the NF-Layers in
``baselines.nfn_layers``.

Model (the reference ``InvariantNFN``): per-layer normalisation -> input encoding -> a stack
of NP or HNP layers, each followed by ReLU (and channel dropout) -> invariant pooling ->
MLP head (three linear layers, ReLU, dropout). The published configurations differ by domain,
and we follow each (reference code ``experiments/*_configs``):

- MLPs / INRs (``classify_siren_configs/nfnet/inv_ff_mnist.yaml``, ``inv_ff_io_mnist.yaml``):
  Gaussian Fourier features of every entry (128 frequencies, scale 3 -> 256 channels),
  NF-Layers of 512, 512, 512 channels, feature dropout 0.1, head width 1000 with dropout 0.1.
  NP adds the sinusoidal input/output encoding (max_freq 3, 3 bands).
- CNNs (``predict_gen_configs/nfnet/hnp_inv.yaml``, ``np_inv.yaml``): raw weights, NF-Layers
  of 16, 16, 5 channels, head width 1000, no dropout; NP uses learned input/output
  embeddings in every layer (``NP-PosEmb``).
Both use the HNP pooling head (the reference ``MlpHead`` default), so in the published
setting *both* models are invariant to hidden-neuron permutations only: the NP layers are
equivariant to input/output permutations too, but the encodings and the head pin those
neurons. (``NFN(io=None, pool="np")`` is fully NP-invariant; the tests check that as well.)

Editing (task ``"edit"``; the reference ``TransferNet``, ``experiments/stylize_configs``): NF-Layers
are equivariant maps of weight-space features, so after the same stack a last NF-Layer maps to
one channel per entry (per tap for conv weights), read back as weights and biases, then
scaled per tensor by ``datasets.normalisation.ChangeScale`` (learned, from 0.01, the
reference's ``LearnedScale(out_scale=0.01)``, here times the layer's standard deviation since
our input is normalised) so the first edit is near the identity. The reference's editing
network has 3 NF-Layers of 128 channels without dropout; ours keeps the profile's stack.

Deliberate differences: the reference's SIREN-classification run uses Adam (its AdamW config:
lr 1e-4, wd 0.01) with a 10k-step warmup, and the zoo run (lr 1e-3) predicts through a sigmoid
with a BCE loss; here the harness owns the optimiser, schedule and loss, and the model outputs
raw logits / one value. Weights are always normalised per layer (the reference normalises
per entry, or not at all for HNP on zoos). The quick profile keeps the structure with a
256-wide head: for MLPs three 16-channel layers and 16 Fourier frequencies (32 channels; in
the threshold study, docs/notes/threshold-study.md, 32-channel layers were within a point of
16 on validation), for CNNs the published 16, 16, 5 channels. Parameter counts for the SIREN
2-32-32-1 input with 10 classes (from the built modules): nfn-np quick 168,010, paper
45,459,754; nfn-hnp quick 195,930, paper 67,521,322. We found no published count for this
setting.
"""

from __future__ import annotations

from torch import Tensor, nn

from baselines.heads import mlp
from baselines.nfn_layers import (ChannelDropout, FeatureReLU, GaussianFourier, HNPLinear, IOSinusoidal,
                                  NPLinear, features_of, hnp_pool, np_pool, pool_dim, weights_of)
from datasets.normalisation import ChangeScale, Normaliser
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import register_method
from datasets.spec import ArchSpec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace

PROFILES = {
    "paper": {"mlp": {"channels": (512, 512, 512), "fourier": 128, "head_hidden": 1000,
                      "head_dropout": 0.1, "feature_dropout": 0.1},
              "cnn": {"channels": (16, 16, 5), "fourier": 0, "head_hidden": 1000,
                      "head_dropout": 0.0, "feature_dropout": 0.0}},
    "quick": {"mlp": {"channels": (16, 16, 16), "fourier": 16, "head_hidden": 256,
                      "head_dropout": 0.1, "feature_dropout": 0.1},
              "cnn": {"channels": (16, 16, 5), "fourier": 0, "head_hidden": 256,
                      "head_dropout": 0.0, "feature_dropout": 0.0}},
}
FOURIER_SCALE = 3.0
IO_MAX_FREQ, IO_BANDS = 3.0, 3


def nf_layer(spec: ArchSpec, mode: str, c_in: int, c_out: int, io: str | None) -> nn.Module:
    """The NP or HNP NF-Layer ``c_in -> c_out`` (NP with learned input/output embeddings when
    ``io == "learned"``)."""
    return NPLinear(spec, c_in, c_out, io_embed=io == "learned") if mode == "np" else HNPLinear(spec, c_in, c_out)


class NFN(nn.Module):
    """Invariant NFN. ``mode``: "np" | "hnp"; ``io``: None | "sinusoidal" | "learned"
    (input/output encoding, NP only); ``pool``: "np" | "hnp". ``edit``: instead of pooling
    and the head, a last NF-Layer to one channel per entry (per tap) whose output is the
    weight change, scaled by ``ChangeScale`` (NFN's ``TransferNet``)."""

    def __init__(self, info: TaskInfo, mode: str, channels: tuple[int, ...], fourier: int,
                 head_hidden: int, head_dropout: float, feature_dropout: float,
                 io: str | None = None, pool: str = "hnp", edit: bool = False) -> None:
        super().__init__()
        spec = info.spec
        self.hparams = {"mode": mode, "channels": list(channels), "fourier": fourier,
                        "fourier_scale": FOURIER_SCALE, "io": io, "pool": pool,
                        "head_hidden": head_hidden, "head_dropout": head_dropout,
                        "feature_dropout": feature_dropout}
        self.normalise = Normaliser(info.stats)
        mods: list[nn.Module] = []
        c = 1
        if fourier:
            mods.append(GaussianFourier(fourier, FOURIER_SCALE))
            c = 2 * fourier
        if io == "sinusoidal":
            mods.append(IOSinusoidal(spec, IO_MAX_FREQ, IO_BANDS))
            c += mods[-1].extra
            self.hparams.update(io_max_freq=IO_MAX_FREQ, io_bands=IO_BANDS)
        for width in channels:
            mods.append(nf_layer(spec, mode, c, width, io))
            if feature_dropout:  # dropout before the ReLU: the same (the scale is >= 0), both in place
                mods.append(ChannelDropout(feature_dropout))
            mods.append(FeatureReLU())
            c = width
        self.features = nn.Sequential(*mods)
        self.spec, self.pool, self.edit = spec, pool, edit
        if edit:
            self.out = nf_layer(spec, mode, c, 1, io)
            self.scale = ChangeScale(spec, info.stats.get(spec))
        else:
            self.head = mlp(pool_dim(spec, c, pool), head_hidden, info.out_dim, 3, head_dropout)

    def forward(self, weights: WeightSpace) -> Tensor | WeightSpace:
        feats = self.features(features_of(self.normalise(weights)))
        if self.edit:
            return self.scale(weights_of(self.spec, self.out(feats)))
        return self.head(np_pool(feats) if self.pool == "np" else hnp_pool(feats))


def _build(task: TaskInfo, mode: str, hparams: dict) -> NFN:
    spec = task.spec
    if len(spec.layers) < 2:
        raise UnsupportedArchitecture(f"nfn-{mode} needs hidden neurons; {spec.describe()} has one layer")
    io = ("learned" if spec.is_conv else "sinusoidal") if mode == "np" else None
    return NFN(task, mode, io=io, pool="hnp", edit=task.task == "edit", **hparams)


@register_method("nfn-np", family="equivariant", profiles=PROFILES, by_domain=True, edits=True,
                 paper="Zhou et al. 2023 (NFN, NP layers)")
def build_nfn_np(task: TaskInfo, **hparams) -> nn.Module:
    return _build(task, "np", hparams)


@register_method("nfn-hnp", family="equivariant", profiles=PROFILES, by_domain=True, edits=True,
                 paper="Zhou et al. 2023 (NFN, HNP layers)")
def build_nfn_hnp(task: TaskInfo, **hparams) -> nn.Module:
    return _build(task, "hnp", hparams)
