"""Vanilla probing (Kahana et al., ICLR 2025, "Deep Linear Probe Generators for Weight Space
Learning", the "vanilla probing" baseline; also the probe features of Kofinas et al., ICLR
2024): ``K`` learned inputs (probes) are fed to every network, and an MLP reads the
concatenated outputs.

The networks are run with the batched functional evaluation (``datasets.functional.forward``,
differentiable with respect to the probes), so the model sees only the *function* a network
computes at the probes: it is invariant by construction to every function-preserving
transform of the weights (hidden permutations, sign flips of odd neurons, positive rescaling
of ReLU neurons, whole-period phase shifts of sine neurons), and to nothing else.

Probes: MLP/INR inputs are ``K`` points ``tanh(p)`` in ``(-1, 1)^d_in`` (the INR coordinate
domain); CNN inputs are ``K`` images ``tanh(p)`` of the networks' input channels and side
``probe_size``, as the authors' CNN probes (``p`` starts standard normal in both cases; the
authors' INR probes are unconstrained points). One probe set per input shape, so a zoo of
architectures that agree in input shape and output width shares the probes.

Published config (the authors' ``scripts/vanilla_probing``): 64 (or 128) probes; an MLP of 6
linear layers of width 256 with ReLU on the ``K * n_out`` outputs; Adam lr 3e-4 without
weight decay, cosine decay; CNN probes 32 x 32. Paper profile: that; quick profile: the same
MLP with 16 x 16 CNN probes (four times cheaper on CNN zoos). Parameter count for the SIREN
2-32-32-1 input with 10 classes: 282,506 (both profiles).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.heads import mlp
from datasets.errors import UnsupportedArchitecture
from datasets.functional import forward
from datasets.method_table import register_method
from datasets.spec import ArchSpec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace, Weights, as_mixed

PROFILES = {"quick": {"probes": 64, "hidden": 256, "layers": 6, "probe_size": 16},
            "paper": {"probes": 64, "hidden": 256, "layers": 6, "probe_size": 32}}


def input_key(spec: ArchSpec) -> str:
    """Which probe set a network reads: its input kind and width."""
    return f"{'conv' if spec.is_conv else 'mlp'}{spec.widths[0]}"


def check_probe_side(spec: ArchSpec, side: int) -> None:
    """Refuse probe images that the conv stack of ``spec`` shrinks to nothing."""
    for i, layer in enumerate(spec.layers):
        if layer.kind != "conv":
            return
        side = (side + 2 * layer.padding - max(layer.kernel)) // layer.stride + 1
        if side < 1:
            raise UnsupportedArchitecture(f"probing: probe images vanish at conv layer {i} of "
                                          f"{spec.describe()}; raise probe_size")


class Probing(nn.Module):
    """Learned probes -> every network's outputs there -> MLP."""

    def __init__(self, info: TaskInfo, *, probes: int, hidden: int, layers: int, probe_size: int) -> None:
        super().__init__()
        self.hparams = {"probes": probes, "hidden": hidden, "layers": layers, "probe_size": probe_size}
        outputs = {spec.widths[-1] for spec in info.specs}
        if len(outputs) > 1:
            raise UnsupportedArchitecture(f"probing concatenates the networks' outputs, but the "
                                          f"architectures have {sorted(outputs)} outputs")
        self.points = nn.ParameterDict()
        for spec in info.specs:
            if spec.is_conv:
                check_probe_side(spec, probe_size)
            shape = (probes, spec.widths[0], probe_size, probe_size) if spec.is_conv else (probes, spec.widths[0])
            self.points.setdefault(input_key(spec), nn.Parameter(torch.randn(shape)))
        self.head = mlp(probes * outputs.pop(), hidden, info.out_dim, layers)

    def probe_inputs(self, spec: ArchSpec) -> Tensor:
        """The probes of ``spec``'s input shape, in ``(-1, 1)``."""
        return torch.tanh(self.points[input_key(spec)])

    def responses(self, weights: Weights) -> Tensor:
        """``(B, K * n_out)``: every network's outputs at the probes, in batch order."""
        def one(ws: WeightSpace) -> Tensor:
            return forward(ws, self.probe_inputs(ws.spec).to(ws.dtype)).flatten(1)
        return as_mixed(weights).apply(one)

    def forward(self, weights: Weights) -> Tensor:
        return self.head(self.responses(weights))


@register_method("probing", family="functional", profiles=PROFILES, heterogeneous=True,
                 symmetries=("permutation", "sign_flip", "rescale", "phase"),
                 optim={"lr": 3e-4, "weight_decay": 0.0},
                 paper="Kahana et al. 2025 (ProbeGen, vanilla probing)")
def build_probing(task: TaskInfo, **hparams) -> nn.Module:
    return Probing(task, **hparams)
