"""wsbench harness: suites, metrics, the training protocol, robustness, records, CLI,
leaderboard and paper tables."""

import runpy as _runpy
from pathlib import Path as _Path

_runpy.run_path(str(_Path(__file__).resolve().parents[1] / "datasets" / "binding.py"))  # our datasets, not HF's
