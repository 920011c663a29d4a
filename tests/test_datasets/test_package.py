"""Naming hazard (DESIGN.md section 1): `datasets` must be ours, not Hugging Face's."""

from pathlib import Path

import datasets

REPO = Path(__file__).resolve().parents[2]


def test_datasets_is_the_local_package():
    assert Path(datasets.__file__).resolve().is_relative_to(REPO)
