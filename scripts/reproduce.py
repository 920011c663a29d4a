"""Reproduce the Neural Graphs paper's INR classification table (Kofinas et al. 2024, Table 1)
under wsbench's protocol, and estimate what it costs.

    python scripts/reproduce.py --source DIR_WITH_MNIST_IDX [--published DWSNETS_DIR]
        [--device cuda] [--seeds 0 1 2] [--methods ...] [--limit N] [--estimate] [--out DIR]

Steps: (1) build ``mnist-inr`` from the four MNIST IDX files (all 70,000 images: 55,000 /
5,000 / 10,000 SIRENs 2-32-32-1; ``--limit N`` for N per split) — or, with ``--published``,
read the published DWSNets INR files as well, so that our builder's INRs and the published
ones are compared under one protocol; (2) train every method of the table with the paper
profile (published model sizes, 200 epochs, AdamW, batch 128, selection on validation) on
each seed; (3) render the paper table beside the published numbers. ``--estimate`` instead
trains each method for one epoch and extrapolates the measured epoch time to the whole
protocol (epochs x seeds x datasets), printing the device-hours per method: run it first.

On a GPU (``--device cuda``): whole splits stay on the device, ``--precision bf16`` and
``--compile`` pass through, and ``--jobs N`` trains N small models at once on one GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import paper_tables  # noqa: E402
from benchmarks.config import EvaluationConfig, resolve  # noqa: E402
from benchmarks.grid import run_grid  # noqa: E402
from benchmarks.launchers import register_all  # noqa: E402
from benchmarks.protocol import PROFILES  # noqa: E402
from datasets.errors import exit_status  # noqa: E402

TABLE_1 = ("mlp", "mlp-aug", "dwsnet", "nfn-np", "nfn-hnp", "ng-gnn", "ng-t")


def config_for(args: argparse.Namespace, source: Path, out: Path, **changes) -> EvaluationConfig:
    """The paper-profile run of the table's methods on the INRs built (or read) from ``source``."""
    fields = dict(suite="inr", datasets=("mnist-inr",), dataset_source=source, profile="paper", device=args.device,
                  precision=args.precision, compile=args.compile, seeds=tuple(args.seeds), methods=tuple(args.methods),
                  out=out, data_root=args.data_root, limit=args.limit, jobs=args.jobs)
    return EvaluationConfig(**{**fields, **changes})


def run_config(config: EvaluationConfig) -> int:
    """Run it; the exit status (2 with one line for a user error)."""
    return exit_status(lambda: run_grid(resolve(config)).status)


def estimate(args: argparse.Namespace, sources: list[Path]) -> int:
    """Train one epoch per method and print the extrapolated cost of the whole protocol."""
    out = args.out / "estimate"
    epochs = PROFILES["paper"].epochs
    for source in sources:
        code = run_config(config_for(args, source, out, seeds=(0,), epochs=1))
        if code not in (0, 1):
            return code
    rows, total = [], 0.0
    for path in sorted((out / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        if record["status"] != "ok":
            continue
        hours = record["train_seconds"] * epochs * len(args.seeds) * len(sources) / 3600
        total += hours
        rows.append(f"| {record['config']['method']} | {record['parameters']:,} | {record['train_seconds']:.1f} | "
                    f"{record['samples_per_second']:.0f} | {hours:.2f} |")
    device = record["environment"]["device_name"] if rows else args.device
    print(f"Estimated cost of the paper protocol on {device}: {epochs} epochs x {len(args.seeds)} seeds x "
          f"{len(sources)} dataset(s)\n")
    print("| method | parameters | seconds per epoch | samples/s | device-hours |\n|---|---|---|---|---|")
    print("\n".join(rows) + f"\n| total | | | | {total:.1f} |")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description="Reproduce the Neural Graphs INR table under one protocol.")
    p.add_argument("--source", type=Path, required=True, help="folder with the four MNIST IDX files")
    p.add_argument("--published", type=Path, help="folder with the published DWSNets MNIST INRs (optional)")
    p.add_argument("--methods", nargs="+", default=list(TABLE_1))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--jobs", type=int, help="runs at once (several small models share one GPU)")
    p.add_argument("--limit", type=int, help="at most N INRs per split (default: all 70,000)")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    p.add_argument("--estimate", action="store_true", help="one epoch per method, then the extrapolated cost")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    register_all()
    sources = [args.source] + ([args.published] if args.published else [])
    if args.estimate:
        return estimate(args, sources)
    codes = [run_config(config_for(args, source, args.out / name))
             for source, name in zip(sources, ("built", "published"))]
    for name in ("built", "published")[:len(sources)]:
        print(f"\n# {name} INRs\n")
        print(paper_tables.write(args.out / name))
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
