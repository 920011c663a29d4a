"""Where the runs of a grid execute: worker processes on this machine (``--launcher local``,
the default) or tasks on a Ray cluster (``--launcher ray``, ``pip install -e ".[ray]"``).

Both take the planned runs and yield ``(planned, record)`` as runs finish. Every run writes
its own record (:func:`benchmarks.runner.execute`: atomically, under a per-run lock) into
the results folder, so a run killed or preempted anywhere loses nothing finished, and a
rerun skips what is done. A worker process loads each dataset from the on-disk cache once
and keeps it for the runs that follow (:func:`worker_dataset`).

On Ray, each run is one task asking for ``--threads`` CPUs and, with ``--device cuda``, one
GPU. ``--ray-address`` joins a running cluster (every node needs the project installed, and
the data root and the results folder on a shared file system); without it a local cluster
of ``jobs x threads`` CPUs is started for the command and stopped after it. CPU workers are
reused across tasks, so the dataset memo holds; Ray gives every GPU task a fresh worker
(``max_calls=1``: a process cannot change GPUs once CUDA has started), which reads the
dataset from the node's cache.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Callable, Iterator, Protocol

import torch

from benchmarks.plugins import load_entry_points
from benchmarks.record_schema import RunRecord
from benchmarks.runner import Planned, execute, load_dataset
from datasets.errors import ConfigError, InvalidData, MissingDependency, WsbenchError
from datasets.weight_dataset import WeightDataset

log = logging.getLogger("wsbench")
LAUNCHERS = ("local", "ray")
Finished = Iterator[tuple[Planned, RunRecord | None]]
_memo: dict[tuple[str, str], WeightDataset] = {}  # this process's dataset: (name, fingerprint) -> dataset


class Launcher(Protocol):
    def run(self, todo: list[Planned], here: Callable[[Planned], RunRecord | None]) -> Finished:
        """Execute ``todo``, yielding each run with its record (``None``: another process
        holds it) as it ends. ``here`` runs one in this process, on the datasets already
        loaded, for launchers that find nothing to parallelise."""


def register_all() -> None:
    """Import every package that registers datasets or methods: the built-in ones, then the
    installed plugins' entry points (``benchmarks.plugins``)."""
    import baselines  # noqa: F401
    import datasets.sources  # noqa: F401
    import methods  # noqa: F401

    load_entry_points()


def worker_dataset(planned: Planned) -> WeightDataset:
    """The run's dataset, loaded once per process and kept while the runs that follow use
    it (one at a time: a grid goes dataset by dataset). It must be the dataset the run was
    planned on."""
    name, fingerprint = planned.spec.dataset, planned.config["dataset_fingerprint"]
    if (name, fingerprint) not in _memo:
        _memo.clear()
        dataset = load_dataset(name, planned.spec.data, planned.spec.suite)
        if dataset.fingerprint != fingerprint:
            raise InvalidData(f"{name}: the copy in {planned.spec.data.root} on this machine has fingerprint "
                              f"{dataset.fingerprint}, but the run was planned on {fingerprint}; give every machine "
                              "the same data root (a shared folder) or the same source files")
        _memo[(name, fingerprint)] = dataset
    return _memo[(name, fingerprint)]


def run_in_worker(planned: Planned, threads: int) -> RunRecord | None:
    """Entry of a worker process or a Ray task: register everything (the run's plugins
    too), get the dataset, run."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(threads)
    register_all()
    planned.spec.plugins.load()
    return execute(planned, worker_dataset(planned))


def die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to end this worker when the process that
    started it dies (``PR_SET_PDEATHSIG``), so that a killed ``run`` leaves no orphan
    training on; the runs it finished are already recorded. Elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request was made
        os._exit(1)


@contextmanager
def main_not_rerun() -> Iterator[None]:
    """Worker processes started inside start without re-running the caller's ``__main__``
    (``spawn`` runs it again unless it says ``if __name__ == "__main__"``, and a script that
    calls ``wsbench.evaluate`` at its top level would then start its grid again in every
    worker): everything a worker needs travels with each run (``RunSpec.plugins``), and a
    method from ``__main__`` runs in the calling process."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


class LocalLauncher:
    """Runs in ``jobs`` spawned worker processes, or in this process when ``jobs`` is 1 or
    there is one run."""

    def __init__(self, threads: int, jobs: int) -> None:
        self.threads, self.jobs = threads, jobs

    def run(self, todo: list[Planned], here: Callable[[Planned], RunRecord | None]) -> Finished:
        if self.jobs == 1 or len(todo) <= 1:
            for planned in todo:
                yield planned, here(planned)
            return
        os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        with ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=die_with_parent) as pool:
            with main_not_rerun():  # the workers start during the submissions
                futures = {pool.submit(run_in_worker, planned, self.threads): planned for planned in todo}
            for future in as_completed(futures):
                yield futures[future], future.result()


def import_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependency('--launcher ray needs Ray, which is not installed: pip install -e ".[ray]"'
                                ) from None
    return ray


class RayLauncher:
    """One Ray task per run, on the cluster at ``address`` or on a local one of ``cpus``
    CPUs started for the command (only if there is something to run)."""

    def __init__(self, threads: int, gpus_per_run: int, address: str | None, cpus: int) -> None:
        self.threads, self.gpus_per_run, self.address, self.cpus = threads, gpus_per_run, address, cpus
        self.start_seconds: float | None = None

    def connect(self):
        ray = import_ray()
        start = time.perf_counter()
        quiet = {"logging_level": logging.WARNING}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(num_cpus=self.cpus, include_dashboard=False, **quiet)
        except ConnectionError as err:
            raise ConfigError(f"--ray-address {self.address}: no Ray cluster answers there ({err})") from None
        self.start_seconds = time.perf_counter() - start
        resources = ray.cluster_resources()
        log.info("ray: %s cluster, %d CPUs, %d GPUs, ready in %.1f s", "joined the" if self.address else "a local",
                 resources.get("CPU", 0), resources.get("GPU", 0), self.start_seconds)
        return ray

    def run(self, todo: list[Planned], here: Callable[[Planned], RunRecord | None]) -> Finished:
        if not todo:
            return
        ray = self.connect()
        try:
            task = ray.remote(num_cpus=self.threads, num_gpus=self.gpus_per_run)(run_in_worker)
            pending = {task.remote(planned, self.threads): planned for planned in todo}
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                planned = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    if isinstance(err.cause, WsbenchError):
                        raise err.cause from None
                    raise
                yield planned, record
        finally:
            ray.shutdown()


def check_launcher(name: str, address: str | None) -> None:
    """Refuse a launcher that cannot start, before any work."""
    if address and name != "ray":
        raise ConfigError(f"--ray-address needs --launcher ray (the launcher is {name!r})")
    if name == "ray":
        import_ray()


def create_launcher(name: str, *, threads: int, jobs: int, device: str, address: str | None = None) -> Launcher:
    """The launcher ``name`` (one of :data:`LAUNCHERS`) for runs of ``threads`` torch threads,
    ``jobs`` at a time on this machine."""
    check_launcher(name, address)
    if name == "local":
        return LocalLauncher(threads, jobs)
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    return RayLauncher(threads, 1 if device == "cuda" else 0, address, threads * max(jobs, gpus))
