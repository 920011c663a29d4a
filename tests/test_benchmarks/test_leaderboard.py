"""The leaderboard is a pure function of the records, pinned by a golden file."""

from pathlib import Path

from benchmarks.leaderboard import render, write
from benchmarks.records import SCHEMA_VERSION, record_path, write_record

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"


def record(method, seed, acc, perm_acc, change, status="ok"):
    base = {"schema": SCHEMA_VERSION, "suite": "inr", "dataset": "digits-inr", "method": method, "seed": seed,
            "profile": "quick", "status": status, "fingerprint": "f"}
    if status != "ok":
        return {**base, "reason": "takes MLPs only"}
    return {**base, "metrics": {"accuracy": acc}, "best_epoch": 3, "parameters": 1234, "train_seconds": 10.0 + seed,
            "samples_per_second": 1000.0 * (seed + 1), "peak_memory_mb": 512.0,
            "robustness": {"permutation": {"test": {"accuracy": perm_acc}, "output_change": change,
                                           "function_error": 0.0}}}


RECORDS = [record("mlp", 0, 0.10, 0.09, 0.7), record("mlp", 1, 0.12, 0.10, 0.8),
           record("dwsnet", 0, 0.80, 0.80, 0.0), record("dwsnet", 1, 0.84, 0.84, 0.0),
           record("nfn-np", 0, 0, 0, 0, status="n/a")]


def test_leaderboard_matches_the_golden_file():
    assert render(RECORDS) + "\n" == GOLDEN.read_text()


def test_write_reads_records_from_disk(tmp_path):
    for r in RECORDS:
        write_record(record_path(tmp_path, r["profile"], r["suite"], r["dataset"], r["method"], r["seed"]), r)
    assert write(tmp_path) + "\n" == GOLDEN.read_text() == (tmp_path / "leaderboard.md").read_text()
    assert "No records yet" in render(RECORDS, ("smoke",))


def test_paper_tables_put_our_numbers_beside_the_published_ones():
    from benchmarks.paper_tables import render as render_tables
    text = render_tables(RECORDS)
    assert "| dwsnet | 85.71 | – | 67.06 | – | 82.00 ± 2.83 (quick, 2 seeds) |" in text
    assert "| ng-t | 0.935 | – | – | – |" in text
