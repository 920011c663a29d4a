"""Table 1 (INR classification on MNIST) in one short slot on one lent NVIDIA H200.

One command on the GPU, ending within ``--budget`` seconds of its ``main`` (default 555, so
about 9.5 min with the interpreter's start), which:

1. measures the matmul peak (fp32 strict, tf32 and bf16; 8192^3 on random data, the median of
   10 CUDA-event timings after 3 warm-ups);
2. builds all 70,000 ``mnist-inr`` SIRENs (55,000 / 5,000 / 10,000) on the GPU through the
   dataset source (its option ``device=cuda``), with fitting chunk ``--chunk`` (default
   10,000: 7 equal chunks, about 7 GB each at 0.7 MB per INR as measured on a CPU; the chunk
   is part of the recipe's fingerprint, so these INRs differ from the CPU default's, chunk
   32) and eager fitting (``compile=0``: no compile time);
3. trains the ``paper`` profile (published model sizes) of ``--methods`` (default mlp, mlp-aug,
   dwsnet, nfn-np, nfn-hnp, ng-gnn, scalegmn, scalegmn-b), then of ``--extra`` (nft, ng-t) with
   whatever time is left, 1 seed, through ``benchmarks.run`` (real run records). 200 epochs do
   not fit: before each run a few timed training steps give its epoch time, and the method
   gets ``E = min(200, what fits in 90% of its share)`` epochs, its share being the time left
   over the methods left in its tier (later runs also learn from the earlier ones' pace);
4. prints the table (method, epochs, test accuracy beside the published one, train samples/s,
   achieved TFLOP/s = FlopCounterMode FLOPs per sample x samples/s, its fraction of the
   measured peak, wall seconds) and leaves under ``--out`` (``$OUT`` there): ``table.txt``,
   ``slot.json`` (peaks, fit, rows) and ``runs.tar.gz`` (records, leaderboard, paper tables),
   rewritten after every run, so a command killed at its limit still returns what finished.

``--concurrent`` replaces step 3 with one measurement of accuracy against optimiser steps:
every method of ``--methods`` (and, with ``--also-compiled``, a ``torch.compile`` run of the
methods named there) trains at the same time, each in its own ``benchmarks.run`` process, for
up to 200 epochs under the harness's ``--time-limit`` set to the time left (no calibration, no
plan: the limit stops each run before an epoch that would end after it, and the record says
so). Small models leave the H200 idle between kernel launches, so runs side by side cost
little of each other's pace. ``--schedule constant`` (the authors') suits such a run: a
cosine schedule cut by a time limit never anneals. The table then ends with each run's
validation accuracy by epoch; each process's log is ``--out``/METHOD[-compiled].log.

A run longer than one slot: ``--concurrent --across-slots`` sets no time limit, so the deadline
kills each run that has not finished; the harness saved its training state after its last
epoch (``benchmarks.checkpoints``), and ``runs.tar.gz`` brings it back. The next slot, given
that archive with ``--resume`` (copy it into ``.slot/`` and carry it), unpacks it into
``--data-root`` and the same command resumes each run after its last epoch, with the result an
uninterrupted run gives; the record comes from the slot that finishes. Before any work (and in
the dry run), each saved state is checked against the identity of the run the command plans
(known from the recipe and the IDX files before the INRs are built): a state saved for other
settings is refused in one line naming them, since that run would start over, and so is one
whose weights or optimiser state do not load into the model this code builds. Every slot
rebuilds the INRs with the same recipe (same fingerprint; a GPU's float rounding may differ
between builds).
A second command on a still-warm machine finds the INRs and the saved states in ``--data-root``
and needs neither. ``--compile`` trains the runs of ``--methods`` through ``torch.compile``,
with CUDA graphs: NG-GNN's eager step is bound by its thousands of kernel launches.

``--dry-run`` checks the plan on a CPU: the IDX files (sizes and official md5s), the sizes
(INRs, parameters, bytes of the built dataset), every method's parameters, FLOPs per
sample and dispatched operators per step (paper profile, SIREN 2-32-32-1, 10 classes), a time
estimate (CPU-scaled: FLOPs over this CPU's matmul rate measured now; H200: over the
datasheet rate at an assumed efficiency, with a floor of one launch per dispatched
operator), the epochs the plan would give each method, the device-time limits and what
must travel. Exit 0 when the plan fits, 2 with one line when it does not or an input is
missing. ``--device cpu`` (without ``--dry-run``) rehearses the slot itself on tiny IDX files.

Usage, in a session lent an ``nvidia-h200`` (15 min of device time in all, 10 min a command):

1. Here, in the repository root (``/.slot/`` is in .gitignore)::

       mkdir -p .slot/mnist && cp /work/shared/data/mnist/*-ubyte.gz .slot/mnist/
       OMP_NUM_THREADS=1 python scripts/gpu_slot.py --dry-run --mnist .slot/mnist

2. The device tool's ``run``, once (machine start ~2 min + 600 s leave no time for a second
   start; if it fails within a minute, fix it and rerun at once on the warm machine with a
   smaller ``--budget``)::

       run(command="set -o pipefail; PYTHONUNBUFFERED=1 python3 scripts/gpu_slot.py "
                   "--mnist .slot/mnist --out $OUT 2>&1 | tee $OUT/log.txt",
           carry=[".slot"], timeout_s=600)

   (add ``".whl"`` to ``carry`` and the pip line of /work/.library/device/README.md only if
   the dry run lists wheels to carry).
3. ``give_back()`` at once; the files lie under the reply's ``files_at``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import benchmarks.run as harness  # noqa: E402
from benchmarks import checkpoints  # noqa: E402
from benchmarks.config import resolve  # noqa: E402
from benchmarks.grid import spec_for  # noqa: E402
from benchmarks.launchers import register_all  # noqa: E402
from benchmarks.paper_tables import TABLES  # noqa: E402
from benchmarks.protocol import DEFAULT_SCHEDULE, PROFILES, SCHEDULES  # noqa: E402
from benchmarks.records import config_id, run_id  # noqa: E402
from benchmarks.runner import Planned, identify  # noqa: E402
from datasets.dataset_table import DATASETS  # noqa: E402
from datasets.errors import ConfigError, InvalidData, exit_status  # noqa: E402
from datasets.functional import forward  # noqa: E402
from datasets.inr_fitting import SirenRecipe, pixel_grid, siren_init  # noqa: E402
from datasets.io import idx  # noqa: E402
from datasets.method_table import METHODS, build_method  # noqa: E402
from datasets.source import DatasetSource, LoadOptions  # noqa: E402
from datasets.sources.dwsnets_inr import split_indices  # noqa: E402
from datasets.spec import siren_spec  # noqa: E402
from datasets.weight_dataset import TaskInfo  # noqa: E402
from datasets.weights import WeightSpace  # noqa: E402
from scripts.bench_methods import make_loss, siren_batch  # noqa: E402

register_all()
DATASET, FIT_DEVICE_OPTION = "mnist-inr", "device"
CORE = ("mlp", "mlp-aug", "dwsnet", "nfn-np", "nfn-hnp", "ng-gnn", "scalegmn", "scalegmn-b")
EXTRA = ("nft", "ng-t")
# name: (bytes, md5) of the official files (shared/data/SOURCES.md)
MNIST_FILES = {"train-images-idx3-ubyte.gz": (9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
               "train-labels-idx1-ubyte.gz": (28881, "d53e105ee54ea40749a09fcbcd1e9432"),
               "t10k-images-idx3-ubyte.gz": (1648877, "9fb629c4189551a2d022fa330f9573f3"),
               "t10k-labels-idx1-ubyte.gz": (4542, "ec29112dd5afa0611ce80d1b7f02629c")}
# Device limits (/work/.library/device/README.md) and the Python distributions on the H200 image
# (KINDS.md, as read there on 2026-11-17)
DEVICE_S, COMMAND_S, TRAVEL_BYTES, MACHINE_START_S = 900, 600, 64 * 2**20, 120
H200_RATE = {"fp32": 67e12, "bf16": 990e12}  # datasheet dense rates (H200.md)
H200_IMAGE = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless opt-einsum opt-einsum-fx optax optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil py-cpuinfo pyarrow pybind11 pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentence-transformers sentencepiece
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torch-geometric torchaudio torchdiffeq torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
""".split())
# Assumptions of the estimate (the GPU run measures instead)
METHOD_EFFICIENCY, FIT_EFFICIENCY, LAUNCH_S = 0.30, 0.10, 10e-6
INTERPRETER_S, STARTUP_S, PEAK_S, CACHE_S, CALIBRATE_S, RUN_FIXED_S, END_S = 15, 20, 5, 15, 5, 10, 15
COMMAND_MARGIN_S = 30  # the command ends this long before its timeout_s
CONCURRENT_OVERHEAD_S = 45  # --concurrent: a run's process start, data load and test, beyond its time limit
SHARE_USE = 0.9  # a run is planned to fill this much of its share: its epoch time is an estimate
EPOCHS, BATCH, EVAL_BATCH = PROFILES["paper"].epochs, PROFILES["paper"].batch_size, PROFILES["paper"].eval_batch_size
TEST_PASSES = 7  # the test split once plus six function-preserving transforms (suite inr)
PEAK_SIZE = {"cuda": 8192, "cpu": 512}  # square matmuls of the peak
COUNT_BATCH = 4  # the dry run's: 4 SIRENs already take the graph methods' layered layout, as a batch does


@dataclass
class Cost:
    """One method's paper profile on SIRENs 2-32-32-1: per sample, FLOPs of forward and of
    forward + backward (matmul-like only: FlopCounterMode), and per step, dispatched operators."""

    params: int
    forward_flops: float
    train_flops: float
    forward_ops: int
    train_ops: int


@dataclass
class Sizes:
    """The dataset that the IDX files give."""

    splits: dict[str, int]
    image: tuple[int, int]
    params_per_inr: int

    @property
    def inrs(self) -> int:
        return sum(self.splits.values())

    @property
    def bytes(self) -> int:
        """Float32 weights and PSNR, int64 target and image index, uint8 pixels per INR."""
        return self.inrs * (4 * self.params_per_inr + 4 + 8 + 8 + math.prod(self.image))


class OpCounter(TorchDispatchMode):
    """Counts dispatched aten operators (on a GPU about one kernel launch each)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- inputs


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def check_idx(folder: Path) -> int:
    """The IDX files' total bytes; ``ConfigError`` if one is absent, ``InvalidData`` if its
    size or md5 is not the official one (``MNIST_FILES``)."""
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"--mnist {folder}: {', '.join(missing)} not found; copy the four MNIST IDX files "
                          f"there (mkdir -p .slot/mnist && cp /work/shared/data/mnist/*-ubyte.gz .slot/mnist/)")
    for name, (size, digest) in MNIST_FILES.items():
        path = folder / name
        found = (path.stat().st_size, md5(path))
        if found != (size, digest):
            raise InvalidData(f"{path}: {found[0]:,} bytes, md5 {found[1]}; the official file has {size:,} bytes, "
                              f"md5 {digest} (shared/data/SOURCES.md)")
    return sum(size for size, _ in MNIST_FILES.values())


def dataset_sizes(folder: Path, spec_params: int) -> Sizes:
    """Split sizes as the ``mnist-inr`` source draws them from the IDX files."""
    train, _ = idx.read_split(folder, "train")
    test, _ = idx.read_split(folder, "test")
    fraction = DATASETS[DATASET].constants["val_fraction"]
    index = split_indices(len(train), len(test), fraction, None)
    return Sizes({s: len(v) for s, v in index.items()}, train.shape[1:], spec_params)


def open_source(mnist: Path, root: Path, chunk: int, device: str) -> DatasetSource:
    """The ``mnist-inr`` source fitting on ``device``; ``ConfigError`` if it cannot choose."""
    source_class = DATASETS[DATASET].source
    if FIT_DEVICE_OPTION not in source_class.options:
        raise ConfigError(f"{DATASET} has no dataset option {FIT_DEVICE_OPTION!r} (valid: "
                          f"{', '.join(source_class.options)}): its 70,000 SIRENs would be fitted on the CPU, "
                          f"which does not fit the slot")
    return DATASETS[DATASET].open(LoadOptions(root, mnist, progress=False, params=dataset_params(chunk, device)))


def dataset_params(chunk: int, device: str) -> dict[str, str]:
    """The dataset options of the slot: the chunk (fingerprinted), eager fitting, the device."""
    return {"chunk": str(chunk), "compile": "0", FIT_DEVICE_OPTION: device}


def travelling(carried: list[Path], untracked: bool = True) -> dict[Path, int]:
    """Bytes of each file a ``run`` sends: the repository's tracked and (with ``untracked``)
    untracked not-ignored files, plus the ``carried`` files not among them."""
    others = ["--others", "--exclude-standard"] if untracked else []
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "--cached", *others], cwd=REPO,
                                 capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise ConfigError(f"cannot list the repository's files in {REPO} (git ls-files: {err})") from None
    files = {(REPO / name).resolve() for name in listing.decode().split("\0") if name}
    files |= {path.resolve() for path in carried}
    return {path: path.stat().st_size for path in files if path.is_file()}


def largest_entries(sizes: dict[Path, int], count: int = 3) -> list[tuple[str, int]]:
    """The ``count`` largest top-level entries of the repository among ``sizes`` (a folder
    counts all its files; a file outside the repository is named by its path)."""
    totals: dict[str, int] = {}
    for path, size in sizes.items():
        name = (path.relative_to(REPO).parts[0] + ("/" if len(path.relative_to(REPO).parts) > 1 else "")
                if path.is_relative_to(REPO) else str(path))
        totals[name] = totals.get(name, 0) + size
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


# ---------------------------------------------------------------- measurements


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings(work: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> list[float]:
    """Seconds of each of ``repeats`` calls after ``warmup``: CUDA events on a GPU."""
    for _ in range(warmup):
        work()
    synchronise(device)
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            work()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            work()
            seconds.append(time.perf_counter() - t0)
    return seconds


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int, repeats: int) -> float:
    """FLOP/s of a ``size``-square matmul on random data: the median repeat."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    return 2 * size ** 3 / statistics.median(timings(lambda: a @ b, device, repeats))


def peaks(device: torch.device) -> dict[str, float]:
    """fp32 (strict), tf32 and bf16 matmul FLOP/s (``PEAK_SIZE`` square); the float32
    matmul precision is left as it was."""
    rates, before = {}, torch.get_float32_matmul_precision()
    for name, dtype, precision in (("fp32", torch.float32, "highest"), ("tf32", torch.float32, "high"),
                                   ("bf16", torch.bfloat16, before)):
        torch.set_float32_matmul_precision(precision)
        rates[name] = matmul_rate(dtype, device, PEAK_SIZE[device.type], 10)
    torch.set_float32_matmul_precision(before)
    return rates


def counts(model: torch.nn.Module, weights: WeightSpace, targets: torch.Tensor) -> tuple[int, int, int, int]:
    """FLOPs and dispatched operators of a forward, then of forward + backward, on one batch."""
    with FlopCounterMode(display=False) as flops, OpCounter() as ops:
        loss = torch.nn.functional.cross_entropy(model(weights), targets)
        forward_flops, forward_ops = flops.get_total_flops(), ops.count
        loss.backward()
    return forward_flops, forward_ops, flops.get_total_flops(), ops.count


def method_cost(name: str, batch: int) -> Cost:
    """``name``'s paper profile on the CPU: per sample FLOPs, per step operators."""
    torch.manual_seed(0)
    task, weights, targets = siren_batch(batch, torch.device("cpu"))
    model = build_method(name, task, profile="paper").train()
    forward_flops, forward_ops, train_flops, train_ops = counts(model, weights, targets)
    return Cost(sum(p.numel() for p in model.parameters()), forward_flops / batch, train_flops / batch, forward_ops,
                train_ops)


def fit_cost(recipe: SirenRecipe, height: int, width: int) -> tuple[float, int]:
    """FLOPs per INR and operators per chunk of one fitting step (forward, loss, backward)."""
    spec = siren_spec(recipe.hidden, recipe.depth, 2, 1, recipe.omega)
    ws = siren_init(spec, 2, torch.Generator().manual_seed(0))
    for tensor in (*ws.weights, *ws.biases):
        tensor.requires_grad_()
    target = torch.rand(2, height * width, 1)
    with FlopCounterMode(display=False) as flops, OpCounter() as ops:
        (forward(ws, pixel_grid(height, width)) - target).pow(2).mean(dim=(1, 2)).sum().backward()
    return flops.get_total_flops() / 2, ops.count


def calibrate(name: str, device: torch.device, precision: str) -> tuple[float, float, float]:
    """Median seconds of one protocol training step (batch ``BATCH``: gather, forward, loss,
    backward, clipping, AdamW) and of one evaluation forward (``EVAL_BATCH``), and the
    FLOPs per sample of a training step."""
    torch.manual_seed(0)
    task, pool, labels = siren_batch(EVAL_BATCH, device)
    model = build_method(name, task, profile="paper").to(device).train()
    flops = counts(model, pool[:BATCH], labels[:BATCH])[2] / BATCH
    optimiser = torch.optim.AdamW(model.parameters(), **METHODS[name].optimiser("paper"))
    loss = make_loss(model, precision, device)

    def step() -> None:
        index = torch.randint(0, EVAL_BATCH, (BATCH,), device=device)
        optimiser.zero_grad(set_to_none=True)
        loss(pool[index], labels[index]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), PROFILES["paper"].clip_norm)
        optimiser.step()

    step_s = statistics.median(timings(step, device, 10))
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        eval_s = statistics.median(timings(lambda: model(pool), device, 5, warmup=1))
    return step_s, eval_s, flops


# ---------------------------------------------------------------- the plan


@dataclass
class FitPlan:
    """The fit of every INR: FLOPs per INR and step, in all, and the H200 estimate."""

    recipe: SirenRecipe
    chunks: int
    flops_per_step: float
    flops: float
    h200_s: float


def steps(samples: int, batch: int) -> int:
    return math.ceil(samples / batch)


def fit_plan(recipe: SirenRecipe, sizes: Sizes, chunk: int) -> FitPlan:
    """The fit's cost; on the H200 memory-bound element-wise work (``FIT_EFFICIENCY``)."""
    per_step, ops = fit_cost(recipe, *sizes.image)
    flops, chunks = per_step * recipe.steps * sizes.inrs, steps(sizes.inrs, chunk)
    seconds = max(flops / (H200_RATE["fp32"] * FIT_EFFICIENCY), chunks * recipe.steps * ops * LAUNCH_S)
    return FitPlan(recipe, chunks, per_step, flops, seconds)


def estimated_seconds(flops: float, ops: int, rate: float) -> float:
    """Seconds of work of ``flops`` at ``rate`` x the assumed efficiency, or of launching
    ``ops`` operators, whichever is longer."""
    return max(flops / (rate * METHOD_EFFICIENCY), ops * LAUNCH_S)


def estimated_run(cost: Cost, sizes: Sizes, rate: float) -> tuple[float, float]:
    """H200 seconds of one epoch (training and validation), and of a run beyond its epochs
    (``RUN_FIXED_S`` and the test evaluation)."""
    n_train, n_val, n_test = sizes.splits["train"], sizes.splits["val"], sizes.splits["test"]
    train = estimated_seconds(n_train * cost.train_flops, steps(n_train, BATCH) * cost.train_ops, rate)
    val = estimated_seconds(n_val * cost.forward_flops, steps(n_val, EVAL_BATCH) * cost.forward_ops, rate)
    test = estimated_seconds(n_test * cost.forward_flops, steps(n_test, EVAL_BATCH) * cost.forward_ops, rate)
    return train + val, RUN_FIXED_S + TEST_PASSES * test


def protocol_flops(cost: Cost, sizes: Sizes) -> float:
    """FLOPs of the whole paper protocol of one seed: 200 epochs and the test evaluation."""
    per_epoch = sizes.splits["train"] * cost.train_flops + sizes.splits["val"] * cost.forward_flops
    return EPOCHS * per_epoch + TEST_PASSES * sizes.splits["test"] * cost.forward_flops


def planned_epochs(share_s: float, epoch_s: float, fixed_s: float) -> int:
    """``min(200, epochs that fit in SHARE_USE x share_s)`` after ``fixed_s``; 0 if none does."""
    return max(0, min(EPOCHS, math.floor((SHARE_USE * share_s - fixed_s) / epoch_s)))


def run_seconds(timing: tuple[float, float], epochs: int) -> float:
    """Seconds of a run of ``epochs`` epochs (none if it is skipped)."""
    return timing[1] + epochs * timing[0] if epochs else 0.0


def allocate(tiers: tuple[tuple[str, ...], ...], left_s: float, timing: dict[str, tuple[float, float]]
             ) -> dict[str, int]:
    """Epochs per method: in order, each method's share is the time left over the methods
    left in its tier (the second tier gets what the first leaves)."""
    plan = {}
    for tier in tiers:
        for i, name in enumerate(tier):
            plan[name] = planned_epochs(left_s / (len(tier) - i), *timing[name])
            left_s -= run_seconds(timing[name], plan[name])
    return plan


# ---------------------------------------------------------------- output


def table(head: list[str], rows: list[list[str]]) -> str:
    """A plain table: first column left-aligned, the others right-aligned."""
    widths = [max(len(x) for x in column) for column in zip(head, *rows)]
    return "\n".join("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))
                     for row in [head, *rows])


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def duration(seconds: float) -> str:
    """Seconds, minutes or hours, whichever reads best."""
    if seconds < 600:
        return f"{seconds:,.0f} s"
    return f"{seconds / 60:,.1f} min" if seconds < 36_000 else f"{seconds / 3600:,.0f} h"


# ---------------------------------------------------------------- the dry run


def dry_run(args: argparse.Namespace) -> int:
    """Check the plan on this CPU and print it; 0 if it fits (``ConfigError`` if not)."""
    idx_bytes = check_idx(args.mnist)
    recipe = SirenRecipe.of(open_source(args.mnist, args.data_root, args.chunk, "cpu").config)  # the recipe only
    spec = siren_spec(recipe.hidden, recipe.depth, 2, 1, recipe.omega)
    sizes = dataset_sizes(args.mnist, spec.num_params)
    cpu_rate = matmul_rate(torch.float32, torch.device("cpu"), 1024, 5)
    fit = fit_plan(recipe, sizes, args.chunk)
    costs = {name: method_cost(name, COUNT_BATCH) for name in (*args.methods, *trained_after(args))}
    timing = {name: estimated_run(cost, sizes, H200_RATE[args.precision]) for name, cost in costs.items()}
    before = STARTUP_S + PEAK_S + fit.h200_s + CACHE_S + (0 if args.concurrent else CALIBRATE_S * len(costs))
    left_s = args.budget - before - END_S
    plan = ({name: planned_epochs(left_s - CONCURRENT_OVERHEAD_S, timing[name][0], 0.0) for name in costs}
            if args.concurrent else allocate((args.methods, args.extra), left_s, timing))
    runs_s = (left_s if args.concurrent else sum(run_seconds(timing[name], epochs) for name, epochs in plan.items()))
    print(f"gpu_slot dry run: {DATASET} from {args.mnist} on one NVIDIA H200, precision {args.precision}\n"
          f"inputs: {len(MNIST_FILES)} IDX files, {idx_bytes:,} bytes, sizes and md5s as published\n"
          f"INRs: {sizes.inrs:,} ({' / '.join(f'{s} {n:,}' for s, n in sizes.splits.items())}), "
          f"{spec.describe()}: {spec.num_params:,} parameters each; built dataset {mib(sizes.bytes)}\n"
          f"{fit_line(fit, args.chunk, cpu_rate)}\n{rates_line(args.precision, cpu_rate)}")
    print(method_table(costs, sizes, cpu_rate, timing, plan))
    if args.compile:
        print("--compile: the estimates are eager steps'; a compiled step (fused kernels, CUDA graphs) is not "
              "estimated here, and is faster where the eager step is launch-bound")
    calibration = "no calibration" if args.concurrent else f"calibration {len(costs)} x {CALIBRATE_S}"
    runs = f"{len(costs) + len(args.also_compiled)} runs at once" if args.concurrent else "runs"
    print(f"command: interpreter {INTERPRETER_S} + startup {STARTUP_S} + peak {PEAK_S} + fit {fit.h200_s:.0f} + "
          f"cache {CACHE_S} + {calibration} + {runs} {runs_s:.0f} + end {END_S} = "
          f"{INTERPRETER_S + before + runs_s + END_S:.0f} s; --budget {args.budget:.0f} s, timeout_s {COMMAND_S}\n"
          f"device time: machine start and transfers ~{MACHINE_START_S} s + command at most {COMMAND_S} s = "
          f"{MACHINE_START_S + COMMAND_S} s of {DEVICE_S} s: one try")
    travel, problems = travel_report(args.mnist)
    print(travel)
    problems += plan_problems(args, plan, before)
    if problems:
        raise ConfigError("the plan does not fit: " + "; ".join(problems))
    print("plan fits")
    return 0


def trained_after(args: argparse.Namespace) -> tuple[str, ...]:
    """The methods trained after ``--methods``: ``--extra``, which ``--concurrent`` does not train."""
    return () if args.concurrent else args.extra


def rates_line(precision: str, cpu_rate: float) -> str:
    return (f"rates: this CPU fp32 matmul {cpu_rate / 1e9:,.1f} GFLOP/s on {torch.get_num_threads()} thread(s), "
            f"measured now; H200 {precision} {H200_RATE[precision] / 1e12:,.0f} TFLOP/s (datasheet, H200.md) at an "
            f"assumed {METHOD_EFFICIENCY:.0%} for the models, {FIT_EFFICIENCY:.0%} for the fit, and at least "
            f"{LAUNCH_S * 1e6:.0f} us per dispatched operator; FLOPs: matmul-like only (FlopCounterMode)")


def fit_line(fit: FitPlan, chunk: int, cpu_rate: float) -> str:
    return (f"fit: {fit.recipe.steps} Adam steps, chunk {chunk:,} ({fit.chunks} chunk(s); the chunk is part of the "
            f"recipe's fingerprint), eager, dataset option {FIT_DEVICE_OPTION}=cuda; {fit.flops_per_step / 1e6:.2f} "
            f"MFLOP per INR and step, {fit.flops / 1e12:,.1f} TFLOP in all: CPU-scaled "
            f"{duration(fit.flops / cpu_rate)}, H200 {duration(fit.h200_s)}")


def method_table(costs: dict[str, Cost], sizes: Sizes, cpu_rate: float, timing: dict[str, tuple[float, float]],
                 plan: dict[str, int]) -> str:
    """Per method: size, cost, the estimated time of the paper protocol and the planned run."""
    head = ["method", "params", "MFLOP/sample", "ops/step", "H200 s/epoch", "200 ep CPU-scaled", "200 ep H200",
            "epochs", "planned s"]
    rows = [[name, f"{c.params:,}", f"{c.train_flops / 1e6:,.1f}", f"{c.train_ops:,}", f"{timing[name][0]:,.2f}",
             duration(protocol_flops(c, sizes) / cpu_rate), duration(run_seconds(timing[name], EPOCHS)),
             str(plan[name]), f"{run_seconds(timing[name], plan[name]):,.0f}"] for name, c in costs.items()]
    return table(head, rows)


def travel_report(mnist: Path) -> tuple[str, list[str]]:
    """What a ``run`` sends (the repository's files, the IDX files, wheels in .whl/) and what
    it must carry, in one line; and the problems (too large, wheels missing)."""
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    sizes = travelling([mnist / name for name in MNIST_FILES] + wheels)
    total, count = sum(sizes.values()), len(sizes)
    carry = [".slot", ".whl"] if wheels else [".slot"]
    lacking = wheels_to_carry()
    line = (f"travel: {count} files, {mib(total)} of {mib(TRAVEL_BYTES)} (repository files, the IDX files"
            f"{', .whl/' if wheels else ''}); carry {json.dumps(carry)}; Python distributions the code imports: "
            f"{'all on the H200 image' if not lacking else 'the H200 image lacks ' + ', '.join(lacking)}")
    problems = []
    if total > TRAVEL_BYTES:
        largest = ", ".join(f"{name} {mib(size)}" for name, size in largest_entries(sizes))
        problems.append(f"{mib(total)} would travel, more than {mib(TRAVEL_BYTES)} (largest: {largest}; an "
                        f"untracked folder that git does not ignore, a virtualenv say, travels too: move it out "
                        f"of the repository or add it to .gitignore)")
    if lacking and not wheels:
        problems.append(f"the H200 image lacks {', '.join(lacking)}: put their wheels in .whl/")
    return line, problems


def wheels_to_carry() -> list[str]:
    """The distributions that the repository's loaded modules (every method built; tests
    aside) import at module level and the H200 image lacks."""
    owners = metadata.packages_distributions()
    roots = set()
    for module in list(sys.modules.values()):
        path = Path(getattr(module, "__file__", None) or "/")
        ours = REPO in path.parents and not any(p in path.parents for p in (REPO / "tests", Path(sys.prefix)))
        if ours and path.suffix == ".py":  # a virtualenv inside the repository is not the repository's code
            roots |= top_level_imports(path)
    found = {re.sub(r"[-_.]+", "-", d).lower() for root in roots if not (REPO / root).exists()
             for d in owners.get(root, ())}
    return sorted(found - H200_IMAGE)


def top_level_imports(path: Path) -> set[str]:
    """The root names of the absolute imports at module level of a Python file."""
    roots = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def plan_problems(args: argparse.Namespace, plan: dict[str, int], before: float) -> list[str]:
    """Why the time plan does not fit (empty if it does)."""
    problems = []
    if before + END_S >= args.budget:
        problems.append(f"startup, fit and calibration take {before + END_S:.0f} s of --budget {args.budget:.0f} s")
    short = [name for name in args.methods if not plan[name]]
    if short:
        problems.append(f"no epoch of {', '.join(short)} fits")
    if INTERPRETER_S + args.budget > COMMAND_S - COMMAND_MARGIN_S:
        problems.append(f"--budget {args.budget:.0f} s + {INTERPRETER_S} s for the interpreter exceed "
                        f"{COMMAND_S - COMMAND_MARGIN_S} s")
    if MACHINE_START_S + COMMAND_S > DEVICE_S:
        problems.append(f"{MACHINE_START_S + COMMAND_S} s of device time, more than {DEVICE_S} s")
    return problems


# ---------------------------------------------------------------- the slot


@dataclass
class Row:
    """One method's result in the slot."""

    method: str
    epochs: int
    status: str
    accuracy: float | None
    samples_per_s: float
    flops_per_sample: float
    wall_s: float
    val_accuracy: list[float] = field(default_factory=list)  # per epoch
    stopped: str | None = None  # the record's: "time limit" where that ended it
    compiled: bool = False

    @property
    def label(self) -> str:
        return self.method + (" (compiled)" if self.compiled else "")


def slot(args: argparse.Namespace, deadline: float) -> int:
    """Peak, fit, train until ``deadline`` (``time.perf_counter``); see the module docstring."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA device is available to this torch build: the slot runs on the GPU "
                          "(check the plan on a CPU with --dry-run)")
    check_idx(args.mnist)
    source = open_source(args.mnist, args.data_root, args.chunk, args.device)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    rates = peaks(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{where}, torch {torch.__version__}: matmul peak "
          + ", ".join(f"{k} {v / 1e12:,.1f} TFLOP/s" for k, v in rates.items()), flush=True)
    sizes, summary = build(source)
    summary.update(peaks=rates, precision=args.precision, device=where)
    if args.concurrent:
        rows = run_concurrently(args, deadline, summary)
    else:
        rows = []
        pace = Pace()
        for tier in (args.methods, args.extra):
            for i, name in enumerate(tier):
                rows.append(attempt(args, name, deadline, len(tier) - i, sizes, device, pace))
                save(args, rows, summary)
    print(render(rows, rates[args.precision]))
    return 0


def run_concurrently(args: argparse.Namespace, deadline: float, summary: dict) -> list[Row]:
    """Every run of ``--methods`` (and the compiled runs of ``--also-compiled``) at once, each
    a ``benchmarks.run`` process of up to 200 epochs under a ``--time-limit`` of the time left
    (less ``CONCURRENT_OVERHEAD_S`` for its start and its test), or with ``--across-slots``
    none; a process still running at the deadline is killed (its training state after its last
    epoch stays in the runs folder). Logs go to ``--out``."""
    runs = [(name, args.compile) for name in args.methods] + [(name, True) for name in args.also_compiled]
    limit = None if args.across_slots else math.floor(deadline - time.perf_counter() - END_S - CONCURRENT_OVERHEAD_S)
    if limit is not None and limit < 1:
        return [Row(name, 0, f"skipped: {limit:.0f} s left", None, 0.0, 0.0, 0.0, compiled=c) for name, c in runs]
    print(f"{len(runs)} runs at once, each up to {EPOCHS} epochs "
          + ("until the deadline (resumable)" if limit is None else f"in {limit:.0f} s of training"), flush=True)
    started = time.perf_counter()
    processes = {}
    for name, compiled in runs:
        log = open(args.out / f"{name}{'-compiled' if compiled else ''}.log", "w")
        processes[name, compiled] = (subprocess.Popen(
            [sys.executable, "-m", "benchmarks.run", *harness_args(args, name, EPOCHS, compiled, limit)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log)
    exits = {}
    for run, (process, log) in processes.items():
        try:
            exits[run] = f"exit {process.wait(timeout=max(1.0, deadline - END_S - time.perf_counter()))}"
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            exits[run] = "killed at the deadline"
        log.close()
    wall = time.perf_counter() - started
    rows = [row_of(args, name, EPOCHS, method_cost(name, COUNT_BATCH).train_flops, wall, exits[name, c], c, limit)[0]
            for name, c in runs]
    save(args, rows, summary)
    return rows


def build(source: DatasetSource) -> tuple[Sizes, dict]:
    """Build (fit) and cache the dataset; its sizes and what the build took."""
    t0 = time.perf_counter()
    dataset = source.load()
    seconds, fit = time.perf_counter() - t0, dataset.card.get("fit", {})
    sizes = Sizes({name: len(split) for name, split in dataset.splits().items()},
                  tuple(dataset.train.extras["pixels"].shape[-2:]), dataset.train.weights.spec.num_params)
    print(f"{DATASET}: {' / '.join(f'{n:,}' for n in sizes.splits.values())} INRs built and cached in "
          f"{seconds:.0f} s (fit {fit})", flush=True)
    return sizes, {"fit": fit, "build_seconds": seconds}


@dataclass
class Pace:
    """What the runs so far showed: how much slower than calibrated a run trains, and the
    seconds of a harness run beyond training and testing."""

    slowdown: float = 1.0
    fixed_s: float = RUN_FIXED_S


def attempt(args: argparse.Namespace, name: str, deadline: float, left: int, sizes: Sizes, device: torch.device,
            pace: Pace) -> Row:
    """``run_one``; a failure outside the harness's own guard (calibration, planning) is shown
    with its traceback and recorded in the row, and the next method goes on."""
    try:
        return run_one(args, name, deadline, left, sizes, device, pace)
    except Exception as err:
        traceback.print_exc()
        return Row(name, 0, f"failed: {type(err).__name__}: {err}", None, 0.0, 0.0, 0.0)


def run_one(args: argparse.Namespace, name: str, deadline: float, left: int, sizes: Sizes, device: torch.device,
            pace: Pace) -> Row:
    """Calibrate ``name``, give it the epochs that fit in its share (the time left over the
    ``left`` methods left in its tier), train it; ``pace`` learns from the run."""
    if share(deadline, left) < CALIBRATE_S + pace.fixed_s:
        return Row(name, 0, f"skipped: {share(deadline, left):.0f} s left for it", None, 0.0, 0.0, 0.0)
    step_s, eval_s, flops = calibrate(name, device, args.precision)
    raw_epoch_s = step_s * steps(sizes.splits["train"], BATCH) + eval_s * steps(sizes.splits["val"], EVAL_BATCH)
    test_s = TEST_PASSES * eval_s * steps(sizes.splits["test"], EVAL_BATCH)
    epochs = planned_epochs(share(deadline, left), pace.slowdown * raw_epoch_s, pace.fixed_s + test_s)
    print(f"{name}: {step_s * 1e3:.1f} ms/step, ~{pace.slowdown * raw_epoch_s:.1f} s/epoch, share "
          f"{share(deadline, left):.0f} s: {epochs} epochs", flush=True)
    if not epochs:
        return Row(name, 0, "skipped: no epoch fits its share", None, 0.0, flops, 0.0)
    row, train_s = train_method(args, name, epochs, flops)
    if row.status == "ok":
        pace.slowdown = max(pace.slowdown, train_s / (epochs * raw_epoch_s))
        pace.fixed_s = max(pace.fixed_s, row.wall_s - train_s - test_s)
    return row


def share(deadline: float, left: int) -> float:
    """Seconds for each of ``left`` methods, keeping ``END_S`` for the end."""
    return (deadline - time.perf_counter() - END_S) / left


def harness_args(args: argparse.Namespace, name: str, epochs: int, compiled: bool = False,
                 time_limit: int | None = None) -> list[str]:
    """The ``benchmarks.run`` arguments of one run of the slot."""
    options = [x for k, v in dataset_params(args.chunk, args.device).items() for x in ("--dataset-option", f"{k}={v}")]
    return ["--suite", "inr", "--datasets", DATASET, "--dataset-source", str(args.mnist), "--profile", "paper",
            "--device", args.device, "--precision", args.precision, "--schedule", args.schedule,
            "--epochs", str(epochs), "--methods", name, "--seeds", str(args.seed), "--out", str(runs_folder(args)),
            "--data-root", str(args.data_root), *options, *(["--compile"] if compiled else []),
            *(["--time-limit", str(time_limit)] if time_limit else [])]


def train_method(args: argparse.Namespace, name: str, epochs: int, flops: float) -> tuple[Row, float]:
    """One run through the harness; its row and training seconds."""
    t0 = time.perf_counter()
    code = harness.main(harness_args(args, name, epochs))
    return row_of(args, name, epochs, flops, time.perf_counter() - t0, f"exit {code}")


def row_of(args: argparse.Namespace, name: str, epochs: int, flops: float, wall: float, exit_: str,
           compiled: bool = False, time_limit: int | None = None) -> tuple[Row, float]:
    """The row of the run that the record of ``name`` (``epochs``, compilation, time limit)
    holds, and its training seconds; ``exit_`` says how the run ended where there is no record."""
    record = latest_record(runs_folder(args), name, args.seed,
                           {"epochs": epochs, "compile": compiled, "time_limit": time_limit})
    if record is None and args.across_slots and (state := saved_state(args, name)):
        curve = [round(h["val_accuracy"], 4) for h in state["history"]]
        return Row(name, state["epoch"], f"{exit_}; resumable after epoch {state['epoch']} (--resume)", None, 0.0,
                   flops, wall, curve, compiled=compiled), 0.0
    if record is None or record["status"] != "ok":
        status = f"no record ({exit_})" if record is None else f"{record['status']}: {record.get('reason', '')}"
        return Row(name, epochs, status, None, 0.0, flops, wall, compiled=compiled), 0.0
    curve = [round(h["val_accuracy"], 4) for h in record["history"]]
    return Row(name, len(record["history"]), "ok", record["metrics"]["accuracy"], record["samples_per_second"],
               flops, wall, curve, record.get("stopped"), compiled), record["train_seconds"]


def runs_folder(args: argparse.Namespace) -> Path:
    return args.data_root / "runs"


def method_records(out: Path, method: str) -> Path:
    """The folder of ``method``'s slot runs (one subfolder per configuration) under ``out``."""
    return dataset_records(out) / method


def dataset_records(out: Path) -> Path:
    """The folder of the slot's runs under ``out``: a subfolder per method."""
    return out / "records" / "paper" / "inr" / DATASET


def newest_first(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)


def saved_state(args: argparse.Namespace, name: str) -> dict | None:
    """The newest training state that a killed run of ``name`` left (``benchmarks.checkpoints``;
    ``--across-slots`` trains one run per method)."""
    paths = newest_first(method_records(runs_folder(args), name).glob(f"*/seed{args.seed}{checkpoints.SUFFIX}"))
    return checkpoints.read_state(paths[0]) if paths else None


def restore(archive: Path, root: Path) -> int:
    """Unpack a previous slot's ``runs.tar.gz`` (records and the training states of runs its
    deadline killed) into ``root``; the number of files restored. A training state already in
    ``root`` that has trained as far or further is kept (an archive given again on a warm
    machine loses no epoch). ``ConfigError`` if it is not such an archive."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as unpacked:
        unpack(archive, Path(unpacked))
        return sum(place(path, root / path.relative_to(unpacked))
                   for path in sorted(Path(unpacked).rglob("*")) if path.is_file())


def unpack(archive: Path, into: Path) -> None:
    """Extract a slot's ``runs.tar.gz`` into ``into``; ``ConfigError`` if it is not one."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            strays = [m.name for m in tar.getmembers() if not (m.name == "runs" or m.name.startswith("runs/"))]
            if strays:
                raise ConfigError(f"--resume {archive}: holds {strays[0]!r}; valid: a slot's runs.tar.gz "
                                  f"(everything under runs/)")
            tar.extractall(into, filter="data")
    except (OSError, tarfile.TarError) as err:
        raise ConfigError(f"--resume {archive}: cannot be read as a slot's runs.tar.gz ({err})") from None


def resumed_runs(args: argparse.Namespace) -> list[str]:
    """What ``--resume`` gives each run of this command, a line each, checked before any work:
    a saved state resumes only the run whose identity it was saved for. ``ConfigError`` (one
    line) where a state of a method this command trains was saved for another configuration
    (that run would start from its first epoch), naming the settings that changed where the
    state holds its configuration."""
    with tempfile.TemporaryDirectory() as unpacked:
        unpack(args.resume, Path(unpacked))
        states = {path.parent.parent.name: path for path in sorted(
            dataset_records(Path(unpacked) / "runs").glob(f"*/*/seed{args.seed}{checkpoints.SUFFIX}"))}
        lines, problems = [], []
        for name, path in states.items():
            state = checkpoints.read_state(path) or {}
            if name not in args.methods:
                lines.append(f"--resume: {name}'s saved state (after epoch {state.get('epoch')}) is not trained by "
                             f"this command (--methods {','.join(args.methods)})")
                continue
            planned, task = planned_run(args, name)
            saved = f"{name}'s saved state (config {path.parent.name}, after epoch {state.get('epoch')})"
            if state.get("key") == run_id(planned.config, args.seed):
                unfit = load_failure(state, planned, task)
                if unfit:
                    problems.append(f"{saved} does not load into the model this code builds for it ({unfit}): "
                                    f"the run would fail on resuming; a change of the method's code needs a new "
                                    f"method version")
                    continue
                lines.append(f"--resume: {name} resumes after epoch {state['epoch']} (config "
                             f"{config_id(planned.config)}, the run this command plans)")
            else:
                changes = checkpoints.changed_settings(state, planned.config)
                problems.append(f"{saved} is not the run this command plans (config {config_id(planned.config)})"
                                f"{changes or ' (the state does not say what changed)'}: such a run would start "
                                f"from its first epoch; give the settings the state was saved with, or leave out "
                                f"--resume")
    if problems:
        raise ConfigError(f"--resume {args.resume}: " + "; ".join(problems))
    return lines + [f"--resume: {name} has no saved state in {args.resume}: it trains from its first epoch"
                    for name in args.methods if name not in states]


def planned_run(args: argparse.Namespace, name: str) -> tuple[Planned, TaskInfo]:
    """The identity of ``name``'s run in this command (``--across-slots``: no time limit), as
    the harness will plan it once the INRs are built (``benchmarks.runner.identify``), known
    before: the fingerprint comes from the recipe and the IDX files; and the task its method is
    built for (without the training split's statistics). Planned on this machine, which may
    lack CUDA: the training device is not part of a run's identity, and the fitting device, a
    dataset option, is given back to the spec unchecked (the GPU's harness checks it)."""
    config = harness.config_from(harness.build_parser().parse_args(harness_args(args, name, EPOCHS, args.compile)))
    plan = resolve(replace(config, device="cpu", dataset_options={**config.dataset_options, FIT_DEVICE_OPTION: "cpu"}))
    spec = spec_for(plan, DATASET, name, args.seed, EPOCHS)
    spec = replace(spec, device=args.device, data=replace(spec.data, params=dict(config.dataset_options)))
    info, source = DATASETS[DATASET].info, DATASETS[DATASET].open(plan.load)
    recipe = SirenRecipe.of(source.config)
    task = TaskInfo((siren_spec(recipe.hidden, recipe.depth, 2, 1, recipe.omega),), info.out_dim, info.task)
    return identify(spec, source.fingerprint(), info.version, task), task


def load_failure(state: dict, planned: Planned, task: TaskInfo) -> str:
    """Why a saved training state's weights (the last and the best) and optimiser state would
    not load into the model this code builds for ``planned`` (strict, as the harness loads
    them), in one clause; ``""`` if they load. The identity covers the method's version, not
    its code: a renamed or resized parameter shows here, not after the INRs are rebuilt."""
    spec = planned.spec
    model = build_method(spec.method, task, profile=spec.model_profile, **dict(spec.method_options))
    try:
        for weights in (state["model"], state["best_state"]):
            if weights is not None:
                model.load_state_dict(weights)
        torch.optim.AdamW(model.parameters()).load_state_dict(state["optimiser"])
    except KeyError as err:
        return f"it holds no {err}"
    except (RuntimeError, ValueError) as err:
        message = " ".join(str(err).split())
        return message if len(message) <= 300 else message[:297] + "..."
    return ""


def place(path: Path, target: Path) -> bool:
    """Move an unpacked file to ``target``, unless both are training states and the one at
    ``target`` has trained as many epochs or more (then say so); whether it moved."""
    if path.name.endswith(checkpoints.SUFFIX) and target.exists():
        here, there = (checkpoints.read_state(p) or {} for p in (target, path))
        if here.get("epoch", 0) >= there.get("epoch", 0):
            print(f"--resume: kept {target} (after epoch {here.get('epoch')}; the archive's is after epoch "
                  f"{there.get('epoch')})", flush=True)
            return False
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return True


def latest_record(out: Path, method: str, seed: int, train: dict) -> dict | None:
    """The newest record of ``method`` on seed ``seed`` whose training settings hold ``train``
    (a ``None`` value: the setting is absent)."""
    records = [json.loads(p.read_text()) for p in newest_first(method_records(out, method).glob(f"*/seed{seed}.json"))]
    return next((r for r in records if all(r["config"]["train"].get(k) == v for k, v in train.items())), None)


def render(rows: list[Row], peak: float) -> str:
    """The slot's table."""
    published = TABLES[0].published
    head = ["method", "epochs", "test acc %", "paper %", "samples/s", "MFLOP/sample", "TFLOP/s", "% of peak",
            "wall s", "status"]
    body = []
    for r in rows:
        rate = r.flops_per_sample * r.samples_per_s
        paper = published.get(r.method, (None,))[0]
        measured = [f"{r.samples_per_s:,.0f}", f"{r.flops_per_sample / 1e6:,.1f}", f"{rate / 1e12:.2f}",
                    f"{100 * rate / peak:.1f}"] if r.samples_per_s else ["–"] * 4
        body.append([r.label, str(r.epochs), "–" if r.accuracy is None else f"{100 * r.accuracy:.2f}",
                     "–" if paper is None else f"{paper:.2f}", *measured, f"{r.wall_s:.0f}",
                     r.status + (f", stopped by its {r.stopped}" if r.stopped else "")])
    curves = [f"{r.label}: validation accuracy % by epoch: {' '.join(f'{100 * v:.1f}' for v in r.val_accuracy)}"
              for r in rows if r.val_accuracy]
    return "\n".join([table(head, body), *curves])


def save(args: argparse.Namespace, rows: list[Row], summary: dict) -> None:
    """``table.txt``, ``slot.json`` and ``runs.tar.gz`` under ``--out`` (rewritten after each run)."""
    (args.out / "table.txt").write_text(render(rows, summary["peaks"][args.precision]) + "\n")
    (args.out / "slot.json").write_text(json.dumps({**summary, "rows": [asdict(r) for r in rows]}, indent=1,
                                                   default=str))
    if runs_folder(args).is_dir():
        with tarfile.open(args.out / "runs.tar.gz", "w:gz") as tar:
            tar.add(runs_folder(args), arcname="runs")


# ---------------------------------------------------------------- command line


def method_names(text: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n)
    for name in names:
        METHODS[name]  # UnknownName (one line) for a wrong name
    return names


def build_parser() -> argparse.ArgumentParser:
    p = harness.OneLineParser(prog="scripts/gpu_slot.py", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="check the plan on this CPU")
    p.add_argument("--mnist", type=Path, default=REPO / ".slot" / "mnist", help="folder of the four MNIST IDX files")
    p.add_argument("--methods", default=",".join(CORE), help="comma-separated methods, trained first")
    p.add_argument("--extra", default=",".join(EXTRA), help="comma-separated methods trained with the time left")
    p.add_argument("--concurrent", action="store_true",
                   help=f"train every method of --methods at once, each in its own process for up to {EPOCHS} "
                        "epochs, stopped by the harness's --time-limit at the time left (no plan; --extra unused)")
    p.add_argument("--also-compiled", default="",
                   help="with --concurrent: comma-separated methods also trained through torch.compile, at once")
    p.add_argument("--compile", action="store_true",
                   help="with --concurrent: the runs of --methods train through torch.compile (on the GPU with "
                        "CUDA graphs; with --across-slots, a resumable compiled run per method)")
    p.add_argument("--across-slots", action="store_true",
                   help=f"with --concurrent: no time limit; each run trains toward its {EPOCHS} epochs until the "
                        "deadline kills it, and its training state after its last epoch travels back in "
                        "runs.tar.gz for --resume in the next slot (the record comes from the slot that finishes)")
    p.add_argument("--resume", type=Path, metavar="ARCHIVE",
                   help="with --across-slots: a previous slot's runs.tar.gz; each saved training state is checked "
                        "against the run this command plans (refused, naming the changed settings, if another) "
                        "and loaded into its model (refused if it does not load), "
                        "then its records and states are unpacked into --data-root (a state there that trained "
                        "further is kept), so its killed runs resume after their last epoch")
    p.add_argument("--schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE,
                   help="the lr after the warm-up (constant: the authors'; the natural one for a time-limited run)")
    p.add_argument("--chunk", type=harness.bounded_int(1, 70_000), default=10_000, help="INRs fitted at once")
    p.add_argument("--precision", choices=tuple(H200_RATE), default="fp32")
    p.add_argument("--device", choices=tuple(PEAK_SIZE), default="cuda",
                   help="where the slot runs; cpu: a rehearsal on tiny IDX files (the tests'); the dry run "
                        "always plans the H200")
    p.add_argument("--seed", type=harness.bounded_int(0, harness.MAX_SEED), default=0)
    p.add_argument("--budget", type=harness.positive_float, default=555.0,
                   help=f"seconds from the start of main (the interpreter and imports take ~{INTERPRETER_S} s more)")
    p.add_argument("--data-root", type=Path, default=Path("/tmp/wsbench-slot"), help="dataset cache and run records")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/slot"),
                   help="where table.txt, slot.json and runs.tar.gz go (default $OUT)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    deadline = time.perf_counter() + args.budget

    def command() -> int:
        args.methods, args.extra = method_names(args.methods), method_names(args.extra)
        args.also_compiled = method_names(args.also_compiled)
        if args.also_compiled and not args.concurrent:
            raise ConfigError("--also-compiled needs --concurrent (the compiled runs train beside the eager ones)")
        if args.compile and (not args.concurrent or args.also_compiled):
            raise ConfigError("--compile needs --concurrent and no --also-compiled (it compiles the runs of "
                              "--methods)")
        if args.across_slots and (not args.concurrent or args.also_compiled):
            raise ConfigError("--across-slots needs --concurrent and no --also-compiled (one resumable run per "
                              "method)")
        if args.resume and not args.across_slots:
            raise ConfigError("--resume needs --concurrent --across-slots (only such runs leave a training state, "
                              "and only they resume one)")
        if args.resume:
            check_idx(args.mnist)
            print("\n".join(resumed_runs(args)), flush=True)
        if args.resume and not args.dry_run:
            print(f"--resume: {restore(args.resume, args.data_root)} files of {args.resume} restored into "
                  f"{args.data_root}", flush=True)
        return dry_run(args) if args.dry_run else slot(args, deadline)

    return exit_status(command)


if __name__ == "__main__":
    sys.exit(main())
