"""One run: build a method for a dataset, train it under the protocol, evaluate the test
split once, and write the record. The harness never special-cases a method.

A run's identity (:class:`~benchmarks.record_schema.RunConfig`) is fixed before it starts,
from the loaded dataset's fingerprint and the method's resolved hyperparameters, so the
command line can skip a finished run and never overwrite a record of another configuration.
Every failure of one run is recorded as ``failed`` with its reason, and the next run goes
on; a bug (anything but a user error) also logs its traceback.
"""

from __future__ import annotations

import logging
import resource
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.augmentation import NO_AUGMENTATION
from benchmarks.checkpoints import Checkpoint
from benchmarks.evaluation import evaluate_test
from benchmarks.host_memory import keep_freed_memory, release_freed_memory
from benchmarks.plugins import PluginSpec, method_origin
from benchmarks.metrics import Undefined
from benchmarks.protocol import DEFAULT_SCHEDULE, PROTOCOL_VERSION, TrainConfig, profile_config, train
from benchmarks.record_schema import SCHEMA_VERSION, RunConfig, RunRecord
from benchmarks.records import config_id, environment, read_record, record_path, run_id, write_record
from benchmarks.shared_shape import SharedShape, method_task
from benchmarks.robustness import transforms_for
from benchmarks.suites import SUITES, Suite
from benchmarks.tracking import Tracker
from datasets.dataset_table import DATASETS
from datasets.errors import UnsupportedArchitecture, WsbenchError
from datasets.files import try_lock
from datasets.method_table import METHODS, build_method
from datasets.source import LoadOptions
from datasets.weight_dataset import TaskInfo, WeightDataset

log = logging.getLogger("wsbench")


@dataclass(frozen=True)
class RunSpec:
    """What is asked of one run; picklable, so runs can go to worker processes.
    ``profile``: the training budget (quick, paper or smoke); ``model_profile``: the model
    sizes (quick or paper); ``method_options``: typed hyperparameter overrides;
    ``patience``: the early-stopping rule (``None``: train every epoch); ``time_limit``: seconds
    of training, after which no epoch starts (``None``: no limit); ``augment``: the training
    batches' weight-space augmentation; ``schedule``: the lr
    after the warm-up; ``batch_size``: ``None`` for the protocol's; ``plugins``: what a
    worker imports first to know the method and the dataset."""

    suite: str
    dataset: str
    method: str
    seed: int
    profile: str
    data: LoadOptions
    out: Path
    epochs: int | None = None
    device: str = "cpu"
    track: str = "none"
    model_profile: str = "quick"
    method_options: tuple[tuple[str, Any], ...] = ()
    precision: str = "fp32"
    compile: bool = False
    lr: float | None = None
    patience: int | None = None
    schedule: str = DEFAULT_SCHEDULE
    batch_size: int | None = None
    time_limit: float | None = None
    augment: str = NO_AUGMENTATION
    plugins: PluginSpec = PluginSpec()

    def train_config(self) -> TrainConfig:
        optim = {**METHODS[self.method].optimiser(self.model_profile), **({"lr": self.lr} if self.lr else {}),
                 **({"batch_size": self.batch_size} if self.batch_size else {})}
        return profile_config(self.profile, optim, self.epochs, precision=self.precision, compile=self.compile,
                              patience=self.patience, schedule=self.schedule, time_limit=self.time_limit,
                              augment=self.augment)

    def label(self) -> str:
        return f"{self.dataset} / {self.method} / seed {self.seed}"


@dataclass(frozen=True)
class Planned:
    """A run with its identity fixed: the configuration and where its record goes."""

    spec: RunSpec
    config: RunConfig

    @property
    def path(self) -> Path:
        return record_path(self.spec.out, self.config, self.spec.seed)


def load_dataset(name: str, options: LoadOptions, suite: str) -> WeightDataset:
    """The dataset as ``suite`` learns from it (``Suite.prepare``)."""
    return SUITES[suite].prepare(DATASETS[name].open(options).load())


def plan(spec: RunSpec, dataset: WeightDataset) -> Planned:
    """The run's configuration on the loaded ``dataset`` (:func:`identify`)."""
    try:
        task, _ = method_task(METHODS[spec.method], dataset)
    except UnsupportedArchitecture:
        task = None
    return identify(spec, dataset.fingerprint, dataset.info.version, task)


def identify(spec: RunSpec, fingerprint: str, version: int, task: TaskInfo | None) -> Planned:
    """The run's configuration, everything that changes its result, from what it needs of its
    dataset: the fingerprint, the code version, and the task the method is built for
    (``None``: it cannot be; no hyperparameters). So a run's identity is known before its
    dataset is built (``scripts/gpu_slot.py --dry-run`` checks a saved state against it). A
    plugin method's origin (module, distribution, version, source hash) and a paper profile
    that falls back to the quick one are part of it only where they apply, so built-in
    configurations keep their identity."""
    method = METHODS[spec.method]
    options = dict(spec.method_options)
    try:
        hparams = method.hyperparameters(task, spec.model_profile, options) if task is not None else {}
    except UnsupportedArchitecture:
        hparams = {}
    data = {"options": dict(spec.data.params), "limit": spec.data.limit, "skip_invalid": spec.data.skip_invalid}
    config = RunConfig(suite=spec.suite, dataset=spec.dataset, dataset_fingerprint=fingerprint,
                       dataset_version=version, method=spec.method, method_version=method.version,
                       hyperparameters=hparams, model_profile=spec.model_profile, method_options=options,
                       profile=spec.profile, train=spec.train_config().to_dict(),
                       protocol_version=PROTOCOL_VERSION, data=data)
    origin = method_origin(method)
    if origin is not None:
        config["method_origin"] = origin
    if method.profile_used(spec.model_profile) != spec.model_profile:
        config["model_profile_used"] = method.profile_used(spec.model_profile)
    return Planned(spec, config)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window: CUDA's counter, or on Linux the process's peak
    resident set size (``/proc/self/clear_refs``), so that a worker's earlier runs do not
    count."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory since :func:`reset_peak_memory`, or the process's peak resident set
    size on a CPU (``VmHWM``; the lifetime peak where ``/proc`` is missing)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(planned: Planned, dataset: WeightDataset) -> torch.nn.Module:
    """The method for the dataset's architectures, with the planned hyperparameters (and the
    suite's wrapper)."""
    spec = planned.spec
    task, shape = method_task(METHODS[spec.method], dataset)
    torch.manual_seed(spec.seed)
    model = build_method(spec.method, task, profile=spec.model_profile, **dict(spec.method_options))
    model = SharedShape(model, shape) if shape is not None else model
    return SUITES[spec.suite].wrap(model, dataset)


def missing_transforms(record: RunRecord, suite: Suite, dataset: WeightDataset) -> list[str]:
    """The robustness transforms the suite measures on this dataset that ``record`` lacks (a
    record written before a transform was added), in the suite's order."""
    return [t.name for t in transforms_for(suite.transforms, dataset.specs) if t.name not in record["robustness"]]


def is_finished(record: RunRecord | None, suite: Suite, dataset: WeightDataset) -> bool:
    """Whether ``record`` needs no rerun: it finished, and it holds every robustness transform
    the suite measures on this dataset."""
    return record is not None and record["status"] == "ok" and not missing_transforms(record, suite, dataset)


def execute(planned: Planned, dataset: WeightDataset) -> RunRecord | None:
    """Run ``planned`` on the loaded ``dataset`` and write its record; returns the record,
    or ``None`` if another process holds the run (it is skipped here)."""
    spec = planned.spec
    with try_lock(planned.path.with_suffix(".lock")) as mine:
        if not mine:
            log.info("%s: another process is running it; skipped", spec.label())
            return None
        suite = SUITES[spec.suite]
        done = read_record(planned.path, suite.metrics)
        if is_finished(done, suite, dataset):
            return done
        record = _run(planned, dataset)
        release_freed_memory()  # the next run starts from what it needs, not from this one's heap
        write_record(planned.path, record)
        checkpoint_of(planned).remove()  # the record holds the result: its training state is not needed
        return record


def checkpoint_of(planned: Planned) -> Checkpoint:
    """Where the run keeps its training state between epochs (``benchmarks.checkpoints``)."""
    return Checkpoint.beside(planned.path, run_id(planned.config, planned.spec.seed), planned.config)


def failed(base: RunRecord, err: Exception) -> RunRecord:
    """The record of a run that failed: a user error or a numerical failure with its message;
    anything else is a bug, whose traceback is logged (and the next run goes on)."""
    if isinstance(err, (WsbenchError, FloatingPointError, Undefined)):
        return {**base, "status": "failed", "reason": f"{type(err).__name__}: {err}"}
    config = base["config"]
    log.error("%s / %s / seed %d failed with a bug:\n%s", config["dataset"], config["method"], base["seed"],
              traceback.format_exc())
    return {**base, "status": "failed", "reason": f"bug: {type(err).__name__}: {err}"}


def _run(planned: Planned, dataset: WeightDataset) -> RunRecord:
    spec, suite = planned.spec, SUITES[planned.spec.suite]
    device, config = torch.device(spec.device), spec.train_config()
    base: RunRecord = {"schema": SCHEMA_VERSION, "config": planned.config, "config_id": config_id(planned.config),
                       "seed": spec.seed, "run_id": run_id(planned.config, spec.seed),
                       "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "claims": sorted(METHODS[spec.method].symmetries)}
    try:
        model = build_model(planned, dataset)
    except UnsupportedArchitecture as err:
        return {**base, "status": "n/a", "reason": str(err)}
    except Exception as err:  # a builder's bug (a plugin's, say): recorded, and the next run goes on
        return failed(base, err)
    keep_freed_memory()  # a step reuses the last step's memory instead of faulting it in again
    reset_peak_memory(device)
    tracker = Tracker.start(spec.track, spec, config)
    started_in = environment(device)  # the code and machine at the start: files may change while it trains
    epochs = config.epochs

    def on_epoch(entry: dict) -> None:
        value = entry[f"val_{suite.primary}"]
        log.info("%s: epoch %d/%d, train loss %.4f, val %s %s", spec.label(), entry["epoch"], epochs,
                 entry["train_loss"], suite.primary, "undefined" if value is None else f"{value:.4f}")
        tracker.log(entry)

    try:
        result = train(model, dataset.train, dataset.val, task=dataset.task, metrics=suite.metrics, config=config,
                       seed=spec.seed, device=device, on_epoch=on_epoch, out_dim=dataset.out_dim,
                       checkpoint=checkpoint_of(planned))
        if result.resumed_after:
            log.info("%s: resumed after epoch %d (its saved training state)", spec.label(), result.resumed_after)
        start = time.perf_counter()
        test = evaluate_test(model, dataset, suite, config=config, device=device, seed=spec.seed)
        eval_seconds = time.perf_counter() - start
    except Exception as err:
        tracker.finish({})
        return failed(base, err)
    level, margin = suite.chance_level(dataset)
    record: RunRecord = {
        **base, "status": "ok", "metrics": test["metrics"], "undefined": test["undefined"],
        "robustness": test["robustness"], "val": result.best_val, "best_epoch": result.best_epoch,
        "history": result.history, "chance": {"metric": suite.primary, "value": level, "margin": margin},
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": result.train_seconds, "eval_seconds": eval_seconds,
        "samples_per_second": result.samples_per_second, "peak_memory_mb": peak_memory_mb(device),
        "environment": started_in,
        **({"stopped": result.stopped} if result.stopped else {}),
        **({"resumed_after": result.resumed_after} if result.resumed_after else {}),
    }
    tracker.finish(record)
    return record
