"""Paper tables: the published numbers (DESIGN.md section 5) next to ours, rendered from
the run records. ``python -m benchmarks.paper_tables [--out results]`` writes
``results/paper_tables.md``; ``benchmarks.run`` renders it after every suite."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.leaderboard import mean_std
from benchmarks.records import load_records
from datasets.cache import atomic_write_text

INR_SOURCE = ("Navon et al. 2023 (DWSNets), Zhou et al. 2023 (NFN), Kofinas et al. 2024 (Neural Graphs), "
              "Kalogeropoulos et al. 2024 (ScaleGMN); DWSNets MNIST / FashionMNIST INRs")
INR_PUBLISHED = {  # test accuracy %, (MNIST, FashionMNIST)
    "mlp": (17.55, 19.91), "mlp-aug": (29.26, 22.76), "inr2vec": (23.69, 22.33), "dwsnet": (85.71, 67.06),
    "nfn-np": (78.50, 68.19), "nfn-hnp": (79.11, 68.94), "ng-gnn": (91.40, 68.00), "scalegmn-b": (96.59, 80.78),
}
ZOO_SOURCE = "Zhou et al. 2023 (NFN, NFT), Kofinas et al. 2024 (Neural Graphs); Small CNN Zoo CIFAR10-GS"
ZOO_PUBLISHED = {"statnn": 0.915, "nfn-np": 0.922, "nfn-hnp": 0.934, "nft": 0.926, "ng-gnn": 0.930, "ng-t": 0.935}


def ours(records: list[dict], dataset: str, metric: str, scale: float, digits: int) -> dict[str, str]:
    """Our mean +- std per method on ``dataset`` (best profile present: paper, else quick),
    with the profile, the number of seeds and, for a subset (``--limit``), its size."""
    by: dict[tuple[str, str, int | None], list[float]] = defaultdict(list)
    for r in records:
        if r["dataset"] == dataset and r["status"] == "ok" and r["profile"] in ("paper", "quick"):
            limit = r.get("config", {}).get("data", {}).get("limit")
            by[(r["method"], r["profile"], limit)].append(r["metrics"][metric])
    result = {}
    for (method, profile, limit), values in sorted(by.items(), key=lambda kv: (kv[0][1] != "paper",
                                                                                -(kv[0][2] or 10**12))):
        seeds = f"{len(values)} seed{'s' if len(values) > 1 else ''}"
        subset = f", {limit:,} per split" if limit else ""
        result.setdefault(method, f"{mean_std(values, scale, digits)} ({profile}, {seeds}{subset})")
    return result


def render(records: list[dict]) -> str:
    def columns(datasets, metric, scale, digits):
        return [ours(records, d, metric, scale, digits) for d in datasets]

    inr_sets = ("mnist-inr", "fmnist-inr", "digits-inr")
    inr = columns(inr_sets, "accuracy", 100.0, 2)
    methods = list(INR_PUBLISHED) + sorted({m for col in inr for m in col} - set(INR_PUBLISHED))
    lines = ["# Published results next to ours", "",
             "Generated from `results/records` by `python -m benchmarks.paper_tables`; do not edit by hand.",
             "'–': not published, or not run here yet.", "",
             "## INR classification (test accuracy %)", "", f"Published: {INR_SOURCE}.", "",
             "| method | MNIST (paper) | MNIST (ours) | FashionMNIST (paper) | FashionMNIST (ours) | digits-inr (ours) |",
             "|---|---|---|---|---|---|"]
    for m in methods:
        pub = INR_PUBLISHED.get(m, (None, None))
        cell = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {m} | {cell(pub[0])} | {inr[0].get(m, '–')} | {cell(pub[1])} | {inr[1].get(m, '–')} "
                     f"| {inr[2].get(m, '–')} |")
    zoo_sets = ("small-cnn-zoo-cifar10", "digits-cnn-zoo", "digits-cnn-park")
    zoo = columns(zoo_sets, "kendall_tau", 1.0, 3)
    methods = list(ZOO_PUBLISHED) + sorted({m for col in zoo for m in col} - set(ZOO_PUBLISHED))
    lines += ["", "## CNN generalization prediction (Kendall τ)", "", f"Published: {ZOO_SOURCE}.", "",
              "| method | CIFAR10-GS (paper) | CIFAR10-GS (ours) | digits-cnn-zoo (ours) | digits-cnn-park (ours) |",
              "|---|---|---|---|---|"]
    for m in methods:
        pub = ZOO_PUBLISHED.get(m)
        lines.append(f"| {m} | {'–' if pub is None else f'{pub:.3f}'} | {zoo[0].get(m, '–')} | "
                     f"{zoo[1].get(m, '–')} | {zoo[2].get(m, '–')} |")
    return "\n".join(lines)


def write(out: Path) -> str:
    text = render(load_records(out))
    atomic_write_text(out / "paper_tables.md", text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_tables", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    print(write(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
