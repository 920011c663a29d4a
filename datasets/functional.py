"""Batched functional evaluation: run ``B`` stored networks at once.

MLPs use one batched matmul per layer; convolutions run as one grouped convolution with
``groups = B``. Conv stacks are followed by a global average pool before the first linear
layer (see ``datasets.spec``).

A network given by its weights is data, not the model: it is evaluated outside any autocast
region, in float32 at least, so that a run under bfloat16 autocast does not round the stored
network's pre-activations (a sine of ``omega * z`` would be off by up to ``omega * |z| / 256``
radians, enough to break the SIREN phase symmetry and to change a rendered edit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.spec import ArchSpec, Layer
from datasets.weights import WeightSpace


def activate(z: Tensor, layer: Layer) -> Tensor:
    """Apply ``layer``'s activation to its pre-activation ``z``."""
    match layer.activation:
        case "identity":
            return z
        case "relu":
            return torch.relu(z)
        case "tanh":
            return torch.tanh(z)
        case "sine":
            return torch.sin(layer.omega * z)
        case "sigmoid":
            return torch.sigmoid(z)
        case "gelu":
            return F.gelu(z)
        case "leaky_relu":
            return F.leaky_relu(z)
    raise ValueError(f"unknown activation {layer.activation!r}")


def _linear(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    # h (B, N, in), w (B, out, in), b (B, out) -> (B, N, out)
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _conv(h: Tensor, w: Tensor, b: Tensor, layer: Layer) -> Tensor:
    # h (B, N, C, H, W) -> one grouped convolution over all B networks
    B, N, C, H, W = h.shape
    out = F.conv2d(h.transpose(0, 1).reshape(N, B * C, H, W), w.reshape(-1, *w.shape[2:]),
                   b.reshape(-1), stride=layer.stride, padding=layer.padding, groups=B)
    return out.reshape(N, B, layer.out_features, *out.shape[2:]).transpose(0, 1)


def add_residuals(spec: ArchSpec, neuron_layer: int, z: Tensor, values: list[Tensor]) -> Tensor:
    """The pre-activation ``z`` of ``neuron_layer`` plus its residual inputs: for each
    residual ``(a, neuron_layer)``, the first ``m`` neurons of ``values[a]`` added to the
    first ``m`` of ``z`` (``m`` as ``ArchSpec.residual_joined``). Neurons are on dim 2."""
    for (a, b), m in zip(spec.residual, spec.residual_joined):
        if b != neuron_layer:
            continue
        source = values[a]
        if source.shape[2] == m == z.shape[2]:
            z = z + source
        else:
            z = torch.cat([z[:, :, :m] + source[:, :, :m], z[:, :, m:]], dim=2)
    return z


def forward(ws: WeightSpace, x: Tensor, *, return_hidden: bool = False
            ) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Evaluate every network of ``ws`` on inputs ``x``.

    ``x`` is shared by all networks, ``(N, in)`` for MLPs and ``(N, C, H, W)`` for CNNs, or
    per network with a leading batch dimension ``B``. Returns ``(B, N, out)``. With
    ``return_hidden``, also the values of every neuron layer, input first, each ``(B, N,
    width[, H, W])`` (after the activation; the last one is the output, offset included).
    """
    with torch.autocast(x.device.type, enabled=False):
        return _evaluate(_at_least_float32(ws), _at_least_float32(x), return_hidden)


def _at_least_float32(t: WeightSpace | Tensor) -> WeightSpace | Tensor:
    """``t`` promoted to float32 if it is held in a reduced precision (bfloat16, float16)."""
    reduced = t.dtype in (torch.bfloat16, torch.float16)
    return t.to(torch.float32) if reduced else t


def _evaluate(ws: WeightSpace, x: Tensor, return_hidden: bool) -> Tensor | tuple[Tensor, list[Tensor]]:
    spec: ArchSpec = ws.spec
    expected = 2 if not spec.is_conv else 4
    if x.ndim == expected:
        x = x.unsqueeze(0).expand(len(ws), *x.shape)
    if x.ndim != expected + 1 or x.shape[0] != len(ws):
        raise ValueError(f"inputs of shape {tuple(x.shape)} do not fit {len(ws)} networks of "
                         f"{'CNN' if spec.is_conv else 'MLP'} architecture {spec.describe()}")
    values = [x]
    h = x
    for k, (layer, (w, b)) in enumerate(zip(spec.layers, ws)):
        if layer.kind == "linear" and h.ndim == 5:
            h = h.mean(dim=(-2, -1))  # global average pool after the conv stack
        z = _linear(h, w, b) if layer.kind == "linear" else _conv(h, w, b, layer)
        h = activate(add_residuals(spec, k + 1, z, values), layer)
        values.append(h)
    if spec.output_offset:
        h = h + spec.output_offset
        values[-1] = h
    return (h, values) if return_hidden else h
