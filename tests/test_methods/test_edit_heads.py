"""The weight-space output heads of the INR editing task, for every method registered with
``edits=True``:

- the module maps a ``WeightSpace`` to a change of the same architecture;
- equivariance, measured as the edit suite measures it: for every symmetry the method
  claims, rendering ``T(w) + change(T(w))`` gives the image of ``w + change(w)`` (each
  transform first verified to preserve the rendered function and to move the weights);
- negative controls: the flat MLP is not equivariant, and ``permute_rows_only`` (not a
  symmetry) changes every method's rendered edit;
- ``mlp-aug`` edits the network it is given: its augmented edit is its plain edit of the
  permuted copy;
- every parameter gets a gradient from a pixel-MSE edit step;
- the first edit is near the identity (the output scale starts at 0.01 of each layer's
  standard deviation).
"""

from __future__ import annotations

import pytest
import torch
from weight_batches import edit_task_info, random_weights

import baselines  # noqa: F401
import methods  # noqa: F401
from benchmarks.editing import Rendered
from datasets.errors import UnsupportedArchitecture
from datasets.functional import forward
from datasets.inr_fitting import pixel_grid, siren_init
from datasets.method_table import METHODS, build_method
from datasets.spec import ArchSpec, mlp_spec, siren_spec
from datasets.symmetry import flip_signs, permute_hidden, permute_rows_only, rescale_positive, shift_phase
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace

SIDE = 6  # rendered images are SIDE x SIDE
SPECS = {"siren": siren_spec(8, 2), "tanh-mlp": mlp_spec([2, 6, 5, 1], "tanh"),
         "relu-mlp": mlp_spec([2, 5, 4, 1], "relu")}
TRANSFORMS = {"permutation": permute_hidden, "sign_flip": flip_signs, "phase": shift_phase,
              "rescale": lambda w, g: rescale_positive(w, g, 0.1, 10.0)}
ADMITS = {"permutation": set(SPECS), "sign_flip": {"siren", "tanh-mlp"}, "phase": {"siren"},
          "rescale": {"relu-mlp"}}
EDITORS = [m for m in METHODS if "edit" in METHODS[m].tasks]
CLAIMS = [(m, s, a) for m in EDITORS for s in sorted(METHODS[m].symmetries) for a in sorted(ADMITS[s])]
TOLERANCE = 1e-6


def edit_task(spec: ArchSpec, stats_from: WeightSpace | None = None) -> TaskInfo:
    return edit_task_info(spec, SIDE * SIDE, stats_from)


def editor(method: str, task: TaskInfo) -> torch.nn.Module:
    torch.manual_seed(0)
    try:
        model = build_method(method, task, profile="quick")
    except UnsupportedArchitecture as err:
        pytest.skip(f"{method}: {err}")
    return model.double().eval()


def rendered(model: torch.nn.Module) -> Rendered:
    return Rendered(model, SIDE, SIDE).double()


def image(ws: WeightSpace) -> torch.Tensor:
    return forward(ws, pixel_grid(SIDE, SIDE).double()).flatten(1)


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def test_the_editing_methods_are_registered():
    assert {"mlp", "mlp-aug", "dwsnet", "nfn-np", "nfn-hnp", "nft", "scalegmn", "scalegmn-b", "ng-gnn", "ng-t"} <= set(EDITORS)


@pytest.mark.parametrize("method", EDITORS)
@pytest.mark.parametrize("arch", sorted(SPECS))
def test_the_change_is_a_weight_space_of_the_input_architecture(method, arch):
    spec = SPECS[arch]
    ws = random_weights(spec, 5)
    with torch.no_grad():
        change = editor(method, edit_task(spec))(ws)
    assert isinstance(change, WeightSpace) and change.spec == spec and len(change) == len(ws)
    assert change.dtype == torch.float64
    assert all(torch.isfinite(t).all() for t in (*change.weights, *change.biases))


@pytest.mark.parametrize("method, symmetry, arch", CLAIMS)
def test_every_claimed_symmetry_leaves_the_rendered_edit_unchanged(method, symmetry, arch):
    spec = SPECS[arch]
    net, ws = rendered(editor(method, edit_task(spec))), random_weights(spec, 5)
    moved = TRANSFORMS[symmetry](ws, torch.Generator().manual_seed(1))
    assert relative_change(image(ws), image(moved)) < 1e-10, "the transform is not a symmetry of these networks"
    assert relative_change(ws.flatten(), moved.flatten()) > 1e-3, "the transform did not move the weights"
    with torch.no_grad():
        edited, edited_moved = net(ws), net(moved)
    assert relative_change(edited, image(ws)) > 1e-6, "the edit changed nothing"
    assert relative_change(edited, edited_moved) < TOLERANCE


@pytest.mark.parametrize("method", [m for m in EDITORS if not METHODS[m].symmetries])
@pytest.mark.parametrize("arch", ["siren", "relu-mlp"])
def test_a_method_claiming_no_symmetry_is_shown_not_equivariant(method, arch):
    spec = SPECS[arch]
    net, ws = rendered(editor(method, edit_task(spec))), random_weights(spec, 5)
    with torch.no_grad():
        assert relative_change(net(ws), net(permute_hidden(ws, torch.Generator().manual_seed(1)))) > 1e-4


@pytest.mark.parametrize("method", EDITORS)
def test_the_non_symmetry_control_changes_the_rendered_edit(method):
    spec = SPECS["siren"]
    net, ws = rendered(editor(method, edit_task(spec))), random_weights(spec, 5)
    rows_only = permute_rows_only(ws, 1, torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert relative_change(net(ws), net(rows_only)) > 1e-3


def test_augmented_flat_mlp_edits_the_network_it_is_given():
    spec = SPECS["siren"]
    model, ws = editor("mlp-aug", edit_task(spec)), random_weights(spec, 5)
    net = rendered(model)
    torch.manual_seed(7)
    with torch.no_grad():
        augmented = net.train()(ws)
        torch.manual_seed(7)
        permuted = permute_hidden(ws)  # the same draws as the augmentation's
        plain_of_permuted = net.eval()(permuted)
    assert relative_change(permuted.flatten(), ws.flatten()) > 1e-3
    torch.testing.assert_close(augmented, plain_of_permuted, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", EDITORS)
def test_every_parameter_receives_a_gradient_from_an_edit_step(method):
    spec = SPECS["siren"]
    model = editor(method, edit_task(spec)).train()
    ws = random_weights(spec, 6)
    target = torch.rand(6, SIDE * SIDE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.nn.functional.mse_loss(rendered(model)(ws), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: gradient not finite or all zero"


@pytest.mark.parametrize("method", EDITORS)
def test_the_first_edit_is_near_the_identity(method):
    spec = SPECS["siren"]
    ws = siren_init(spec, 16, torch.Generator().manual_seed(0)).double()
    task = edit_task(spec, stats_from=ws)
    model = editor(method, task)
    with torch.no_grad():
        change = model(ws)
        edited = rendered(model)(ws)
    stats = task.stats[spec]
    assert (stats.bias_std[:-1] <= 1e-8).all(), "SIREN sine biases start at zero: their change must still move"
    for i, (w, b) in enumerate(change):
        assert 0 < w.std() < 0.1 * stats.weight_std[i], f"layer {i}: weight change not small"
        scale = max(stats.bias_std[i], stats.weight_std[i])
        assert 0 < b.pow(2).mean().sqrt() < 0.1 * scale, f"layer {i}: bias change zero or not small"
    assert 0 < relative_change(image(ws), edited) < 0.1
