"""A file that cannot be written (a full disk, the file size limit, a folder in its place)
ends the leaderboard in one line naming it, exit status 2, no traceback; the records and
every file already written stay as they were, and no temporary file is left behind."""

import os
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import leaderboard  # imports matplotlib, whose font cache is thus saved here, unlimited
from benchmarks.records import record_path, write_record
from datasets.errors import WriteError, WsbenchError
from datasets.files import atomic_write, atomic_write_bytes, atomic_write_text
from test_leaderboard import RECORDS

REPO = Path(__file__).resolve().parents[2]
LIMIT = 24_000  # bytes: more than any record and leaderboard.md, less than a figure or the page


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    for r in RECORDS:
        write_record(record_path(tmp_path, r["config"], r["seed"]), r)
    return tmp_path


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def limited() -> None:
    """In the child: writes past LIMIT bytes fail with EFBIG (SIGXFSZ ignored, not fatal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_file_size_limit_mid_render_is_one_line_naming_the_file(out):
    records = snapshot(out / "records")
    assert all(len(data) < LIMIT for data in records.values())
    # No bytecode written: Python does not check its .pyc writes, and would leave truncated ones.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.leaderboard", "--out", str(out), "--reference", "none"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, preexec_fn=limited,
                          check=False)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {out}/") and "cannot be written (File too large)" in line, line
    assert "Traceback" not in done.stderr
    failed = Path(line.removeprefix("error: ").split(": cannot be written")[0])
    assert failed.suffix in (".png", ".html", ".json") and not failed.exists()
    assert snapshot(out / "records") == records  # byte for byte
    assert not list(out.rglob("*.tmp"))
    assert (out / "leaderboard.md").stat().st_size < LIMIT  # what fitted was written whole


def test_a_folder_where_the_page_goes_is_one_line_naming_it(out, capsys):
    (out / "leaderboard.html").mkdir()
    records = snapshot(out / "records")
    assert leaderboard.main(["--out", str(out), "--reference", "none"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out / 'leaderboard.html'}: cannot be written (Is a directory); free some space or give "
                   "another folder\n")
    assert snapshot(out / "records") == records and not list(out.rglob("*.tmp"))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "kept.txt"
    atomic_write_text(target, "old")

    def fail(_tmp: str) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="kept.txt: cannot be written \\(No space left on device\\)"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
    with pytest.raises(WriteError, match="cannot be written"):
        atomic_write_bytes(target / "below-a-file.txt", b"x")  # its folder is a file


def test_the_write_error_is_a_user_error_that_crosses_processes():
    err = WriteError("runs/records/x.json: cannot be written (File too large); free some space or give another "
                     "folder")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is WriteError and str(again) == str(err) and again.args == err.args
    assert isinstance(again, WsbenchError) and isinstance(again, OSError)
