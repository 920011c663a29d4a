"""The method table: every method declared once, with its facts, where it is registered.

In the spirit of timm's ``create_model``: :func:`build_method` is the one way to build any
method, from a profile's hyperparameters and validated overrides. It lives in the lowest
package because ``baselines/`` and ``methods/`` both register here and neither may import
the harness.

A registration states the symmetries the method is invariant to *by construction*
(``symmetries``; the contract test checks each) and the non-symmetries it is documented to
be blind to (``blind_to``; the contract test checks that it really is, and that another
control does change its output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from datasets.errors import ConfigError
from datasets.options import parse_value
from datasets.registry import Registry
from datasets.weight_dataset import TaskInfo

PROFILES = ("quick", "paper")
SYMMETRIES = ("permutation", "sign_flip", "rescale", "phase")
CONTROLS = ("permute_rows_only",)
BUILTIN_PACKAGES = ("baselines", "methods")  # where the shipped methods are defined


@dataclass(frozen=True)
class MethodInfo:
    """One method.

    ``build(task, **hyperparameters)`` returns an ``nn.Module`` whose ``forward(weights)``
    maps a ``WeightSpace`` (or a ``MixedWeights`` when ``heterogeneous``) to
    ``(B, out_dim)``. ``profiles``: per profile the complete hyperparameters: ``quick`` (CPU
    sizes) is required, ``paper`` (the published sizes) optional, falling back to ``quick``
    (:meth:`profile_used`); with ``by_domain`` each profile holds one set per domain
    (``mlp``, ``cnn``). ``optim`` overrides the protocol's AdamW settings where the paper used
    others; ``profile_optim`` overrides them again for one model profile (a quick learning
    rate chosen by the threshold study); ``optimiser(profile)`` is the result.
    ``tasks``: the tasks it can be built for; ``"edit"`` means it has an equivariant
    weight-space output (its module returns a change of the input ``WeightSpace``).
    ``version``: bump it when the code changes what the method computes, so records made by
    the old code are not reused. ``family``: a label for tables (optional)."""

    name: str
    build: Callable[..., nn.Module]
    profiles: dict[str, dict[str, Any]]
    family: str = ""
    symmetries: frozenset[str] = frozenset({"permutation"})
    blind_to: frozenset[str] = frozenset()
    heterogeneous: bool = False
    by_domain: bool = False
    optim: dict[str, float] = field(default_factory=dict)
    profile_optim: dict[str, dict[str, float]] = field(default_factory=dict)
    tasks: frozenset[str] = frozenset({"classification", "regression"})
    version: int = 1
    paper: str = ""

    def __post_init__(self) -> None:
        if "quick" not in self.profiles or set(self.profiles) - set(PROFILES):
            raise ConfigError(f"method {self.name}: profiles must hold 'quick' (and may hold 'paper'), got "
                              f"{sorted(self.profiles)}")
        unknown = (self.symmetries - set(SYMMETRIES)) | (self.blind_to - set(CONTROLS))
        if unknown:
            raise ConfigError(f"method {self.name}: unknown symmetries or controls {sorted(unknown)}; valid: "
                              f"{', '.join(SYMMETRIES + CONTROLS)}")
        if set(self.profile_optim) - set(PROFILES):
            raise ConfigError(f"method {self.name}: profile_optim keys must be among {PROFILES}")

    @property
    def module(self) -> str:
        """The module that defines the method's builder."""
        return getattr(self.build, "__module__", None) or "__main__"

    @property
    def builtin(self) -> bool:
        """Whether the method ships with wsbench (``baselines/``, ``methods/``)."""
        return self.module.split(".")[0] in BUILTIN_PACKAGES

    def profile_used(self, profile: str) -> str:
        """The profile whose hyperparameters ``profile`` gives: itself, or ``quick`` for a
        method without a ``paper`` profile."""
        if profile not in PROFILES:
            raise ConfigError(f"{self.name}: unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
        return profile if profile in self.profiles else "quick"

    def optimiser(self, profile: str) -> dict[str, float]:
        """The AdamW overrides this method trains with under model profile ``profile``."""
        return {**self.optim, **self.profile_optim.get(profile, {})}

    def defaults(self, profile: str, task: TaskInfo) -> dict[str, Any]:
        """The profile's hyperparameters for ``task``."""
        table = self.profiles[self.profile_used(profile)]
        return dict(table[task.domain] if self.by_domain else table)

    def _tables(self, profile: str) -> list[dict[str, Any]]:
        table = self.profiles[self.profile_used(profile)]
        return list(table.values()) if self.by_domain else [table]

    def option_names(self, profile: str) -> set[str]:
        """Every hyperparameter a ``--method-option`` may set under ``profile``."""
        return set().union(*self._tables(profile))

    def check_option(self, profile: str, name: str, value: Any) -> Any:
        """``value`` parsed for hyperparameter ``name`` (``ConfigError`` if it does not fit)."""
        default = next(t[name] for t in self._tables(profile) if name in t)
        return parse_hyperparameter(f"{self.name} option", name, value, default)

    def hyperparameters(self, task: TaskInfo, profile: str = "quick",
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The profile's hyperparameters with ``overrides`` (strings are parsed to the type
        of the default); an unknown key is refused with the valid ones."""
        values = self.defaults(profile, task)
        overrides = overrides or {}
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ConfigError(f"{self.name}: unknown method option(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(sorted(values))}")
        values.update({k: parse_hyperparameter(f"{self.name} option", k, v, values[k]) for k, v in overrides.items()})
        return values


def parse_hyperparameter(label: str, name: str, value: Any, default: Any) -> Any:
    """``value`` typed like ``default`` and range-checked the way every model reads its
    hyperparameters: a size (an int whose default is positive, or each entry of a tuple of
    them) at least 1, other numbers at least 0, a dropout rate below 1; ``ConfigError``
    naming the option and the valid range otherwise."""
    parsed = parse_value(f"{label} {name}", value, default)
    numbers = parsed if isinstance(parsed, tuple) else (parsed,)
    for number, reference in zip(numbers, default if isinstance(default, tuple) else (default,) * len(numbers)):
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        size = isinstance(reference, int) and not isinstance(reference, bool) and reference >= 1
        low, high = (1 if size else 0), (1 if "dropout" in name else None)
        if number < low or (high is not None and number >= high):
            valid = f"at least {low}" if high is None else f"from {low} up to (not including) {high}"
            raise ConfigError(f"{label} {name}={value} is out of range; valid: {valid}")
    return parsed


METHODS: Registry[MethodInfo] = Registry("method")


def register_method(name: str, *, profiles: dict[str, dict[str, Any]] | None = None,
                    symmetries: tuple[str, ...] = ("permutation",), blind_to: tuple[str, ...] = (),
                    heterogeneous: bool = False, by_domain: bool = False, optim: dict | None = None,
                    profile_optim: dict | None = None, edits: bool = False, version: int = 1,
                    family: str = "", paper: str = "") -> Callable:
    """Decorator: register ``build(task: TaskInfo, **hyperparameters) -> nn.Module`` under
    ``name``. ``profiles``: ``{"quick": {...}}`` and optionally ``"paper"`` (default: a quick
    profile without hyperparameters); ``symmetries``: what the module is invariant to by
    construction (``check_method`` checks each); ``edits``: it can also be built for the
    edit task; the rest: see :class:`MethodInfo`. The builder gets ``wsbench_method = name``."""
    tasks = frozenset({"classification", "regression"} | ({"edit"} if edits else set()))

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        METHODS.add(name, MethodInfo(name, build, dict(profiles or {"quick": {}}), family, frozenset(symmetries),
                                     frozenset(blind_to), heterogeneous, by_domain, dict(optim or {}),
                                     dict(profile_optim or {}), tasks, version, paper))
        build.wsbench_method = name  # type: ignore[attr-defined]
        return build
    return wrap


def build_method(method: str | MethodInfo, task: TaskInfo, *, profile: str = "quick", **overrides: Any) -> nn.Module:
    """Build ``method`` (a registered name or its ``MethodInfo``) for ``task``: the profile's
    hyperparameters with ``overrides``. The module's ``hparams`` attribute holds the
    hyperparameters it was built with."""
    info = METHODS[method] if isinstance(method, str) else method
    hparams = info.hyperparameters(task, profile, overrides)
    model = info.build(task, **hparams)
    model.hparams = hparams
    return model
