"""Plugins: methods and datasets from outside the repository, in the manner of lm-eval and timm.

A plugin is a Python module that registers methods (``register_method``) or datasets
(``register_dataset``, ``register_network_folder``) when imported. wsbench imports:

- every entry point of the groups ``wsbench.methods`` and ``wsbench.datasets`` of the
  installed distributions (``[project.entry-points."wsbench.methods"] mine = "mypkg.methods"``
  in the plugin's ``pyproject.toml``), in every process;
- every module named with ``--plugin MODULE`` (repeatable; a module name, or the path of a
  ``.py`` file) or in ``$WSBENCH_PLUGINS`` (comma-separated);
- the module of a ``--methods pkg.module:builder`` name: ``builder`` is a method registered
  in that module (its ``register_method`` name), a ``MethodInfo``, or a plain builder
  ``build(task, **hyperparameters) -> nn.Module``, registered under ``pkg.module:builder``
  with a quick profile without hyperparameters and no symmetry claimed.

Every worker process and Ray task imports the same modules (:class:`PluginSpec` travels with
each run), so a method registered from a module reaches them wherever it was imported; one
defined in ``__main__`` (a notebook) cannot be re-imported there, and runs in the calling
process. A record names where its method came from (:func:`method_origin`): built-in, or the
plugin's module, its distribution and version and the hash of the module's source, so a
new version of a plugin is a new configuration and never reuses a built-in's records.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError, WsbenchError
from datasets.method_table import METHODS, MethodInfo

log = logging.getLogger("wsbench")
GROUPS = ("wsbench.methods", "wsbench.datasets")
PLUGINS_ENV = "WSBENCH_PLUGINS"
BUILTIN_MODULES = ("baselines", "methods", "datasets", "benchmarks")


class PluginError(WsbenchError):
    """A plugin that cannot be imported or does not provide what it is named for."""


@dataclass(frozen=True)
class PluginSpec:
    """What a worker imports before it runs: module names, the folders they were found in
    (added to ``sys.path`` where missing), and the ``module:object`` method names to resolve
    again (a plain builder registers nothing on import)."""

    modules: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    def load(self) -> None:
        """Import every module and resolve every method name (each once per process)."""
        for path in self.paths:
            if path not in sys.path:
                sys.path.append(path)
        for module in self.modules:
            import_plugin(module)
        for name in self.methods:
            resolve_method(name)


def import_plugin(name: str) -> str:
    """Import plugin ``name`` (a module name, or a ``.py`` file whose folder goes onto
    ``sys.path``) and return its module name; ``PluginError`` (one line) if it fails."""
    module = name
    if name.endswith(".py") or os.sep in name:
        path = Path(name).resolve()
        if not path.is_file():
            raise PluginError(f"plugin {name}: no such file; valid: a module name or the path of a .py file")
        if str(path.parent) not in sys.path:
            sys.path.append(str(path.parent))
        module = path.stem
    elif os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a console script does not put the working folder on the path
    if module in sys.modules:
        return module
    try:
        importlib.import_module(module)
    except WsbenchError as err:
        raise PluginError(f"plugin {module}: {err}") from None
    except Exception as err:  # the plugin's own fault: one line, as for any bad input
        raise PluginError(f"plugin {module} cannot be imported: {type(err).__name__}: {err}") from None
    return module


def load_entry_points() -> list[str]:
    """Import every installed entry point of :data:`GROUPS` (once per process); returns the
    modules. One that fails is reported in one line and left out: the others still run."""
    return list(_entry_points())


@cache
def _entry_points() -> tuple[str, ...]:
    loaded = []
    for group in GROUPS:
        for point in metadata.entry_points(group=group):
            dist = point.dist.name if point.dist else "?"
            try:
                point.load()
            except Exception as err:
                log.error("error: plugin %s (entry point %s of %s): %s: %s", point.value, point.name, dist,
                          type(err).__name__, err)
                continue
            loaded.append(point.module)
    return tuple(loaded)


def requested(plugins: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The plugins named with ``--plugin`` and in ``$WSBENCH_PLUGINS``, in that order."""
    env = tuple(p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip())
    return tuple(dict.fromkeys(plugins + env))


def resolve_method(name: str) -> str:
    """The registered name of method ``name``: a registered name as it is; for
    ``pkg.module:object``, the module is imported and ``object`` resolved (module docstring).
    ``UnknownName`` (with the valid names) for an unknown plain name."""
    if name in METHODS or ":" not in name:
        METHODS[name]  # raises UnknownName, listing the valid names
        return name
    given, _, attribute = name.partition(":")
    module = import_plugin(given)
    target = getattr(sys.modules[module], attribute, None)
    if target is None:
        raise PluginError(f"plugin {module} has no {attribute!r}; valid: a name of a method it registers, a "
                          f"MethodInfo or a builder function")
    return register_object(target, f"{module}:{attribute}")


def register_object(target: object, name: str) -> str:
    """The registered name of method object ``target``: a builder decorated with
    ``register_method`` has its name; a ``MethodInfo`` is registered under its own; a plain
    builder ``build(task, **hyperparameters) -> nn.Module`` under ``name``, with a quick
    profile without hyperparameters and no symmetry claimed."""
    registered = getattr(target, "wsbench_method", None)
    if registered is not None:
        return registered
    if isinstance(target, MethodInfo):
        if target.name not in METHODS:
            METHODS.add(target.name, target)
        return target.name
    if not callable(target):
        raise PluginError(f"{name}: {type(target).__name__} is not a method; valid: a registered builder, a "
                          f"MethodInfo or a builder function build(task, **hyperparameters) -> nn.Module")
    if name not in METHODS:
        METHODS.add(name, MethodInfo(name, target, {"quick": {}}, symmetries=frozenset()))
    return name


def is_builtin(module: str) -> bool:
    return module.split(".")[0] in BUILTIN_MODULES


def spec_for(methods: list[str], datasets: list[str], plugins: tuple[str, ...]) -> PluginSpec:
    """What a worker must import to know ``methods`` and ``datasets``: the named plugins and
    the modules that registered them (``__main__`` excepted: see :func:`from_main`), with
    this process's ``sys.path``, where they were found."""
    modules = [*plugins, *(METHODS[m].module for m in methods), *(DATASETS[d].module for d in datasets)]
    modules = [m for m in dict.fromkeys(modules) if not is_builtin(m) and m not in ("__main__", "__mp_main__")]
    return PluginSpec(tuple(modules), tuple(p for p in sys.path if p), tuple(m for m in methods if ":" in m))


def unimportable(methods: list[str], datasets: list[str]) -> list[str]:
    """The selected methods and datasets a worker process cannot import: registered in
    ``__main__`` (a notebook, a ``python -c``), or a builder defined inside a function."""
    main = ("__main__", "__mp_main__")
    return ([m for m in methods if METHODS[m].module in main or "<locals>" in m]
            + [d for d in datasets if DATASETS[d].module in main])


def method_origin(info: MethodInfo) -> dict | None:
    """Where a method comes from, as its records hold it: ``None`` for a built-in method;
    else the module, the distribution that installs it and its version (``None`` for a loose
    module) and the sha256 of the module's source file (``None`` without one)."""
    if info.builtin:
        return None
    module = sys.modules.get(info.module)
    source = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16] if source and Path(source).is_file() else None
    dists = metadata.packages_distributions().get(info.module.split(".")[0], [])
    dist = dists[0] if dists else None
    return {"module": info.module, "distribution": dist, "version": metadata.version(dist) if dist else None,
            "source_sha256": digest}


def check_not_main(names: list[str], launcher: str) -> None:
    """A Ray task cannot import what :func:`unimportable` names: refuse before any work."""
    if names and launcher == "ray":
        raise ConfigError(f"{', '.join(names)}: registered in __main__ or inside a function, which a Ray worker "
                          f"cannot import; put it at the top of a module and pass --plugin MODULE")
