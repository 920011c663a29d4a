"""The one training protocol every method is trained with.

AdamW (method-specific lr / weight decay where its paper used others), linear warm-up then
cosine decay (or constant), gradient-norm clipping, evaluation on the validation split after
every epoch and the weights of the best validation epoch kept. The test split is not
touched here: ``benchmarks.evaluation`` evaluates it once, afterwards.

Both splits are moved to the device once, before the first epoch, so a GPU run makes no
host copies per batch. ``precision="bf16"`` runs forward and loss under bfloat16 autocast
(the parameters and optimiser stay float32); ``compile=True`` passes the model through
``torch.compile`` (graphs it cannot compile run eagerly).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.augmentation import NO_AUGMENTATION, augmenter
from benchmarks.checkpoints import Checkpoint
from benchmarks.host_memory import release_freed_memory
from benchmarks.metrics import METRICS, Undefined, compute
from datasets.errors import WsbenchError
from datasets.weight_dataset import Split
from datasets.weights import Weights

log = logging.getLogger("wsbench")


DEFAULT_BATCH = 128  # the published INR protocol's (Kofinas et al. 2024)
DEFAULT_SCHEDULE = "cosine"
SCHEDULES = (DEFAULT_SCHEDULE, "constant")  # after the linear warm-up: cosine decay to 0, or the base lr


class InvalidOutput(WsbenchError):
    """A model whose outputs do not fit the task (a method's bug, named in one line)."""


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings of one run."""

    epochs: int
    batch_size: int = DEFAULT_BATCH
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    schedule: str = DEFAULT_SCHEDULE  # one of SCHEDULES
    clip_norm: float = 10.0
    eval_batch_size: int = 512
    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    compile: bool = False
    patience: int | None = None  # stop after this many epochs without a better validation score
    time_limit: float | None = None  # seconds of training: no epoch starts that would end after them
    augment: str = NO_AUGMENTATION  # weight-space augmentation of the training batches (benchmarks.augmentation)

    def to_dict(self) -> dict:
        """The fields, as a record's identity holds them; a bf16 run also holds
        :data:`BF16_VERSION`, so that a change to what autocast covers starts new records
        for bf16 runs only; ``patience``, ``time_limit`` and ``augment`` appear only where set
        (each is part of the identity; runs without one keep theirs)."""
        fields = asdict(self)
        for name, unset in (("patience", None), ("time_limit", None), ("augment", NO_AUGMENTATION)):
            if fields[name] == unset:
                del fields[name]
        if self.precision == "bf16":
            fields["bf16_version"] = BF16_VERSION
        return fields


PROTOCOL_VERSION = 2  # bump when this module changes what a run computes
BF16_VERSION = 2  # what autocast covers; 2: the stored networks are evaluated in float32, outside it
PRECISIONS = ("fp32", "bf16")
PROFILES: dict[str, TrainConfig] = {
    # CPU budgets: the default suite must finish on a 2-core machine (README states the times).
    "quick": TrainConfig(epochs=30),
    # The published INR protocol (Kofinas et al. 2024): AdamW lr 1e-3, batch 128, 200 epochs.
    "paper": TrainConfig(epochs=200),
    "smoke": TrainConfig(epochs=1),
}


def profile_config(profile: str, optim: dict, epochs: int | None = None, **settings) -> TrainConfig:
    """The profile's budget with the method's optimiser overrides, an explicit epoch count
    and other settings (``precision``, ``compile``)."""
    config = replace(PROFILES[profile], **optim, **settings)
    return replace(config, epochs=epochs) if epochs else config


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float | None]
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    stopped: str | None = None  # why training ended before its last epoch: "patience" | "time limit"
    resumed_after: int = 0  # epochs a saved training state gave (not trained again here)


@dataclass
class Progress:
    """Where a run stands after an epoch, besides its modules' and generators' states."""

    result: TrainResult
    best_value: float | None = None  # the primary validation metric of the best epoch
    best_state: dict | None = None  # the model's weights at the best epoch
    seen: int = 0  # training samples stepped on so far


@dataclass
class TrainingState:
    """Everything of a run that changes from epoch to epoch: saved to a checkpoint after each
    epoch and restored from it, so that a resumed run computes what an uninterrupted one does.
    The saved keys are those of the states already on disk (a change needs a new format)."""

    model: nn.Module
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    order: torch.Generator  # the training batches' order
    draws: torch.Generator | None  # the augmentation's draws (None: no augmentation)
    device: torch.device

    def saved(self, epoch: int, progress: Progress, seconds: float) -> dict:
        """The state after ``epoch``, as a checkpoint holds it (``seconds`` of training so far)."""
        result = progress.result
        return {"epoch": epoch, "model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "scheduler": self.scheduler.state_dict(), "best_value": progress.best_value,
                "best_state": progress.best_state, "best_epoch": result.best_epoch, "best_val": result.best_val,
                "history": result.history, "seen": progress.seen, "seconds": seconds, "stopped": result.stopped,
                "order": self.order.get_state(), "draws": None if self.draws is None else self.draws.get_state(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def restore(self, saved: dict) -> Progress:
        """Load a state of :meth:`saved` into the modules and generators; the run's progress
        (its result's ``resumed_after``: the epochs it holds)."""
        self.model.load_state_dict(saved["model"])
        self.optimiser.load_state_dict(saved["optimiser"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.order.set_state(saved["order"])
        if self.draws is not None:
            self.draws.set_state(saved["draws"])
        torch.set_rng_state(saved["rng"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)
        result = TrainResult(saved["best_epoch"], saved["best_val"], saved["history"], stopped=saved["stopped"],
                             resumed_after=saved["epoch"])
        return Progress(result, saved["best_value"], saved["best_state"], saved["seen"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def loss_function(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Cross-entropy for classification; mean squared error for regression and for edits
    (rendered signals against their targets)."""
    if task == "classification":
        return nn.functional.cross_entropy
    if task == "edit":
        return lambda outputs, targets: nn.functional.mse_loss(outputs, targets.to(outputs.dtype))
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


def autocast(config: TrainConfig, device: torch.device):
    """The precision context of forward passes."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def to_device(split: Split, device: torch.device) -> Split:
    """``split`` with weights and targets on ``device`` (the same object if already there)."""
    if split.targets.device == device:
        return split
    return Split(split.weights.to(device), split.targets.to(device), split.extras)


@torch.no_grad()
def predict(model: nn.Module, weights: Weights, batch_size: int, device: torch.device,
            config: TrainConfig | None = None) -> Tensor:
    """Model outputs for every network of ``weights``, as float32 on the CPU, in order."""
    model.eval()
    weights = weights.to(device)
    outs = []
    with autocast(config or TrainConfig(epochs=1), device):
        for start in range(0, len(weights), batch_size):
            index = torch.arange(start, min(start + batch_size, len(weights)), device=device)
            outs.append(model(weights[index]).float().cpu())
    return torch.cat(outs)


def compiled(model: Callable, enabled: bool, device: torch.device = torch.device("cpu")) -> Callable:
    """``torch.compile(model)`` (a module or a function) if ``enabled``; a graph that cannot be compiled runs eagerly
    (dynamo's ``suppress_errors``), so compiling changes speed, not the function. On a GPU the
    compiled step is also captured as a CUDA graph (mode ``reduce-overhead``: a small model's
    step is bound by kernel launches, which a graph replays at once) for static shapes (a run
    has two batch sizes, the full one and the last)."""
    if not enabled:
        return model
    torch._dynamo.config.suppress_errors = True
    return torch.compile(model, **({"mode": "reduce-overhead", "dynamic": False} if device.type == "cuda" else {}))


def out_of_time(limit: float | None, elapsed: float, epoch_seconds: float) -> bool:
    """Whether one more epoch as long as the last would end after ``limit`` seconds."""
    return limit is not None and elapsed + epoch_seconds > limit


def is_better(metric: str, value: float | None, best: float | None) -> bool:
    """Whether ``value`` improves on ``best`` (an undefined value never does)."""
    if value is None:
        return False
    if best is None:
        return True
    return value > best if METRICS[metric].higher_is_better else value < best


def check_outputs(outputs: Tensor, targets: Tensor, task: str, out_dim: int | None) -> None:
    """Refuse a model whose outputs do not fit the task (``InvalidOutput``, one line)."""
    if task == "edit":
        return
    classes = outputs.shape[-1] if out_dim is None else out_dim  # None: any number of classes
    expected = (len(targets), classes) if task == "classification" else (len(targets), 1)
    if tuple(outputs.shape) != expected:
        raise InvalidOutput(f"the model returned outputs of shape {tuple(outputs.shape)} for {len(targets)} networks; "
                            f"valid: {expected} ({task})")


def train(model: nn.Module, train_split: Split, val_split: Split, *, task: str,
          metrics: tuple[str, ...], config: TrainConfig, seed: int, device: torch.device,
          on_epoch: Callable[[dict], None] | None = None, out_dim: int | None = None,
          checkpoint: Checkpoint | None = None) -> TrainResult:
    """Train ``model`` in place; on return it holds the best-validation weights. With
    ``config.patience``, training stops once that many epochs passed without a better
    validation score; with ``config.time_limit``, no epoch starts that the last one's duration
    says would end after that many seconds of training (the first always runs).
    ``result.stopped`` says which rule ended it early. ``config.augment`` augments every
    training batch (``benchmarks.augmentation``; drawn from a generator seeded by ``seed``).
    ``out_dim``: the classes, to check the model's outputs on the first batch. With
    ``checkpoint``, the training state is saved after every epoch and a saved state is resumed
    from: the result is the same as an uninterrupted run's (``result.resumed_after``: the
    epochs it did not redo)."""
    seed_everything(seed)
    model.to(device)
    train_split, val_split = to_device(train_split, device), to_device(val_split, device)
    augment = augmenter(config.augment, train_split.weights, task)
    step_model = compiled(model, config.compile, device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    state = TrainingState(
        model, optimiser,
        torch.optim.lr_scheduler.LambdaLR(optimiser, schedule(config, steps_per_epoch * config.epochs)),
        order=torch.Generator().manual_seed(seed),
        draws=torch.Generator(device=device).manual_seed(seed) if augment else None, device=device)
    loss_fn = loss_function(task)
    primary = metrics[0]
    progress, start, first = Progress(TrainResult(0, {})), time.perf_counter(), 1
    saved = checkpoint.load() if checkpoint else None
    if saved:
        progress = state.restore(saved)
        start -= saved["seconds"]
        first = config.epochs + 1 if progress.result.stopped else saved["epoch"] + 1
    result = progress.result
    for epoch in range(first, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        total = torch.zeros((), device=device)  # summed on the device: no host sync per step
        for index in torch.randperm(len(train_split), generator=state.order).to(device).split(config.batch_size):
            weights, targets = train_split.batch(index)
            if augment:
                weights = augment(weights, state.draws)
            optimiser.zero_grad(set_to_none=True)
            with autocast(config, device):
                outputs = step_model(weights).float()
                if progress.seen == 0:
                    check_outputs(outputs, targets, task, out_dim)
                loss = loss_fn(outputs, targets)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimiser.step()
            state.scheduler.step()
            total = total + loss.detach() * len(index)
            progress.seen += len(index)
        train_loss = total.item() / len(train_split)
        release_freed_memory()  # what the steps' blocks hold goes back before validation allocates its own
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"the training loss became {train_loss} in epoch {epoch}")
        val, _ = compute(metrics, predict(model, val_split.weights, config.eval_batch_size, device, config),
                         val_split.targets.cpu())
        entry = {"epoch": epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
        result.history.append(entry)
        if on_epoch:
            on_epoch(entry)
        if is_better(primary, val[primary], progress.best_value):
            progress.best_value, result.best_epoch, result.best_val = val[primary], epoch, val
            progress.best_state = copy.deepcopy(model.state_dict())
        elif config.patience is not None and epoch - result.best_epoch >= config.patience:
            result.stopped = "patience"
        now = time.perf_counter()
        if not result.stopped and epoch < config.epochs and out_of_time(config.time_limit, now - start,
                                                                         now - epoch_start):
            result.stopped = "time limit"
        if checkpoint:
            checkpoint.save(state.saved(epoch, progress, time.perf_counter() - start))
        if result.stopped:
            break
    result.train_seconds = time.perf_counter() - start
    result.samples_per_second = progress.seen / max(result.train_seconds, 1e-9)
    if progress.best_state is None:
        raise Undefined(f"the validation {primary} is undefined in every epoch")
    model.load_state_dict(progress.best_state)
    return result
