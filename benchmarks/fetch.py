"""Fetch a dataset's published files: ``python -m benchmarks.fetch NAME [--data-root DIR]``
(or ``--fetch`` on ``python -m benchmarks.run``).

Every file in the dataset's registration (``DatasetInfo.files``) is downloaded with pooch from
its published URL, with a progress bar, resuming a download that was cut off (an HTTP range
request continues ``<name>.part``), and checked against its sha256 before it is used: the
published one from the registration or, where none was published, the one measured on the
first download and recorded in ``DATA_ROOT/raw/checksums.json`` (the fetch says so; later
fetches are checked against it). A mismatch is one error, and the file is discarded.
Archives (``.zip``, ``.tar.gz``, ``.tar.xz``) are kept in ``DATA_ROOT/raw/downloads/<dataset>``
and unpacked into the folder that the dataset's source reads (``DATA_ROOT/raw/<source
folder>``, or ``--dataset-source``); other files are saved in that folder as they are.
"""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import os
import shutil
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from datasets.cache import default_data_root
from datasets.dataset_table import DATASETS, DatasetEntry, RemoteFile
from datasets.errors import ConfigError, DataNotFound, InvalidData, MissingDependency, WsbenchError, exit_status
from datasets.files import atomic_write_text, file_lock, sha256_file
from datasets.progress import progress
from datasets.source import LoadOptions

log = logging.getLogger("wsbench")
ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar.xz", ".tar")
CHUNK = 1 << 16  # bytes per write: what a cut-off download can lose
TIMEOUT_S = 60


def downloads_folder(root: Path, dataset: str) -> Path:
    """Where a dataset's archives are kept once downloaded."""
    return root / "raw" / "downloads" / dataset


def checksums_path(root: Path) -> Path:
    """The checksums measured on first downloads of files published without one."""
    return root / "raw" / "checksums.json"


def is_archive(name: str) -> bool:
    return name.endswith(ARCHIVES)


def is_present(entry: DatasetEntry, options: LoadOptions) -> bool:
    """Whether the files the dataset's source reads are all there."""
    try:
        entry.open(options).raw_paths()
    except DataNotFound:
        return False
    return True


@dataclass
class ResumableDownload:
    """A pooch downloader that resumes: bytes go to ``part``, which an interrupted download
    leaves behind; the next call asks the server for the rest (an HTTP range request), and
    starts over where the server ignores it. The whole file is then handed to pooch, which
    checks its hash."""

    part: Path
    label: str
    show_progress: bool = True
    calls: int = 0

    def __call__(self, url: str, output_file: str, _pooch: object) -> None:
        import requests

        self.calls += 1
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            whole = offset > 0 and response.status_code == 416  # nothing left to send: the part is complete
            if not whole:
                response.raise_for_status()
                resumed = response.status_code == 206 and response.headers.get(
                    "Content-Range", "").startswith(f"bytes {offset}-")
                offset = offset if resumed else 0
                if resumed:
                    log.info("%s: resuming the download at byte %s", self.label, f"{offset:,}")
                bar = progress(offset + int(response.headers.get("Content-Length", 0)), self.label, "B",
                               self.show_progress)
                bar.update(offset)
                with open(self.part, "ab" if resumed else "wb") as f:
                    for chunk in response.iter_content(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                bar.close()
        os.replace(self.part, output_file)


def recorded_checksums(root: Path) -> dict[str, dict]:
    path = checksums_path(root)
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise InvalidData(f"{path}: not a readable checksum table ({err}); fix or delete it") from None
    if not isinstance(table, dict):
        raise InvalidData(f"{path}: not a checksum table (a JSON object of URL -> entry); fix or delete it")
    return table


def record_checksum(root: Path, remote: RemoteFile, sha256: str) -> None:
    """Record the sha256 measured on the first download of a file published without one."""
    path = checksums_path(root)
    with file_lock(path.with_name(f"{path.name}.lock")):
        table = recorded_checksums(root)
        table[remote.url] = {"name": remote.name, "sha256": sha256,
                             "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(path, json.dumps(table, indent=1, sort_keys=True) + "\n")


def is_inside(name: str) -> bool:
    """Whether an archive member's path stays inside the folder it is unpacked into."""
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts


def extract(archive: Path, into: Path) -> None:
    """Unpack ``archive`` into ``into``, refusing members that would land outside it (and,
    for tar files, links, devices and other special files)."""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not is_inside(n)]
                if bad:
                    raise InvalidData(f"{archive}: member {bad[0]!r} would be unpacked outside the folder")
                zf.extractall(into)
            return
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not is_inside(m.name) or not (m.isfile() or m.isdir())]
            if bad:
                raise InvalidData(f"{archive}: member {bad[0]!r} is a link, a special file or outside the "
                                  "folder; only plain files and folders are unpacked")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(into, members, **extra)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as err:
        raise InvalidData(f"{archive}: cannot be unpacked ({type(err).__name__}: {err})") from None


def unpack(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` through a staging folder beside it, so that an
    interrupted unpack never leaves a half-written dataset where the loader looks."""
    staging = target.parent / f".{target.name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        extract(archive, staging)
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.iterdir()):
            destination = target / item.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            elif destination.exists() or destination.is_symlink():
                destination.unlink()
            os.replace(item, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(remote: RemoteFile, folder: Path, root: Path, label: str, show_progress: bool) -> tuple[Path, bool]:
    """Download ``remote`` into ``folder`` (unless a verified copy is there); return its
    path and whether it was downloaded now."""
    try:
        import pooch
        import requests
    except ImportError as err:
        raise MissingDependency(f"fetching datasets needs pooch ({err.name} is not installed): pip install pooch"
                                ) from None
    pooch.get_logger().setLevel(logging.WARNING)
    published = remote.sha256
    recorded = None if published else recorded_checksums(root).get(remote.url, {}).get("sha256")
    known = published or recorded
    downloader = ResumableDownload(folder / f"{remote.name}.part", f"{label}: {remote.name}", show_progress)
    try:
        path = Path(pooch.retrieve(remote.url, f"sha256:{known}" if known else None, fname=remote.name,
                                   path=folder, downloader=downloader))
    except requests.RequestException as err:
        part = downloader.part
        kept = (f"; the {part.stat().st_size:,} bytes received are kept in {part} and the next fetch resumes there"
                if part.exists() and part.stat().st_size else "")
        raise WsbenchError(f"{label}: downloading {remote.url} failed ({type(err).__name__}: {err}){kept}") from None
    except ValueError as err:  # pooch: the hash does not match (requests' own are caught above)
        where = ("the published one in the dataset's registration" if published else
                 f"the one measured on the first download, recorded in {checksums_path(root)} (if the publisher "
                 "replaced the file on purpose, delete its entry there)")
        raise InvalidData(f"{label}: {remote.name} from {remote.url} is not the published file: its sha256 is "
                          f"not {where}; the download was discarded and nothing was unpacked ({err})") from None
    if not known:
        measured = sha256_file(path)
        record_checksum(root, remote, measured)
        log.warning("%s: %s was published without a sha256; recorded the one measured now (%s) in %s, and later "
                    "fetches are checked against it", label, remote.name, measured, checksums_path(root))
    return path, downloader.calls > 0


def fetch(entry: DatasetEntry, options: LoadOptions) -> Path:
    """Download, verify and unpack every published file of ``entry`` into the folder its
    source reads; return that folder."""
    info = entry.info
    if not info.files:
        how = "it is built locally from data that ships with a dependency" if info.embedded else \
            f"see its source: {info.source}"
        raise ConfigError(f"{info.name} has no published files to fetch ({how})")
    root = options.root
    target = entry.open(options).source_dir
    downloads = downloads_folder(root, info.name)
    with file_lock(downloads.with_name(f"{info.name}.lock"),
                   wait_message=f"{info.name}: another process is fetching this dataset; waiting"):
        archives = [r for r in info.files if is_archive(r.name)]
        for remote in info.files:
            if remote not in archives:
                download(remote, target, root, info.name, options.progress)
        present = is_present(entry, options)  # with the plain files in place: do the archives need unpacking?
        for remote in archives:
            path, fresh = download(remote, downloads, root, info.name, options.progress)
            if fresh or not present:
                log.info("%s: unpacking %s into %s", info.name, remote.name, target)
                unpack(path, target)
        entry.open(options).raw_paths()  # what the source reads must be there now (DataNotFound if not)
    log.info("%s: published files in %s (archives kept in %s)", info.name, target, downloads)
    return target


def fetch_missing(entries: list[DatasetEntry], options: LoadOptions) -> list[Path]:
    """:func:`fetch` every dataset of ``entries`` that has published files and is not present."""
    return [fetch(e, options) for e in entries if e.info.files and not is_present(e, options)]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import OneLineParser, folder

    parser = OneLineParser(prog="python -m benchmarks.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="NAME", help="dataset name (python -m benchmarks.run --list)")
    parser.add_argument("--data-root", type=folder, default=None,
                        help="dataset folder (default $WSBENCH_DATA or ~/.cache/wsbench)")
    parser.add_argument("--dataset-source", type=folder, help="put the files here instead of DATA_ROOT/raw/...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from benchmarks.launchers import register_all

    register_all()  # every dataset: the built-in ones and the installed plugins'

    options = LoadOptions(args.data_root or default_data_root(), args.dataset_source)

    def fetch_all() -> None:
        for entry in [DATASETS[name] for name in dict.fromkeys(args.names)]:
            print(f"{entry.info.name}: {fetch(entry, options)}")

    return exit_status(fetch_all)


if __name__ == "__main__":
    sys.exit(main())
