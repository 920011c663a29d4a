"""The restructured layers compute what the previous ones did.

The NF-Layers, the NFN stack and the DWS layer were rewritten for speed (one matmul plus
in-place broadcast adds instead of materialised broadcasts, means as sums, in-place ReLU and
dropout), and STATNN's quantiles of long rows come from partial selections instead of a
sort. The previous forward passes are kept here as references, on the same modules and
parameters; outputs and every gradient must agree in float64, in training mode (dropout
active, same seed) and in evaluation mode."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from baselines.dwsnet import DWSLayer, DWSNet, reduce
from baselines.nfn import NFN
from baselines.nfn_layers import (ChannelDropout, FeatureReLU, Features, HNPLinear, NPLinear, features_of,
                                  hnp_pool, np_pool)
from baselines.statnn import QUANTILES, SELECT_FROM, tensor_stats
from datasets.method_table import build_method
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.weights import WeightSpace
from weight_batches import random_weights, task_info

CNN = ArchSpec((Layer("conv", 4, 1, (3, 3), 2, 0, "relu"), Layer("conv", 4, 4, (3, 3), 2, 0, "relu"),
                Layer("linear", 3, 4)))
MLPS = [siren_spec(hidden=8), mlp_spec([3, 5, 6, 4, 2], "relu")]
TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


# ---- the previous forward passes -------------------------------------------------------

def _old_means(feats: Features) -> tuple[list[Tensor], list[Tensor]]:
    return [w.mean(1) for w in feats.weights], [w.mean(2) for w in feats.weights]


def _old_global_means(feats: Features) -> list[Tensor]:
    return [w.mean((1, 2)) for w in feats.weights] + [b.mean(1) for b in feats.biases]


class ReferenceNPLinear(NPLinear):
    def forward(self, feats: Features) -> Features:
        if self.io_embed:
            feats = self._embed(feats)
        W, bs = feats.weights, feats.biases
        row_mean, col_mean = _old_means(feats)
        g = torch.cat(_old_global_means(feats), dim=-1)
        L = len(W)
        out_w, out_b = [], []
        for i in range(L):
            rows = [row_mean[i]] + ([col_mean[i - 1], bs[i - 1]] if i > 0 else [])
            cols = [col_mean[i], bs[i]] + ([row_mean[i + 1]] if i < L - 1 else [])
            r, c = torch.cat(rows, -1), torch.cat(cols, -1)
            out_w.append(self.point[i](W[i]) + self.row[i](r)[:, None] + self.col[i](c)[:, :, None]
                         + self.glob[i](g)[:, None, None])
            out_b.append(self.bias_col[i](c) + self.bias_glob[i](g)[:, None])
        return Features(tuple(out_w), tuple(out_b))


class ReferenceHNPLinear(HNPLinear):
    def forward(self, feats: Features) -> Features:
        W, bs = feats.weights, feats.biases
        L = len(W)
        B = W[0].shape[0]
        row_mean, col_mean = _old_means(feats)
        first_rows = W[0].flatten(2)
        last_cols = W[-1].transpose(1, 2).flatten(2)
        g = torch.cat(_old_global_means(feats) + [row_mean[0].flatten(1), col_mean[-1].flatten(1),
                                                  bs[-1].flatten(1)], dim=-1)

        def prev(i: int) -> list[Tensor]:
            return [first_rows if i == 1 else col_mean[i - 1], bs[i - 1]]

        def nxt(i: int) -> list[Tensor]:
            return [last_cols if i == L - 2 else row_mean[i + 1]]

        p0 = torch.cat([first_rows, bs[0]] + nxt(0), -1)
        w0 = self.first(p0) + self.first_glob(g)[:, None]
        out_w = [w0.reshape(B, -1, self.n_in, w0.shape[-1] // self.n_in)]
        out_b = [self.first_bias(p0) + self.first_bias_glob(g)[:, None]]
        for m, i in enumerate(range(1, L - 1)):
            r = torch.cat([row_mean[i]] + prev(i), -1)
            c = torch.cat([col_mean[i], bs[i]] + nxt(i), -1)
            out_w.append(self.point[m](W[i]) + self.row[m](r)[:, None] + self.col[m](c)[:, :, None]
                         + self.glob[m](g)[:, None, None])
            out_b.append(self.bias_col[m](c) + self.bias_glob[m](g)[:, None])
        pl = torch.cat([last_cols] + prev(L - 1), -1)
        wl = self.last(pl) + self.last_glob(g)[:, None]
        out_w.append(wl.reshape(B, wl.shape[1], self.n_out, -1).transpose(1, 2))
        out_b.append(self.last_bias(g).reshape(B, self.n_out, self.c_out))
        return Features(tuple(out_w), tuple(out_b))


class ReferenceChannelDropout(ChannelDropout):
    def forward(self, feats: Features) -> Features:
        if not self.training or self.p == 0:
            return feats

        def drop_channels(w: Tensor) -> Tensor:
            keep = torch.rand(w.shape[0], 1, 1, w.shape[-1], device=w.device) >= self.p
            return w * keep.to(w.dtype) / (1 - self.p)
        return feats.map(drop_channels, lambda b: nn.functional.dropout(b, self.p, True))


class ReferenceFeatureReLU(FeatureReLU):
    def forward(self, feats: Features) -> Features:
        return feats.map(torch.relu)


def reference_np_pool(feats: Features) -> Tensor:
    return torch.cat(_old_global_means(feats), dim=-1)


def reference_hnp_pool(feats: Features) -> Tensor:
    W, bs = feats.weights, feats.biases
    parts = [W[0].mean(1).flatten(1)] + [w.mean((1, 2)) for w in W[1:-1]] + [W[-1].mean(2).flatten(1)]
    parts += [b.mean(1) for b in bs[:-1]] + [bs[-1].flatten(1)]
    return torch.cat(parts, dim=-1)


class ReferenceDWSLayer(DWSLayer):
    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        by_row = [reduce(x, (2,), self.reduction) for x in xs]
        g = torch.cat([reduce(p, (1,), self.reduction).flatten(1) for p in by_row], dim=1)
        ys = [t[:, None, None, :] for t in self.glob(g).split(self.out_dims, dim=1)]
        for a, idx in self.touching.items():
            parts = [by_row[i].squeeze(2) if self.slots[i].row == a
                     else reduce(xs[i], (1,), self.reduction).squeeze(1) for i in idx]
            outs = self.neuron[str(a)](torch.cat(parts, dim=-1)).split([self.out_dims[i] for i in idx], dim=-1)
            for i, o in zip(idx, outs):
                ys[i] = ys[i] + (o.unsqueeze(2) if self.slots[i].row == a else o.unsqueeze(1))
        for i, fc in self.own.items():
            ys[int(i)] = ys[int(i)] + fc(xs[int(i)])
        return ys


def reference_tensor_stats(t: Tensor) -> Tensor:
    flat = t.flatten(1)
    ordered = flat.sort(dim=1).values
    pos = torch.tensor(QUANTILES, dtype=flat.dtype, device=flat.device) * (flat.shape[1] - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    q = ordered[:, lo] + (ordered[:, hi] - ordered[:, lo]) * (pos - lo)
    return torch.cat([flat.mean(1, keepdim=True), flat.var(1, correction=0, keepdim=True), q], dim=1)


REFERENCE = {NPLinear: ReferenceNPLinear, HNPLinear: ReferenceHNPLinear, ChannelDropout: ReferenceChannelDropout,
             FeatureReLU: ReferenceFeatureReLU, DWSLayer: ReferenceDWSLayer}


def reference_of(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same parameters) running the previous forward passes; in an
    NFN stack the ReLU goes back before the dropout, where it was."""
    ref = copy.deepcopy(model)
    for module in ref.modules():
        if type(module) in REFERENCE:
            module.__class__ = REFERENCE[type(module)]
    if isinstance(ref, NFN):
        mods = list(ref.features)
        for i in range(len(mods) - 1):
            if isinstance(mods[i], ChannelDropout) and isinstance(mods[i + 1], FeatureReLU):
                mods[i], mods[i + 1] = mods[i + 1], mods[i]
        ref.features = nn.Sequential(*mods)
    return ref


def reference_forward(model: nn.Module, weights: WeightSpace) -> Tensor:
    if isinstance(model, NFN):
        feats = model.features(features_of(model.normalise(weights)))
        return model.head(reference_np_pool(feats) if model.pool == "np" else reference_hnp_pool(feats))
    return model(weights)


# ---- the checks -------------------------------------------------------------------------

def _outputs_and_grads(model: nn.Module, forward, weights: WeightSpace, seed: int) -> tuple[Tensor, list[Tensor]]:
    torch.manual_seed(seed)
    out = forward(model, weights)
    out.pow(2).sum().backward()
    return out.detach(), [p.grad for p in model.parameters()]


def _assert_same(model: nn.Module, weights: WeightSpace, train: bool) -> None:
    model = model.double().train(train)
    model.zero_grad(set_to_none=True)
    ref = reference_of(model)
    out, grads = _outputs_and_grads(model, lambda m, w: m(w), weights, seed=3)
    ref_out, ref_grads = _outputs_and_grads(ref, reference_forward, weights, seed=3)
    torch.testing.assert_close(out, ref_out, **TOLERANCE)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, **TOLERANCE)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ["nfn-np", "nfn-hnp"])
@pytest.mark.parametrize("spec", MLPS + [CNN], ids=["siren", "mlp4", "cnn"])
def test_nfn_matches_previous_layers(spec, name, train):
    ws = random_weights(spec, 3)
    info = task_info(spec)
    model = build_method(name, info, profile="quick", channels=(6, 5), fourier=3 if not spec.is_conv else 0,
                         head_hidden=8, feature_dropout=0.3, head_dropout=0.0)
    _assert_same(model, ws, train)


@pytest.mark.parametrize("io,pool", [(None, "np"), ("sinusoidal", "hnp"), ("learned", "hnp")])
def test_np_variants_match_previous_layers(io, pool):
    spec = MLPS[1]
    info = task_info(spec)
    model = NFN(info, "np", (5, 4), fourier=0 if io == "learned" else 2, head_hidden=8, head_dropout=0.0,
                feature_dropout=0.2, io=io, pool=pool)
    _assert_same(model, random_weights(spec, 3), train=True)


@pytest.mark.parametrize("reduction", ["max", "mean", "sum"])
@pytest.mark.parametrize("spec", MLPS, ids=["siren", "mlp4"])
def test_dwsnet_matches_previous_layers(spec, reduction):
    info = task_info(spec)
    model = DWSNet(info, width=5, layers=3, reduction=reduction, bn=True, head_layers=1)
    _assert_same(model, random_weights(spec, 4), train=True)
    _assert_same(model, random_weights(spec, 4), train=False)


def test_pools_match_previous_pools():
    spec = MLPS[1]
    g = torch.Generator().manual_seed(0)
    feats = Features(tuple(torch.randn(2, *l.weight_shape[:2], 3, generator=g, dtype=torch.float64)
                           for l in spec.layers),
                     tuple(torch.randn(2, l.out_features, 3, generator=g, dtype=torch.float64) for l in spec.layers))
    torch.testing.assert_close(np_pool(feats), reference_np_pool(feats), **TOLERANCE)
    torch.testing.assert_close(hnp_pool(feats), reference_hnp_pool(feats), **TOLERANCE)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("n", [1, 2, 5, SELECT_FROM - 1, SELECT_FROM, SELECT_FROM + 1, 1024, 1031])
def test_statnn_statistics_match_sorting(n, ties):
    g = torch.Generator().manual_seed(n)
    x = torch.randint(0, 4, (6, n), generator=g) if ties else torch.randn(6, n, generator=g)
    x = x.to(torch.float64)
    torch.testing.assert_close(tensor_stats(x), reference_tensor_stats(x), rtol=0, atol=1e-12)
    expected = torch.quantile(x, torch.tensor(QUANTILES, dtype=x.dtype), dim=1).T
    torch.testing.assert_close(tensor_stats(x)[:, 2:], expected, rtol=0, atol=1e-12)
