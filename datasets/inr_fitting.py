"""Batched SIREN fitting: thousands of INRs trained at once as one batched model.

Recipe (the DWSNets MNIST INRs, Navon et al. 2023): SIREN ``in -> 32 -> 32 -> out``, two
sine layers with omega_0 = 30, a linear output, +0.5 added to the output, targets are
pixel intensities in [0, 1] at coordinates ``meshgrid(linspace(-1,1,W), linspace(-1,1,H))``
('xy', x fastest). Every sine layer is initialised U(+-sqrt(6/fan_in)/30), biases 0; the
output layer keeps PyTorch's default Linear init. Full-batch Adam on the mean squared error
for ``steps`` steps at learning rate ``lr`` (each builder sets its own; the ``mnist-inr``
values and why: docs/notes/mnist-inr-builder.md). Each network has its own Adam state
(Adam is per-parameter), and the loss is the sum of per-network mean squared errors, so a
network's trajectory does not depend on what else is in its chunk. The initialisation is
drawn on the CPU whatever the fitting device, so a device changes float rounding only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from datasets.cache import ChunkStore, chunk_generator
from datasets.functional import forward
from datasets.options import Option
from datasets.progress import progress as progress_bar
from datasets.spec import ArchSpec, siren_spec
from datasets.weights import WeightSpace

log = logging.getLogger("wsbench")


@dataclass(frozen=True)
class SirenRecipe:
    """Everything that determines a fitted SIREN; part of the cache fingerprint."""

    hidden: int = 32
    depth: int = 2
    omega: float = 30.0
    steps: int = 300
    lr: float = 5e-3
    chunk: int = 2048
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def options(self) -> dict[str, Option]:
        """The recipe as dataset options (``--dataset-option``), this recipe as defaults."""
        return {
            "hidden": Option(self.hidden, "SIREN width", low=1, high=4096),
            "depth": Option(self.depth, "number of sine layers", low=1, high=64),
            "omega": Option(self.omega, "sine frequency omega_0", low=1e-3, high=1e4),
            "steps": Option(self.steps, "Adam steps per INR", low=1, high=10**7),
            "lr": Option(self.lr, "Adam learning rate", low=1e-12, high=10.0),
            "chunk": Option(self.chunk, "INRs fitted together (part of the recipe: it sets the "
                                        "initialisation streams)", low=1, high=10**6),
            "seed": Option(self.seed, "initialisation seed", low=0, high=2**31 - 1),
        }

    @classmethod
    def of(cls, config: dict) -> "SirenRecipe":
        """The recipe part of a dataset's parsed options."""
        return cls(**{k: config[k] for k in cls.__dataclass_fields__})


def pixel_grid(height: int, width: int) -> Tensor:
    """``(H*W, 2)`` coordinates (x, y) in [-1, 1], x fastest: the DWSNets grid."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def siren_init(spec: ArchSpec, count: int, generator: torch.Generator) -> WeightSpace:
    """DWSNets init: sine layers U(+-sqrt(6/fan_in)/omega), biases 0; the linear output
    layer PyTorch's default (weight and bias U(+-1/sqrt(fan_in)))."""
    weights, biases = [], []
    for layer in spec.layers:
        fan_in = layer.in_features
        if layer.activation == "sine":
            bound = math.sqrt(6 / fan_in) / layer.omega
            bias = torch.zeros(count, layer.out_features)
        else:
            bound = 1 / math.sqrt(fan_in)
            bias = (torch.rand(count, layer.out_features, generator=generator) * 2 - 1) * bound
        weight = (torch.rand(count, *layer.weight_shape, generator=generator) * 2 - 1) * bound
        weights.append(weight)
        biases.append(bias)
    return WeightSpace(spec, tuple(weights), tuple(biases))


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-network PSNR in dB for signals in [0, 1]; inputs ``(B, N, C)``."""
    mse = (prediction - target).pow(2).mean(dim=(1, 2)).clamp_min(1e-12)
    return -10 * torch.log10(mse)


def _fitting_loss(spec: ArchSpec, coords: Tensor, compile: bool) -> Callable[[WeightSpace, Tensor], Tensor]:
    """Sum over networks of each network's mean squared error; with ``compile``, passed
    through ``torch.compile`` (fuses the element-wise work of forward and backward; about
    2x on a CPU for 28x28 images), falling back to eager if compiling fails."""
    def loss(weights: tuple[Tensor, ...], biases: tuple[Tensor, ...], target: Tensor) -> Tensor:
        prediction = forward(WeightSpace(spec, weights, biases), coords)
        return (prediction - target).pow(2).mean(dim=(1, 2)).sum()

    if not compile:
        return lambda ws, target: loss(ws.weights, ws.biases, target)
    compiled = torch.compile(loss, dynamic=False)

    def guarded(ws: WeightSpace, target: Tensor) -> Tensor:
        nonlocal compiled
        try:
            return compiled(ws.weights, ws.biases, target)
        except Exception as err:  # no C compiler, unsupported platform: same loss, eager
            log.warning("torch.compile failed (%s: %s); fitting without it", type(err).__name__, err)
            compiled = loss
            return loss(ws.weights, ws.biases, target)

    return guarded


def fit_sirens(images: Tensor, recipe: SirenRecipe, *, progress: bool = True,
               description: str = "fitting SIRENs", compile: bool = False,
               store: ChunkStore | None = None, device: str | torch.device = "cpu") -> tuple[WeightSpace, Tensor]:
    """Fit one SIREN per image on ``device``. ``images``: ``(N, C, H, W)`` in [0, 1].
    ``compile`` and ``device`` change the speed, not the recipe (results equal up to float
    rounding). With a ``store``, every finished chunk is kept there and a chunk already in
    it is not fitted again. Returns the weights and each INR's PSNR (dB) after the last
    step, both on the CPU."""
    count, channels, height, width = images.shape
    spec = siren_spec(recipe.hidden, recipe.depth, 2, channels, recipe.omega)
    coords = pixel_grid(height, width).to(device)
    targets = images.flatten(2).transpose(1, 2).float()  # (N, H*W, C), x fastest
    loss_of = _fitting_loss(spec, coords, compile)
    parts, scores = [], []
    bar = progress_bar(count * recipe.steps, description, "INR-step", progress)
    for index, start in enumerate(range(0, count, recipe.chunk)):
        target = targets[start:start + recipe.chunk]
        key = f"sirens-{index:06d}"
        done = store.get(key) if store is not None else None
        if done is not None and len(done["psnr"]) == len(target):
            ws = WeightSpace.from_flat(spec, done["weights"])
            score = done["psnr"]
        else:
            ws, score = _fit_and_score(spec, target.to(device), recipe, chunk_generator(recipe.seed, index), coords,
                                       loss_of, lambda: bar.update(len(target)))
            if store is not None:
                store.put(key, {"weights": ws.flatten(), "psnr": score})
        parts.append(ws)
        scores.append(score)
    bar.close()
    return WeightSpace.cat(parts), torch.cat(scores)


def _fit_and_score(spec: ArchSpec, target: Tensor, recipe: SirenRecipe, generator: torch.Generator, coords: Tensor,
                   loss_of: Callable[[WeightSpace, Tensor], Tensor],
                   on_step: Callable[[], None]) -> tuple[WeightSpace, Tensor]:
    """One chunk fitted on ``target``'s device: its weights and PSNR, on the CPU."""
    ws = _fit_chunk(spec, target, recipe, generator, loss_of, on_step)
    with torch.no_grad():
        score = psnr(forward(ws, coords), target)
    return ws.to("cpu"), score.cpu()


def _fit_chunk(spec: ArchSpec, target: Tensor, recipe: SirenRecipe, generator: torch.Generator,
               loss_of: Callable[[WeightSpace, Tensor], Tensor], on_step: Callable[[], None]) -> WeightSpace:
    """Adam on one chunk of SIRENs for ``recipe.steps`` steps, on ``target``'s device (the
    initialisation is drawn on the CPU)."""
    ws = siren_init(spec, len(target), generator).to(target.device)
    params = [t.requires_grad_() for t in (*ws.weights, *ws.biases)]
    optimiser = torch.optim.Adam(params, lr=recipe.lr)
    for _ in range(recipe.steps):
        optimiser.zero_grad(set_to_none=True)
        loss_of(ws, target).backward()
        optimiser.step()
        on_step()
    return ws.map(lambda t: t.detach())
