"""Benchmark: load a cached 70,000-network SIREN 2-32-32-1 dataset (the size of mnist-inr).

    python scripts/bench_cache.py [--networks 70000] [--root DIR] [--repeats 3] [--threads 1]
                                  [--published N]

The networks are synthesised with the real shapes and the DWSNets initialisation (fitting
70,000 SIRENs takes hours; what a load costs depends only on the shapes and the count), split
55 : 5 : 10 like mnist-inr, with the per-network extras a build stores (PSNR, image index),
and written with the real protocol (``datasets.cache.write_cache``: one safetensors file per
split, their sha256 in the data card). Then it times, as the median of ``--repeats`` runs:

- cold load: ``datasets.cache.read_cache`` (checksums, reading, validation) after the files
  are dropped from the page cache (``posix_fadvise(DONTNEED)``, where the OS supports it);
- warm load: the same with the files in the page cache;
- its parts, warm: the checksums alone, reading alone, validation alone.

With ``--published N``, it also writes N of the networks in the published DWSNets MNIST layout
(one state dict per network plus the splits JSON) and times ``mnist-inr``'s fingerprint of
that folder, which every load of published files computes first: the first time (every file
hashed) and then memoised (one status check per file).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets.sources  # noqa: E402, F401  (registers mnist-inr)
from datasets.cache import load_split, read_cache, write_cache  # noqa: E402
from datasets.dataset_table import DATASETS, DatasetInfo  # noqa: E402
from datasets.files import sha256_file  # noqa: E402
from datasets.inr_fitting import siren_init  # noqa: E402
from datasets.io.dwsnets_layout import export  # noqa: E402
from datasets.source import LoadOptions  # noqa: E402
from datasets.spec import siren_spec  # noqa: E402
from datasets.validation import validate_dataset  # noqa: E402
from datasets.weight_dataset import SPLITS, Split, WeightDataset  # noqa: E402

INFO = DatasetInfo("bench-cache", ("inr",), "classification", 10, "synthetic SIRENs with mnist-inr's shapes",
                   "synthetic", "none")
SHARES = {"train": 55, "val": 5, "test": 10}


def synthesise(networks: int) -> WeightDataset:
    """``networks`` SIRENs 2-32-32-1 in three splits, with labels, PSNRs and image indices."""
    g = torch.Generator().manual_seed(0)
    sizes = {s: networks * share // sum(SHARES.values()) for s, share in SHARES.items()}
    sizes["train"] += networks - sum(sizes.values())
    splits = {}
    for name, n in sizes.items():
        ws = siren_init(siren_spec(), n, g)
        splits[name] = Split(ws, torch.randint(0, 10, (n,), generator=g),
                             {"psnr": 30 + torch.rand(n, generator=g), "image": torch.arange(n)})
    return WeightDataset(INFO, splits["train"], splits["val"], splits["test"], {}, "bench")


def evict(paths: list[Path]) -> bool:
    """Drop the files' pages from the page cache; False where the OS cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def timed(fn, repeats: int, before=None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (``before()`` untimed before each)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_fingerprint(networks: int, folder: Path) -> None:
    """Export ``networks`` SIRENs in the DWSNets MNIST layout under ``folder`` and print the
    time of mnist-inr's fingerprint of it, first and memoised."""
    entry = DATASETS["mnist-inr"]
    dataset = synthesise(networks)
    start = time.perf_counter()
    export(WeightDataset(entry.info, dataset.train, dataset.val, dataset.test_split()), entry.constants["layout"],
           folder / "src")
    print(f"published layout: {networks:,} state dicts written in {time.perf_counter() - start:.1f} s")
    for label in ("first, every file hashed", "memoised"):
        start = time.perf_counter()
        entry.open(LoadOptions(folder / "root", folder / "src", progress=False)).fingerprint()
        print(f"  fingerprint ({label}): {time.perf_counter() - start:.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", type=int, default=70_000)
    p.add_argument("--root", type=Path, default=None, help="folder for the cache (default: a temporary one)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--published", type=int, default=0, help="also time the fingerprint of N published files")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        directory = Path(tmp) / "bench-cache" / "bench"
        start = time.perf_counter()
        write_cache(directory, synthesise(args.networks))
        written = time.perf_counter() - start
        files = [directory / f"{s}.safetensors" for s in SPLITS]
        size = sum(f.stat().st_size for f in files)

        def load() -> WeightDataset:
            dataset = read_cache(directory, INFO, "bench")
            assert dataset is not None, "the cache was not usable"
            return dataset

        dataset = load()
        evictable = evict(files)
        cold = timed(load, args.repeats, before=lambda: evict(files))
        warm = timed(load, args.repeats)
        checksums = timed(lambda: [sha256_file(f) for f in files], args.repeats)
        reading = timed(lambda: [load_split(f) for f in files], args.repeats)
        validation = timed(lambda: validate_dataset(dataset), args.repeats)
    print(f"{args.networks:,} SIRENs 2-32-32-1, {size / 2**20:.0f} MiB in 3 safetensors files "
          f"(written in {written:.2f} s, synthesis included); threads={args.threads}, median of {args.repeats}")
    print(f"cold load (checksums + read + validation): {cold:.3f} s"
          + ("" if evictable else "  [page cache not evictable here: this is a warm load]"))
    print(f"warm load (checksums + read + validation): {warm:.3f} s")
    print(f"  checksums alone: {checksums:.3f} s ({size / 2**20 / checksums:.0f} MiB/s)")
    print(f"  reading alone:   {reading:.3f} s")
    print(f"  validation alone: {validation:.3f} s")
    if args.published:
        with tempfile.TemporaryDirectory(dir=args.root) as tmp:
            time_fingerprint(args.published, Path(tmp))


if __name__ == "__main__":
    main()
