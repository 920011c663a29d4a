"""The dataset source base: where a dataset's files are, how they are read or built, and
the caching protocol around that (PyTorch Geometric's ``Dataset`` in spirit).

A source implements three things: :meth:`DatasetSource.raw_paths` (the files it reads or
builds from, or :class:`~datasets.errors.DataNotFound`), :meth:`DatasetSource.process`
(read or build the splits, no caching) and, where it has any, its ``options``. The base
class owns the rest:

- option parsing with valid ranges (``--dataset-option KEY=VALUE``), refused before any work;
- the fingerprint: sha256 of the dataset's name and code ``version``, every option that
  changes the contents, ``limit`` and ``skip_invalid``, and the *content* of every source
  file (name relative to the source folder, size, sha256; hashes are memoised by file
  status in ``root/source-hashes.json``), so a replaced, added or removed file, a changed
  option or a new version of the code all lead to a new cache;
- the content-addressed cache folder ``root/<name>/<fingerprint>`` (``datasets.cache``),
  a lock so that two processes never build the same dataset at once, the validation of
  every built dataset before it is cached, and the data card's common fields;
- resumable builds: :attr:`DatasetSource.checkpoints` keeps finished chunks of a long build
  until the dataset is cached, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datasets.cache import FORMAT_VERSION, ChunkStore, read_cache, write_cache
from datasets.card import card_summary
from datasets.dataset_table import DatasetInfo
from datasets.files import HashMemo, file_lock
from datasets.options import Option, parse_options
from datasets.validation import validate_dataset
from datasets.weight_dataset import Split, WeightDataset

log = logging.getLogger("wsbench")


@dataclass(frozen=True)
class LoadOptions:
    """What the harness passes to every dataset source.

    ``root``: the data root (caches live in ``root/<dataset>/<fingerprint>``). ``source``: a
    folder of published files or raw data given by the user (default ``root/raw/<folder>``).
    ``limit``: at most this many networks (or images) per split. ``skip_invalid``: drop
    malformed networks (counted in the card) instead of failing. ``params``: the dataset's
    own options as ``KEY -> VALUE`` strings."""

    root: Path
    source: Path | None = None
    limit: int | None = None
    skip_invalid: bool = False
    progress: bool = True
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Built:
    """What :meth:`DatasetSource.process` returns: the splits and the card fields that only
    this source knows (the base adds the common ones)."""

    train: Split
    val: Split
    test: Split
    card: dict = field(default_factory=dict)


class DatasetSource:
    """Base of every dataset source; see the module docstring for the protocol."""

    options: ClassVar[dict[str, Option]] = {}
    raw_folder: ClassVar[str] = ""  # default source folder: root/raw/<raw_folder or name>

    def __init__(self, info: DatasetInfo, load: LoadOptions, **constants: Any) -> None:
        """``constants``: what ``register_dataset(info, Source, **constants)`` gave, the
        facts that make this source one member of its family; each becomes an attribute
        and must be declared (with a default) on the class."""
        for key, value in constants.items():
            if not hasattr(type(self), key):
                raise TypeError(f"{type(self).__name__} declares no constant {key!r}")
            setattr(self, key, value)
        self.info, self.load_options = info, load
        self.config: dict[str, Any] = parse_options(load.params, self.options, info.name)
        self.checkpoints: ChunkStore | None = None
        self.check()

    # ------------------------------------------------------------ what a source implements

    def check(self) -> None:
        """Cross-option checks (``ConfigError``); single options are checked by their ranges."""

    def raw_paths(self) -> list[Path]:
        """Every file the dataset is read or built from; ``DataNotFound`` if they are absent.
        Empty for data that ships with a dependency."""
        return []

    def recipe(self) -> dict[str, Any]:
        """Whatever else determines the contents (beyond options and source files)."""
        return {}

    def process(self) -> Built:
        """Read or build the splits (no caching)."""
        raise NotImplementedError

    def after_load(self, dataset: WeightDataset) -> None:
        """Side outputs once the dataset is loaded (an export, say)."""

    # ------------------------------------------------------------ the protocol

    @property
    def source_dir(self) -> Path:
        given = self.load_options.source
        return Path(given) if given else self.load_options.root / "raw" / (self.raw_folder or self.info.name)

    @property
    def progress(self) -> bool:
        return self.load_options.progress

    def source_identity(self, paths: list[Path]) -> list[list]:
        """``[name, size, sha256]`` of every source file, names relative to the source folder.
        Paths are handled as absolute strings, not resolved ``Path`` objects: resolving costs a
        system call per path component, which dominated the fingerprint of a folder of
        published network files (5x slower for 10,000)."""
        memo = HashMemo(self.load_options.root / "source-hashes.json")
        base = os.path.join(os.path.abspath(self.source_dir), "")
        identity = []
        for path in sorted(map(os.path.abspath, paths)):
            name = path[len(base):] if path.startswith(base) else os.path.basename(path)
            identity.append([name.replace(os.sep, "/"), os.stat(path).st_size, memo.sha256(path)])
        memo.save()
        return identity

    def full_recipe(self) -> dict[str, Any]:
        """Everything that determines the dataset's contents."""
        fingerprinted = {k: v for k, v in self.config.items() if self.options[k].fingerprint}
        return {"format": FORMAT_VERSION, "dataset": self.info.name, "version": self.info.version,
                "options": fingerprinted, "limit": self.load_options.limit,
                "skip_invalid": self.load_options.skip_invalid, "source": self.source_identity(self.raw_paths()),
                **self.recipe()}

    def fingerprint(self) -> str:
        blob = json.dumps(self.full_recipe(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def load(self) -> WeightDataset:
        """The cached dataset, built (and validated, and cached) first if needed."""
        fingerprint = self.fingerprint()
        directory = self.load_options.root / self.info.name / fingerprint
        with file_lock(directory.with_name(f"{fingerprint}.lock"),
                       wait_message=f"{self.info.name}: another process is building this dataset; waiting"):
            dataset = read_cache(directory, self.info, fingerprint)
            if dataset is None:
                self.checkpoints = ChunkStore(directory / "partial")
                built = self.process()
                dataset = self.assemble(built, fingerprint)
                validate_dataset(dataset)
                card = write_cache(directory, dataset)
                dataset = WeightDataset(self.info, dataset.train, dataset.val, dataset.test_split(), card, fingerprint)
                shutil.rmtree(directory / "partial", ignore_errors=True)
                self.checkpoints = None
        dataset.card["source_folder"] = str(self.source_dir)
        self.after_load(dataset)
        return dataset

    def assemble(self, built: Built, fingerprint: str) -> WeightDataset:
        """The dataset with its card: the common fields, then the source's own."""
        splits = {"train": built.train, "val": built.val, "test": built.test}
        card = {"name": self.info.name, "description": self.info.description, "source": self.info.source,
                "licence": self.info.licence, "version": self.info.version, "options": self.config,
                "limit": self.load_options.limit, **card_summary(splits, self.info), **built.card}
        return WeightDataset(self.info, built.train, built.val, built.test, card, fingerprint)
