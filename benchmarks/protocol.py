"""The one training protocol every method is trained with.

AdamW (method-specific lr / weight decay where its paper used others), linear warm-up then
cosine decay (or constant), gradient-norm clipping, evaluation on the validation split after
every epoch and the weights of the best validation epoch kept. The test split is not
touched here: ``benchmarks.evaluation`` evaluates it once, afterwards.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.metrics import METRICS, compute
from datasets.collection import Split
from datasets.weights import Weights


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings of one run."""

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    schedule: str = "cosine"  # "cosine" | "constant"
    clip_norm: float = 10.0
    eval_batch_size: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, TrainConfig] = {
    # CPU budgets: the default suite must finish on a 2-core machine (README states the times).
    "quick": TrainConfig(epochs=30),
    # The published INR protocol (Kofinas et al. 2024): AdamW lr 1e-3, batch 128, 200 epochs.
    "paper": TrainConfig(epochs=200),
    "smoke": TrainConfig(epochs=1),
}


def profile_config(profile: str, optim: dict, epochs: int | None = None) -> TrainConfig:
    """The profile's budget with the method's optimiser overrides and an explicit epoch count."""
    config = replace(PROFILES[profile], **optim)
    return replace(config, epochs=epochs) if epochs else config


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float]
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def loss_function(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    if task == "classification":
        return nn.functional.cross_entropy
    return lambda outputs, targets: nn.functional.mse_loss(outputs[:, 0], targets.to(outputs.dtype))


def schedule(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at a step: linear warm-up, then cosine to 0 or constant."""
    warmup = max(1, math.ceil(config.warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def predict(model: nn.Module, weights: Weights, batch_size: int, device: torch.device) -> Tensor:
    """Model outputs for every network of ``weights``, on the CPU, in order."""
    model.eval()
    outs = []
    for start in range(0, len(weights), batch_size):
        index = torch.arange(start, min(start + batch_size, len(weights)))
        outs.append(model(weights[index].to(device)).float().cpu())
    return torch.cat(outs)


def is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if METRICS[metric].higher_is_better else value < best


def train(model: nn.Module, train_split: Split, val_split: Split, *, task: str,
          metrics: tuple[str, ...], config: TrainConfig, seed: int, device: torch.device,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` in place; on return it holds the best-validation weights."""
    seed_everything(seed)
    order = torch.Generator().manual_seed(seed)
    model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule(config, steps_per_epoch * config.epochs))
    loss_fn = loss_function(task)
    primary = metrics[0]
    best_value, best_state, result = None, None, TrainResult(0, {})
    start, seen = time.perf_counter(), 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        total = 0.0
        for index in torch.randperm(len(train_split), generator=order).split(config.batch_size):
            weights, targets = train_split.batch(index)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(weights.to(device)), targets.to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}")
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimiser.step()
            scheduler.step()
            total += loss.item() * len(index)
            seen += len(index)
        val = compute(metrics, predict(model, val_split.weights, config.eval_batch_size, device),
                      val_split.targets)
        entry = {"epoch": epoch, "train_loss": total / len(train_split), **{f"val_{k}": v for k, v in val.items()}}
        result.history.append(entry)
        if on_epoch:
            on_epoch(entry)
        if is_better(primary, val[primary], best_value):
            best_value, result.best_epoch, result.best_val = val[primary], epoch, val
            best_state = copy.deepcopy(model.state_dict())
    result.train_seconds = time.perf_counter() - start
    result.samples_per_second = seen / max(result.train_seconds, 1e-9)
    model.load_state_dict(best_state)
    return result
