"""Metrics, registered by name, with OGB-style strict input checks.

Every metric takes ``(outputs, targets)`` as produced by the harness: for classification
``outputs`` are ``(N, C)`` logits and ``targets`` ``(N,)`` class ids; for regression
``outputs`` are ``(N, 1)`` or ``(N,)`` predictions and ``targets`` ``(N,)`` floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from scipy.stats import kendalltau
from torch import Tensor

from datasets.registry import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Tensor, Tensor], float]
    higher_is_better: bool
    task: str


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, *, higher_is_better: bool, task: str) -> Callable:
    def wrap(fn: Callable[[Tensor, Tensor], float]) -> Callable:
        METRICS.add(name, Metric(name, fn, higher_is_better, task))
        return fn
    return wrap


def check_inputs(outputs: Tensor, targets: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Validate shapes and dtypes; return regression predictions flattened."""
    if outputs.shape[0] != targets.shape[0] or targets.ndim != 1:
        raise ValueError(f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} "
                         "must have the same first dimension, targets 1-D")
    if task == "classification":
        if outputs.ndim != 2 or targets.dtype != torch.long:
            raise ValueError("classification expects (N, C) logits and int64 class ids")
        return outputs, targets
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.ndim != 1:
        raise ValueError(f"regression expects (N,) or (N, 1) predictions, got {tuple(outputs.shape)}")
    return outputs.double(), targets.double()


@register_metric("accuracy", higher_is_better=True, task="classification")
def accuracy(outputs: Tensor, targets: Tensor) -> float:
    outputs, targets = check_inputs(outputs, targets, "classification")
    return (outputs.argmax(1) == targets).double().mean().item()


@register_metric("kendall_tau", higher_is_better=True, task="regression")
def kendall_tau(outputs: Tensor, targets: Tensor) -> float:
    """Kendall's tau-b between predictions and targets (scipy's definition)."""
    outputs, targets = check_inputs(outputs, targets, "regression")
    tau = kendalltau(outputs.cpu().numpy(), targets.cpu().numpy()).statistic
    return 0.0 if tau != tau else float(tau)  # constant predictions: no ranking at all


@register_metric("r2", higher_is_better=True, task="regression")
def r2(outputs: Tensor, targets: Tensor) -> float:
    outputs, targets = check_inputs(outputs, targets, "regression")
    residual = (targets - outputs).pow(2).sum()
    total = (targets - targets.mean()).pow(2).sum().clamp_min(1e-12)
    return (1 - residual / total).item()


@register_metric("mse", higher_is_better=False, task="regression")
def mse(outputs: Tensor, targets: Tensor) -> float:
    outputs, targets = check_inputs(outputs, targets, "regression")
    return (outputs - targets).pow(2).mean().item()


def compute(names: tuple[str, ...], outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """Every named metric on the same outputs."""
    return {name: METRICS[name].fn(outputs, targets) for name in names}
