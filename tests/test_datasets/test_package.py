"""Naming hazard: our package is called ``datasets``, like Hugging Face's. Inside a wsbench
process the name must be ours (or give one clear error); other code's ``import datasets``
must be left alone."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks  # noqa: F401  (binds the name)
import datasets

REPO = Path(__file__).resolve().parents[2]
METADATA = "Metadata-Version: 2.1\nName: datasets\nVersion: 99.0\n"


def test_datasets_is_the_local_package():
    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


@pytest.mark.slow
def test_a_stand_in_hugging_face_datasets_neither_hides_ours_nor_is_hidden(tmp_path):
    """A package named ``datasets`` installed ahead of ours on the path (a folder with the
    package and its ``.dist-info``, as pip lays it out; no pip or virtualenv needed, so the
    test runs in whatever environment wsbench was installed into)."""
    site = tmp_path / "site"
    (site / "datasets").mkdir(parents=True)
    (site / "datasets" / "__init__.py").write_text("STAND_IN = True\n")
    (site / "datasets-99.0.dist-info").mkdir()
    (site / "datasets-99.0.dist-info" / "METADATA").write_text(METADATA)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)

    theirs = run("-c", "import datasets; print(datasets.STAND_IN)")
    assert theirs.returncode == 0 and theirs.stdout.strip() == "True"  # other projects keep their datasets
    ours = run("-c", "import benchmarks, datasets; print(datasets.__file__)")
    assert ours.returncode == 0 and Path(ours.stdout.strip()).resolve().is_relative_to(REPO), ours.stderr
    facade = run("-c", "import wsbench, datasets; print(datasets.__file__)")
    assert facade.returncode == 0 and Path(facade.stdout.strip()).resolve().is_relative_to(REPO), facade.stderr
    listing = run("-m", "benchmarks.run", "--list")
    assert listing.returncode == 0 and "digits-inr" in listing.stdout, listing.stderr
    clash = run("-c", "import datasets, benchmarks")
    assert clash.returncode != 0
    assert "another package named 'datasets' is already imported" in clash.stderr.strip().splitlines()[-1]
