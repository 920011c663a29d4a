"""A run's training state after each epoch, so that an interrupted run resumes where it
stopped instead of starting over.

The state (model, optimiser, schedule, best weights so far, history, the random generators
and the seconds trained) is written atomically next to the run's record and removed once the
record is written. It is read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects. A state written for another run (its
``key`` differs; the warning names the settings that differ) or unreadable is set aside with a
warning, and the run starts over. A state
that cannot be written (a full disk) costs only the resumability: one warning, and the run
goes on without saving.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.record_schema import RunConfig
from benchmarks.records import config_changes
from datasets.errors import WriteError
from datasets.files import atomic_write_bytes, remove_file

log = logging.getLogger("wsbench")
SUFFIX = ".checkpoint.pt"  # after the record's stem: seed0.json -> seed0.checkpoint.pt


def read_state(path: Path) -> dict | None:
    """The training state saved in ``path``, or ``None`` (with a warning) if it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        log.warning("warning: %s cannot be read (%s: %s); the run starts from its first epoch", path,
                    type(err).__name__, err)
        return None
    return state if isinstance(state, dict) else None


def changed_settings(state: dict, config: RunConfig | None) -> str:
    """What of ``config`` differs from the configuration ``state`` was saved for, as a clause
    (empty where either is missing)."""
    saved = state.get("config")
    if not isinstance(saved, dict) or config is None:
        return ""
    changes = config_changes(saved, config)
    return f" ({'; '.join(changes)})" if changes else " (the same configuration, another seed)"


@dataclass
class Checkpoint:
    """Where one run keeps its training state, and the run's identity: ``key`` (its run id)
    and ``config`` (its configuration, saved with the state to name what changed)."""

    path: Path
    key: str
    config: RunConfig | None = None
    unwritable: bool = field(default=False, compare=False)  # a save failed: the run goes on without

    @classmethod
    def beside(cls, record: Path, key: str, config: RunConfig | None = None) -> "Checkpoint":
        """The checkpoint of the run whose record goes to ``record``."""
        return cls(record.with_name(record.stem + SUFFIX), key, config)

    def save(self, state: dict) -> None:
        """Write ``state``; if it cannot be written, warn once and stop saving."""
        if self.unwritable:
            return
        buffer = io.BytesIO()
        torch.save({**state, "key": self.key, "config": self.config}, buffer)
        try:
            atomic_write_bytes(self.path, buffer.getvalue())
        except WriteError as err:
            self.unwritable = True
            log.warning("warning: %s; the run goes on without saving its training state (it cannot resume)", err)

    def load(self) -> dict | None:
        """The saved state of this run, or ``None`` (none saved, another run's, unreadable)."""
        if not self.path.is_file() or (state := read_state(self.path)) is None:
            return None
        if state.get("key") != self.key:
            log.warning("warning: %s belongs to another run%s; the run starts from its first epoch", self.path,
                        changed_settings(state, self.config))
            return None
        return state

    def remove(self) -> None:
        if self.path.exists():
            remove_file(self.path)
