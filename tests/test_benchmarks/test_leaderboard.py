"""The leaderboard is a pure function of the records, pinned by golden files (Markdown and
the summary CSV)."""

import json
from html import escape
from pathlib import Path

import pandas as pd

from benchmarks import paper_tables
from benchmarks.leaderboard import LIST_COLUMNS, budget, frame, learning_flags, main, render, summary, to_csv, write
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
    numbers = [c for c in table.select_dtypes("number").columns if c not in LIST_COLUMNS]  # lists: JSON arrays
    assert all(isinstance(v, list) for c in LIST_COLUMNS[1:] for v in from_json[c])
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
    assert learning_flags(record("dwsnet", 0, 0.6, 0.6, 0.0, epochs=1, best_epoch=1)) == ["still improving"]
    timed = {**reconfigured(record("dwsnet", 0, 0.8, 0.8, 0.0, epochs=3, best_epoch=2), epochs=30, time_limit=60.0),
             "stopped": "time limit"}
    assert learning_flags(timed) == ["stopped by its time limit"]
    assert budget(timed) == "≤30 ep, time limit 60 s, quick model"
    assert budget(reconfigured(timed, patience=4)) == "≤30 ep, patience 4, time limit 60 s, quick model"


def on_mnist(r, limit=2000, epochs=60, patience=8, trained=20):
    """Record ``r`` as a run on a limited ``mnist-inr`` with early stopping after ``trained`` epochs."""
    r = json.loads(json.dumps(r))
    r["config"].update(dataset="mnist-inr", data={"options": {}, "limit": limit, "skip_invalid": False},
                       train={"epochs": epochs, "patience": patience})
    r["config_id"], r["history"] = config_id(r["config"]), r["history"][:1] * trained
    return r


def test_paper_tables_put_our_numbers_beside_the_published_ones():
    text = render_tables(RECORDS)
    assert ("| dwsnet | 85.71 | – | 67.06 | – | – | – | 82.00 ± 2.83 (quick, 30 ep, quick model; all networks; "
            "2 seeds) |") in text
    assert ("- digits-inr (ours) against MNIST (paper): Kendall τ between our ranking and the published one over the "
            "2 methods in both (dwsnet, mlp): 1.00 (1 concordant, 0 discordant pairs).") in text
    assert "| ng-t | 0.935 | – | 0.817 | – | – | – |" in text
    # the editing table: published dilation MSE, and none of the classification records in it
    edit = text[text.index("## INR editing"):]
    assert "| scalegmn-b | 1.89 | – | – |" in edit and "82.00" not in edit


def test_our_mnist_column_states_budget_data_size_and_epochs_and_its_tau_names_the_disagreements():
    mnist = [on_mnist(record("mlp", s, 0.5, 0.5, 0.7), trained=12 + s) for s in (0, 1)]
    mnist += [on_mnist(record("dwsnet", 0, 0.3, 0.3, 0.0), trained=60)]
    text = render_tables(mnist)
    assert ("| mlp | 17.55 | 50.00 ± 0.00 (quick, ≤60 ep, patience 8, quick model, limit 2,000, trained 12–13 ep; "
            "2,000 / 2,000 / 2,000 of 55,000 / 5,000 / 10,000 networks (train / val / test); 2 seeds) |") in text
    assert ("MNIST (ours) against MNIST (paper): Kendall τ between our ranking and the published one over the 2 "
            "methods in both (dwsnet, mlp): -1.00 (0 concordant, 1 discordant pairs: mlp above dwsnet here, not in "
            "the paper).") in text


def test_each_profile_gets_its_own_column_with_its_tau_and_the_flags_of_its_runs():
    quick = [on_mnist(record(m, s, acc + s / 100, acc, 0.0, best_epoch=3), trained=20)
             for m, acc in (("dwsnet", 0.45), ("scalegmn", 0.8)) for s in (0, 1)]
    paper = []
    for m, acc in (("dwsnet", 0.87), ("scalegmn", 0.94)):
        r = on_mnist(record(m, 0, acc, acc, 0.0, best_epoch=1), limit=None, epochs=1, patience=None, trained=1)
        r["config"]["profile"] = r["config"]["model_profile"] = "paper"
        r["config_id"] = config_id(r["config"])
        paper.append(r)
    text = render_tables(quick + paper)
    assert "| MNIST (paper) | MNIST (ours, quick models) | MNIST (ours, paper models) | FashionMNIST (paper) |" in text
    dwsnet = next(line for line in text.splitlines() if line.startswith("| dwsnet | 85.71 |"))
    assert "45.50 ± 0.71 (quick," in dwsnet and "87.00 (paper, 1 ep," in dwsnet
    assert "1 seed; still improving (1/1))" in dwsnet  # its one epoch budget cut it off
    assert "- MNIST (ours, quick models) against MNIST (paper):" in text
    assert "- MNIST (ours, paper models) against MNIST (paper):" in text


def reconfigured(r, **train):
    """Record ``r`` with ``config.train`` entries set and its identity recomputed."""
    r["config"]["train"].update(train)
    r["config_id"], r["run_id"] = config_id(r["config"]), run_id(r["config"], r["seed"])
    return r


def claiming(method, claims, changes, seed=0, acc=0.8, precision="fp32"):
    """A finished record of ``method`` claiming ``claims`` (None: an older record without
    them), with the mean output change ``changes[transform]`` under each transform."""
    r = reconfigured(record(method, seed, acc, acc, 0.0), precision=precision)
    if claims is not None:
        r["claims"] = claims
    r["robustness"] = {t: {"test": {"accuracy": acc}, "output_change": change, "function_error": 0.0}
                       for t, change in changes.items()}
    return r


def board_rows(text):
    """Markdown table rows by their method cell."""
    return {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| method")}


def test_a_broken_symmetry_claim_is_flagged_on_its_row_in_every_format(tmp_path):
    broken = [claiming("broken", ["permutation", "rescale", "sign_flip"],
                       {"permutation": 2e-7, "rescale": 2e-2 + 1e-3 * seed, "rescale_100": 0.5, "sign_flip": 0.3},
                       seed) for seed in (0, 1)]
    controls = [claiming("invariant", ["permutation", "rescale"], {"permutation": 1e-6, "rescale": 8e-6}),
                claiming("claims-nothing", [], {"permutation": 0.7, "rescale": 0.9}),
                claiming("bf16-invariant", ["rescale"], {"rescale": 1e-2}, precision="bf16"),
                claiming("dwsnet", None, {"permutation": 0.3}),  # older record: the registry's claim (permutation)
                claiming("unregistered", None, {"permutation": 0.3})]  # older, unknown method: no claim
    for r in broken + controls:
        write_record(record_path(tmp_path, r["config"], r["seed"]), r)
    rows = board_rows(write(tmp_path))
    assert rows["broken"].rstrip(" |").endswith("| claimed invariance broken: rescale, sign_flip")
    assert rows["dwsnet"].rstrip(" |").endswith("| claimed invariance broken: permutation")
    for method in ("invariant", "claims-nothing", "bf16-invariant", "unregistered"):
        assert "claimed invariance broken" not in rows[method], method
    table = pd.read_csv(tmp_path / "leaderboard.csv").set_index("method")
    assert table.loc["broken", "broken_claims"] == "rescale; sign_flip"
    assert table.loc["broken", "claims"] == "permutation; rescale; sign_flip"
    assert table["broken_claims"].isna().sum() == 4
    from_json = {row["method"]: row for row in json.loads((tmp_path / "leaderboard.json").read_text())}
    assert from_json["broken"]["broken_claims"] == ["rescale", "sign_flip"]
    assert from_json["invariant"]["broken_claims"] == []
    assert from_json["dwsnet"]["claims"] == ["permutation"] and from_json["unregistered"]["claims"] == []
    html = (tmp_path / "leaderboard.html").read_text()
    assert html.count("<td>claimed invariance broken: rescale, sign_flip</td>") == 1
    assert html.count("claimed invariance broken: ") == 2 + 1  # the two rows, and the intro


def test_records_not_read_are_named_and_counted_and_the_others_still_shown(tmp_path, capsys):
    for r in RECORDS:
        write_record(record_path(tmp_path, r["config"], r["seed"]), r)
    folder = record_path(tmp_path, RECORDS[0]["config"], 0).parent
    truncated, older, listed = folder / "seed7.json", folder / "seed8.json", folder / "seed9.json"
    truncated.write_text('{"broken": ')
    older.write_text(json.dumps({**RECORDS[0], "schema": 1}))
    listed.write_text("[1, 2]")
    aside = record_path(tmp_path, RECORDS[1]["config"], 1).with_suffix(".json.corrupt")
    aside.write_text("{not json")  # what a run sets aside before it redoes the run
    assert main(["--out", str(tmp_path), "--reference", "none"]) == 0
    err = capsys.readouterr().err.splitlines()
    problems = {truncated: "not valid JSON (Expecting value: line 1 column 12 (char 11))",
                older: "schema 1, expected 2 (older records: python scripts/migrate_records.py)",
                listed: "not a JSON object but list",
                aside: "set aside, redone (not valid JSON (Expecting property name enclosed in double quotes: line 1 "
                       "column 2 (char 1)))"}
    assert sorted(err) == sorted([f"record not read: {path}: {problem}" for path, problem in problems.items()]
                                 + ["4 record file(s) not read"])
    markdown, html = (tmp_path / "leaderboard.md").read_text(), (tmp_path / "leaderboard.html").read_text()
    assert "## Records not read (4)" in markdown and "<h2>Records not read (4)</h2>" in html
    for path, problem in problems.items():
        assert f"- `{path}`: {problem}" in markdown
        assert f"<li><code>{path}</code>: {escape(problem)}</li>" in html
    assert set(board_rows(markdown)) == {"dwsnet", "mlp", "nfn-np"} and "| mlp | 30 ep" in markdown
    assert paper_tables.main(["--out", str(tmp_path)]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 5
    assert f"- `{truncated}`: {problems[truncated]}" in (tmp_path / "paper_tables.md").read_text()


def test_the_reference_runs_on_the_same_data_and_budget_are_ranked_beside_yours(tmp_path, capsys):
    mine, shipped = tmp_path / "mine", tmp_path / "shipped"
    own = [record("mine", seed, 0.70, 0.70, 0.0) for seed in (0, 1)]
    reference = [record(method, 0, acc, acc, 0.0) for method, acc in (("dwsnet", 0.9), ("nfn-np", 0.6), ("mlp", 0.2))]
    other_data = record("statnn", 0, 0.95, 0.95, 0.0)
    other_data["config"]["dataset_fingerprint"] = "e"
    apart = [reconfigured(other_data),  # other data, precision, lr schedule, batch, time limit or epochs: not shown
             reconfigured(record("ng-t", 0, 0.99, 0.99, 0.0), precision="bf16"),
             reconfigured(record("ng-gnn", 0, 0.97, 0.97, 0.0), schedule="constant"),
             reconfigured(record("ng-t", 1, 0.97, 0.97, 0.0), batch_size=512),
             reconfigured(record("scalegmn", 0, 0.97, 0.97, 0.0), time_limit=60.0),
             record("nft", 0, 0.98, 0.98, 0.0, epochs=2, best_epoch=1)]
    same_config = record("mine", 0, 0.72, 0.72, 0.0)  # your configuration: its mean joins your row
    for folder, records in ((mine, own), (shipped, reference + apart + [same_config])):
        for r in records:
            write_record(record_path(folder, r["config"], r["seed"]), r)
    assert main(["--out", str(mine), "--reference", str(shipped)]) == 0
    rows = list(board_rows((mine / "leaderboard.md").read_text()).items())
    assert [method for method, _ in rows] == ["dwsnet (reference)", "mine", "nfn-np (reference)", "mlp (reference)"]
    assert rows[1][1].rstrip(" |").endswith("| 72.00 (1)") and rows[0][1].rstrip(" |").endswith("| –")
    table = pd.read_csv(mine / "leaderboard.csv")
    assert list(table["source"]) == ["reference", "yours", "reference", "reference"]
    assert set(pd.read_csv(mine / "runs.csv")["source"]) == {"yours", "reference"}
    html = (mine / "leaderboard.html").read_text()
    assert html.count('<tr class="reference">') == 3 and "<td>dwsnet (reference)</td>" in html
    assert main(["--out", str(mine), "--reference", "none"]) == 0
    assert list(board_rows((mine / "leaderboard.md").read_text())) == ["mine"]
    assert list(pd.read_csv(mine / "leaderboard.csv")["source"]) == ["yours"]


def test_a_time_limited_configuration_stands_for_the_epochs_it_trained():
    def paper_run(acc, epochs, trained, time_limit=None):
        r = on_mnist(record("ng-gnn", 0, acc, acc, 0.0, best_epoch=1), limit=None, epochs=epochs, patience=None,
                     trained=trained)
        r["config"]["profile"] = r["config"]["model_profile"] = "paper"
        return reconfigured(r, **({"time_limit": time_limit} if time_limit else {}))

    cell = paper_tables.ours([paper_run(0.22, 1, 1), paper_run(0.41, 200, 8, 361.0)], "inr", "mnist-inr",
                             "accuracy", "paper")["ng-gnn"].cell
    assert cell.startswith("41.00 (paper, ≤200 ep, time limit 361 s,") and "trained 8 ep" in cell
    cell = paper_tables.ours([paper_run(0.30, 6, 6), paper_run(0.41, 200, 2, 60.0)], "inr", "mnist-inr",
                             "accuracy", "paper")["ng-gnn"].cell
    assert cell.startswith("30.00 (paper, 6 ep,")
