"""Roofline benchmark: one training step of every registered method against its FLOP count.

    python scripts/bench_methods.py [--methods nfn-np,nft] [--profiles quick,paper] [--batch 128]
        [--threads 1] [--precision fp32|bf16] [--compile] [--device cpu|cuda] [--markdown]

For every method and profile, on a batch of SIRENs 2-32-32-1 (``siren_init``, 10 classes):

- samples/s: batch / median seconds of one training step (zero_grad, forward, cross-entropy,
  backward, AdamW step), timed after warm-up steps; repeats stop at ``--repeats`` or after
  ``--budget`` seconds (at least one); a step longer than the budget (the big paper
  profiles) is timed once, after the memory-profiled step and one warm-up step;
- FLOPs/sample: forward + backward FLOPs of that step counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention only:
  element-wise work, reductions and the optimiser are not counted) on 2 and 4 samples and
  extrapolated to the batch (exact: the count is affine in the batch size, checked), divided
  by the batch;
- GFLOP/s and % of peak: those FLOPs over the median step time, and that rate over this
  machine's matmul peak measured in the same run (a square ``--peak-size`` matmul of the
  run's precision on ``--threads`` threads or on the GPU; the best rate seen in a second
  at the start and a short burst after every row, so a moment of load on a shared
  machine does not lower it);
- memory/sample: the peak of the tensor memory allocated during one step and not yet freed
  (activations, temporaries and gradients; parameters, inputs and optimiser state, allocated
  before, excluded), divided by the batch. On a CPU it is summed from the allocation and
  free events of ``torch.profiler`` (``profile_memory=True``), on a GPU it is
  ``torch.cuda.max_memory_allocated`` above the memory allocated before the step.

``--precision bf16`` runs forward and loss under ``torch.autocast`` (bfloat16); ``--compile``
passes forward and loss through ``torch.compile`` as the harness's ``--compile`` does
(``benchmarks.protocol.compiled``: on a GPU with CUDA graphs), so also the backward; the AdamW
step stays eager. FLOPs are always counted on the eager step (the same arithmetic).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import baselines  # noqa: E402,F401  (registers the baselines)
import methods  # noqa: E402,F401  (registers the graph methods)
from benchmarks.host_memory import apply_setting, release_freed_memory  # noqa: E402
from benchmarks.protocol import compiled  # noqa: E402
from datasets.inr_fitting import siren_init  # noqa: E402
from datasets.method_table import METHODS, PROFILES, build_method  # noqa: E402
from datasets.normalisation import LayerStats  # noqa: E402
from datasets.spec import siren_spec  # noqa: E402
from datasets.weight_dataset import TaskInfo  # noqa: E402
from datasets.weights import WeightSpace  # noqa: E402

CLASSES = 10
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SMALL_BATCHES = (8, 16)  # FLOPs are counted at these batch sizes and extrapolated (the graph
# methods switch to their layered layout at 8,192 edges per architecture group: 8 SIRENs have 17,920)


@dataclass
class Row:
    """One method at one profile."""

    method: str
    profile: str
    params: int
    samples_per_s: float
    flops_per_sample: float
    gflops: float
    bytes_per_sample: float
    repeats: int


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a ``size x size`` matmul over about ``seconds`` of repeats."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(3):
        a @ b
    synchronise(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(4 if device.type == "cuda" else 1):
            a @ b
        synchronise(device)
        best = min(best, (time.perf_counter() - t0) / (4 if device.type == "cuda" else 1))
    return 2 * size ** 3 / best / 1e9


def siren_batch(batch: int, device: torch.device) -> tuple[TaskInfo, WeightSpace, torch.Tensor]:
    """The task, ``batch`` SIRENs 2-32-32-1 at their initialisation and random class targets."""
    spec = siren_spec()
    ws = siren_init(spec, batch, torch.Generator().manual_seed(0))
    task = TaskInfo((spec,), CLASSES, "classification", {spec: LayerStats.of(ws)})
    targets = torch.randint(0, CLASSES, (batch,), generator=torch.Generator().manual_seed(1))
    return task, ws.to(device), targets.to(device)


def make_loss(model: nn.Module, precision: str, device: torch.device) -> Callable:
    """``loss(weights, targets)``: forward and cross-entropy, under autocast for bf16."""
    def loss(weights: WeightSpace, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return F.cross_entropy(model(weights).float(), targets)
    return loss


def make_step(loss: Callable, optimiser: torch.optim.Optimizer, weights: WeightSpace,
              targets: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss(weights, targets).backward()
        optimiser.step()
    return step


def count_flops(loss: Callable, optimiser: torch.optim.Optimizer, weights: WeightSpace,
                targets: torch.Tensor) -> int:
    """Forward + backward FLOPs of a step on the whole batch, counted on its first 2 and
    first 4 samples and extrapolated (the count is affine in the batch size: every method
    computes per sample). Ends with an optimiser step, so the optimiser state exists
    before anything is timed."""
    counts = []
    for size in SMALL_BATCHES:
        optimiser.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as counter:
            loss(weights[:size], targets[:size]).backward()
        counts.append(counter.get_total_flops())
    optimiser.step()
    (a, b), (fa, fb) = SMALL_BATCHES, counts
    per_sample, rest = divmod(fb - fa, b - a)
    if rest:
        raise RuntimeError(f"FLOPs not affine in the batch size: {fa} at {a}, {fb} at {b}")
    return fa + per_sample * (len(weights) - a)


def profiled_step(step: Callable[[], None], optimiser: torch.optim.Optimizer,
                  device: torch.device) -> tuple[int, float]:
    """One step under memory profiling: its peak bytes allocated and not yet freed
    (gradients are cleared first, so they count; parameters, inputs and optimiser state do
    not), and its seconds."""
    optimiser.zero_grad(set_to_none=True)
    if device.type == "cuda":
        synchronise(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        step()
        synchronise(device)
        return torch.cuda.max_memory_allocated(device) - before, time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type().name == "CPU")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, seconds


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int,
               budget: float) -> list[float]:
    """Seconds of each timed step, after up to ``warmup`` untimed ones (fewer once they
    take ``budget`` seconds); timing stops after ``repeats`` steps or ``budget`` seconds,
    but times at least one."""
    start = time.perf_counter()
    for _ in range(warmup):
        if time.perf_counter() - start >= budget:
            break
        step()
    synchronise(device)
    times: list[float] = []
    start = time.perf_counter()
    while not times or (len(times) < repeats and time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        step()
        synchronise(device)
        times.append(time.perf_counter() - t0)
    return times


def bench(name: str, profile_name: str, args: argparse.Namespace, device: torch.device) -> Row:
    """Measure one method at one profile."""
    torch.manual_seed(0)
    task, weights, targets = siren_batch(args.batch, device)
    model = build_method(name, task, profile=profile_name).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), **METHODS[name].optimiser(profile_name))
    eager = make_loss(model, args.precision, device)
    flops = count_flops(eager, optimiser, weights, targets)
    step = make_step(compiled(eager, args.compile, device), optimiser, weights, targets)
    if args.compile:
        step()  # compilation
    memory, _ = profiled_step(step, optimiser, device)
    # the profiled step is never timed: it is the first full-batch step (first touch of every
    # block, the optimiser's state) and runs under the profiler; NG-T's paper profile took 3x a
    # later step in it. The heap settles over the next step or two (benchmarks.host_memory).
    times = time_steps(step, device, args.warmup, args.repeats, args.budget)
    seconds = statistics.median(times)
    return Row(name, profile_name, sum(p.numel() for p in model.parameters()), args.batch / seconds,
               flops / args.batch, flops / seconds / 1e9, memory / args.batch, len(times))


def render(rows: list[Row], peak: float, markdown: bool) -> str:
    """The table, plain or markdown; ``peak`` in GFLOP/s."""
    head = ["method", "profile", "params", "samples/s", "MFLOP/sample", "GFLOP/s", "% of peak", "KiB/sample", "n"]
    body = [[r.method, r.profile, f"{r.params:,}", f"{r.samples_per_s:,.0f}", f"{r.flops_per_sample / 1e6:,.1f}",
             f"{r.gflops:.1f}", f"{100 * r.gflops / peak:.1f}", f"{r.bytes_per_sample / 1024:,.0f}", str(r.repeats)]
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(x.rjust(w) if i >= 2 else x.ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
                     for r in [head] + body)


def parse_list(text: str, valid: list[str], what: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise SystemExit(f"bench_methods: unknown {what} {', '.join(unknown)}; valid: {', '.join(valid)}")
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names (default: all)")
    p.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated profiles (default: quick,paper)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=tuple(DTYPES), default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile forward and loss (as the harness)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=10, help="most timed steps")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed steps (at least one step)")
    p.add_argument("--peak-size", type=int, default=None, help="matmul size for the peak (1024 CPU, 8192 GPU)")
    p.add_argument("--system-allocator", action="store_true",
                   help="the C library's default allocator settings instead of the harness's (benchmarks.host_memory)")
    args = p.parse_args()
    if args.batch < SMALL_BATCHES[-1]:
        raise SystemExit(f"bench_methods: --batch must be at least {SMALL_BATCHES[-1]}, got {args.batch}")
    names = parse_list(args.methods, list(METHODS), "method")
    profiles = parse_list(args.profiles, list(PROFILES), "profile")
    torch.set_num_threads(args.threads)
    _, allocator = apply_setting(args.system_allocator)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_methods: --device cuda, but torch sees no GPU")
    device = torch.device(args.device)
    size = args.peak_size or (8192 if device.type == "cuda" else 1024)
    peaks = {k: matmul_peak(dtype, device, size) for k, dtype in DTYPES.items()}
    rows = []
    for name in names:
        for profile_name in profiles:
            rows.append(bench(name, profile_name, args, device))
            release_freed_memory()  # as the harness does after a run: the next model starts afresh
            peaks[args.precision] = max(peaks[args.precision], matmul_peak(DTYPES[args.precision], device, size, 0.3))
            r = rows[-1]
            print(f"  {name} {profile_name}: {r.samples_per_s:,.0f} samples/s, {r.gflops:.1f} GFLOP/s",
                  file=sys.stderr, flush=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} CPU thread(s)"
    print(f"matmul peak ({size}x{size}, {where}): fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} "
          f"GFLOP/s; batch {args.batch}, precision {args.precision}, compile {args.compile}; allocator: {allocator}; memory: "
          f"{'torch.cuda peak allocated' if device.type == 'cuda' else 'torch.profiler allocation events'}")
    print(render(rows, peaks[args.precision], args.markdown))


if __name__ == "__main__":
    main()
