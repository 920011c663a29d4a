"""Weight-space features and the NF-Layers of Zhou et al. 2023, "Permutation Equivariant
Neural Functionals" (NeurIPS 2023; NFN), written from the layer definitions of the authors'
public code (github.com/AllanYangZhou/nfn, ``nfn/layers``: ``NPLinear``, ``HNPLinear``,
``NPPool``, ``HNPPool``, encodings), which implements the paper's NP and HNP NF-Layers.

Notation as in the paper: ``W^(i)`` (``n_i x n_{i-1}``) and ``b^(i)`` for layers ``i = 1..L``;
neuron layer 0 is the input, ``L`` the output. Layout: features are kept channels-last, per
layer a weight feature ``(B, n_i, n_{i-1}, t_i * c)`` and a bias feature ``(B, n_i, c)``, where
``t_i`` is the number of kernel taps (1 for linear layers). As in NFN (filter taps folded into channels),
a conv weight ``(out, in, kh, kw)`` is a matrix ``(out, in)`` whose entries
carry ``kh * kw`` times the channels, so layers with different kernels have different
channel counts and every map below is built per layer. Channel index = ``tap * c + channel``.

NP layer (every neuron layer permutable, inputs and outputs included). For ``W^(i)`` (rows
j = neurons of layer i, columns k = neurons of layer i-1) the output is

    a W_jk + R(W^(i)_{*k}, W^(i-1)_{k*}, b^(i-1)_k) + C(W^(i)_{j*}, b^(i)_j, W^(i+1)_{*j}) + G(g)

with ``*`` a mean over that index, ``R``/``C``/``G`` linear maps of the channels and
``g`` the means of every weight and bias tensor; the bias output is
``C'(W^(i)_{j*}, b^(i)_j, W^(i+1)_{*j}) + G'(g)``: the full NP-equivariant linear layer
(independent permutations of every neuron layer), ``NPLinear`` in the reference code.

HNP layer (inputs and outputs fixed, hidden neurons permutable). Same construction, but an
index over input or output neurons is never averaged: it is kept and folded into the
channels (the first layer's rows carry their ``n_0`` entries, the last layer's columns their
``n_L`` entries, the last bias its ``n_L`` entries; ``g`` also holds the first layer's
row means per input, the last layer's column means per output and the last bias).

Deliberate differences from the reference code (none changes the symmetry):
- the HNP last layer also sees ``b^(L-1)_k``, the bias of its input neuron, like every middle
  layer does (the reference omits that one term);
- linear maps that the reference applies to both a mean and the tensor it is taken of keep
  only the tensor (the mean is a linear function of it), and the redundant additive biases
  of summed maps are dropped: the layer computes the same family of functions.
The initialisation follows the reference: uniform +-1/sqrt(total fan-in of the summed maps).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from datasets.spec import ArchSpec
from datasets.weights import WeightSpace


class Features(NamedTuple):
    """Channels-last weight-space features: weights ``(B, out, in, t*c)``, biases ``(B, out, c)``."""

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]

    def map(self, fw: Callable[[Tensor], Tensor], fb: Callable[[Tensor], Tensor] | None = None) -> "Features":
        """Apply ``fw`` to every weight and ``fb`` (default ``fw``) to every bias."""
        fb = fw if fb is None else fb
        return Features(tuple(map(fw, self.weights)), tuple(map(fb, self.biases)))

    def __add__(self, other: "Features") -> "Features":  # type: ignore[override]
        return Features(tuple(a + b for a, b in zip(self.weights, other.weights)),
                        tuple(a + b for a, b in zip(self.biases, other.biases)))


def layer_taps(spec: ArchSpec) -> tuple[int, ...]:
    """Kernel taps per layer (1 for linear layers)."""
    return tuple(layer.kernel[0] * layer.kernel[1] for layer in spec.layers)


def features_of(ws: WeightSpace) -> Features:
    """One channel per tap: weights ``(B, out, in, t)``, biases ``(B, out, 1)``."""
    weights = tuple(w.reshape(*w.shape[:3], -1) for w in ws.weights)
    return Features(weights, tuple(b.unsqueeze(-1) for b in ws.biases))


def weights_of(spec: ArchSpec, feats: Features) -> WeightSpace:
    """Inverse of :func:`features_of`: one-channel features as the weights of ``spec``."""
    weights = tuple(w.reshape(w.shape[0], *layer.weight_shape) for layer, w in zip(spec.layers, feats.weights))
    return WeightSpace(spec, weights, tuple(b.squeeze(-1) for b in feats.biases))


def init_group(*linears: nn.Linear) -> None:
    """Reference init for summed maps: U(+-1/sqrt(fan_in of all of them)) on weights and biases."""
    bound = 1.0 / math.sqrt(sum(lin.in_features for lin in linears))
    for lin in linears:
        nn.init.uniform_(lin.weight, -bound, bound)
        if lin.bias is not None:
            nn.init.uniform_(lin.bias, -bound, bound)


def per_tap(x: Tensor, taps: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` to the channels of every tap of a folded ``(..., taps * c)`` tensor."""
    out = fn(x.reshape(*x.shape[:-1], taps, -1))
    return out.reshape(*out.shape[:-2], -1)


class GaussianFourier(nn.Module):
    """Random Fourier features of every scalar entry: ``[sin(2 pi x B), cos(2 pi x B)]``,
    ``B ~ N(0, scale^2)`` of size ``mapping`` (NFN ``GaussianFourierFeatureTransform``; one
    input channel per tap)."""

    def __init__(self, mapping: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(mapping) * scale)
        self.out_channels = 2 * mapping

    def _encode(self, x: Tensor) -> Tensor:
        z = 2 * math.pi * x * self.freqs  # (..., taps, 1) * (m,) -> (..., taps, m)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)

    def forward(self, feats: Features) -> Features:
        return feats.map(lambda w: per_tap(w, w.shape[-1], self._encode))


def _sinusoid(n: int, max_freq: float, bands: int) -> Tensor:
    """NFN/Perceiver ``fourier_encode`` of ``linspace(-1, 1, n)``: ``(n, 2 * bands + 1)``."""
    x = torch.linspace(-1.0, 1.0, n).unsqueeze(-1)
    z = x * torch.linspace(1.0, max_freq / 2, bands) * math.pi
    return torch.cat([z.sin(), z.cos(), x], dim=-1)


class IOSinusoidal(nn.Module):
    """NFN ``IOSinusoidalEncoding`` (``enc_layers=False``): appends ``2 * bands + 1`` channels
    per tap, a sinusoidal code of the input neuron on the first layer's columns and of the
    output neuron on the last layer's rows and bias, zeros elsewhere. Breaks the input/output
    permutation symmetry of NP layers; hidden neurons stay exchangeable."""

    def __init__(self, spec: ArchSpec, max_freq: float, bands: int) -> None:
        super().__init__()
        self.taps = layer_taps(spec)
        self.register_buffer("inp", _sinusoid(spec.widths[0], max_freq, bands))
        self.register_buffer("out", _sinusoid(spec.widths[-1], max_freq, bands))
        self.extra = 2 * bands + 1

    def forward(self, feats: Features) -> Features:
        last = len(feats.weights) - 1
        weights, biases = [], []
        for i, (w, b) in enumerate(zip(feats.weights, feats.biases)):
            enc = w.new_zeros(*w.shape[:3], self.taps[i], self.extra)
            if i == 0:
                enc = enc + self.inp[None, None, :, None, :]
            if i == last:
                enc = enc + self.out[None, :, None, None, :]
            parts = (w.reshape(*w.shape[:3], self.taps[i], -1), enc)
            weights.append(torch.cat(parts, dim=-1).flatten(-2))
            b_enc = self.out.expand(b.shape[0], -1, -1) if i == last else b.new_zeros(*b.shape[:2], self.extra)
            biases.append(torch.cat([b, b_enc], dim=-1))
        return Features(tuple(weights), tuple(biases))


class ChannelDropout(nn.Module):
    """NFN ``ChannelDropout``: drops whole channels of a weight feature (per network), and
    bias entries independently. Works in place: its input must be a fresh layer output
    that nothing else holds (as in ``NFN``, where it follows an NF-Layer)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, feats: Features) -> Features:
        if not self.training or self.p == 0:
            return feats

        def drop_channels(w: Tensor) -> Tensor:
            keep = torch.rand(w.shape[0], 1, 1, w.shape[-1], device=w.device) >= self.p
            return w.mul_(keep.to(w.dtype) / (1 - self.p))
        return feats.map(drop_channels, lambda b: nn.functional.dropout(b, self.p, True, inplace=True))


def axis_means(w: Tensor) -> tuple[Tensor, Tensor]:
    """Means of a weight feature over its rows ``(B, in, F)`` and over its columns
    ``(B, out, F)``, as sums scaled afterwards: the backward of a sum is a broadcast view,
    that of a mean a materialised division of the whole tensor."""
    return w.sum(1) / w.shape[1], w.sum(2) / w.shape[2]


def _global_means(feats: Features, col_means: list[Tensor] | None = None) -> list[Tensor]:
    """Mean of every weight feature over (rows, columns), then of every bias over its rows;
    from ``col_means`` (``axis_means(w)[1]`` of every weight) when given."""
    if col_means is None:
        col_means = [w.sum(2) / w.shape[2] for w in feats.weights]
    return [c.mean(1) for c in col_means] + [b.mean(1) for b in feats.biases]


def point_plus_broadcasts(x: Tensor, weight: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``x @ weight.T + rows[:, None] + cols[:, :, None]`` for ``x`` ``(B, out, in, F)``,
    ``rows`` ``(B, in, F')`` and ``cols`` ``(B, out, F')``: one matmul and two in-place
    broadcast adds, so no broadcast tensor is materialised (their backward is a sum)."""
    y = nn.functional.linear(x, weight)
    y.add_(rows.unsqueeze(1))
    return y.add_(cols.unsqueeze(2))


class NPLinear(nn.Module):
    """Equivariant linear map under permutations of *every* neuron layer (NFN "NP").

    ``io_embed``: learned embeddings of the input and output neurons added to the input
    features first (the reference's ``NP-PosEmb`` layer used for CNN zoos), which reduces the
    symmetry to hidden neurons."""

    def __init__(self, spec: ArchSpec, c_in: int, c_out: int, io_embed: bool = False) -> None:
        super().__init__()
        t = layer_taps(spec)
        L = len(t)
        g_dim = sum(t) * c_in + L * c_in
        self.point, self.row, self.col, self.glob = (nn.ModuleList() for _ in range(4))
        self.bias_col, self.bias_glob = nn.ModuleList(), nn.ModuleList()
        for i in range(L):
            f_in, f_out = t[i] * c_in, t[i] * c_out
            row_in = f_in + ((t[i - 1] + 1) * c_in if i > 0 else 0)
            col_in = f_in + c_in + (t[i + 1] * c_in if i < L - 1 else 0)
            self.point.append(nn.Linear(f_in, f_out))
            self.row.append(nn.Linear(row_in, f_out, bias=False))
            self.col.append(nn.Linear(col_in, f_out, bias=False))
            self.glob.append(nn.Linear(g_dim, f_out, bias=False))
            self.bias_col.append(nn.Linear(col_in, c_out))
            self.bias_glob.append(nn.Linear(g_dim, c_out, bias=False))
            init_group(self.point[i], self.row[i], self.col[i], self.glob[i])
            init_group(self.bias_col[i], self.bias_glob[i])
        self.io_embed = io_embed
        if io_embed:
            n_in, n_out = spec.widths[0], spec.widths[-1]
            self.in_embed = nn.Parameter(torch.randn(n_in, t[0] * c_in))
            self.out_embed = nn.Parameter(torch.randn(n_out, t[-1] * c_in))
            self.out_bias_embed = nn.Parameter(torch.randn(n_out, c_in))

    def _embed(self, feats: Features) -> Features:
        w, b = list(feats.weights), list(feats.biases)
        w[0] = w[0] + self.in_embed[None, None]
        w[-1] = w[-1] + self.out_embed[None, :, None]
        b[-1] = b[-1] + self.out_bias_embed
        return Features(tuple(w), tuple(b))

    def forward(self, feats: Features) -> Features:
        if self.io_embed:
            feats = self._embed(feats)
        W, bs = feats.weights, feats.biases
        row_mean, col_mean = map(list, zip(*map(axis_means, W)))
        g = torch.cat(_global_means(feats, col_mean), dim=-1)
        L = len(W)
        out_w, out_b = [], []
        for i in range(L):
            rows = [row_mean[i]] + ([col_mean[i - 1], bs[i - 1]] if i > 0 else [])
            cols = [col_mean[i], bs[i]] + ([row_mean[i + 1]] if i < L - 1 else [])
            r, c = torch.cat(rows, -1), torch.cat(cols, -1)
            shared = self.glob[i](g) + self.point[i].bias  # the same for every entry
            out_w.append(point_plus_broadcasts(W[i], self.point[i].weight, self.row[i](r) + shared[:, None],
                                               self.col[i](c)))
            out_b.append(self.bias_col[i](c) + self.bias_glob[i](g)[:, None])
        return Features(tuple(out_w), tuple(out_b))


class HNPLinear(nn.Module):
    """Equivariant linear map under permutations of the *hidden* neurons only (NFN "HNP").
    Needs at least two layers."""

    def __init__(self, spec: ArchSpec, c_in: int, c_out: int) -> None:
        super().__init__()
        t = layer_taps(spec)
        L = len(t)
        if L < 2:
            raise ValueError("HNP layers need a hidden neuron layer (two or more layers)")
        n_in, n_out = spec.widths[0], spec.widths[-1]
        self.n_in, self.n_out, self.c_out, self.taps = n_in, n_out, c_out, t
        self.g_dim = (sum(t) + L + n_in * t[0] + n_out * t[-1] + n_out) * c_in
        # neighbour dims: what a column of W^(i) sees of layer i-1, what a row sees of layer i+1
        prev = [0] + [(n_in * t[0] if i == 1 else t[i - 1]) * c_in + c_in for i in range(1, L)]
        nxt = [(n_out * t[-1] if i == L - 2 else t[i + 1]) * c_in for i in range(L - 1)] + [0]
        self.first = nn.Linear(n_in * t[0] * c_in + c_in + nxt[0], n_in * t[0] * c_out)
        self.first_glob = nn.Linear(self.g_dim, n_in * t[0] * c_out, bias=False)
        self.first_bias = nn.Linear(n_in * t[0] * c_in + c_in + nxt[0], c_out)
        self.first_bias_glob = nn.Linear(self.g_dim, c_out, bias=False)
        self.last = nn.Linear(n_out * t[-1] * c_in + prev[-1], n_out * t[-1] * c_out)
        self.last_glob = nn.Linear(self.g_dim, n_out * t[-1] * c_out, bias=False)
        self.last_bias = nn.Linear(self.g_dim, n_out * c_out)
        init_group(self.first, self.first_glob)
        init_group(self.first_bias, self.first_bias_glob)
        init_group(self.last, self.last_glob)
        self.point, self.row, self.col, self.glob = (nn.ModuleList() for _ in range(4))
        self.bias_col, self.bias_glob = nn.ModuleList(), nn.ModuleList()
        for i in range(1, L - 1):
            f_in, f_out = t[i] * c_in, t[i] * c_out
            self.point.append(nn.Linear(f_in, f_out))
            self.row.append(nn.Linear(f_in + prev[i], f_out, bias=False))
            self.col.append(nn.Linear(f_in + c_in + nxt[i], f_out, bias=False))
            self.glob.append(nn.Linear(self.g_dim, f_out, bias=False))
            self.bias_col.append(nn.Linear(f_in + c_in + nxt[i], c_out))
            self.bias_glob.append(nn.Linear(self.g_dim, c_out, bias=False))
            init_group(self.point[-1], self.row[-1], self.col[-1], self.glob[-1])
            init_group(self.bias_col[-1], self.bias_glob[-1])

    def forward(self, feats: Features) -> Features:
        W, bs = feats.weights, feats.biases
        L = len(W)
        B = W[0].shape[0]
        row_mean, col_mean = map(list, zip(*map(axis_means, W)))
        first_rows = W[0].flatten(2)                   # (B, n_1, n_in * F_0): row j of W^(0)
        last_cols = W[-1].transpose(1, 2).flatten(2)   # (B, n_{L-1}, n_out * F): column k of W^(L-1)
        g = torch.cat(_global_means(feats, col_mean) + [row_mean[0].flatten(1), col_mean[-1].flatten(1),
                                              bs[-1].flatten(1)], dim=-1)

        def prev(i: int) -> list[Tensor]:  # seen by column k of W^(i): neuron k of layer i
            return [first_rows if i == 1 else col_mean[i - 1], bs[i - 1]]

        def nxt(i: int) -> list[Tensor]:  # seen by row j of W^(i): neuron j of layer i+1
            return [last_cols if i == L - 2 else row_mean[i + 1]]

        p0 = torch.cat([first_rows, bs[0]] + nxt(0), -1)
        w0 = self.first(p0) + self.first_glob(g)[:, None]
        out_w = [w0.reshape(B, -1, self.n_in, w0.shape[-1] // self.n_in)]
        out_b = [self.first_bias(p0) + self.first_bias_glob(g)[:, None]]
        for m, i in enumerate(range(1, L - 1)):
            r = torch.cat([row_mean[i]] + prev(i), -1)
            c = torch.cat([col_mean[i], bs[i]] + nxt(i), -1)
            shared = self.glob[m](g) + self.point[m].bias  # the same for every entry
            out_w.append(point_plus_broadcasts(W[i], self.point[m].weight, self.row[m](r) + shared[:, None],
                                               self.col[m](c)))
            out_b.append(self.bias_col[m](c) + self.bias_glob[m](g)[:, None])
        pl = torch.cat([last_cols] + prev(L - 1), -1)
        wl = self.last(pl) + self.last_glob(g)[:, None]   # (B, n_{L-1}, n_out * F_out)
        out_w.append(wl.reshape(B, wl.shape[1], self.n_out, -1).transpose(1, 2))
        out_b.append(self.last_bias(g).reshape(B, self.n_out, self.c_out))
        return Features(tuple(out_w), tuple(out_b))


def np_pool(feats: Features) -> Tensor:
    """NFN ``NPPool``: mean of every weight and bias feature over all its neurons, ``(B, D)``."""
    return torch.cat(_global_means(feats), dim=-1)


def hnp_pool(feats: Features) -> Tensor:
    """NFN ``HNPPool``: like ``np_pool`` but input and output positions are kept: the first
    weight is averaged over rows only, the last over columns only, the last bias is kept."""
    W, bs = feats.weights, feats.biases
    parts = [W[0].mean(1).flatten(1)] + [w.sum((1, 2)) / (w.shape[1] * w.shape[2]) for w in W[1:-1]]
    parts += [W[-1].mean(2).flatten(1)]
    parts += [b.mean(1) for b in bs[:-1]] + [bs[-1].flatten(1)]
    return torch.cat(parts, dim=-1)


def pool_dim(spec: ArchSpec, channels: int, kind: str) -> int:
    """Length of ``np_pool`` / ``hnp_pool`` output for ``channels`` channels per tap."""
    t = layer_taps(spec)
    if kind == "np":
        return (sum(t) + len(t)) * channels
    n_in, n_out = spec.widths[0], spec.widths[-1]
    return (n_in * t[0] + sum(t[1:-1]) + n_out * t[-1] + len(t) - 1 + n_out) * channels


class FeatureReLU(nn.Module):
    """ReLU on every weight and bias feature, in place (its input must be a fresh layer
    output that nothing else holds)."""

    def forward(self, feats: Features) -> Features:
        return feats.map(torch.relu_)
