"""``--augment inr``: each geometric step is the INR's image moved, turned or scaled, checked
by evaluating the networks on the moved coordinates; the recipe as a whole changes the
function, keeps shapes, is reproducible from its generator, and refuses weights it does not
apply to."""

import math

import pytest
import torch

from benchmarks.augmentation import NotAugmentable, augmenter, drop, inr_augment, rotate, shift, translate, zoom
from datasets.functional import forward
from datasets.inr_fitting import pixel_grid, siren_init
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.weights import WeightSpace


def sirens(count=5, seed=0):
    spec = siren_spec(32, 2, 2, 1, 30.0)
    ws = siren_init(spec, count, torch.Generator().manual_seed(seed)).double()
    g = torch.Generator().manual_seed(seed + 1)  # biases away from 0, as after fitting
    return WeightSpace(spec, ws.weights, tuple(b + 0.05 * torch.randn(b.shape, generator=g, dtype=b.dtype)
                                               for b in ws.biases))


GRID = pixel_grid(7, 7).double()


def test_a_first_layer_translation_moves_the_image_exactly():
    ws = sirens()
    t = torch.tensor([[0.2, -0.1], [0.0, 0.25], [-0.25, 0.0], [0.1, 0.1], [0.0, 0.0]], dtype=torch.float64)
    moved = translate(ws, t, torch.ones(len(ws), dtype=torch.long))
    assert torch.allclose(forward(moved, GRID), forward(ws, GRID + t[:, None]), atol=1e-10)
    assert not torch.allclose(forward(moved, GRID)[:4], forward(ws, GRID)[:4], atol=1e-3)  # it did move
    assert torch.equal(forward(moved, GRID)[4], forward(ws, GRID)[4])  # t = 0: nothing moves


def test_a_deeper_translation_perturbs_the_second_bias_by_the_carried_shift():
    ws = sirens()
    t = torch.full((len(ws), 2), 0.1, dtype=torch.float64)
    moved = translate(ws, t, torch.full((len(ws),), 2))
    assert torch.equal(moved.biases[0], ws.biases[0]) and torch.equal(moved.biases[2], ws.biases[2])
    expected = ws.biases[1] + torch.einsum("boi,bi->bo", ws.weights[1], torch.einsum("boi,bi->bo", ws.weights[0], t))
    assert torch.allclose(moved.biases[1], expected)


def test_a_rotation_turns_the_image_about_the_centre():
    ws = sirens()
    angle = torch.linspace(-math.pi / 4, math.pi / 4, len(ws), dtype=torch.float64)
    turned = rotate(ws, angle)
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)],
                           -2)
    coordinates = torch.einsum("bij,nj->bni", rotation, GRID)
    assert torch.allclose(forward(turned, GRID), forward(ws, coordinates), atol=1e-10)
    assert not torch.allclose(forward(turned, GRID)[0], forward(ws, GRID)[0], atol=1e-3)


def test_a_zoom_scales_the_image_about_the_centre():
    ws = sirens()
    scale = torch.linspace(0.8, 1.2, len(ws), dtype=torch.float64)
    assert torch.allclose(forward(zoom(ws, scale), GRID), forward(ws, scale.view(-1, 1, 1) * GRID), atol=1e-10)


def test_the_shift_adds_a_tenth_of_each_tensors_std_and_leaves_single_biases():
    ws = sirens()
    moved = shift(ws, 0.1)
    for before, after in zip(ws.weights, moved.weights):
        assert torch.allclose(after - before, 0.1 * before.std(dim=(1, 2), keepdim=True).expand_as(before))
    assert torch.equal(moved.biases[-1], ws.biases[-1])  # the one output bias
    assert torch.allclose(moved.biases[0] - ws.biases[0], 0.1 * ws.biases[0].std(dim=1, keepdim=True).expand(-1, 32))


def test_dropout_zeroes_about_its_rate_and_rescales_the_rest():
    ws = sirens(count=200)
    dropped = drop(ws, 0.01, torch.Generator().manual_seed(0))
    zeroed = sum(int((after == 0).sum()) for after in dropped.weights)
    total = sum(w.numel() for w in ws.weights)
    assert 0.007 < zeroed / total < 0.013
    kept = dropped.weights[1] != 0
    assert torch.allclose(dropped.weights[1][kept], ws.weights[1][kept] / 0.99)


def test_the_recipe_changes_the_function_keeps_shapes_and_follows_its_generator():
    ws = sirens(count=64)
    a = inr_augment(ws, torch.Generator().manual_seed(3))
    b = inr_augment(ws, torch.Generator().manual_seed(3))
    c = inr_augment(ws, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    assert not torch.equal(a.weights[0], c.weights[0])
    assert [w.shape for w in a.weights] == [w.shape for w in ws.weights]
    change = (forward(a, GRID) - forward(ws, GRID)).abs().mean(dim=(1, 2))
    assert (change > 1e-3).float().mean() > 0.95  # a negative control: not a function-preserving transform
    # the first-layer scale stays within the zoom's range, times the shift and dropout's
    ratio = a.weights[0].norm(dim=(1, 2)) / ws.weights[0].norm(dim=(1, 2))
    assert 0.75 < float(ratio.min()) and float(ratio.max()) < 1.3


def test_weights_the_recipe_does_not_apply_to_are_refused_in_one_line():
    assert augmenter("none", sirens(), "edit") is None and augmenter("inr", sirens(), "classification") is inr_augment
    assert augmenter("inr", WeightSpace.from_flat(mlp_spec([3, 4, 2]), torch.zeros(2, 26)), "classification") \
        is inr_augment
    conv = ArchSpec((Layer("conv", 4, 1, (3, 3), 1, 1, "relu"), Layer("linear", 10, 4)))
    with pytest.raises(NotAugmentable, match="applies to INRs of one MLP architecture.*valid here: --augment none"):
        augmenter("inr", WeightSpace.from_flat(conv, torch.zeros(2, conv.num_params)), "classification")
    for task in ("edit", "regression"):
        with pytest.raises(NotAugmentable, match=f"keeps class labels, but this {task} task's targets"):
            augmenter("inr", sirens(), task)
