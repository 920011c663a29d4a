"""Benchmark: fit N MNIST INRs (DWSNets recipe) from the IDX files and report speed and quality.

    python scripts/bench_inr_fit.py --source /path/to/mnist --n 512 [--steps 1500 --lr 1e-3] \
        --threads 1 [--chunk 32] [--device cuda] [--compile [--check]]

The recipe defaults to the ``mnist-inr`` builder's (``datasets.sources.dwsnets_inr.RECIPE``).
Prints INRs per second, the PSNR distribution, a table of the per-layer weight and bias std
beside the published DWSNets MNIST INRs' with ours / published, and the extrapolated time
for 10,000 and 70,000 INRs. ``--compile`` passes the fitting loss (SIREN forward + MSE) through ``torch.compile``
(``datasets.inr_fitting.fit_sirens(compile=True)``, what the MNIST / CIFAR builders use);
``--check`` also fits the first chunk the other way and prints the largest weight
difference (float rounding only). A hand-written gradient with a fused Adam step was also
tried: eager it is slower than autograd, compiled no faster than compiling the loss.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.card import PUBLISHED_MNIST_INR_STD, published_comparison, summary, table_lines  # noqa: E402
from datasets.errors import DataNotFound, WsbenchError  # noqa: E402
from datasets.inr_fitting import SirenRecipe, fit_sirens  # noqa: E402
from datasets.io.idx import read_split  # noqa: E402
from datasets.sources.dwsnets_inr import RECIPE  # noqa: E402
from datasets.weights import WeightSpace  # noqa: E402


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2 (a user error, no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def print_comparison(ws: WeightSpace) -> None:
    """Per layer: our weight and bias std, the published MNIST INRs', ours / published."""
    comparison = published_comparison(ws, PUBLISHED_MNIST_INR_STD, "DWSNets MNIST INRs")
    print(comparison["against"])
    print("\n".join(table_lines(comparison["rows"], 2)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--n", type=int, default=512, help="number of INRs (first N training images)")
    p.add_argument("--steps", type=int, default=RECIPE.steps)
    p.add_argument("--lr", type=float, default=RECIPE.lr)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunk", type=int, default=RECIPE.chunk)
    p.add_argument("--seed", type=int, default=RECIPE.seed)
    p.add_argument("--device", default="cpu", help="fit on this device (cpu, cuda)")
    p.add_argument("--compile", action="store_true", help="compile the fitting loss (torch.compile)")
    p.add_argument("--check", action="store_true", help="with --compile: compare the first chunk with eager fitting")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        images = torch.from_numpy(read_split(args.source, "train")[0][:args.n, None]).float() / 255
    except DataNotFound:
        fail(f"{args.source}: no MNIST training IDX files there (train-images-idx3-ubyte[.gz], "
             f"train-labels-idx1-ubyte[.gz]); pass their folder with --source")
    except WsbenchError as err:
        fail(str(err))
    recipe = SirenRecipe(steps=args.steps, lr=args.lr, chunk=args.chunk, seed=args.seed)
    if args.compile or args.device != "cpu":  # compile / warm up outside the timing
        fit_sirens(images[:args.chunk], SirenRecipe(steps=2, lr=args.lr, chunk=args.chunk), progress=False,
                   compile=args.compile, device=args.device)
    start = time.perf_counter()
    ws, scores = fit_sirens(images, recipe, progress=False, compile=args.compile, device=args.device)
    seconds = time.perf_counter() - start
    rate = len(ws) / seconds
    stats = summary(scores)
    print(f"compile={args.compile} device={args.device} n={len(ws)} steps={args.steps} lr={args.lr} "
          f"chunk={args.chunk} threads={args.threads}: {rate:.2f} INRs/s ({rate * args.steps:.0f} INR-steps/s), "
          f"{seconds:.1f} s")
    print(f"PSNR dB: min {stats['min']:.2f}  p05 {stats['p05']:.2f}  median {stats['median']:.2f}  "
          f"mean {stats['mean']:.2f}  max {stats['max']:.2f}")
    print_comparison(ws)
    print(f"extrapolated: 10,000 INRs in {10_000 / rate / 60:.1f} min, 70,000 in {70_000 / rate / 3600:.2f} h")
    if args.check:
        head = SirenRecipe(steps=args.steps, lr=args.lr, chunk=args.chunk, seed=args.seed)
        ref, _ = fit_sirens(images[:args.chunk], head, progress=False, compile=not args.compile, device=args.device)
        diff = max((a - b).abs().max().item() for a, b in zip(ref.flatten().T, ws[:args.chunk].flatten().T))
        print(f"largest weight difference from fit_sirens on the first chunk: {diff:.3g}")


if __name__ == "__main__":
    main()
