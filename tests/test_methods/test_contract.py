"""The contract every registered method keeps, one test per property, parametrized over the
method table (in the manner of timm's ``tests/test_models.py``).

- every symmetry a method claims (``symmetries``) leaves its output unchanged, on every
  architecture it takes (a CNN with residuals between unequal widths among them), with the
  transform first verified on the networks themselves;
- a method that claims none is shown to fail permutation invariance;
- the non-symmetry control (``permute_rows_only``) changes the output, unless the method is
  registered as blind to it, which is then checked to be true, together with a second
  control (a perturbed weight) that does change the output;
- every parameter receives a finite gradient, not zero everywhere;
- outputs in eval mode do not depend on the other networks of the batch;
- parameter counts per profile are pinned (SIREN 2-32-32-1, 10 classes).
"""

from __future__ import annotations

import pytest
import torch
from weight_batches import random_weights, task_info

import baselines  # noqa: F401
import methods  # noqa: F401
from datasets.errors import UnsupportedArchitecture
from datasets.functional import forward
from datasets.method_table import METHODS, build_method
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import flip_signs, permute_hidden, permute_rows_only, rescale_positive, shift_phase
from datasets.weights import MixedWeights, Weights, WeightSpace, as_mixed

SPECS = {
    "siren": siren_spec(8, 2),
    "tanh-mlp": mlp_spec([2, 6, 5, 3], "tanh"),
    "relu-mlp": mlp_spec([3, 5, 4, 2], "relu"),
    "relu-cnn-res": ArchSpec((Layer("conv", 4, 1, (3, 3), 2, 1, "relu"), Layer("conv", 4, 4, (3, 3), 1, 1, "relu"),
                              Layer("conv", 4, 4, (3, 3), 1, 1, "relu"), Layer("linear", 10, 4)), residual=((1, 3),)),
    "tanh-cnn": ArchSpec((Layer("conv", 4, 1, (3, 3), 2, 1, "tanh"), Layer("conv", 5, 4, (5, 5), 1, 2, "tanh"),
                          Layer("linear", 10, 5))),
    # residuals between unequal widths (the CNN Wild Park's), two into layer 3: neurons 0-2 tie layers 1-3
    # (no sign or scale law), 3 ties layers 1 and 3 (scale), 4-5 of layer 1 are alone (sign and scale)
    "cnn-unequal": ArchSpec((Layer("conv", 6, 1, (3, 3), 1, 1, "identity"), Layer("conv", 3, 6, (3, 3), 1, 1, "tanh"),
                             Layer("conv", 4, 3, (3, 3), 1, 1, "relu"), Layer("linear", 10, 4)),
                            residual=((1, 3), (2, 3))),
}
TRANSFORMS = {"permutation": permute_hidden, "sign_flip": flip_signs, "phase": shift_phase,
              "rescale": lambda w, g: rescale_positive(w, g, 0.1, 10.0)}
ADMITS = {"permutation": set(SPECS), "sign_flip": {"siren", "tanh-mlp", "tanh-cnn", "cnn-unequal"}, "phase": {"siren"},
          "rescale": {"relu-mlp", "relu-cnn-res", "cnn-unequal"}}
PARAMETERS = {  # (quick, paper) on a SIREN 2-32-32-1 with 10 classes
    "mlp": (371_978, 1_400_330), "mlp-aug": (153_098, 1_400_330), "deepsets": (143_626, 1_337_354),
    "statnn": (23_306, 1_054_010), "dwsnet": (159_818, 314_762), "nfn-np": (168_010, 45_459_754),
    "nfn-hnp": (195_930, 67_521_322), "nft": (138_842, 8_038_922), "ng-gnn": (73_322, 92_106),
    "ng-t": (72_762, 376_682), "scalegmn": (75_050, 1_598_730), "scalegmn-b": (82_698, 3_039_754),
    "probing": (282_506, 282_506),
}
TOLERANCE = 1e-6


def model_for(method: str, *specs: ArchSpec, out_dim: int = 10) -> torch.nn.Module:
    try:
        net = build_method(method, task_info(*specs, out_dim=out_dim), profile="quick")
    except UnsupportedArchitecture as err:
        pytest.skip(f"{method} does not take {', '.join(s.describe() for s in specs)}: {err}")
    torch.manual_seed(0)
    return net.double().eval()


def batch(spec: ArchSpec, count: int = 6, seed: int = 0) -> WeightSpace:
    return random_weights(spec, count, seed)


def inputs(spec: ArchSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    if spec.is_conv:
        return torch.randn(4, spec.layers[0].in_features, 9, 9, generator=g, dtype=torch.float64)
    return torch.rand(16, spec.widths[0], generator=g, dtype=torch.float64) * 2 - 1


def function_change(before: Weights, after: Weights) -> float:
    changes = []
    for a, b in zip(as_mixed(before).groups, as_mixed(after).groups):
        x = inputs(a.spec)
        changes.append(((forward(a, x) - forward(b, x)).abs().max() / forward(a, x).abs().max()).item())
    return max(changes)


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


CLAIMS = [(m, s, a) for m in METHODS for s in sorted(METHODS[m].symmetries) for a in sorted(ADMITS[s])]


@pytest.mark.parametrize("method, symmetry, arch", CLAIMS)
def test_every_claimed_symmetry_leaves_the_output_unchanged(method, symmetry, arch):
    spec = SPECS[arch]
    net, ws = model_for(method, spec), batch(spec)
    moved = TRANSFORMS[symmetry](ws, torch.Generator().manual_seed(1))
    assert function_change(ws, moved) < 1e-10, "the transform is not a symmetry of these networks"
    assert relative_change(ws.flatten(), moved.flatten()) > 1e-3, "the transform did not move the weights"
    with torch.no_grad():
        assert relative_change(net(ws), net(moved)) < TOLERANCE


@pytest.mark.parametrize("method", [m for m in METHODS if METHODS[m].heterogeneous])
def test_heterogeneous_methods_are_invariant_on_mixed_batches_and_keep_batch_order(method):
    specs = (SPECS["siren"], SPECS["relu-mlp"]) if method in ("deepsets", "statnn") else (SPECS["relu-cnn-res"],
                                                                                           SPECS["tanh-cnn"])
    net = model_for(method, *specs)
    mixed = MixedWeights.from_groups([batch(s, 3, i) for i, s in enumerate(specs)])[torch.tensor([4, 0, 3, 1, 5, 2])]
    with torch.no_grad():
        out = net(mixed)
        for symmetry in sorted(METHODS[method].symmetries & {"permutation", "sign_flip", "rescale"}):
            assert relative_change(out, net(TRANSFORMS[symmetry](mixed, torch.Generator().manual_seed(2)))) < TOLERANCE
        for row in range(len(mixed)):
            torch.testing.assert_close(net(mixed[[row]])[0], out[row], atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("method", [m for m in METHODS if not METHODS[m].symmetries])
def test_a_method_claiming_no_symmetry_is_shown_not_invariant(method):
    spec = SPECS["siren"]
    net, ws = model_for(method, spec), batch(spec)
    with torch.no_grad():
        assert relative_change(net(ws), net(permute_hidden(ws, torch.Generator().manual_seed(1)))) > 1e-3


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ["siren", "relu-mlp", "cnn-unequal"])
def test_the_non_symmetry_control_changes_the_output_unless_documented_blind(method, arch):
    spec = SPECS[arch]
    net, ws = model_for(method, spec), batch(spec)
    rows_only = permute_rows_only(ws, 1, torch.Generator().manual_seed(3))
    assert function_change(ws, rows_only) > 1e-3, "the control must change the function"
    perturbed = WeightSpace(spec, (ws.weights[0] + 0.5 * torch.sign(ws.weights[0]), *ws.weights[1:]), ws.biases)
    with torch.no_grad():
        out = net(ws)
        change = relative_change(out, net(rows_only))
        if "permute_rows_only" in METHODS[method].blind_to:
            assert change < TOLERANCE, "registered as blind to the control, but it is not"
        else:
            assert change > 1e-4
        assert relative_change(out, net(perturbed)) > 1e-4


@pytest.mark.parametrize("method", list(METHODS))
def test_every_parameter_receives_a_gradient(method):
    spec = SPECS["siren"]
    net = model_for(method, spec).train()
    targets = torch.arange(6) % 10
    torch.nn.functional.cross_entropy(net(batch(spec)), targets).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: gradient not finite or all zero"


@pytest.mark.parametrize("method", list(METHODS))
def test_outputs_in_eval_do_not_depend_on_the_batch(method):
    spec = SPECS["siren"]
    net, ws = model_for(method, spec), batch(spec, 8)
    with torch.no_grad():
        together = net(ws)
        alone = torch.cat([net(ws[i:i + 1]) for i in range(len(ws))])
    torch.testing.assert_close(together, alone, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("method", list(METHODS))
def test_parameter_counts_are_pinned(method):
    assert method in PARAMETERS, f"pin the parameter counts of {method} here"
    task = task_info(siren_spec())
    counts = tuple(sum(p.numel() for p in build_method(method, task, profile=profile).parameters())
                   for profile in ("quick", "paper"))
    assert counts == PARAMETERS[method]
