"""The one typed configuration of a benchmark run, which the command line and Python both build.

:class:`EvaluationConfig` holds what ``python -m benchmarks.run`` (or ``wsbench run``) and
``wsbench.evaluate`` are asked; :func:`resolve` checks all of it before any work, imports
the plugins, resolves method names and parses every ``--method-option`` once into typed
values, and returns a :class:`Plan`, which the grid (``benchmarks.grid``) runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from benchmarks import tracking
from benchmarks.launchers import LAUNCHERS, check_launcher
from benchmarks.plugins import PluginError, PluginSpec, check_not_main, import_plugin, requested, \
    resolve_method, spec_for, unimportable
from benchmarks.augmentation import AUGMENTATIONS, NO_AUGMENTATION
from benchmarks.protocol import DEFAULT_SCHEDULE, PRECISIONS, SCHEDULES
from benchmarks.records import is_reference
from benchmarks.suites import SUITES, Suite
from datasets.cache import default_data_root
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError
from datasets.method_table import METHODS, PROFILES
from datasets.source import LoadOptions

log = logging.getLogger("wsbench")
RESULTS_ENV = "WSBENCH_RESULTS"
SMOKE_LIMIT = 40
MAX_SEED, MAX_EPOCHS, MAX_BATCH = 2**31 - 1, 100_000, 65_536


@dataclass(frozen=True)
class EvaluationConfig:
    """What to run, where, and how. ``datasets`` / ``methods`` empty: the suite's embedded
    datasets / every registered method. ``method_options``: ``{"KEY": value}`` for every
    selected method that has hyperparameter ``KEY``, ``{"METHOD.KEY": value}`` for one
    (values typed, or strings to parse). ``dataset_options``: ``{"KEY": "VALUE"}`` for the
    datasets' own options. ``patience``: stop a run after this many epochs without a better
    validation score (``epochs`` stays the most it may train); ``time_limit``: seconds of
    training per run, after which no epoch starts (a run that stops there depends on the
    machine's speed; its record says so). ``schedule``: the learning rate
    after the linear warm-up, ``"cosine"`` (decay to 0, the default) or ``"constant"``;
    ``batch_size``: training batch (``None``: the protocol's 128); ``augment``: weight-space
    augmentation of the training batches (``"none"`` or ``"inr"``, the INR recipe of Neural
    Graphs and DWSNets: ``benchmarks.augmentation``). ``out``: your results folder
    (default ``$WSBENCH_RESULTS`` or ``./runs``); ``data_root``: the dataset cache
    (default ``$WSBENCH_DATA`` or ``~/.cache/wsbench``). ``plugins``: modules to import
    (``--plugin``; ``$WSBENCH_PLUGINS`` too)."""

    suite: str = "inr"
    datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int | None = None
    patience: int | None = None
    time_limit: float | None = None
    profile: str = "quick"
    smoke: bool = False
    device: str = "cpu"
    lr: float | None = None
    schedule: str = DEFAULT_SCHEDULE
    batch_size: int | None = None
    augment: str = NO_AUGMENTATION
    precision: str = "fp32"
    compile: bool = False
    threads: int = 1
    jobs: int | None = None
    data_root: Path | None = None
    dataset_source: Path | None = None
    fetch: bool = False
    dataset_options: Mapping[str, str] = field(default_factory=dict)
    method_options: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    skip_invalid: bool = False
    out: Path | None = None
    update_reference: bool = False
    force: bool = False
    track: str = "none"
    launcher: str = "local"
    ray_address: str | None = None
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("data_root", "dataset_source", "out"):  # Python callers may give strings
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        for name in ("datasets", "methods", "seeds", "plugins"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, low, high in (("epochs", 1, MAX_EPOCHS), ("patience", 1, MAX_EPOCHS), ("threads", 1, 256),
                                ("batch_size", 1, MAX_BATCH),
                                ("jobs", 1, 64), ("limit", 1, 10**9)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and low <= value <= high):
                raise ConfigError(f"{name}={value!r} is out of range; valid: an integer {low}..{high}")
        if not self.seeds or any(not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in self.seeds):
            raise ConfigError(f"seeds={self.seeds!r}; valid: one or more integers 0..{MAX_SEED}")
        for name in ("lr", "time_limit"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ConfigError(f"{name}={value!r} is out of range; valid: a positive number")
        for name, value, valid in (("profile", self.profile, PROFILES), ("device", self.device, ("cpu", "cuda")),
                                   ("precision", self.precision, PRECISIONS),
                                   ("schedule", self.schedule, SCHEDULES), ("augment", self.augment, AUGMENTATIONS),
                                   ("launcher", self.launcher, LAUNCHERS),
                                   ("track", self.track, tracking.TRACKERS)):
            if value not in valid:
                raise ConfigError(f"{name}={value!r}; valid: {', '.join(valid)}")
        SUITES[self.suite]  # an unknown suite: UnknownName, with the valid ones

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def results(self) -> Path:
        """Where the runs go."""
        return Path(self.out or os.environ.get(RESULTS_ENV) or "runs")

    @property
    def budget_profile(self) -> str:
        """The training budget: ``smoke``, or the profile."""
        return "smoke" if self.smoke else self.profile

    @property
    def run_seeds(self) -> list[int]:
        return [self.seeds[0]] if self.smoke else sorted(set(self.seeds))

    @property
    def parallel_jobs(self) -> int:
        """``jobs``, or CPU cores / threads (at most 4; 1 on CUDA)."""
        if self.jobs:
            return self.jobs
        return 1 if self.device == "cuda" else max(1, min(4, (os.cpu_count() or 1) // self.threads))


@dataclass(frozen=True)
class Plan:
    """A checked configuration: the suite, datasets and methods (resolved names), the load
    options, each method's typed hyperparameter overrides, what workers import, and the
    plugins that failed (named; the other runs go on)."""

    config: EvaluationConfig
    suite: Suite
    datasets: list[str]
    methods: list[str]
    load: LoadOptions
    method_options: dict[str, dict[str, Any]]
    plugins: PluginSpec
    broken: list[str] = field(default_factory=list)
    in_process: bool = False  # a method or dataset a worker could not import: run here


def unique(names) -> list[str]:
    """``names`` without repeats, in order (``--methods statnn statnn`` trains once)."""
    return list(dict.fromkeys(names))


def parse_method_options(methods: list[str], given: Mapping[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """Per method, the typed values of the options that apply to it (``KEY``: every selected
    method that has ``KEY``; ``METHOD.KEY``: that method). An option no selected method has,
    or a value out of range, is refused now, before any work; this is the one place an
    option's text is parsed."""
    chosen: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in given.items():
        target, _, name = key.rpartition(".")
        if target and METHODS[target] and target not in chosen:
            raise ConfigError(f"--method-option {key}: method {target!r} is not selected "
                              f"(selected: {', '.join(methods)})")
        candidates = [target] if target else methods
        takers = [m for m in candidates if name in METHODS[m].option_names(profile)]
        if not takers:
            valid = sorted(set().union(*(METHODS[m].option_names(profile) for m in candidates)))
            raise ConfigError(f"--method-option {key}: no selected method has option {name!r}; valid: "
                              f"{', '.join(valid) or '(none)'}")
        for m in takers:
            chosen[m][name] = METHODS[m].check_option(profile, name, value)
    return chosen


def check_writable(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be written: {err.strerror or err}") from None


def resolve(config: EvaluationConfig) -> Plan:
    """Check everything ``config`` names before any work (``ConfigError``: one line), import
    its plugins and return the plan. A plugin that cannot be imported, or a
    ``module:object`` method of one, is named in ``Plan.broken`` and left out."""
    broken, plugins = [], []
    for name in requested(config.plugins):
        try:
            plugins.append(import_plugin(name))
        except PluginError as err:
            broken.append(str(err))
    suite = SUITES[config.suite]
    names = unique(config.datasets or suite.default_datasets())
    for name in names:
        info = DATASETS[name].info
        if suite.name not in info.suites:
            raise ConfigError(f"dataset {name!r} belongs to suite {'/'.join(info.suites)!r}, not {suite.name!r}; "
                              f"{suite.name} datasets: {', '.join(suite.datasets())}")
    methods = []
    for name in unique(config.methods or list(METHODS)):
        try:
            methods.append(resolve_method(name))
        except PluginError as err:
            broken.append(str(err))
    for problem in broken:
        log.error("error: %s", problem)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available to this torch build")
    tracking.check(config.track)
    check_launcher(config.launcher, config.ray_address)
    main = unimportable(methods, names)
    check_not_main(main, config.launcher)
    out = config.results
    if is_reference(out) and not config.update_reference:
        raise ConfigError(f"{out} holds the shipped reference results; write your runs to another folder "
                          f"(--out DIR; default ./runs), or pass --update-reference to change the reference")
    root = config.data_root or default_data_root()
    check_writable(root, "data root")
    check_writable(out, "output folder")
    limit = config.limit or (SMOKE_LIMIT if config.smoke else None)
    load = LoadOptions(root, config.dataset_source, limit, config.skip_invalid, True, dict(config.dataset_options))
    for name in names:
        DATASETS[name].open(load)  # parses and range-checks the dataset options now
    options = parse_method_options(methods, config.method_options, config.profile)
    return Plan(config, suite, names, methods, load, options, spec_for(methods, names, tuple(plugins)), broken,
                in_process=bool(main))
