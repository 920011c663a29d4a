"""Robustness: metrics on function-preserving transforms of the test split.

Every transform is checked on the stored networks themselves before it is used: the
transformed networks must compute the same function (evaluated in float64, max relative
error below ``TOLERANCE``), otherwise the run stops, since a "symmetry" that changes the
function would make the robustness columns meaningless. The transformed networks are stored
in float32 like the originals; that rounding is all the tolerance allows for (a SIREN's
phase shift, rounded in float32 and multiplied by omega_0 = 30, moves the output by about
1e-6 relative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from datasets.functional import forward
from datasets.spec import ODD_ACTIVATIONS, POSITIVE_HOMOGENEOUS, ArchSpec
from datasets.symmetry import flip_signs, permute_hidden, rescale_positive, shift_phase, symmetry_classes
from datasets.weights import Weights, WeightSpace, as_mixed

TOLERANCE = 1e-5
VERIFY_NETWORKS = 64
PROBE_SIDE = 16


@dataclass(frozen=True)
class Transform:
    """A function-preserving transform of the symmetry ``symmetry`` (a name of
    ``datasets.method_table.SYMMETRIES``, what a method claims); ``activations``: the hidden
    activations it acts on (``None``: any); ``scale_range``: for positive rescaling, the ``r``
    of its scales, drawn log-uniformly from ``[1/r, r]``."""

    name: str
    symmetry: str
    apply: Callable[[Weights, torch.Generator], Weights]
    activations: frozenset[str] | None
    scale_range: float | None = None

    def applies_to(self, spec: ArchSpec) -> bool:
        classes = symmetry_classes(spec)
        if self.activations is None:
            return bool(classes)
        return any(all(spec.activation_of(k) in self.activations for k in c) for c in classes)


def rescaling(name: str, spread: float) -> Transform:
    """Positive rescaling of ReLU neurons with scales log-uniform in ``[1/spread, spread]``."""
    def apply(weights: Weights, generator: torch.Generator) -> Weights:
        return rescale_positive(weights, generator, 1 / spread, spread)
    return Transform(name, "rescale", apply, POSITIVE_HOMOGENEOUS, spread)


# Rescaling at three ranges, so a table shows how far a model that is not scale-invariant
# degrades as the scales spread (Monomial-NFN, Tran et al. 2024, plot the metric against it).
RESCALINGS = (rescaling("rescale", 2.0), rescaling("rescale_10", 10.0), rescaling("rescale_100", 100.0))
TRANSFORMS = {
    "permutation": Transform("permutation", "permutation", permute_hidden, None),
    "sign_flip": Transform("sign_flip", "sign_flip", flip_signs, ODD_ACTIVATIONS),
    **{t.name: t for t in RESCALINGS},
    "phase": Transform("phase", "phase", shift_phase, frozenset({"sine"})),
}


def transforms_for(names: tuple[str, ...], specs: tuple[ArchSpec, ...]) -> list[Transform]:
    """The named transforms that apply to at least one of the architectures."""
    return [TRANSFORMS[n] for n in names if any(TRANSFORMS[n].applies_to(s) for s in specs)]


def probe_inputs(spec: ArchSpec, count: int, generator: torch.Generator) -> Tensor:
    """Random inputs that fit ``spec``: coordinates in [-1, 1] or small images."""
    first = spec.layers[0]
    if spec.is_conv:
        return torch.randn(count, first.in_features, PROBE_SIDE, PROBE_SIDE, generator=generator,
                           dtype=torch.float64)
    return torch.rand(count, first.in_features, generator=generator, dtype=torch.float64) * 2 - 1


def function_error(before: WeightSpace, after: WeightSpace, generator: torch.Generator) -> float:
    """Max relative difference of the two batches' outputs on random inputs (float64)."""
    x = probe_inputs(before.spec, 32, generator)
    a, b = forward(before.double(), x), forward(after.double(), x)
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def transformed(weights: Weights, transform: Transform, seed: int) -> tuple[Weights, float]:
    """The transformed batch and the verified function error on a sample of it."""
    moved = transform.apply(weights, torch.Generator().manual_seed(seed))
    check = torch.Generator().manual_seed(seed + 1)
    errors = [function_error(g[:VERIFY_NETWORKS], h[:VERIFY_NETWORKS], check)
              for g, h in zip(as_mixed(weights).groups, as_mixed(moved).groups)]
    error = max(errors)
    if error > TOLERANCE:
        raise AssertionError(f"{transform.name} changed the stored networks' function "
                             f"(relative error {error:.2e}); it is not a symmetry")
    return moved, error
