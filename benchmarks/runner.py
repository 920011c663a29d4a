"""One run: build a method for a dataset, train it under the protocol, evaluate the test
split once, and write the record. The harness never special-cases a method."""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.evaluation import evaluate_test
from benchmarks.protocol import profile_config, train
from benchmarks.records import (
    SCHEMA_VERSION,
    environment,
    record_path,
    run_fingerprint,
    write_record,
)
from benchmarks.shared_shape import SharedShape, shared_shape_task
from benchmarks.suites import SUITES
from benchmarks.tracking import Tracker
from datasets.collection import LoadOptions, WeightDataset
from datasets.registry import DATASETS, METHODS, UnsupportedArchitecture
from datasets.spec import shared_shape

log = logging.getLogger("wsbench")


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; picklable, so runs can go to worker processes."""

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
    model_profile: str = field(default="quick")
    method_options: tuple[tuple[str, int | float | str], ...] = ()

    @property
    def path(self) -> Path:
        return record_path(self.out, self.profile, self.suite, self.dataset, self.method, self.seed)

    def fingerprint(self, dataset_fingerprint: str) -> str:
        entry = METHODS[self.method]
        config = profile_config(self.profile, entry.optim, self.epochs)
        options = {"method_options": dict(self.method_options)} if self.method_options else {}
        return run_fingerprint({"dataset": dataset_fingerprint, "method": self.method, "seed": self.seed,
                                "train": config.to_dict(), "model_profile": self.model_profile, **options})


def load_dataset(name: str, options: LoadOptions) -> WeightDataset:
    return DATASETS[name].load(options)


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


def build_model(spec: RunSpec, dataset: WeightDataset) -> torch.nn.Module:
    """The method for the dataset's architectures; a method that takes one architecture
    gets networks that differ only in activation as their shared weight shape."""
    entry, options = METHODS[spec.method], dict(spec.method_options)
    torch.manual_seed(spec.seed)
    if not dataset.heterogeneous or entry.heterogeneous:
        return entry.build(dataset.task_info(), profile=spec.model_profile, **options)
    shape = shared_shape(dataset.specs)
    if shape is None:
        raise UnsupportedArchitecture(f"{spec.method} takes one architecture; {spec.dataset} "
                                      f"has {len(dataset.specs)} with different weight shapes")
    return SharedShape(entry.build(shared_shape_task(dataset, shape), profile=spec.model_profile,
                                   **options), shape)


def execute(spec: RunSpec, dataset: WeightDataset) -> dict:
    """Run ``spec`` on the loaded ``dataset`` and write its record; returns the record."""
    suite, entry = SUITES[spec.suite], METHODS[spec.method]
    device = torch.device(spec.device)
    base = {"schema": SCHEMA_VERSION, "suite": spec.suite, "dataset": spec.dataset, "method": spec.method,
            "family": entry.family, "seed": spec.seed, "profile": spec.profile,
            "fingerprint": spec.fingerprint(dataset.card.get("fingerprint", "")),
            "dataset_fingerprint": dataset.card.get("fingerprint"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        model = build_model(spec, dataset)
    except UnsupportedArchitecture as err:
        record = {**base, "status": "n/a", "reason": str(err)}
        write_record(spec.path, record)
        return record
    config = profile_config(spec.profile, entry.optim, spec.epochs)
    reset_peak_memory(device)
    tracker = Tracker.start(spec.track, spec, config)
    try:
        result = train(model, dataset.train, dataset.val, task=dataset.task, metrics=suite.metrics,
                       config=config, seed=spec.seed, device=device, on_epoch=tracker.log)
        start = time.perf_counter()
        test = evaluate_test(model, dataset, suite, batch_size=config.eval_batch_size, device=device,
                             seed=spec.seed)
        eval_seconds = time.perf_counter() - start
    except (FloatingPointError, RuntimeError) as err:
        tracker.finish({})
        record = {**base, "status": "failed", "reason": f"{type(err).__name__}: {err}"}
        write_record(spec.path, record)
        return record
    record = {
        **base, "status": "ok",
        "metrics": test["test"], "robustness": test["robustness"],
        "val": result.best_val, "best_epoch": result.best_epoch, "history": result.history,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": {"train": config.to_dict(), "model": getattr(model, "hparams", {}),
                   "model_profile": spec.model_profile, "data": {**asdict(spec.data), "root": str(spec.data.root)}},
        "train_seconds": result.train_seconds, "eval_seconds": eval_seconds,
        "samples_per_second": result.samples_per_second, "peak_memory_mb": peak_memory_mb(device),
        "environment": environment(device),
    }
    tracker.finish(record)
    write_record(spec.path, record)
    return record
