"""Benchmark: training speed of the graph methods (NG-GNN, NG-T) in the sparse (edge list)
and layered (dense blocks) layouts of ``methods.layouts``.

    python scripts/bench_graph.py [--methods ng-gnn ng-t] [--profiles quick paper]
        [--archs siren cnn-zoo small-mlps] [--batch 128] [--repeats 5] [--threads 1] [--flops]
        [--against REV]

One training step = forward, cross-entropy, backward, AdamW step, on a fixed batch of
random float32 networks: ``siren`` the DWSNets SIREN 2-32-32-1, ``cnn-zoo`` the Small CNN
Zoo architecture (3 x conv 16, 3x3, stride 2, then linear 16-10; half ReLU and half tanh
networks, batched as a ``MixedWeights`` of two architectures, as the zoo is), and
``small-mlps`` eight architectures of tiny ReLU MLPs 2-w-8-1 (w = 8..15), where the edge
list beats the blocks (the case ``methods.layouts.LAYERED_MIN_EDGES`` is set by). Both layouts
start from the same parameters and their steps are interleaved (ABBA) in one process, so
load from other processes hits both; the figures are medians over ``--repeats`` steps, in
wall-clock time (samples/s) and in this process's CPU time (``cpu-s``: on a machine shared
with other jobs, the steadier of the two).
The 1024 x 1024 float32 matmul rate is measured between the steps as the machine's
reference. ``--flops`` counts the FLOPs of one step (``torch.utils.flop_counter``: matrix
products only) and reports them per sample and as a fraction of that reference rate.

``--against REV`` also times the implementation of git revision ``REV`` of this repository
(extracted with ``git archive``; on SIRENs only) on the same batch, in a subprocess run
once before and once after the interleaved steps, on the same number of threads. It builds
that revision's profile of the same name, which may differ (at ``69af3d4`` NG-GNN quick had
hidden 16); the paper profiles are unchanged. The revision the issue on speed was measured
at, edge lists only, is ``69af3d4``. The old revision is timed as it ran, with glibc's default
allocator settings, and also with this run's (``rev REV kept``), the harness's setting of
``benchmarks.host_memory`` that keeps freed blocks for reuse; ``--system-allocator`` times
everything with glibc's defaults.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import methods  # noqa: F401  (registers the methods)
from benchmarks.host_memory import apply_setting, release_freed_memory
from datasets.method_table import build_method
from datasets.normalisation import LayerStats
from datasets.spec import ArchSpec, Layer, mlp_spec, siren_spec
from datasets.weight_dataset import TaskInfo
from datasets.weights import MixedWeights, WeightSpace

LAYOUTS = ("sparse", "layered")
REPO = Path(__file__).resolve().parents[1]
# Training steps of the graph method of an older tree, timed in a fresh interpreter that
# imports that tree's packages (its TaskInfo may predate the `task` field).
OLD_STEPS = """
import inspect, json, sys, time
sys.path.insert(0, {tree!r})
import torch
torch.set_num_threads({threads})
{allocator}
import methods
from datasets.method_table import build_method
from datasets.normalisation import LayerStats
from datasets.spec import siren_spec
from datasets.weight_dataset import TaskInfo
from datasets.weights import WeightSpace
generator = torch.Generator().manual_seed(0)
spec = siren_spec()
def batch(n):
    return WeightSpace.from_flat(spec, 0.5 * torch.randn(n, spec.num_params, generator=generator))
stats = {{spec: LayerStats.of(batch(64))}}
fields = inspect.signature(TaskInfo).parameters
task = TaskInfo((spec,), 10, "classification", stats) if "task" in fields else TaskInfo((spec,), 10, stats)
weights, labels = batch({batch}), torch.randint(0, 10, ({batch},), generator=generator)
torch.manual_seed(0)
model = build_method({method!r}, task, profile={profile!r}).train()
optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
times = []
for i in range({steps} + 1):
    start, start_cpu = time.perf_counter(), time.process_time()
    optimiser.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(weights), labels).backward()
    optimiser.step()
    times.append((time.perf_counter() - start, time.process_time() - start_cpu))
print(json.dumps(times[1:]))
"""
# The harness's allocator setting, applied in that interpreter from this tree's module.
KEEP_FREED = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("host_memory", {str(REPO / "benchmarks" / "host_memory.py")!r})
host_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(host_memory)
host_memory.keep_freed_memory()
"""


def extract_revision(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` of this repository, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"bench_graph: --against {rev}: git archive failed: "
                         f"{archive.stderr.decode().strip() or 'not a git checkout'}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def old_steps(tree: Path, method: str, profile: str, steps: int, args: argparse.Namespace,
              keep_freed: bool) -> list[list[float]]:
    """``steps`` timed training steps (wall, cpu seconds) of ``method`` in ``tree``, with glibc's
    default allocator settings or the harness's (``keep_freed``)."""
    code = OLD_STEPS.format(tree=str(tree), threads=args.threads, allocator=KEEP_FREED if keep_freed else "",
                            method=method, profile=profile, batch=args.batch, steps=steps)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bench_graph: the {method} of revision {args.against} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def zoo_spec(activation: str) -> ArchSpec:
    """The Small CNN Zoo network (Unterthiner et al. 2020) with ``activation``."""
    conv = [Layer("conv", 16, c, (3, 3), 2, 0, activation) for c in (1, 16, 16)]
    return ArchSpec((*conv, Layer("linear", 10, 16)), name=f"small-cnn {activation}")


def random_batch(specs: list[ArchSpec], batch: int, generator: torch.Generator) -> WeightSpace | MixedWeights:
    """``batch`` networks with N(0, 0.5^2) entries, split evenly over ``specs`` and shuffled."""
    groups = [WeightSpace.from_flat(s, 0.5 * torch.randn(n, s.num_params, generator=generator))
              for s, n in zip(specs, [batch // len(specs) + (i < batch % len(specs)) for i in range(len(specs))])]
    if len(groups) == 1:
        return groups[0]
    return MixedWeights.from_groups(groups)[torch.randperm(batch, generator=generator)]


def matmul_rate(size: int = 1024, repeats: int = 3) -> float:
    """GFLOP/s (wall clock) of a ``size`` x ``size`` float32 matmul (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def step_fn(model: torch.nn.Module, weights, labels: torch.Tensor):
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(weights), labels).backward()
        optimiser.step()
    return step


def step_flops(model: torch.nn.Module, weights, labels: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(weights), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench(method: str, profile: str, arch: str, args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(0)
    specs = {"siren": [siren_spec()], "cnn-zoo": [zoo_spec("relu"), zoo_spec("tanh")],
             "small-mlps": [mlp_spec([2, w, 8, 1], "relu") for w in range(8, 16)]}[arch]
    stats = {s: LayerStats.of(random_batch([s], 64, generator)) for s in specs}
    task = TaskInfo(tuple(specs), 10, "classification", stats)
    weights = random_batch(specs, args.batch, generator)
    labels = torch.randint(0, 10, (args.batch,), generator=generator)
    torch.manual_seed(0)
    base = build_method(method, task, profile=profile).train()
    models = {}
    for layout in LAYOUTS:
        models[layout] = copy.deepcopy(base)
        models[layout].layout = layout
    steps = {layout: step_fn(models[layout], weights, labels) for layout in LAYOUTS}
    for layout in LAYOUTS:  # warm up
        steps[layout]()
    wall = {layout: [] for layout in LAYOUTS}
    cpu = {layout: [] for layout in LAYOUTS}
    # The old revision as it ran (glibc's defaults) and, unless this run uses the defaults
    # too, under this run's allocator setting: label -> keep freed blocks.
    olds: dict[str, bool] = {}
    if args.tree and arch == "siren":
        olds[f"rev {args.against}"] = False
        if args.kept:
            olds[f"rev {args.against} kept"] = True
    before = {old: old_steps(args.tree, method, profile, (args.repeats + 1) // 2, args, keep)
              for old, keep in olds.items()}
    rates = [matmul_rate()]
    for r in range(args.repeats):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[layout]()
            wall[layout].append(time.perf_counter() - start)
            cpu[layout].append(time.process_time() - start_cpu)
        rates.append(matmul_rate())
    for old, keep in olds.items():
        timed = before[old] + old_steps(args.tree, method, profile, args.repeats // 2, args, keep)
        wall[old], cpu[old] = [t[0] for t in timed], [t[1] for t in timed]
    peak = statistics.median(rates)
    med = {layout: statistics.median(t) for layout, t in wall.items()}
    med_cpu = {layout: statistics.median(t) for layout, t in cpu.items()}
    line = (f"{method:7s} {profile:6s} {arch:8s} B={args.batch}  "
            + "  ".join(f"{layout} {args.batch / med[layout]:6.1f} samples/s ({med[layout]:.2f} s/step, "
                        f"{med_cpu[layout]:.2f} cpu-s)" for layout in wall)
            + "".join(f"  layered vs {old}: {med[old] / med['layered']:.2f}x (cpu {med_cpu[old] / med_cpu['layered']:.2f}x)"
                      for old in wall if old != "layered")
            + f"  matmul {peak:.1f} GFLOP/s")
    if args.flops:
        for layout in LAYOUTS:
            flops = step_flops(models[layout], weights, labels)
            line += (f"\n        {layout}: {flops / args.batch / 1e9:.3f} GFLOP/sample (fwd+bwd), "
                     f"{flops / med[layout] / 1e9:.2f} GFLOP/s = {100 * flops / med[layout] / 1e9 / peak:.1f}% of matmul")
    print(line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["ng-gnn", "ng-t"])
    p.add_argument("--profiles", nargs="+", default=["quick", "paper"])
    p.add_argument("--archs", nargs="+", default=["siren", "cnn-zoo"], choices=["siren", "cnn-zoo", "small-mlps"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per layout (interleaved)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--flops", action="store_true", help="count FLOPs per step (matrix products)")
    p.add_argument("--against", metavar="REV", help="also time the implementation of git revision REV")
    p.add_argument("--system-allocator", action="store_true",
                   help="glibc's default allocator settings instead of the harness's (benchmarks.host_memory)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.kept, allocator = apply_setting(args.system_allocator)
    print(f"torch {torch.__version__}, {args.threads} thread(s); medians of {args.repeats} interleaved steps; "
          f"allocator: {allocator}")
    with tempfile.TemporaryDirectory() as tree:
        args.tree = extract_revision(args.against, Path(tree)) if args.against else None
        for method in args.methods:
            for profile in args.profiles:
                for arch in args.archs:
                    bench(method, profile, arch, args)
                    release_freed_memory()  # as the harness does after a run


if __name__ == "__main__":
    main()
