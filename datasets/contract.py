"""The method contract: what every method keeps, checked on random *and trained* networks.

:func:`check_method` builds a method for the architectures of the embedded datasets and of a
few synthetic ones, in float64, and checks, naming every failure:

- **invariance**: every symmetry the method claims leaves its output unchanged (relative
  change at most :data:`TOLERANCE`), on random networks and on trained networks sampled from
  the embedded datasets (``digits-inr``, ``digits-cnn-zoo``, ``digits-cnn-park``; shipped in
  ``datasets/trained/``), also with zero weights, a dead neuron and magnitudes spread over 40
  decades (:func:`degenerate`): the cases where a constant, clamp or cutoff in a method
  breaks a symmetry that random weights never show. Each transform is first verified on the
  networks themselves (their function is unchanged);
- **negative control**: a method claiming no symmetry is shown to change its output under a
  permutation; every method changes its output under a function-changing permutation of one
  layer's rows (unless registered ``blind_to`` it, which is then checked) and under a
  perturbed weight;
- **batch independence**: outputs in eval mode do not depend on the other networks of the
  batch;
- **gradient step**: every parameter receives a finite, non-zero gradient, and one AdamW step
  changes the output and keeps it finite;
- **output**: ``(networks, out_dim)`` and finite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn

from datasets.cache import load_split
from datasets.errors import UnsupportedArchitecture, WsbenchError
from datasets.functional import forward
from datasets.method_table import METHODS, MethodInfo
from datasets.normalisation import LayerStats
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.symmetry import flip_signs, permute_hidden, permute_rows_only, rescale_positive, shift_phase
from datasets.weight_dataset import TaskInfo
from datasets.weights import MixedWeights, WeightSpace, Weights, as_mixed

TOLERANCE = 1e-6  # largest relative output change allowed under a claimed symmetry, in float64
FUNCTION_TOLERANCE = 1e-9  # a transform must keep the networks' function to this (float64 rounding)
TRAINED_FOLDER = Path(__file__).resolve().parent / "trained"
TRAINED = {"digits-inr": ("classification", 10), "digits-cnn-zoo": ("regression", 1),
           "digits-cnn-park": ("regression", 1)}  # sample -> the task its dataset poses

SYNTHETIC: dict[str, ArchSpec] = {
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
TRANSFORMS: dict[str, Callable[[Weights, torch.Generator], Weights]] = {
    "permutation": permute_hidden, "sign_flip": flip_signs, "phase": shift_phase,
    "rescale": lambda w, g: rescale_positive(w, g, 0.1, 10.0),  # scales over two decades
}


class ContractViolation(WsbenchError, AssertionError):
    """A method breaks its contract; the message names each failed check."""


@dataclass(frozen=True)
class Check:
    """One check of one case: ``name`` (invariance, negative control, ...), ``case`` (what
    it ran on), whether it passed, and what was measured."""

    name: str
    case: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.passed else 'FAILED'}: {self.name} on {self.case}: {self.detail}"


@dataclass
class ContractReport:
    """Every check :func:`check_method` ran on ``method``, and the cases it skipped (an
    architecture the method cannot take) with the reason."""

    method: str
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """``ContractViolation`` listing every failed check (one line each, first the count)."""
        if self.failures:
            raise ContractViolation(f"{self.method} breaks its contract in {len(self.failures)} check(s): "
                                    + "; ".join(f"{c.name} on {c.case}: {c.detail}" for c in self.failures))

    def __str__(self) -> str:
        lines = [f"{self.method}: {len(self.checks) - len(self.failures)}/{len(self.checks)} checks passed"]
        lines += [f"  {c}" for c in self.checks if not c.passed]
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class Case:
    """Networks to check a method on: ``weights`` (float64) and the task they pose."""

    name: str
    weights: Weights
    task: str = "classification"
    out_dim: int = 10

    def task_info(self) -> TaskInfo:
        groups = as_mixed(self.weights).groups
        return TaskInfo(tuple(g.spec for g in groups), self.out_dim, self.task,
                        {g.spec: LayerStats.of(g) for g in groups})


def random_networks(spec: ArchSpec, count: int = 6, seed: int = 0) -> WeightSpace:
    """``count`` networks of ``spec`` with standard-normal float64 weights and biases."""
    g = torch.Generator().manual_seed(seed)
    return WeightSpace.from_flat(spec, torch.randn(count, spec.num_params, generator=g, dtype=torch.float64))


@cache
def trained_networks(name: str) -> Weights:
    """The shipped sample of trained networks of embedded dataset ``name``, in float64
    (``scripts/sample_trained_networks.py`` draws it from the built dataset)."""
    return load_split(TRAINED_FOLDER / f"{name}.safetensors").weights.to(torch.float64)


def degenerate(ws: WeightSpace, seed: int = 0) -> WeightSpace:
    """``ws`` with a fifth of its weights and biases zero, one neuron of the first hidden
    layer dead (incoming weights and bias zero), and every other value shrunk by a random
    factor between 1 and 1e-40 (log-uniform): magnitudes over 40 decades, so that a
    rescaling moves some of them across any constant, clamp or cutoff a method may hold
    (trained CNNs hold weights down to 1e-42)."""
    g = torch.Generator().manual_seed(seed)

    def spread(t: Tensor) -> Tensor:
        kept = torch.rand(t.shape, generator=g, dtype=t.dtype) >= 0.2
        return t * kept * 10 ** (-40 * torch.rand(t.shape, generator=g, dtype=t.dtype))

    weights, biases = [spread(w) for w in ws.weights], [spread(b) for b in ws.biases]
    if ws.spec.widths[1] >= 2:
        weights[0][:, 0], biases[0][:, 0] = 0.0, 0.0
    return WeightSpace(ws.spec, tuple(weights), tuple(biases))


def cases(method: MethodInfo, trained: bool = True) -> list[Case]:
    """What ``method`` is checked on: 6 random networks of each synthetic architecture, and
    each trained sample as it is and :func:`degenerate`, per architecture (and mixed, for a
    heterogeneous method)."""
    out = [Case(f"random {name} networks", random_networks(spec)) for name, spec in SYNTHETIC.items()]
    if not trained:
        return out
    for name, (task, out_dim) in TRAINED.items():
        if task not in method.tasks:
            continue
        sample = as_mixed(trained_networks(name))
        groups = [(g.spec.describe(), g) for g in sample.groups]
        for label, make in (("trained", lambda g: g), ("trained, zero and tiny weights", degenerate)):
            moved = [(d, make(g)) for d, g in groups]
            if method.heterogeneous and len(moved) > 1:
                mixed = MixedWeights(tuple(g for _, g in moved), sample.group_index, sample.row_index)
                out.append(Case(f"{label} {name} networks ({len(moved)} architectures)", mixed, task, out_dim))
            else:
                out += [Case(f"{label} {name} networks ({d})", g, task, out_dim) for d, g in moved]
    return out


def relative_change(before: Tensor, after: Tensor) -> float:
    """Largest absolute change relative to the largest absolute output."""
    return ((before - after).abs().max() / before.abs().max().clamp_min(1e-300)).item()


def function_change(before: Weights, after: Weights) -> float:
    """Largest relative change of the networks' outputs at random inputs (MLPs: points in
    [-1, 1]; CNNs: 9 x 9 images)."""
    g = torch.Generator().manual_seed(5)
    changes = []
    for a, b in zip(as_mixed(before).groups, as_mixed(after).groups):
        shape = (4, a.spec.widths[0], 9, 9) if a.spec.is_conv else (16, a.spec.widths[0])
        x = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
        out = forward(a, x)
        changes.append(relative_change(out, forward(b, x)))
    return max(changes)


def build(method: MethodInfo, case: Case, profile: str) -> nn.Module:
    """``method`` built for ``case`` (``UnsupportedArchitecture`` if it cannot take it), in
    float64 and eval mode, from a fixed seed."""
    torch.manual_seed(0)
    task = case.task_info()
    net = method.build(task, **method.hyperparameters(task, profile))
    return net.double().eval()


def check_method(method: str | MethodInfo, *, profile: str = "quick", trained: bool = True) -> ContractReport:
    """Run the contract (module docstring) on ``method`` (a registered name or its
    ``MethodInfo``) built with ``profile``'s hyperparameters; ``trained=False`` leaves out the
    trained networks. Returns the report; ``report.raise_for_failures()`` raises
    ``ContractViolation`` naming what failed."""
    info = METHODS[method] if isinstance(method, str) else method
    report = ContractReport(info.name)
    kinds_checked: set[type] = set()  # one homogeneous and one mixed case get the per-case checks
    for case in cases(info, trained):
        try:
            net = build(info, case, profile)
        except UnsupportedArchitecture as err:
            report.skipped.append(f"{case.name}: {err}")
            continue
        with torch.no_grad():
            out = net(case.weights)
        report.checks.append(_output(case, out))
        report.checks += _invariance(info, net, case, out)
        kind = type(case.weights)
        if kind in kinds_checked:
            continue
        kinds_checked.add(kind)
        report.checks.append(_batch_independence(net, case, out))
        if isinstance(case.weights, WeightSpace):
            report.checks += _controls(info, net, case, out)
            report.checks.append(_gradient_step(build(info, case, profile), case))
    if not report.checks:
        report.checks.append(Check("output", "every case", False, "the method takes none of the architectures"))
    return report


def _output(case: Case, out: Tensor) -> Check:
    expected = (len(case.weights), case.out_dim)
    ok = tuple(out.shape) == expected and bool(torch.isfinite(out).all())
    return Check("output", case.name, ok, f"shape {tuple(out.shape)} (expected {expected}), "
                                          f"{'finite' if torch.isfinite(out).all() else 'not finite'}")


def _invariance(info: MethodInfo, net: nn.Module, case: Case, out: Tensor) -> list[Check]:
    checks = []
    for symmetry in sorted(info.symmetries):
        moved = TRANSFORMS[symmetry](case.weights, torch.Generator().manual_seed(1))
        if not _moved(case.weights, moved):
            continue  # the architecture has no such symmetry
        if function_change(case.weights, moved) > FUNCTION_TOLERANCE:
            continue  # not a symmetry of these networks in float64 (rounding): nothing to check
        with torch.no_grad():
            change = relative_change(out, net(moved))
        checks.append(Check(f"invariance to {symmetry}", case.name, change <= TOLERANCE,
                            f"relative output change {change:.2g} (tolerance {TOLERANCE:g})"))
    return checks


def _moved(before: Weights, after: Weights) -> bool:
    """Whether a transform changed any weight."""
    return any(not torch.equal(a.flatten(), b.flatten())
               for a, b in zip(as_mixed(before).groups, as_mixed(after).groups))


def _controls(info: MethodInfo, net: nn.Module, case: Case, out: Tensor) -> list[Check]:
    ws: WeightSpace = case.weights  # type: ignore[assignment]
    checks = []
    with torch.no_grad():
        if not info.symmetries:
            change = relative_change(out, net(permute_hidden(ws, torch.Generator().manual_seed(1))))
            checks.append(Check("negative control: permutation", case.name, change > 1e-3,
                                f"relative output change {change:.2g} (a method claiming no symmetry must "
                                "change its output: more than 1e-3)"))
        rows_only = permute_rows_only(ws, 1, torch.Generator().manual_seed(3))
        change = relative_change(out, net(rows_only))
        if "permute_rows_only" in info.blind_to:
            checks.append(Check("blind to permute_rows_only", case.name, change <= TOLERANCE,
                                f"relative output change {change:.2g} (registered blind: at most {TOLERANCE:g})"))
        else:
            checks.append(Check("negative control: permute_rows_only", case.name, change > 1e-4,
                                f"relative output change {change:.2g} (a function-changing transform: more "
                                "than 1e-4)"))
        perturbed = WeightSpace(ws.spec, (ws.weights[0] + 0.5 * torch.sign(ws.weights[0]), *ws.weights[1:]),
                                ws.biases)
        change = relative_change(out, net(perturbed))
        checks.append(Check("negative control: perturbed weights", case.name, change > 1e-4,
                            f"relative output change {change:.2g} (more than 1e-4)"))
    return checks


def _batch_independence(net: nn.Module, case: Case, out: Tensor) -> Check:
    with torch.no_grad():
        alone = torch.cat([net(case.weights[i:i + 1]) for i in range(len(case.weights))])
    change = (alone - out).abs().max().item()
    scale = out.abs().max().item()
    return Check("batch independence", case.name, change <= 1e-8 + 1e-6 * scale,
                 f"largest change of an output computed alone {change:.2g} (eval mode)")


def _gradient_step(net: nn.Module, case: Case) -> Check:
    with torch.no_grad():
        before = net(case.weights)
    net.train()
    out = net(case.weights)
    targets = torch.arange(len(case.weights)) % case.out_dim
    loss = nn.functional.cross_entropy(out, targets) if case.task == "classification" else out.pow(2).mean()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    bad = [n for n, p in net.named_parameters()
           if p.grad is not None and (not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    if missing or bad:
        return Check("gradient step", case.name, False,
                     f"parameters without a gradient: {', '.join(missing) or 'none'}; with a zero or non-finite "
                     f"one: {', '.join(bad) or 'none'}")
    torch.optim.AdamW(net.parameters(), lr=1e-3).step()
    net.eval()
    with torch.no_grad():
        after = net(case.weights)
    moved = (after - before).abs().max().item()
    ok = bool(torch.isfinite(after).all()) and moved > 0
    return Check("gradient step", case.name, ok, f"every parameter has a finite gradient; one AdamW step changed "
                                                 f"the output by {moved:.2g}")
