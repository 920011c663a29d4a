"""Convert run records of schema 1 to the current schema, in place of their results folder.

    python scripts/migrate_records.py RESULTS_DIR [--dry-run]

Schema-1 records sat at ``records/<profile>/<suite>/<dataset>/<method>/seed<k>.json``, with
an identity that missed the budget and the code versions. Each is rewritten at the path of
its full configuration (``benchmarks.records.record_path``); what schema 1 did not record is
marked, never guessed: ``dataset_version`` and ``method_version`` 0 (older code than any
version) and ``protocol_version`` 1, so a migrated record is never taken for a run of
today's code (the runner redoes such runs). The chance level of its validation split is
the uniform one (1 / classes; 0 for a rank correlation), with margin 0, since schema 1 did
not record it. The old file is removed once the new one is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks  # noqa: E402,F401  (binds our datasets package)
from benchmarks.record_schema import SCHEMA_VERSION, RunConfig, validate  # noqa: E402
from benchmarks.records import config_id, record_path, run_id, write_record  # noqa: E402
from benchmarks.suites import SUITES  # noqa: E402

CLASSES = 10  # every classification dataset of schema-1 days had 10 classes


def migrate(old: dict) -> tuple[RunConfig, dict]:
    """The schema-2 configuration and record of a schema-1 record."""
    old_config = old.get("config", {})
    data = old_config.get("data", {})
    config = RunConfig(suite=old["suite"], dataset=old["dataset"],
                       dataset_fingerprint=str(old.get("dataset_fingerprint") or "unknown"), dataset_version=0,
                       method=old["method"], method_version=0, hyperparameters=old_config.get("model", {}),
                       model_profile=old_config.get("model_profile", "quick"), method_options={},
                       profile=old["profile"], train={**old_config.get("train", {}), "precision": "fp32",
                                                      "compile": False},
                       protocol_version=1, data={"options": data.get("params", {}), "limit": data.get("limit"),
                                                 "skip_invalid": data.get("skip_invalid", False)})
    primary = SUITES[old["suite"]].primary
    record = {key: value for key, value in old.items()
              if key not in ("suite", "dataset", "method", "profile", "family", "fingerprint", "dataset_fingerprint")}
    record.update(schema=SCHEMA_VERSION, config=config, config_id=config_id(config),
                  run_id=run_id(config, old["seed"]), migrated_from=1)
    if old["status"] == "ok":
        record.setdefault("undefined", {})
        record["chance"] = {"metric": primary, "value": 1 / CLASSES if primary == "accuracy" else 0.0, "margin": 0.0}
    return config, record


def main() -> int:
    parser = argparse.ArgumentParser(description="Convert schema-1 run records to the current schema.")
    parser.add_argument("results", type=Path, help="results folder holding records/")
    parser.add_argument("--dry-run", action="store_true", help="print what would move, change nothing")
    args = parser.parse_args()
    if not (args.results / "records").is_dir():
        print(f"error: {args.results}: no records/ folder here", file=sys.stderr)
        return 2
    moved = 0
    for path in sorted((args.results / "records").rglob("*.json")):
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            print(f"skipped {path}: unreadable ({err})", file=sys.stderr)
            continue
        if not isinstance(old, dict) or old.get("schema") != 1:
            continue
        config, record = migrate(old)
        target = record_path(args.results, config, old["seed"])
        validate(record, str(target))
        print(f"{path} -> {target}")
        if not args.dry_run:
            write_record(target, record)
            path.unlink()
        moved += 1
    print(f"{moved} record(s) {'would be ' if args.dry_run else ''}migrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
