"""Neural functional Transformer ``nft`` (Zhou et al. 2023, "Neural Functional Transformers",
NeurIPS 2023), written from the layer definitions of the authors' public code
(github.com/AllanYangZhou/nfn: ``NPAttention``, ``experiments.models.Block``,
``LearnedPosEmbedding``, ``SimpleLayerNorm``, ``Pointwise``) and the SIREN-classification
config ``classify_siren_configs/nfnet/nft_ff.yaml`` with its Perceiver head
(``head_cls/perceiver.yaml``).

Notation and layout as in ``baselines.nfn_layers``: ``W^(i)`` is ``n_i x n_{i-1}``, features
are channels-last, weights ``(B, n_i, n_{i-1}, t_i c)``, biases ``(B, n_i, c)``. Queries, keys and values are per-entry linear maps of
the channels (one map shared by all tensors for MLPs; per layer, taps folded in, for CNNs, as
the reference's ``share_projections=False``), split into ``h`` heads of ``c/h`` channels.

Weight-space self-attention (NP-equivariant; sum of two terms, no output projection):
1. Layer term: one token per weight tensor and per bias tensor, the mean of its q/k/v over
   all its entries; ordinary attention among these ``2L`` tokens; each output is broadcast
   to every entry of its tensor.
2. Neuron term: for every neuron layer ``l`` (inputs and outputs included) the tokens are the
   columns of the incoming weight ``W^(l)`` (one per neuron of layer ``l-1``), the bias
   ``b^(l)``, and the rows of the outgoing weight ``W^(l+1)`` (one per neuron of layer
   ``l+1``); each token's vector holds its entries for *all* neurons of layer ``l`` times the
   head channels, so
       out_p = sum_s softmax_s( <q_p, k_s> / sqrt(n_l c_h) ) v_s,
   with the inner product summed over the neurons of layer ``l``. It is invariant to
   permuting layer ``l``, equivariant in the neighbouring layers. Every weight entry
   ``W^(l)_jk`` receives the neuron terms of both of its neurons (layers ``l`` and ``l-1``).
Block (pre-norm): ``x + Dropout(SA(LN(x)))``, then ``x + Dropout(FF(LN(x)))`` with FF =
per-entry Linear(c, f c), GELU, Linear(f c, c). LayerNorm is per tensor over the channels.

Input: per-layer normalisation, Gaussian Fourier features of every entry (``2m = c``
channels), then learned embeddings of layer index (weights and biases), input neuron and
output neuron (``LearnedPosEmbedding``), which break the input/output symmetry: the model is
invariant to hidden-neuron permutations, as in the paper's INR experiments.
Invariant head: the Perceiver of the reference (``PerceiverNet``, ``pool_latents=True``):
``M`` learned latents cross-attend (1 head) over every weight and bias entry as a set, then
latent self-attention blocks, mean over latents, LayerNorm, Linear. The set attention is
the NFT paper's weight-space cross-attention pooling (its figure 2).

Paper profile (``nft_ff.yaml``, ``perceiver.yaml``, Block defaults): m = 128 (c = 256), scale
3, 4 blocks, 8 heads, ff factor 2, dropout 0.1; 32 latents of 128, cross-attention head 64,
2 self-attention blocks of 4 heads x 64. Quick profile: c = 16, 2 blocks, 2 heads, 16
latents of 64, one self-attention block of 2 heads x 32, Fourier scale 0.3: with only 8
frequencies drawn from N(0, 3^2) almost none is low enough to resolve a weight's value (on the
earlier 4-view build of ``digits-inr`` the quick model never left chance at scale 3), and on
the default data scale 0.3 is the best on validation (``scripts/threshold_study.py``,
docs/notes/threshold-study.md).
Editing (task ``"edit"``): the blocks are equivariant, so the Perceiver head is replaced by a
LayerNorm and a per-entry linear map to one channel (per tap) whose output is the weight
change, scaled per tensor by ``datasets.normalisation.ChangeScale`` (learned, from 0.01 of the
layer's standard deviation: the first edit is near the identity). The NFT paper reports INR
editing results, but the public code holds no NFT editing network; this head follows NFN's
(``experiments/stylize_models.py``: an equivariant map to one channel, ``LearnedScale(0.01)``).

Deliberate differences: for CNNs the head first projects each layer's folded taps to ``c``
channels (the reference flattens only MLP weights); the optimiser and schedule are the
harness's. Parameter counts for the SIREN 2-32-32-1 input with 10 classes (from the built
modules): quick 138,842, paper 8,038,922; we found no published count for this setting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.nfn_layers import Features, GaussianFourier, features_of, layer_taps, per_tap, weights_of
from datasets.normalisation import ChangeScale, LayerStats, Normaliser
from datasets.errors import UnsupportedArchitecture
from datasets.method_table import register_method
from datasets.spec import ArchSpec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace

PROFILES = {
    "paper": {"channels": 256, "fourier_scale": 3.0, "blocks": 4, "heads": 8, "ff_factor": 2, "dropout": 0.1,
              "latents": 32, "latent_dim": 128, "cross_dim_head": 64, "self_blocks": 2,
              "latent_heads": 4, "latent_dim_head": 64},
    "quick": {"channels": 16, "fourier_scale": 0.3, "blocks": 2, "heads": 2, "ff_factor": 2, "dropout": 0.1,
              "latents": 16, "latent_dim": 64, "cross_dim_head": 32, "self_blocks": 1,
              "latent_heads": 2, "latent_dim_head": 32},
}


class LearnedPosEmbedding(nn.Module):
    """Adds a learned vector per layer (weights, biases), per input neuron (first weight's
    columns) and per output neuron (last weight's rows and last bias); shared across taps."""

    def __init__(self, spec: ArchSpec, c: int) -> None:
        super().__init__()
        L = len(spec.layers)
        self.taps = layer_taps(spec)
        self.weight = nn.Parameter(torch.randn(L, c))
        self.bias = nn.Parameter(torch.randn(L, c))
        self.inp = nn.Parameter(torch.randn(spec.widths[0], c))
        self.out = nn.Parameter(torch.randn(spec.widths[-1], c))

    def forward(self, feats: Features) -> Features:
        last = len(feats.weights) - 1
        weights, biases = [], []
        for i, (w, b) in enumerate(zip(feats.weights, feats.biases)):
            emb = self.weight[i].expand(1, 1, 1, -1)
            if i == 0:
                emb = emb + self.inp[None, None]
            if i == last:
                emb = emb + self.out[None, :, None]
            weights.append(per_tap(w, self.taps[i], lambda x, e=emb: x + e.unsqueeze(-2)))
            biases.append(b + self.bias[i] + (self.out if i == last else 0))
        return Features(tuple(weights), tuple(biases))


class FeatureLayerNorm(nn.Module):
    """LayerNorm over the channels of every entry, own parameters per tensor."""

    def __init__(self, spec: ArchSpec, c: int) -> None:
        super().__init__()
        self.weight_norms = nn.ModuleList(nn.LayerNorm(t * c) for t in layer_taps(spec))
        self.bias_norms = nn.ModuleList(nn.LayerNorm(c) for _ in spec.layers)

    def forward(self, feats: Features) -> Features:
        return Features(tuple(n(w) for n, w in zip(self.weight_norms, feats.weights)),
                        tuple(n(b) for n, b in zip(self.bias_norms, feats.biases)))


class Pointwise(nn.Module):
    """Per-entry linear map of the channels, own parameters per tensor (taps mixed)."""

    def __init__(self, spec: ArchSpec, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight_maps = nn.ModuleList(nn.Linear(t * c_in, t * c_out) for t in layer_taps(spec))
        self.bias_maps = nn.ModuleList(nn.Linear(c_in, c_out) for _ in spec.layers)

    def forward(self, feats: Features) -> Features:
        return Features(tuple(m(w) for m, w in zip(self.weight_maps, feats.weights)),
                        tuple(m(b) for m, b in zip(self.bias_maps, feats.biases)))


class WeightSpaceSelfAttention(nn.Module):
    """The NFT self-attention layer (module docstring, terms 1 and 2)."""

    def __init__(self, spec: ArchSpec, c: int, heads: int, dropout: float) -> None:
        super().__init__()
        if c % heads:
            raise ValueError(f"channels ({c}) must be divisible by heads ({heads})")
        taps = layer_taps(spec)
        self.c, self.heads, self.dropout = c, heads, dropout
        self.shared = all(t == 1 for t in taps)
        if self.shared:
            self.qkv = nn.Linear(c, 3 * c)
        else:
            self.weight_qkv = nn.ModuleList(nn.Linear(t * c, 3 * c) for t in taps)
            self.bias_qkv = nn.ModuleList(nn.Linear(c, 3 * c) for _ in taps)
            self.unproject = nn.ModuleList(nn.Linear(c, t * c) for t in taps)

    def _split(self, x: Tensor) -> Tensor:
        """``(..., 3c) -> (3, ..., heads, c/heads)``."""
        x = x.reshape(*x.shape[:-1], 3, self.heads, self.c // self.heads)
        return x.movedim(-3, 0)

    def forward(self, feats: Features) -> Features:
        W, bs = feats.weights, feats.biases
        L, B = len(W), W[0].shape[0]
        if self.shared:
            qkv_w, qkv_b = [self.qkv(w) for w in W], [self.qkv(b) for b in bs]
        else:
            qkv_w = [m(w) for m, w in zip(self.weight_qkv, W)]
            qkv_b = [m(b) for m, b in zip(self.bias_qkv, bs)]
        drop = self.dropout if self.training else 0.0
        # term 1: attention among the 2L per-tensor mean tokens
        tokens = torch.stack([w.mean((1, 2)) for w in qkv_w] + [b.mean(1) for b in qkv_b], dim=1)
        q, k, v = self._split(tokens).transpose(2, 3)                # (B, heads, 2L, ch)
        glob = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, 2 * L, self.c)
        out_w = [glob[:, i, None, None].expand(*w.shape[:3], -1) for i, w in enumerate(W)]
        out_b = [glob[:, L + i, None].expand(*b.shape[:2], -1) for i, b in enumerate(bs)]
        # term 2: for every neuron layer, attention among the tensor slices that touch it
        for layer in range(L + 1):
            parts = []  # each (B, tokens, n_layer, 3c)
            if layer > 0:
                parts += [qkv_w[layer - 1].transpose(1, 2), qkv_b[layer - 1].unsqueeze(1)]
            if layer < L:
                parts.append(qkv_w[layer])
            x = torch.cat(parts, dim=1)
            T, n = x.shape[1], x.shape[2]
            q, k, v = self._split(x).permute(0, 1, 4, 2, 3, 5).reshape(3, B, self.heads, T, -1)
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, heads, T, n*ch)
            o = o.reshape(B, self.heads, T, n, -1).permute(0, 2, 3, 1, 4).reshape(B, T, n, self.c)
            at = 0
            if layer > 0:
                m = W[layer - 1].shape[2]
                out_w[layer - 1] = out_w[layer - 1] + o[:, :m].transpose(1, 2)
                out_b[layer - 1] = out_b[layer - 1] + o[:, m]
                at = m + 1
            if layer < L:
                out_w[layer] = out_w[layer] + o[:, at:]
        if not self.shared:
            out_w = [m(w) for m, w in zip(self.unproject, out_w)]
        return Features(tuple(out_w), tuple(out_b))


class Block(nn.Module):
    """Pre-norm NFT block: self-attention and a per-entry feed-forward, both residual."""

    def __init__(self, spec: ArchSpec, c: int, heads: int, ff_factor: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = FeatureLayerNorm(spec, c), FeatureLayerNorm(spec, c)
        self.attn = WeightSpaceSelfAttention(spec, c, heads, dropout)
        self.ff_in, self.ff_out = Pointwise(spec, c, ff_factor * c), Pointwise(spec, ff_factor * c, c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Features) -> Features:
        x = x + self.attn(self.norm1(x)).map(self.drop)
        h = self.ff_out(self.ff_in(self.norm2(x)).map(F.gelu)).map(self.drop)
        return x + h


class Attention(nn.Module):
    """Multi-head (cross-)attention as in the Perceiver: bias-free q, k, v maps, output map."""

    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        def split(t: Tensor) -> Tensor:
            return t.reshape(*t.shape[:2], self.heads, -1).transpose(1, 2)
        q = split(self.to_q(x))
        k, v = map(split, self.to_kv(context).chunk(2, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(o.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """Pre-norm GEGLU feed-forward of the Perceiver (width multiplier 4)."""

    def __init__(self, dim: int, dropout: float, mult: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.inp, self.out = nn.Linear(dim, 2 * mult * dim), nn.Linear(mult * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.inp(self.norm(x)).chunk(2, dim=-1)
        return self.drop(self.out(h * F.gelu(gate)))


class PerceiverHead(nn.Module):
    """Invariant head: learned latents cross-attend over all weight-space entries (a set),
    latent self-attention blocks, mean over latents, LayerNorm, Linear."""

    def __init__(self, spec: ArchSpec, c: int, out_dim: int, latents: int, latent_dim: int,
                 cross_dim_head: int, self_blocks: int, latent_heads: int, latent_dim_head: int,
                 dropout: float) -> None:
        super().__init__()
        self.taps = nn.ModuleList(nn.Linear(t * c, c) if t > 1 else nn.Identity() for t in layer_taps(spec))
        self.latents = nn.Parameter(torch.randn(latents, latent_dim))
        self.norm_latent, self.norm_context = nn.LayerNorm(latent_dim), nn.LayerNorm(c)
        self.cross = Attention(latent_dim, c, 1, cross_dim_head, dropout)
        self.cross_ff = FeedForward(latent_dim, dropout)
        self.self_norms = nn.ModuleList(nn.LayerNorm(latent_dim) for _ in range(self_blocks))
        self.self_attns = nn.ModuleList(Attention(latent_dim, latent_dim, latent_heads, latent_dim_head, dropout)
                                        for _ in range(self_blocks))
        self.self_ffs = nn.ModuleList(FeedForward(latent_dim, dropout) for _ in range(self_blocks))
        self.out = nn.Sequential(nn.LayerNorm(latent_dim), nn.Linear(latent_dim, out_dim))

    def forward(self, feats: Features) -> Tensor:
        tokens = [proj(w).flatten(1, 2) for proj, w in zip(self.taps, feats.weights)] + list(feats.biases)
        context = self.norm_context(torch.cat(tokens, dim=1))
        x = self.latents.expand(context.shape[0], -1, -1)
        x = x + self.cross(self.norm_latent(x), context)
        x = x + self.cross_ff(x)
        for norm, attn, ff in zip(self.self_norms, self.self_attns, self.self_ffs):
            h = norm(x)
            x = x + attn(h, h)
            x = x + ff(x)
        return self.out(x.mean(1))


class EditHead(nn.Module):
    """Equivariant output for editing: LayerNorm, then a per-entry linear map to one channel
    (per tap), read back as a weight change and scaled by ``ChangeScale``."""

    def __init__(self, spec: ArchSpec, c: int, stats: LayerStats | None) -> None:
        super().__init__()
        self.spec = spec
        self.norm = FeatureLayerNorm(spec, c)
        self.out = Pointwise(spec, c, 1)
        self.scale = ChangeScale(spec, stats)

    def forward(self, feats: Features) -> WeightSpace:
        return self.scale(weights_of(self.spec, self.out(self.norm(feats))))


class NFT(nn.Module):
    """Normalise -> Fourier features -> positional embeddings -> NFT blocks -> Perceiver head
    (``edit``: :class:`EditHead`)."""

    def __init__(self, info: TaskInfo, channels: int, fourier_scale: float, blocks: int, heads: int, ff_factor: int,
                 dropout: float, latents: int, latent_dim: int, cross_dim_head: int, self_blocks: int,
                 latent_heads: int, latent_dim_head: int, edit: bool = False) -> None:
        super().__init__()
        spec = info.spec
        self.hparams = {"channels": channels, "blocks": blocks, "heads": heads, "ff_factor": ff_factor,
                        "dropout": dropout, "fourier_scale": fourier_scale, "latents": latents,
                        "latent_dim": latent_dim, "cross_dim_head": cross_dim_head,
                        "self_blocks": self_blocks, "latent_heads": latent_heads,
                        "latent_dim_head": latent_dim_head}
        self.normalise = Normaliser(info.stats)
        self.encode = nn.Sequential(GaussianFourier(channels // 2, fourier_scale),
                                    LearnedPosEmbedding(spec, channels))
        self.blocks = nn.Sequential(*(Block(spec, channels, heads, ff_factor, dropout) for _ in range(blocks)))
        self.head = (EditHead(spec, channels, info.stats.get(spec)) if edit else
                     PerceiverHead(spec, channels, info.out_dim, latents, latent_dim, cross_dim_head,
                                   self_blocks, latent_heads, latent_dim_head, dropout))

    def forward(self, weights: WeightSpace) -> Tensor | WeightSpace:
        feats = self.encode(features_of(self.normalise(weights)))
        return self.head(self.blocks(feats))


@register_method("nft", family="transformer", profiles=PROFILES, edits=True,
                 paper="Zhou et al. 2023 (Neural Functional Transformers)")
def build_nft(task: TaskInfo, **hparams) -> nn.Module:
    spec = task.spec
    if len(spec.layers) < 2:
        raise UnsupportedArchitecture(f"nft needs hidden neurons; {spec.describe()} has one layer")
    return NFT(task, **hparams, edit=task.task == "edit")
