"""The leaderboard is a pure function of the records, pinned by golden files (Markdown and
the summary CSV)."""

import json
from pathlib import Path

import pandas as pd

from benchmarks.leaderboard import frame, learning_flags, render, summary, to_csv, write
from benchmarks.paper_tables import render as render_tables
from benchmarks.record_schema import SCHEMA_VERSION
from benchmarks.records import config_id, record_path, run_id, write_record

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"
GOLDEN_CSV = Path(__file__).parent / "golden" / "leaderboard.csv"


def record(method, seed, acc, perm_acc, change, status="ok", epochs=30, best_epoch=3, val=0.5):
    config = {"suite": "inr", "dataset": "digits-inr", "dataset_fingerprint": "d", "dataset_version": 1,
              "method": method, "method_version": 1, "hyperparameters": {"hidden": 8}, "model_profile": "quick",
              "method_options": {}, "profile": "quick", "train": {"epochs": epochs}, "protocol_version": 2,
              "data": {"options": {}, "limit": None, "skip_invalid": False}}
    base = {"schema": SCHEMA_VERSION, "config": config, "config_id": config_id(config), "seed": seed,
            "run_id": run_id(config, seed), "status": status}
    if status != "ok":
        return {**base, "reason": "dwsnet takes MLPs only; the dataset holds conv networks of 12 architectures"}
    history = [{"epoch": e, "train_loss": 1.0, "val_accuracy": 0.1} for e in range(1, epochs + 1)]
    return {**base, "metrics": {"accuracy": acc}, "undefined": {}, "val": {"accuracy": val},
            "best_epoch": best_epoch, "history": history,
            "chance": {"metric": "accuracy", "value": 0.1, "margin": 0.05}, "parameters": 1234,
            "train_seconds": 10.0 + seed, "samples_per_second": 1000.0 * (seed + 1), "peak_memory_mb": 512.0,
            "robustness": {"permutation": {"test": {"accuracy": perm_acc}, "output_change": change,
                                           "function_error": 0.0}}}


RECORDS = [record("mlp", 0, 0.10, 0.09, 0.7, val=0.12), record("mlp", 1, 0.12, 0.10, 0.8, val=0.13),
           record("dwsnet", 0, 0.80, 0.80, 0.0), record("dwsnet", 1, 0.84, 0.84, 0.0),
           record("dwsnet", 0, 0.60, 0.60, 0.0, epochs=2, best_epoch=2),
           record("nfn-np", 0, 0, 0, 0, status="n/a")]


def test_leaderboard_matches_the_golden_file():
    assert render(RECORDS) + "\n" == GOLDEN.read_text()


def test_the_summary_csv_matches_the_golden_file():
    assert to_csv(summary(frame(RECORDS))) == GOLDEN_CSV.read_text()


def test_write_reads_records_from_disk_and_writes_every_format(tmp_path):
    for r in RECORDS:
        write_record(record_path(tmp_path, r["config"], r["seed"]), r)
    text = write(tmp_path)
    assert text.replace(str(tmp_path), "results") + "\n" == GOLDEN.read_text()
    assert (tmp_path / "leaderboard.md").read_text() == text + "\n"
    assert (tmp_path / "leaderboard.csv").read_text() == GOLDEN_CSV.read_text()
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    from_json = pd.DataFrame(json.loads((tmp_path / "leaderboard.json").read_text()))
    assert list(from_json.columns) == list(table.columns) and list(from_json["method"]) == list(table["method"])
    numbers = table.select_dtypes("number").columns
    pd.testing.assert_frame_equal(from_json[numbers].astype(float), table[numbers].astype(float), rtol=1e-9)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == len(RECORDS) and set(runs["seed"]) == {0, 1}
    assert (runs["flags"].fillna("") == [", ".join(learning_flags(r)) for r in sorted(
        RECORDS, key=lambda r: str(record_path(tmp_path, r["config"], r["seed"])))]).all()
    assert "No records yet" in render(RECORDS, ("smoke",))


def test_the_summary_has_one_row_per_configuration_with_the_statistics_over_seeds():
    table = summary(frame(RECORDS)).set_index(["method", "budget"])
    dwsnet = table.loc[("dwsnet", "30 ep, quick model")]
    assert dwsnet["seeds"] == 2 and dwsnet["test.accuracy.count"] == 2
    assert abs(dwsnet["test.accuracy.mean"] - 0.82) < 1e-12 and abs(dwsnet["test.accuracy.std"] - 0.04 / 2**0.5) < 1e-12
    assert table.loc[("dwsnet", "2 ep, quick model"), "still_improving"] == 1
    assert table.loc[("mlp", "30 ep, quick model"), "did_not_learn"] == 2
    na = table.loc[("nfn-np", "30 ep, quick model")]
    assert na["status"] == "n/a" and na["seeds"] == 0 and "MLPs only" in na["reason"]
    assert list(table.index.get_level_values("method")) == ["dwsnet", "dwsnet", "mlp", "nfn-np"]  # best first


def test_flags_mark_runs_cut_off_by_their_budget_or_at_chance():
    assert learning_flags(RECORDS[0]) == ["did not learn"]  # best val 0.12 <= chance 0.1 + margin 0.05
    assert learning_flags(RECORDS[2]) == []
    assert learning_flags(RECORDS[4]) == ["still improving"]  # best epoch = last epoch


def test_paper_tables_put_our_numbers_beside_the_published_ones():
    text = render_tables(RECORDS)
    assert "| dwsnet | 85.71 | – | 67.06 | – | – | – | 82.00 ± 2.83 (quick, 30 ep, quick model, 2 seeds) |" in text
    assert "| ng-t | 0.935 | – | 0.817 | – | – | – |" in text
    # the editing table: published dilation MSE, and none of the classification records in it
    edit = text[text.index("## INR editing"):]
    assert "| scalegmn-b | 1.89 | – | – |" in edit and "82.00" not in edit
