"""The Python API: the command line's configuration, built from Python, and OGB's split of
roles for a researcher who trains in their own loop.

- :func:`evaluate` runs a method (a registered name, a ``"module:object"`` string or a
  builder callable) under the one protocol, exactly as ``python -m benchmarks.run`` does
  (same :class:`~benchmarks.config.EvaluationConfig`, same records), and returns the records
  and the leaderboard as a pandas frame, with the shipped reference rows of the same data
  and budget beside yours;
- :func:`load_dataset` gives a dataset as a suite learns from it (train / val splits; the
  test split through ``test_split()``), :func:`score` scores your outputs with the suite's
  metrics, with strict input checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from benchmarks.config import EvaluationConfig, resolve
from benchmarks.grid import GridResult, run_grid
from benchmarks.launchers import register_all
from benchmarks.metrics import check_inputs, compute
from benchmarks.plugins import register_object
from benchmarks.runner import load_dataset as prepared_dataset
from benchmarks.suites import SUITES
from datasets.cache import default_data_root
from datasets.dataset_table import DATASETS
from datasets.errors import ConfigError
from datasets.method_table import MethodInfo
from datasets.source import LoadOptions
from datasets.weight_dataset import Split, WeightDataset

Method = str | MethodInfo | Callable[..., nn.Module]


def method_name(method: Method) -> str:
    """The name a method runs under: a string as it is, an object as
    ``benchmarks.plugins.register_object`` registers it (a plain builder under
    ``"<module>:<qualified name>"``)."""
    register_all()
    if isinstance(method, str):
        return method
    return register_object(method, f"{getattr(method, '__module__', '__main__')}:"
                                   f"{getattr(method, '__qualname__', type(method).__name__)}")


def evaluate(method: Method | Sequence[Method], suite: str = "inr", *, datasets: Sequence[str] = (),
             seeds: Sequence[int] = (0, 1, 2), **options: Any) -> GridResult:
    """Train and test ``method`` (or several) on ``suite`` under the one protocol, exactly as
    ``python -m benchmarks.run --suite SUITE --methods ...`` does; ``options`` are the other
    fields of :class:`~benchmarks.config.EvaluationConfig` (``epochs``, ``out``, ``jobs``,
    ``method_options``, ...). Returns the records, the leaderboard frame (your rows and the
    reference rows beside them) and its Markdown; a user error raises its ``WsbenchError``."""
    methods = [method] if isinstance(method, (str, MethodInfo)) or callable(method) else list(method)
    config = EvaluationConfig(suite=suite, datasets=tuple(datasets), methods=tuple(method_name(m) for m in methods),
                              seeds=tuple(seeds), **options)
    return run_grid(resolve(config))


def load_dataset(name: str, suite: str = "inr", *, data_root: str | Path | None = None,
                 source: str | Path | None = None, limit: int | None = None, options: dict[str, str] | None = None,
                 skip_invalid: bool = False) -> WeightDataset:
    """Dataset ``name`` as ``suite`` learns from it (built or read, cached under ``data_root``,
    default ``$WSBENCH_DATA`` or ``~/.cache/wsbench``; ``source``: the folder of its published
    or raw files; ``options``: its dataset options). ``.train`` and ``.val`` are for your
    loop; ``.test_split()`` is for the one final evaluation."""
    register_all()
    suites = DATASETS[name].info.suites
    if suite not in suites:
        raise ConfigError(f"dataset {name!r} belongs to suite {'/'.join(suites)!r}, not {suite!r}")
    load = LoadOptions(Path(data_root) if data_root else default_data_root(), Path(source) if source else None,
                       limit, skip_invalid, True, {k: str(v) for k, v in (options or {}).items()})
    return prepared_dataset(name, load, suite)


def score(outputs: Tensor, split: Split | Tensor, suite: str = "inr") -> dict[str, float | None]:
    """The suite's metrics of ``outputs`` on ``split`` (a ``Split`` of a dataset from
    :func:`load_dataset`, or its targets): classification ``(N, C)`` scores or logits,
    regression ``(N,)`` or ``(N, 1)`` predictions, edit ``(N, P)`` rendered signals. Inputs
    that do not fit are refused (``ConfigError`` naming the shapes); an undefined metric is
    ``None``."""
    info = SUITES[suite]
    targets = split.targets if isinstance(split, Split) else split
    try:
        if info.task != "edit":
            check_inputs(outputs.detach().cpu(), targets.cpu(), info.task)
        elif outputs.shape != targets.shape:
            raise ValueError(f"edit expects rendered signals of the targets' shape {tuple(targets.shape)}, got "
                             f"{tuple(outputs.shape)}")
    except ValueError as err:
        raise ConfigError(f"score({suite}): {err}") from None
    values, _ = compute(info.metrics, outputs.detach().float().cpu(), targets.cpu())
    return values
