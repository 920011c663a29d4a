"""Files written so that nothing is ever half-written or lost: atomic writes, content
hashes (memoised by file status), and advisory locks between processes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from datasets.errors import InvalidData, WriteError

log = logging.getLogger("wsbench")
HASH_CHUNK = 1 << 22


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the file over ``path``: readers see the
    old file or the new one, never a part. The file gets the permissions a plain ``open``
    would give (``0o666`` less the umask), not ``mkstemp``'s ``0o600``. A system error
    (a full disk, the file size limit, a folder where the file goes) removes the temporary
    file and raises :class:`WriteError` naming ``path``; the old file stays as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise unwritable(path, err) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise unwritable(path, err) from None
        raise


def unwritable(path: Path, err: OSError, done: str = "written") -> WriteError:
    """The user error for ``path``, which the system refused to have ``done`` with ``err``."""
    return WriteError(f"{path}: cannot be {done} ({err.strerror or err}); free some space or give another folder")


def remove_file(path: Path) -> None:
    """Delete the file ``path`` (:class:`WriteError` naming it if the system refuses)."""
    try:
        Path(path).unlink()
    except OSError as err:
        raise unwritable(path, err, "removed") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def is_inside(relative: str) -> bool:
    """Whether a path listed in a table stays inside its folder (relative, no ``..``)."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts


def read_json(path: Path, what: str) -> object:
    """The parsed JSON of ``path``; ``InvalidData`` naming the file and ``what`` it should be
    if it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidData(f"{path}: not a readable {what} ({err})") from None


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashMemo:
    """Content hashes of source files, remembered in a JSON file by absolute path and file
    status (size, modification and status-change times, inode): a file is hashed again
    whenever any of them changes, so a replaced or rewritten file is never mistaken for the
    old one (the status-change time cannot be set back, unlike the modification time), and
    an unchanged one is read once (a second name for the same file, a symbolic link, is one
    more entry)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._memo: dict[str, list] | None = None
        self._dirty = False

    def _entries(self) -> dict[str, list]:
        if self._memo is None:
            try:
                self._memo = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def sha256(self, path: Path | str) -> str:
        stat = os.stat(path)
        key, status = os.path.abspath(path), [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        known = self._entries().get(key)
        if known and known[:-1] == status:
            return known[-1]
        digest = sha256_file(path)
        self._entries()[key] = status + [digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self._dirty:
            atomic_write_text(self.path, json.dumps(self._entries()))
            self._dirty = False


@contextmanager
def file_lock(path: Path, *, wait_message: str = "") -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if absent) until the block
    ends; if another process holds it, log ``wait_message`` and wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_message:
                log.info(wait_message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Yield True while holding an exclusive lock on ``path``, or False at once if another
    process holds it (the caller skips the work)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

