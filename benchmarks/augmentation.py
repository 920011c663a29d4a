"""Weight-space augmentation of the training batches (``--augment``; default ``none``).

``inr``: the INR recipe that Neural Graphs and DWSNets train their MNIST classifiers with
(``experiments/data.py`` of both repositories, its defaults). For each network of a batch,
drawn afresh every batch (the authors draw per sample and epoch), in this order:

1. translation: ``t ~ U(±0.25)`` per input and a layer ``k ~ U{1, ..., L-1}``;
   ``b_{k-1} += W_{k-1} ... W_0 t``. For ``k = 1`` the INR's image moves by ``-t``
   exactly (:func:`translate`); deeper it is a perturbation, as in the authors' code;
2. rotation (two inputs only): ``W_0 <- W_0 R(θ)``, ``θ ~ U(±45°)``: the image turns about
   the centre of the [-1, 1] grid (:func:`rotate`);
3. shift: every weight tensor, and every bias tensor of more than one entry, plus 0.1 times
   its standard deviation (a constant, as the authors' code has it, not noise);
4. dropout of 1% of the weights and biases, the others scaled by 1 / 0.99;
5. zoom: ``W_0 <- s W_0``, ``s ~ U[0.8, 1.2]``: the image scaled about the centre (:func:`zoom`).

These change the function; they keep the label (a digit moved, turned or scaled a little).
The validation and test splits are never augmented. The option is part of a run's identity.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from datasets.errors import WsbenchError
from datasets.weights import Weights, WeightSpace

NO_AUGMENTATION = "none"
AUGMENTATIONS = (NO_AUGMENTATION, "inr")
TRANSLATION, ROTATION_DEGREES, SHIFT, DROPOUT, ZOOM = 0.25, 45.0, 0.1, 0.01, 0.2


class NotAugmentable(WsbenchError):
    """Weights the requested augmentation does not apply to (one line)."""


def translate(ws: WeightSpace, t: Tensor, depth: Tensor) -> WeightSpace:
    """Add ``W_{k-1} ... W_0 t`` to ``b_{k-1}``, ``k = depth`` per network (``t``: ``(B, in)``)."""
    biases, carried = list(ws.biases), t
    for i, w in enumerate(ws.weights[:-1]):
        carried = torch.einsum("boi,bi->bo", w, carried)
        biases[i] = biases[i] + carried * (depth == i + 1).unsqueeze(-1).to(carried.dtype)
    return WeightSpace(ws.spec, ws.weights, biases)


def rotate(ws: WeightSpace, angle: Tensor) -> WeightSpace:
    """``W_0 <- W_0 R(angle)`` per network (radians): ``f'(x) = f(R x)``."""
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    return WeightSpace(ws.spec, (ws.weights[0] @ rotation, *ws.weights[1:]), ws.biases)


def zoom(ws: WeightSpace, scale: Tensor) -> WeightSpace:
    """``W_0 <- scale W_0`` per network: ``f'(x) = f(scale x)``."""
    return WeightSpace(ws.spec, (ws.weights[0] * scale.view(-1, 1, 1), *ws.weights[1:]), ws.biases)


def shift(ws: WeightSpace, fraction: float) -> WeightSpace:
    """Every weight tensor, and every bias tensor of more than one entry, plus ``fraction``
    times its standard deviation (per network)."""
    def moved(tensor: Tensor) -> Tensor:
        dims = tuple(range(1, tensor.ndim))
        return tensor + fraction * tensor.std(dim=dims, keepdim=True)

    return WeightSpace(ws.spec, tuple(moved(w) for w in ws.weights),
                       tuple(moved(b) if b.shape[1] > 1 else b for b in ws.biases))


def drop(ws: WeightSpace, p: float, generator: torch.Generator) -> WeightSpace:
    """Dropout of weights and biases: each zeroed with probability ``p``, the others scaled by
    ``1 / (1 - p)``."""
    def dropped(tensor: Tensor) -> Tensor:
        keep = torch.rand(tensor.shape, generator=generator, device=tensor.device) >= p
        return tensor * keep.to(tensor.dtype) / (1 - p)

    return WeightSpace(ws.spec, tuple(dropped(w) for w in ws.weights), tuple(dropped(b) for b in ws.biases))


def inr_augment(ws: WeightSpace, generator: torch.Generator) -> WeightSpace:
    """The ``inr`` recipe (module docstring) on a batch of MLPs."""
    count, inputs, device = len(ws), ws.spec.layers[0].in_features, ws.weights[0].device

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand((count, *shape), generator=generator, device=device)

    depth = torch.randint(1, len(ws.spec.layers), (count,), generator=generator, device=device)
    ws = translate(ws, uniform(-TRANSLATION, TRANSLATION, inputs).to(ws.dtype), depth)
    if inputs == 2:
        ws = rotate(ws, uniform(-1.0, 1.0).to(ws.dtype) * math.radians(ROTATION_DEGREES))
    ws = drop(shift(ws, SHIFT), DROPOUT, generator)
    return zoom(ws, uniform(1 - ZOOM, 1 + ZOOM).to(ws.dtype))


def augmenter(name: str, weights: Weights, task: str) -> Callable[[WeightSpace, torch.Generator], WeightSpace] | None:
    """The augmentation ``name`` for batches of ``weights`` in ``task`` (``None`` for ``none``);
    ``NotAugmentable`` if it does not apply to them."""
    if name == NO_AUGMENTATION:
        return None
    if task != "classification":
        raise NotAugmentable(f"augmentation {name!r} keeps class labels, but this {task} task's targets depend on the "
                             f"function it changes (valid here: --augment none)")
    if not isinstance(weights, WeightSpace) or weights.spec.is_conv or len(weights.spec.layers) < 2:
        held = "networks of several architectures" if not isinstance(weights, WeightSpace) else \
            f"{weights.spec.describe()} networks"
        raise NotAugmentable(f"augmentation {name!r} applies to INRs of one MLP architecture with at least two "
                             f"layers; the training split holds {held} (valid here: --augment none)")
    return inr_augment
