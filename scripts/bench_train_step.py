"""Benchmark: training samples per second of registered methods on one batch of SIRENs.

    python scripts/bench_train_step.py scalegmn scalegmn-b probing ng-gnn \
        --batch 128 --rounds 5 --steps 3 --threads 1 [--profile quick] [--hidden 32] [--task edit --side 8]

A method may carry overrides of its profile's options, ``name:key=value,key=value``
(e.g. ``scalegmn-b:hidden=8``).

Every method trains (forward, cross-entropy, backward, AdamW step) on the same batch of
DWSNets-initialised SIRENs 2-``hidden``-``hidden``-1 with 10 classes; with ``--task edit`` it
predicts a weight change instead, rendered on a ``side`` x ``side`` pixel grid
(``benchmarks.editing.Rendered``) and trained with the pixel MSE against random targets. The methods take turns, ``steps``
steps each per round, for ``rounds`` rounds, so that machine load falls on all of them alike;
prints per method the median samples per second over the rounds, its parameter count, and
its speed relative to the first method named.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import baselines  # noqa: E402,F401
import methods  # noqa: E402,F401
from benchmarks.editing import Rendered  # noqa: E402
from datasets.inr_fitting import siren_init  # noqa: E402
from datasets.method_table import build_method  # noqa: E402
from datasets.normalisation import LayerStats  # noqa: E402
from datasets.spec import siren_spec  # noqa: E402
from datasets.weight_dataset import TaskInfo  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("methods", nargs="+", help="registered method names, optionally name:key=value,...")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="training steps per method per round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", default="quick")
    p.add_argument("--hidden", type=int, default=32, help="SIREN width")
    p.add_argument("--task", choices=("classification", "edit"), default="classification")
    p.add_argument("--side", type=int, default=8, help="rendered image side for --task edit")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spec = siren_spec(args.hidden)
    ws = siren_init(spec, args.batch, torch.Generator().manual_seed(0))
    edit = args.task == "edit"
    out_dim = args.side ** 2 if edit else 10
    targets = torch.rand(args.batch, out_dim) if edit else torch.randint(0, 10, (args.batch,))
    loss_fn = torch.nn.functional.mse_loss if edit else torch.nn.functional.cross_entropy
    task = TaskInfo((spec,), out_dim, args.task, {spec: LayerStats.of(ws)})
    runs = {}
    for label in args.methods:
        name, _, options = label.partition(":")
        overrides = dict(item.split("=", 1) for item in options.split(",") if item)
        model = build_method(name, task, profile=args.profile, **overrides)
        model = (Rendered(model, args.side, args.side) if edit else model).train()
        runs[label] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), [])

    def step(model: torch.nn.Module, optimiser: torch.optim.Optimizer) -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(ws), targets).backward()
        optimiser.step()

    for model, optimiser, _ in runs.values():  # warm-up
        step(model, optimiser)
    for _ in range(args.rounds):
        for model, optimiser, speeds in runs.values():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, optimiser)
            speeds.append(args.steps * args.batch / (time.perf_counter() - start))

    first = statistics.median(runs[args.methods[0]][2])
    print(f"{args.task}, {args.profile} profile, batch {args.batch} SIRENs {spec.describe()}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.steps} steps, interleaved")
    for name, (model, _, speeds) in runs.items():
        median = statistics.median(speeds)
        params = sum(t.numel() for t in model.parameters())
        print(f"{name:24s} {median:8.0f} samples/s  (min {min(speeds):.0f}, max {max(speeds):.0f})  "
              f"{params:>9,d} parameters  x{median / first:.2f} vs {args.methods[0]}")


if __name__ == "__main__":
    main()
