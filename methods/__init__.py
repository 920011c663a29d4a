"""The graph methods on neural graphs (NG-GNN, NG-T, ScaleGMN, ScaleGMN-B); every module here
registers its methods on import."""

import runpy as _runpy
from pathlib import Path as _Path

_runpy.run_path(str(_Path(__file__).resolve().parents[1] / "datasets" / "binding.py"))  # our datasets, not HF's

from datasets.discovery import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
