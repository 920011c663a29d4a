"""Metrics, registered by name with how they are shown, and OGB-style strict input checks.

Every metric takes ``(outputs, targets)`` as produced by the harness: for classification
``outputs`` are ``(N, C)`` logits and ``targets`` ``(N,)`` class ids; for regression
``outputs`` are ``(N, 1)`` or ``(N,)`` predictions and ``targets`` ``(N,)`` floats. A
metric that is undefined on its input (a rank correlation of constant targets, an R^2 of
constant targets) raises :class:`Undefined`; :func:`compute` records it as ``None`` with
the reason, never as a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from scipy.stats import kendalltau
from torch import Tensor

from datasets.registry import Registry


class Undefined(ArithmeticError):
    """The metric has no value on this input; the message says why."""


@dataclass(frozen=True)
class Metric:
    """A metric and how tables show it: ``label``, values multiplied by ``scale``, ``digits``."""

    name: str
    fn: Callable[[Tensor, Tensor], float]
    higher_is_better: bool
    task: str
    label: str
    scale: float = 1.0
    digits: int = 3

    def show(self, value: float) -> float:
        return value * self.scale


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, *, higher_is_better: bool, task: str, label: str, scale: float = 1.0,
                    digits: int = 3) -> Callable:
    def wrap(fn: Callable[[Tensor, Tensor], float]) -> Callable:
        METRICS.add(name, Metric(name, fn, higher_is_better, task, label, scale, digits))
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


def _need_spread(targets: Tensor, what: str) -> None:
    if len(targets) < 2 or bool((targets == targets[0]).all()):
        raise Undefined(f"{what} is undefined: {len(targets)} target(s), all equal")


@register_metric("accuracy", higher_is_better=True, task="classification", label="accuracy %", scale=100.0,
                 digits=2)
def accuracy(outputs: Tensor, targets: Tensor) -> float:
    outputs, targets = check_inputs(outputs, targets, "classification")
    if len(targets) == 0:
        raise Undefined("accuracy is undefined on an empty split")
    return (outputs.argmax(1) == targets).double().mean().item()


@register_metric("kendall_tau", higher_is_better=True, task="regression", label="Kendall τ")
def kendall_tau(outputs: Tensor, targets: Tensor) -> float:
    """Kendall's tau-b between predictions and targets (scipy's definition); constant
    predictions rank nothing and score 0."""
    outputs, targets = check_inputs(outputs, targets, "regression")
    _need_spread(targets, "Kendall τ")
    tau = kendalltau(outputs.cpu().numpy(), targets.cpu().numpy()).statistic
    return 0.0 if math.isnan(tau) else float(tau)


@register_metric("r2", higher_is_better=True, task="regression", label="R²")
def r2(outputs: Tensor, targets: Tensor) -> float:
    outputs, targets = check_inputs(outputs, targets, "regression")
    _need_spread(targets, "R²")
    residual = (targets - outputs).pow(2).sum()
    total = (targets - targets.mean()).pow(2).sum()
    return (1 - residual / total).item()


@register_metric("mse", higher_is_better=False, task="regression", label="MSE", digits=4)
def mse(outputs: Tensor, targets: Tensor) -> float:
    outputs, targets = check_inputs(outputs, targets, "regression")
    if len(targets) == 0:
        raise Undefined("MSE is undefined on an empty split")
    return (outputs - targets).pow(2).mean().item()


@register_metric("pixel_mse", higher_is_better=False, task="edit", label="MSE (×10⁻²)", scale=100.0)
def pixel_mse(outputs: Tensor, targets: Tensor) -> float:
    """Mean squared error of rendered signals ``(N, P)`` against their targets, in [0, 1]
    units (the INR editing metric; tables show it x 100)."""
    if outputs.shape != targets.shape or len(targets) == 0:
        raise ValueError(f"edit expects outputs and targets of one shape (N, P), got {tuple(outputs.shape)} "
                         f"and {tuple(targets.shape)}")
    return (outputs.double() - targets.double()).pow(2).mean().item()


def compute(names: tuple[str, ...], outputs: Tensor, targets: Tensor) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every named metric on the same outputs, and the reason for each undefined one
    (whose value is ``None``)."""
    values: dict[str, float | None] = {}
    undefined: dict[str, str] = {}
    for name in names:
        try:
            values[name] = METRICS[name].fn(outputs, targets)
        except Undefined as err:
            values[name], undefined[name] = None, str(err)
    return values, undefined


def chance(metric: str, targets: Tensor, num_classes: int) -> tuple[float, float]:
    """The metric of a predictor that ignores its input (the majority class; a constant), and
    a margin beyond which a score is unlikely to be luck (two standard deviations under that
    null), on these targets."""
    n = max(len(targets), 1)
    if metric == "accuracy":
        p = targets.bincount(minlength=num_classes).max().item() / n
        return p, 2 * math.sqrt(p * (1 - p) / n)
    if metric == "kendall_tau":
        return 0.0, 2 * math.sqrt(2 * (2 * n + 5) / (9 * n * max(n - 1, 1)))
    if metric == "r2":
        return 0.0, 0.0
    if metric == "mse":  # predicting the mean
        return targets.double().var(correction=0).item() if len(targets) else 0.0, 0.0
    raise KeyError(f"no chance level is defined for metric {metric!r}")
