"""Draw the trained networks that the method contract (``datasets.contract``) checks every
claimed symmetry on, from the embedded datasets as built here, and write them to
``datasets/trained/<dataset>.safetensors`` with ``datasets/trained/SOURCES.json`` (each
sample's dataset fingerprint, builder version and the validation rows it holds).

    python scripts/sample_trained_networks.py [--data-root DIR]

``digits-inr``: 8 INRs of different images; ``digits-cnn-zoo``: the final checkpoints of 4
ReLU and 4 tanh runs; ``digits-cnn-park``: the final checkpoints of 2 runs of each
architecture. All from the validation split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets.sources  # noqa: E402,F401
from datasets.cache import default_data_root, save_split  # noqa: E402
from datasets.contract import TRAINED, TRAINED_FOLDER  # noqa: E402
from datasets.dataset_table import DATASETS  # noqa: E402
from datasets.files import atomic_write_text  # noqa: E402
from datasets.source import LoadOptions  # noqa: E402
from datasets.weight_dataset import Split  # noqa: E402


def rows(split: Split, per_architecture: int) -> list[int]:
    """The first ``per_architecture`` final checkpoints (or networks) of each architecture
    (zoo: of each activation too)."""
    final = split.extras["epoch"] == split.extras["epoch"].max() if "epoch" in split.extras else None
    kind = split.extras.get("architecture", torch.zeros(len(split), dtype=torch.long)) * 16 + \
        split.extras.get("activation", torch.zeros(len(split), dtype=torch.long))
    chosen: dict[int, list[int]] = {}
    for row in range(len(split)):
        if final is not None and not final[row]:
            continue
        picked = chosen.setdefault(int(kind[row]), [])
        if len(picked) < per_architecture:
            picked.append(row)
    return sorted(r for picked in chosen.values() for r in picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args()
    root = args.data_root or default_data_root()
    sources = {}
    for name, count in (("digits-inr", 8), ("digits-cnn-zoo", 4), ("digits-cnn-park", 2)):
        assert name in TRAINED
        dataset = DATASETS[name].open(LoadOptions(root)).load()
        picked = rows(dataset.val, count) if name != "digits-inr" else list(range(0, 8 * 4, 4))
        index = torch.tensor(picked)
        sample = Split(dataset.val.weights[index], dataset.val.targets[index], {"row": index})
        save_split(TRAINED_FOLDER / f"{name}.safetensors", sample)
        sources[name] = {"fingerprint": dataset.fingerprint, "version": dataset.info.version, "split": "val",
                         "rows": picked}
        print(f"{name}: {len(picked)} networks, fingerprint {dataset.fingerprint}")
    atomic_write_text(TRAINED_FOLDER / "SOURCES.json", json.dumps(sources, indent=1) + "\n")


if __name__ == "__main__":
    main()
