"""Fetching published datasets, against a publisher on 127.0.0.1 that the tests start: a Small
CNN Zoo archive in the published layout and NFN's split file are downloaded, verified,
unpacked and loaded; corrupted copies are refused, cut-off downloads resume, and unpublished
checksums are measured once and enforced after."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import benchmarks.fetch as fetch_module
import datasets.sources.small_cnn_zoo  # noqa: F401  (registers the zoos)
from benchmarks.fetch import checksums_path, downloads_folder, fetch
from datasets.dataset_table import DATASETS, DatasetEntry, RemoteFile
from datasets.errors import ConfigError, InvalidData, WsbenchError
from datasets.source import LoadOptions
from zoo_files import write_zoo

ZOO = "small-cnn-zoo-cifar10"


class Publisher:
    """Files served from memory over HTTP on 127.0.0.1, with range requests; ``cut[name] = n``
    ends the next response for ``name`` after ``n`` bytes. ``requests`` records
    ``(name, Range header, bytes sent)``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None, int]] = []
        publisher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                data, wanted = publisher.files.get(name), self.headers.get("Range")
                if data is None:
                    self.send_error(404)
                    return
                start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if wanted else 200)
                if wanted:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:start + publisher.cut.pop(name)] if name in publisher.cut else data[start:]
                self.wfile.write(body)
                publisher.requests.append((name, wanted, len(body)))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"


@pytest.fixture
def publisher():
    served = Publisher()
    yield served
    served.server.shutdown()
    served.server.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zoo_archive(tmp_path: Path, seed: int = 0) -> tuple[bytes, bytes, pd.DataFrame]:
    """``cifar10.tar.xz`` as published (``cifar10/weights.npy``, ``metrics.csv.gz``,
    ``layout.csv``), NFN's split file (published apart) and the zoo's metrics."""
    folder = tmp_path / f"publish{seed}" / "cifar10"
    _, metrics = write_zoo(folder, n=40, seed=seed)
    split = (folder / "cifar10_split.csv").read_bytes()
    (folder / "cifar10_split.csv").unlink()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        tar.add(folder, arcname="cifar10")
    return buffer.getvalue(), split, metrics


def published_zoo(publisher: Publisher, archive: bytes, split: bytes, archive_sha256: str | None = "auto"
                  ) -> DatasetEntry:
    """The registered Small CNN Zoo (CIFAR-10), its files published by ``publisher``."""
    publisher.files.update({"cifar10.tar.xz": archive, "cifar10_split.csv": split})
    entry = DATASETS[ZOO]
    files = (RemoteFile(publisher.url("cifar10.tar.xz"), "cifar10.tar.xz",
                        sha256(archive) if archive_sha256 == "auto" else archive_sha256),
             RemoteFile(publisher.url("cifar10_split.csv"), "cifar10_split.csv", sha256(split)))
    return replace(entry, info=replace(entry.info, files=files))


def options(tmp_path: Path) -> LoadOptions:
    return LoadOptions(tmp_path / "data", progress=False)


def test_fetch_downloads_verifies_unpacks_and_the_zoo_loads(tmp_path, publisher):
    archive, split, metrics = zoo_archive(tmp_path)
    entry = published_zoo(publisher, archive, split)
    target = fetch(entry, options(tmp_path))
    assert target == tmp_path / "data" / "raw" / "small-cnn-zoo" / "cifar10"
    assert (target / "cifar10" / "weights.npy").is_file() and (target / "cifar10_split.csv").read_bytes() == split
    assert (downloads_folder(tmp_path / "data", ZOO) / "cifar10.tar.xz").read_bytes() == archive
    dataset = entry.open(options(tmp_path)).load()  # through the zoo's own source, from the fetched files
    assert dataset.card["read_from"] == str(target / "cifar10")
    for split_ in dataset.splits().values():
        rows = split_.extras["row"].numpy()
        assert len(rows) and np.allclose(split_.targets.numpy(), metrics["test_accuracy"].to_numpy()[rows])
    # a second fetch checks the local copies and downloads nothing
    served = len(publisher.requests)
    assert fetch(entry, options(tmp_path)) == target and len(publisher.requests) == served


def test_a_corrupted_copy_is_refused_and_not_unpacked(tmp_path, publisher):
    archive, split, _ = zoo_archive(tmp_path)
    entry = published_zoo(publisher, archive, split)
    damaged = bytearray(archive)
    damaged[len(damaged) // 2] ^= 0xFF
    publisher.files["cifar10.tar.xz"] = bytes(damaged)
    with pytest.raises(InvalidData, match="not the published file: its sha256 is not the published one"):
        fetch(entry, options(tmp_path))
    target = tmp_path / "data" / "raw" / "small-cnn-zoo" / "cifar10"
    assert not (target / "cifar10").exists()
    assert not list(downloads_folder(tmp_path / "data", ZOO).glob("cifar10.tar.xz*"))
    publisher.files["cifar10.tar.xz"] = archive  # the publisher's copy mended: the next fetch succeeds
    assert (fetch(entry, options(tmp_path)) / "cifar10" / "weights.npy").is_file()


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path, publisher):
    archive, split, _ = zoo_archive(tmp_path)
    entry = published_zoo(publisher, archive, split)
    half = len(archive) // 2
    publisher.cut["cifar10.tar.xz"] = half
    with pytest.raises(WsbenchError, match="the next fetch resumes there"):
        fetch(entry, options(tmp_path))
    part = downloads_folder(tmp_path / "data", ZOO) / "cifar10.tar.xz.part"
    kept = part.read_bytes()
    assert 0 < len(kept) <= half and archive.startswith(kept)
    fetch(entry, options(tmp_path))
    assert publisher.requests[-1] == ("cifar10.tar.xz", f"bytes={len(kept)}-", len(archive) - len(kept))
    assert (downloads_folder(tmp_path / "data", ZOO) / "cifar10.tar.xz").read_bytes() == archive
    assert not part.exists() and entry.open(options(tmp_path)).raw_paths()


def test_an_unpublished_checksum_is_measured_recorded_and_then_enforced(tmp_path, publisher, caplog):
    archive, split, _ = zoo_archive(tmp_path)
    entry = published_zoo(publisher, archive, split, archive_sha256=None)
    with caplog.at_level(logging.WARNING, logger="wsbench"):
        target = fetch(entry, options(tmp_path))
    assert "published without a sha256; recorded the one measured now" in caplog.text
    table = json.loads(checksums_path(tmp_path / "data").read_text())
    assert table[publisher.url("cifar10.tar.xz")]["sha256"] == sha256(archive)
    # the publisher's file changes: a new download is checked against the recorded checksum
    (downloads_folder(tmp_path / "data", ZOO) / "cifar10.tar.xz").unlink()
    (target / "cifar10" / "weights.npy").unlink()
    publisher.files["cifar10.tar.xz"] = zoo_archive(tmp_path, seed=1)[0]
    with pytest.raises(InvalidData, match="recorded in .*checksums.json"):
        fetch(entry, options(tmp_path))
    assert not (target / "cifar10" / "weights.npy").exists()


def test_an_archive_reaching_outside_its_folder_is_refused(tmp_path, publisher):
    _, split, _ = zoo_archive(tmp_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    entry = published_zoo(publisher, buffer.getvalue(), split)
    with pytest.raises(InvalidData, match="'../escaped.txt' is a link, a special file or outside the folder"):
        fetch(entry, options(tmp_path))
    assert not list((tmp_path / "data").rglob("escaped.txt"))


def test_a_dataset_without_published_files_and_bad_names_get_one_line(tmp_path, capsys):
    import datasets.sources.digits_inr  # noqa: F401

    with pytest.raises(ConfigError, match="digits-inr has no published files to fetch"):
        fetch(DATASETS["digits-inr"], options(tmp_path))
    assert fetch_module.main(["small-cnn-zoo-cifar1", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown dataset 'small-cnn-zoo-cifar1'") and "\n" not in err


def test_run_fetch_gets_the_missing_dataset_then_trains_on_it(tmp_path, publisher, monkeypatch):
    import benchmarks.run as run

    archive, split, _ = zoo_archive(tmp_path)
    monkeypatch.setitem(DATASETS._entries, ZOO, published_zoo(publisher, archive, split))
    args = ["--suite", "zoo", "--datasets", ZOO, "--methods", "mlp", "--seeds", "0", "--epochs", "1",
            "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    assert run.main([*args, "--fetch"]) == 0
    record = json.loads(next((tmp_path / "out" / "records").rglob("seed0.json")).read_text())
    assert record["status"] == "ok" and record["config"]["dataset"] == ZOO
    served = len(publisher.requests)
    assert run.main([*args, "--fetch"]) == 0 and len(publisher.requests) == served  # present: not fetched again
