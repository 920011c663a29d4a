"""The symmetry cases the invariance tests of ScaleGMN and probing share: small networks of
each activation, the function-preserving transforms valid for each, and a check that a
transform really preserves the function (importable because ``pyproject.toml`` puts
``tests/`` on pytest's ``pythonpath``)."""

from __future__ import annotations

import torch
from weight_batches import random_weights

from datasets.functional import forward
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import flip_signs, permute_hidden, rescale_positive, shift_phase
from datasets.weights import MixedWeights, WeightSpace

RELU_CNN = ArchSpec((Layer("conv", 6, 1, (3, 3), 2, 0, "relu"), Layer("conv", 6, 6, (5, 5), 1, 2, "relu"),
                     Layer("linear", 10, 6)), residual=((1, 2),))
# residuals between unequal widths (the CNN Wild Park's), two into layer 3: neurons 0-2 tie layers 1-3
# (identity, tanh, relu: no sign or scale law), 3 ties 1 and 3 (scale), 4-5 of layer 1 are alone
# (identity: sign and scale)
UNEQUAL_CNN = ArchSpec((Layer("conv", 6, 1, (3, 3), 1, 1, "identity"), Layer("conv", 3, 6, (3, 3), 1, 1, "tanh"),
                        Layer("conv", 4, 3, (5, 5), 1, 2, "relu"), Layer("linear", 10, 4)), residual=((1, 3), (2, 3)))
SPECS = {"siren": siren_spec(out_features=10), "tanh": mlp_spec([2, 12, 12, 10], "tanh"),
         "relu": mlp_spec([2, 12, 12, 12, 10], "relu"), "linear": mlp_spec([3, 8, 8, 10], "identity"),
         "relu-cnn": RELU_CNN, "unequal-cnn": UNEQUAL_CNN}
TRANSFORMS = {"permutation": permute_hidden, "sign_flip": flip_signs,
              "rescale": lambda ws, g: rescale_positive(ws, g, 0.1, 10.0),  # scales over two decades
              "phase": shift_phase}
VALID = {"siren": ("permutation", "sign_flip", "phase"), "tanh": ("permutation", "sign_flip"),
         "relu": ("permutation", "rescale"), "linear": ("permutation", "sign_flip", "rescale"),
         "relu-cnn": ("permutation", "rescale"), "unequal-cnn": ("permutation", "sign_flip", "rescale")}
CASES = [(spec, transform) for spec, valid in VALID.items() for transform in valid]


def function_change(before: WeightSpace, after: WeightSpace, seed: int = 1) -> float:
    """Largest change of the networks' outputs at random inputs (MLPs: points in [-1, 1];
    CNNs: 9 x 9 images), relative to the largest output: ~1e-16 for a symmetry in float64."""
    g = torch.Generator().manual_seed(seed)
    spec = before.spec
    shape = (16, spec.widths[0], 9, 9) if spec.is_conv else (16, spec.widths[0])
    x = 2 * torch.rand(*shape, generator=g, dtype=before.dtype) - 1
    out = forward(before, x)
    return ((forward(after, x) - out).abs().max() / out.abs().max()).item()


def verified(name: str, ws: WeightSpace, generator: torch.Generator) -> WeightSpace:
    """``TRANSFORMS[name]`` applied to ``ws``, after checking that it moved the weights and
    kept the function."""
    moved = TRANSFORMS[name](ws, generator)
    assert (moved.flatten() - ws.flatten()).abs().max() > 1e-3, f"{name} left the weights alone"
    assert function_change(ws, moved) < 1e-9, f"{name} changed the function"
    return moved


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def check_mixed_batch(net: torch.nn.Module, specs: tuple[ArchSpec, ...], generator: torch.Generator) -> None:
    """Networks of ``specs`` (3 each) shuffled into one batch: one prediction per network,
    unchanged under every transform at once (each group's own symmetries; the others are the
    identity on it), and each prediction the one its group gets alone."""
    mixed = MixedWeights.from_groups([random_weights(s, 3, i) for i, s in enumerate(specs)])
    mixed = mixed[torch.tensor([4, 0, 7, 2, 5, 1, 8, 3, 6])]
    out = net(mixed)
    assert out.shape == (9, 10)
    moved = shift_phase(rescale_positive(flip_signs(permute_hidden(mixed, generator), generator),
                                         generator, 0.1, 10.0), generator)
    assert relative_change(net(moved), out) < 1e-6
    for g, group in enumerate(mixed.groups):
        assert torch.allclose(out[mixed.positions(g)], net(group), rtol=1e-9, atol=1e-12)
