"""``cnn-wild-park``: the published CNN Wild Park (Kofinas et al., ICLR 2024), predicting a
CIFAR-10 CNN's test accuracy from its weights.

The source folder is the extracted Zenodo archive (``cnn_wild_park.zip``, record
10.5281/zenodo.12797219) with the authors' split file beside it::

    <source>/cnn_park_splits.json
    <source>/cifar10_zooV2/<trial>/<checkpoint>/checkpoint.pt

``cnn_park_splits.json`` (``experiments/cnn_generalization/dataset/`` of
github.com/mkofinas/neural-graphs) maps ``train`` / ``val`` / ``test`` to ``{"path": [...],
"score": [...], "step": [...]}``: checkpoint paths relative to the folder, their recorded
test accuracy and their epoch; runs were split whole (every checkpoint of a training run
is in one split). The split is the authors'. The target is the checkpoint's recorded
CIFAR-10 test accuracy (``last_result["test/acc"]``); it and the epoch (``iteration``) must
equal the split file's ``score`` and ``step``. Networks differ in depth, widths, kernels,
activations and residuals, so every split is a :class:`~datasets.weights.MixedWeights` with
one group per distinct architecture, rows in the split file's order. How a checkpoint is
read, what the architectures are and which of them our spec refuses:
``datasets.io.wild_park``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from datasets.card import summary
from datasets.dataset_table import DatasetInfo, RemoteFile, register_dataset
from datasets.errors import DataNotFound, InvalidData, InvalidItem
from datasets.files import is_inside, read_json
from datasets.io.state_dicts import stack_mixed
from datasets.io.wild_park import WildParkNetwork, read_network
from datasets.progress import progress
from datasets.source import Built, DatasetSource
from datasets.validation import Skipper
from datasets.weight_dataset import SPLITS, Split

SPLITS_FILE = "cnn_park_splits.json"
FOLDER = "cifar10_zooV2"
ZENODO = "https://zenodo.org/records/12797219"
ARCHIVE_URL = f"{ZENODO}/files/cnn_wild_park.zip?download=1"
# the split file at the repository's commit of 23 July 2024; neither file has a published checksum
SPLITS_URL = ("https://raw.githubusercontent.com/mkofinas/neural-graphs/1f2b671ab4988ef212469363005a5b99eec16580/"
              f"experiments/cnn_generalization/dataset/{SPLITS_FILE}")
DOWNLOAD = (f"cnn_wild_park.zip from {ZENODO} (extract it, so that {FOLDER}/ is in the folder) and "
            f"{SPLITS_FILE} from github.com/mkofinas/neural-graphs (experiments/cnn_generalization/dataset/)")
SCORE_TOLERANCE = 1e-9


def read_splits(path: Path) -> dict[str, list[tuple[str, float, int]]]:
    """``split -> [(relative path, score, step), ...]`` from the authors' split file."""
    table = read_json(path, "JSON split file")
    entries = {}
    for name in SPLITS:
        part = table.get(name) if isinstance(table, dict) else None
        columns = [part.get(k) if isinstance(part, dict) else None for k in ("path", "score", "step")]
        if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
            raise InvalidData(f"{path}: '{name}' must hold lists 'path', 'score' and 'step' of one length")
        paths, scores, steps = columns
        if not all(isinstance(p, str) and is_inside(p) for p in paths) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores + steps):
            raise InvalidData(f"{path}: '{name}' needs relative paths inside the folder and numeric scores and "
                              "steps")
        entries[name] = list(zip(paths, map(float, scores), map(int, steps)))
    return entries


class CnnWildPark(DatasetSource):
    """The published CNN Wild Park checkpoints, in the authors' split."""

    def entries(self) -> dict[str, list[tuple[str, float, int]]]:
        """The split file's entries, at most ``limit`` per split."""
        path = self.source_dir / SPLITS_FILE
        if not path.is_file():
            raise DataNotFound(f"CNN Wild Park split file {SPLITS_FILE}", DOWNLOAD, [path])
        limit = self.load_options.limit
        return {name: rows[:limit] if limit else rows for name, rows in read_splits(path).items()}

    def raw_paths(self) -> list[Path]:
        listed = [self.source_dir / p for rows in self.entries().values() for p, _, _ in rows]
        present = [p for p in listed if p.is_file()]
        if listed and not present:
            raise DataNotFound(f"CNN Wild Park checkpoints ({len(listed):,} listed in {SPLITS_FILE})", DOWNLOAD,
                               [self.source_dir / FOLDER])
        return [self.source_dir / SPLITS_FILE, *present]

    def read(self, relative: str, score: float, step: int) -> WildParkNetwork:
        """One listed checkpoint, its accuracy and epoch checked against the split file."""
        path = self.source_dir / relative
        if not path.is_file():
            raise InvalidItem(path, f"listed in {SPLITS_FILE} but absent", "missing")
        net = read_network(path)
        if abs(net.test_accuracy - score) > SCORE_TOLERANCE or net.iteration != step:
            raise InvalidItem(path, f"records test accuracy {net.test_accuracy} after {net.iteration} epochs, but "
                                    f"{SPLITS_FILE} says {score} after {step}", "split-mismatch")
        return net

    def process(self) -> Built:
        entries = self.entries()
        skipper = Skipper(self.load_options.skip_invalid)
        bar = progress(sum(map(len, entries.values())), "cnn-wild-park: reading checkpoints", "checkpoints",
                       self.progress)
        splits, runs = {}, {}
        for name in SPLITS:
            networks, steps, run_ids = [], [], []
            for relative, score, step in entries[name]:
                net = skipper.attempt(self.read, relative, score, step)
                bar.update()
                if net is None:
                    continue
                networks.append(net)
                steps.append(net.iteration)
                run_ids.append(runs.setdefault(Path(relative).parent.parent.as_posix(), len(runs)))
            if not networks:
                raise InvalidData(f"cnn-wild-park, {name} split: none of the {len(entries[name]):,} listed "
                                  f"checkpoints could be used (skipped: {skipper.summary()})")
            splits[name] = Split(stack_mixed(networks), torch.tensor([n.test_accuracy for n in networks]),
                                 {"step": torch.tensor(steps), "run": torch.tensor(run_ids)})
        bar.close()
        every = [s.extras["step"] for s in splits.values()]
        card = {"target": "recorded CIFAR-10 test accuracy of the checkpoint (last_result['test/acc'])",
                "split": f"the authors' {SPLITS_FILE} (by training run)", "runs": len(runs),
                "distinct_architectures": len({spec for s in splits.values() for spec in s.specs}),
                "epochs": summary(torch.cat(every)), "skipped": skipper.summary()}
        return Built(splits["train"], splits["val"], splits["test"], card)


register_dataset(DatasetInfo(
    "cnn-wild-park", ("zoo",), "regression", 1, version=2,  # 2: residuals between unequal widths are read
    description="CNN Wild Park: CIFAR-10 CNNs of varying depth and widths, kernels 3/5/7, six activations and "
                "residuals between arbitrary layers, checkpoints through training; target: test accuracy",
    source=f"Kofinas et al. 2024 (ICLR), Zenodo 10.5281/zenodo.12797219 ({ZENODO}); split file from "
           "github.com/mkofinas/neural-graphs",
    licence="as stated on the Zenodo record 10.5281/zenodo.12797219 (not verified here); the authors' code is MIT",
    files=(RemoteFile(ARCHIVE_URL, "cnn_wild_park.zip"), RemoteFile(SPLITS_URL, SPLITS_FILE))), CnnWildPark)
